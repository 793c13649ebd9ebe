"""The wire contract: Avro single-object framing that any language can decode."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from decimal import Decimal

import fastavro
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import InvalidInput, SchemaError, decode, encode, parse_raw_reading
from schemas.codec import MAGIC, SCHEMA_NAMES, decode_as, fingerprint, schema
from schemas.raw import RawReading, reading_to_avro

HOURLY = {
    "station_id": "dongsi",
    "hour_start": 1_767_225_600_000,
    "aqi": 102,
    "category": "Unhealthy for Sensitive Groups",
    "main_pollutant": "pm25_nowcast",
    "sub_indices": {"pm25_nowcast": 102},
    "concentrations": {"pm25_nowcast": 35.9},
    "hourly_means": {"pm25": 35.9},
    "reading_count": 2,
    "reason": None,
    "aqi_version": "EPA-454/B-24-002",
}


def test_a_message_is_marker_fingerprint_then_plain_avro_binary():
    data = encode("aqi_hourly", HOURLY)
    assert data[:2] == MAGIC == b"\xc3\x01"
    assert data[2:10] == fingerprint("aqi_hourly")
    # Any Avro library can read the body with the .avsc file alone:
    body = fastavro.schemaless_reader(io.BytesIO(data[10:]), schema("aqi_hourly"), None)
    assert body["aqi"] == 102


def test_fingerprints_are_the_avro_specs_crc64_of_the_canonical_form():
    # Pinned: a change here is a contract change and needs a new schema version.
    assert {name: fingerprint(name).hex() for name in SCHEMA_NAMES} == {
        name: _crc64_hex(name) for name in SCHEMA_NAMES
    }


def _crc64_hex(name: str) -> str:
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    canonical = fastavro.schema.to_parsing_canonical_form(schema(name)).encode()
    fp = empty
    for byte in canonical:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp.to_bytes(8, "little").hex()


def test_decode_names_the_contract_and_returns_aware_utc_times():
    name, record = decode_as(encode("aqi_hourly", HOURLY))
    assert name == "aqi_hourly"
    assert record["hour_start"] == datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("data", [b"", b"{}", b"\xc3\x01short", b"\xc3\x01" + b"\x00" * 8])
def test_decode_rejects_what_is_not_a_known_framed_record(data):
    with pytest.raises(SchemaError):
        decode(data)


def test_trailing_bytes_are_corruption():
    with pytest.raises(SchemaError, match="trailing"):
        decode(encode("aqi_hourly", HOURLY) + b"x")


def test_encode_refuses_a_record_that_breaks_the_contract():
    with pytest.raises(SchemaError):
        encode("aqi_hourly", {**HOURLY, "aqi": "high"})


@given(
    value=st.decimals(min_value=0, max_value=10_000, places=3, allow_nan=False),
    ts=st.integers(0, 253_402_300_799_999),
    pollutant=st.sampled_from(["pm25", "pm10", "o3", "no2", "so2", "co"]),
)
def test_raw_readings_survive_json_and_avro_alike(value, ts, pollutant):
    reading = RawReading("s1", None, pollutant, value, "ug/m3", ts, None, None)
    from_avro = parse_raw_reading(reading_to_avro(reading))
    body = {
        "station_id": "s1",
        "pollutant": pollutant,
        "value": float(value),
        "unit": "ug/m3",
        "ts": ts,
    }
    from_json = parse_raw_reading(json.dumps(body).encode())
    assert from_avro == from_json
    assert from_json.value == Decimal(repr(float(value)))


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        ("2026-01-01T10:30:00+08:00", 1_767_234_600_000),
        ("2026-01-01T02:30:00Z", 1_767_234_600_000),
        (1_767_234_600_000, 1_767_234_600_000),
    ],
)
def test_event_time_is_iso_8601_with_offset_or_epoch_milliseconds(ts, expected):
    body = {"station_id": "s1", "pollutant": "pm25", "value": 1, "unit": "ug/m3", "ts": ts}
    assert parse_raw_reading(json.dumps(body).encode()).ts_ms == expected


@pytest.mark.parametrize("ts", ["2026-01-01T10:30:00", "yesterday", True, -5, 1.5])
def test_an_event_time_without_zone_or_out_of_range_is_rejected(ts):
    body = {"station_id": "s1", "pollutant": "pm25", "value": 1, "unit": "ug/m3", "ts": ts}
    with pytest.raises(InvalidInput) as error:
        parse_raw_reading(json.dumps(body).encode())
    assert error.value.reason == "invalid_timestamp"
