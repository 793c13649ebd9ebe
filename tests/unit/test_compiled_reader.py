"""The compiled Avro readers (schemas._reader) read exactly what fastavro reads, and leave
every body they do not read without doubt to fastavro, errors included."""

from __future__ import annotations

import io
import random
from datetime import UTC, date, datetime
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import schemas.codec
from schemas import SchemaError, encode
from schemas._reader import Cursor, Unread, compile_reader
from schemas.codec import MAGIC, SCHEMA_NAMES, decode_as, fingerprint, schema
from tests.unit.test_compiled_writer import records

COMPILED = [name for name in SCHEMA_NAMES if compile_reader(schema(name)) is not None]
HEADER = len(MAGIC) + 8


def fastavro_record(name: str, body: bytes) -> Any:
    return fastavro.schemaless_reader(io.BytesIO(body), schema(name), None)


def body_of(name: str, record: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema(name), record, strict_allow_default=True)
    return buffer.getvalue()


def same(left: Any, right: Any) -> bool:
    """Equal, with the same types all the way down (and the same tzinfo object)."""
    if type(left) is not type(right):
        return False
    if isinstance(left, dict):
        return list(left) == list(right) and all(same(left[k], right[k]) for k in left)
    if isinstance(left, list):
        return len(left) == len(right) and all(map(same, left, right))
    if hasattr(left, "tzinfo"):
        return left == right and left.tzinfo is right.tzinfo
    return bool(left == right) or (left != left and right != right)  # NaN is NaN


def test_every_contract_has_a_compiled_reader() -> None:
    assert set(COMPILED) == set(SCHEMA_NAMES)


@pytest.mark.parametrize("name", COMPILED)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_every_compiled_contract_reads_what_fastavro_reads(name: str, data: st.DataObject) -> None:
    """Or, where fastavro cannot read it (a timestamp beyond datetime's years), neither
    does the compiled reader: it leaves the body to fastavro."""
    body = body_of(name, data.draw(records(name)))
    read = compile_reader(schema(name))
    assert read is not None
    cursor = Cursor(body, 0)
    try:
        expected = fastavro_record(name, body)
    except (OverflowError, ValueError):
        with pytest.raises(Unread):
            read(cursor)
        return
    assert same(read(cursor), expected)
    assert cursor.position == len(body)


def test_timestamps_and_dates_come_back_as_fastavro_makes_them() -> None:
    daily = {
        "station_id": "dongsi",
        "day": date(2026, 3, 1),
        "day_start": 1_772_294_400_000,
        "utc_offset_minutes": 480,
        "revision": 0,
        "aqi": 61,
        "category": "Moderate",
        "main_pollutant": "pm25_24h",
        "sub_indices": {"pm25_24h": 61},
        "concentrations": {"pm25_24h": 17.6},
        "completeness": {"pm25": 24},
        "reasons": {},
        "reason": None,
        "health_message": None,
        "aqi_version": "EPA-454/B-24-002",
    }
    data = encode("aqi_daily", daily)
    name, record = decode_as(data)
    assert name == "aqi_daily"
    assert same(record, fastavro_record("aqi_daily", data[HEADER:]))
    assert record["day"] == date(2026, 3, 1)
    assert record["day_start"] == datetime(2026, 2, 28, 16, tzinfo=UTC)


def outcome(data: bytes) -> Any:
    try:
        return decode_as(data)
    except SchemaError as error:
        return f"SchemaError: {error}"


def fastavro_outcome(data: bytes, monkeypatch: pytest.MonkeyPatch) -> Any:
    with monkeypatch.context() as patch:
        patch.setattr(schemas.codec, "_compiled_reader", lambda name: None)
        return outcome(data)


ENRICHED = {
    "station_id": "dongsi",
    "sensor_id": "a-1",
    "pollutant": "pm25",
    "ts": 1_772_294_460_000,
    "hour_start": 1_772_294_400_000,
    "value": 12.5,
    "unit": "ug/m3",
    "value_epa": 12.5,
    "unit_epa": "ug/m3",
    "mean_1h": 11.0,
    "mean_8h": None,
    "mean_24h": 9.7,
    "lat": 39.9,
    "lon": 116.4,
    "flags": ["spike", "stuck"],
    "anomaly_score": 0.3,
    "correction": None,
}


def test_a_truncated_body_gets_exactly_what_fastavro_makes_of_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = encode("enriched_reading", ENRICHED)
    for end in range(HEADER, len(data) + 1):
        cut = data[:end]
        assert outcome(cut) == fastavro_outcome(cut, monkeypatch), end
    assert not isinstance(outcome(data[:-1]), tuple)  # the check has teeth


def test_a_corrupted_body_gets_exactly_what_fastavro_makes_of_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = random.Random(9)
    bodies = [
        encode("enriched_reading", ENRICHED),
        encode("enriched_reading", ENRICHED | {"flags": [], "sensor_id": None, "lat": None}),
    ]
    differ = 0
    for data in bodies:
        for _ in range(1500):
            corrupt = bytearray(data)
            for _ in range(rng.randint(1, 3)):
                corrupt[rng.randrange(HEADER, len(data))] = rng.randrange(256)
            mutated = bytes(corrupt)
            got = outcome(mutated)
            assert same(got, fastavro_outcome(mutated, monkeypatch)), mutated.hex()
            differ += got != outcome(data)
    assert differ > 1000  # most corruptions change the record or make it unreadable


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"\x80" * 11 + b"\x00", "a varint longer than a long"),
        (b"\xff" * 9 + b"\x7f", "a varint beyond 64 bits"),
        (b"\x04", "a union index out of range"),
        (b"\x02\x05", "a boolean that is neither 0 nor 1"),
        (b"\x0a" + b"ab", "a length past the end"),
        (b"\x04\xff\xfe", "bad UTF-8"),
    ],
)
def test_what_it_does_not_read_without_doubt_is_left_to_fastavro(body: bytes, why: str) -> None:
    readers = {
        "a varint longer than a long": {
            "type": "record",
            "name": "a",
            "fields": [{"name": "n", "type": "long"}],
        },
        "a varint beyond 64 bits": {
            "type": "record",
            "name": "a",
            "fields": [{"name": "n", "type": "long"}],
        },
        "a union index out of range": {
            "type": "record",
            "name": "b",
            "fields": [{"name": "n", "type": ["null", "long"]}],
        },
        "a boolean that is neither 0 nor 1": {
            "type": "record",
            "name": "c",
            "fields": [{"name": "n", "type": "long"}, {"name": "b", "type": "boolean"}],
        },
        "a length past the end": {
            "type": "record",
            "name": "d",
            "fields": [{"name": "s", "type": "string"}],
        },
        "bad UTF-8": {"type": "record", "name": "e", "fields": [{"name": "s", "type": "string"}]},
    }
    read = compile_reader(fastavro.parse_schema(readers[why]))
    assert read is not None
    with pytest.raises(Unread):
        read(Cursor(body, 0))


def test_an_older_writer_is_still_resolved_by_fastavro() -> None:
    """A body written with an earlier version of a contract is not the compiled reader's:
    fastavro resolves it into the current version (the added fields get their defaults)."""
    old = schemas.codec._parse("enriched_reading.v1.avsc")
    row = {f["name"]: ENRICHED.get(f["name"]) for f in old["fields"]}
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, old, row)
    data = MAGIC + schemas.codec._fingerprint_of(old) + buffer.getvalue()
    name, record = decode_as(data)
    assert name == "enriched_reading"
    assert set(record) == {f["name"] for f in schema("enriched_reading")["fields"]}
    assert fingerprint("enriched_reading") != data[2:HEADER]
