"""The compiled Avro writers (schemas._writer) write exactly fastavro's bytes."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import SchemaError, encode
from schemas._writer import Unfit, compile_writer
from schemas.codec import MAGIC, SCHEMA_NAMES, fingerprint, schema

COMPILED = [name for name in SCHEMA_NAMES if compile_writer(schema(name)) is not None]


def fastavro_bytes(name: str, record: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema(name), record, strict_allow_default=True)
    return MAGIC + fingerprint(name) + buffer.getvalue()


_TEXT = st.text(max_size=12)
_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "string": _TEXT,
    "bytes": st.binary(max_size=12),
    "int": st.integers(-(1 << 31), (1 << 31) - 1),
    "long": st.integers(-(1 << 63), (1 << 63) - 1),
    "double": st.floats(allow_nan=False) | st.integers(-(1 << 53), 1 << 53),
    "float": st.floats(width=32, allow_nan=False),
    "boolean": st.booleans(),
}


def values(field_type: Any) -> st.SearchStrategy[Any]:
    """Values of an Avro type (fastavro's parsed form), nested records included."""
    if isinstance(field_type, str):
        return _VALUES[field_type]
    if isinstance(field_type, list):
        return st.one_of([st.none() if t == "null" else values(t) for t in field_type])
    if field_type["type"] == "record":
        fields = field_type["fields"]
        return st.fixed_dictionaries({f["name"]: values(f["type"]) for f in fields})
    if field_type["type"] == "array":
        return st.lists(values(field_type["items"]), max_size=4)
    if field_type["type"] == "map":
        return st.dictionaries(_TEXT, values(field_type["values"]), max_size=4)
    return values(field_type["type"])  # a logical type: its underlying int or long


def records(name: str) -> st.SearchStrategy[dict[str, Any]]:
    return values(schema(name))


@pytest.mark.parametrize("name", COMPILED)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_every_compiled_contract_writes_fastavros_bytes(name: str, data: st.DataObject) -> None:
    record = data.draw(records(name))
    assert encode(name, record) == fastavro_bytes(name, record)


def test_the_hot_contracts_are_compiled() -> None:
    assert {"enriched_reading", "aqi_hourly", "aqi_daily", "anomaly", "deadletter"} <= set(COMPILED)


def test_values_it_does_not_handle_go_to_fastavro_with_the_same_result() -> None:
    row = {
        "station_id": "dongsi",
        "sensor_id": None,
        "pollutant": "pm25",
        "ts": datetime(2026, 1, 1, tzinfo=UTC),  # a datetime: fastavro converts it
        "kind": "spike",
        "score": 1,
        "value": 3.5,
        "unit": "ug/m3",
        "expected_low": None,
        "expected_high": None,
        "detail": "jumped",
    }
    with pytest.raises(Unfit):
        compile_writer(schema("anomaly"))(row)  # type: ignore[misc]
    assert encode("anomaly", row) == fastavro_bytes("anomaly", row)
    # a field left to its default (excluded_count) is fastavro's to fill in
    hourly = {
        "station_id": "dongsi",
        "hour_start": 0,
        "aqi": None,
        "category": None,
        "main_pollutant": None,
        "sub_indices": {},
        "concentrations": {},
        "hourly_means": {},
        "reading_count": 0,
        "reason": "no data",
        "aqi_version": "v",
        "health_message": None,
    }
    assert encode("aqi_hourly", hourly) == fastavro_bytes("aqi_hourly", hourly)


def outcome(write: Any, *args: Any) -> bytes | str:
    try:
        return write(*args)
    except (SchemaError, ValueError, TypeError) as error:
        return type(error).__name__


@pytest.mark.parametrize(
    "change",
    [
        {"value": "12"},  # a string for a double
        {"ts": 1.5},  # a float for a long
        {"flags": "spike"},  # a string for an array
        {"ts": True},  # a bool for a long
        {"mean_1h": float("nan")},
        {"unknown": 1},  # a field the contract does not have
        {"station_id": None},  # None where the contract has no null
    ],
)
def test_an_odd_record_gets_exactly_what_fastavro_makes_of_it(change: dict[str, Any]) -> None:
    """Bytes or an error: the compiled writer hands what it does not handle to fastavro."""
    row = {
        "station_id": "dongsi",
        "sensor_id": None,
        "pollutant": "pm25",
        "ts": 0,
        "hour_start": 0,
        "value": 1.0,
        "unit": "ug/m3",
        "value_epa": 1.0,
        "unit_epa": "ug/m3",
        "mean_1h": None,
        "mean_8h": None,
        "mean_24h": None,
        "lat": None,
        "lon": None,
        "flags": [],
        "anomaly_score": None,
        "correction": None,
    } | change
    expected = outcome(fastavro_bytes, "enriched_reading", row)
    got = outcome(encode, "enriched_reading", row)
    assert got == expected or (expected in ("ValueError", "TypeError") and got == "SchemaError")
