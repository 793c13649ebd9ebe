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
from schemas.raw import RawReading, parse_timestamp_ms, reading_to_avro

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


@pytest.mark.parametrize("ts", ["1969-12-31T23:59:59Z", "2026-01-01T10:30:00", "tomorrow"])
def test_a_rejected_event_time_is_rejected_again_when_it_comes_back(ts):
    for _ in range(2):  # parsed texts are remembered: only the ones that were accepted
        with pytest.raises(InvalidInput) as error:
            parse_timestamp_ms(ts)
        assert error.value.reason == "invalid_timestamp"


def test_event_times_parse_the_same_past_the_texts_remembered():
    texts = [f"2026-01-01T00:00:{s:02d}.{ms:03d}+01:00" for s in range(6) for ms in range(1000)]
    first = [parse_timestamp_ms(text) for text in texts]  # more than are remembered
    assert first == [1_767_222_000_000 + i for i in range(6000)]
    assert [parse_timestamp_ms(text) for text in reversed(texts)] == first[::-1]


# --- evolution: every earlier version of a contract stays readable --------------------


def _written_with(filename: str, record: dict) -> bytes:
    """A message as an older civicstream wrote it: that version's fingerprint and body."""
    from schemas.codec import _fingerprint_of, _parse

    old = _parse(filename)
    body = io.BytesIO()
    fastavro.schemaless_writer(body, old, record)
    return MAGIC + _fingerprint_of(old) + body.getvalue()


def test_every_earlier_version_is_kept_and_differs_from_the_current_one():
    from schemas.codec import SCHEMA_HISTORY, _fingerprint_of, _parse

    for name, files in SCHEMA_HISTORY.items():
        assert name in SCHEMA_NAMES
        for filename in files:
            assert _fingerprint_of(_parse(filename)) != fingerprint(name)


def test_an_hourly_record_written_before_health_messages_reads_with_a_null_message():
    name, record = decode_as(_written_with("aqi_hourly.v1.avsc", HOURLY))
    assert name == "aqi_hourly"
    assert record["aqi"] == 102
    assert record["health_message"] is None


def test_a_raw_reading_of_the_first_contract_reads_without_purpleair_channels():
    old = {
        "station_id": "dongsi",
        "sensor_id": None,
        "pollutant": "pm25",
        "value": 35.9,
        "unit": "ug/m3",
        "ts": 1_767_225_600_000,
        "lat": None,
        "lon": None,
    }
    reading = parse_raw_reading(_written_with("raw_reading.v1.avsc", old))
    assert (reading.value, reading.channel_a, reading.relative_humidity) == (
        Decimal("35.9"),
        None,
        None,
    )


def test_an_enriched_reading_of_the_first_contract_reads_without_a_correction():
    old = {
        "station_id": "dongsi",
        "sensor_id": None,
        "pollutant": "pm25",
        "ts": 1_767_225_600_000,
        "hour_start": 1_767_225_600_000,
        "value": 35.9,
        "unit": "ug/m3",
        "value_epa": 35.9,
        "unit_epa": "ug/m3",
    }
    record = decode(_written_with("enriched_reading.v1.avsc", old))
    assert record["correction"] is None and record["flags"] == []


def test_purpleair_fields_travel_in_json_and_avro_alike():
    text = (
        b'{"station_id":"pa-1","sensor_id":"pa-1","pollutant":"pm25","value":21,"unit":"ug/m3",'
        b'"ts":1767225600000,"channel_a":20.0,"channel_b":22,"relative_humidity":50.5}'
    )
    from_json = parse_raw_reading(text)
    assert (from_json.channel_a, from_json.channel_b, from_json.relative_humidity) == (
        Decimal("20.0"),
        Decimal(22),
        Decimal("50.5"),
    )
    from_avro = parse_raw_reading(reading_to_avro(from_json))
    assert from_avro.channel_b == 22 and from_avro.relative_humidity == Decimal("50.5")


def test_a_daily_record_round_trips_with_its_local_day():
    from datetime import date

    daily = {
        "station_id": "dongsi",
        "day": date(2013, 3, 1),
        "day_start": 1_362_067_200_000,
        "utc_offset_minutes": 480,
        "revision": 1,
        "aqi": 102,
        "category": "Unhealthy for Sensitive Groups",
        "main_pollutant": "pm25_24h",
        "sub_indices": {"pm25_24h": 102},
        "concentrations": {"pm25_24h": 35.9},
        "completeness": {"pm25_24h": 24},
        "reasons": {},
        "reason": None,
        "health_message": "People with heart or lung disease …",
        "aqi_version": "EPA-454/B-24-002",
    }
    name, record = decode_as(encode("aqi_daily", daily))
    assert name == "aqi_daily"
    assert record["day"] == date(2013, 3, 1)
    assert record["day_start"] == datetime(2013, 2, 28, 16, tzinfo=UTC)
    assert record["revision"] == 1
