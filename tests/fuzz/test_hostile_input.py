"""Hostile input: whatever bytes arrive, every message ends in exactly one place.

Property-based (hypothesis) over every decoder and validator on the worker's path: random
bytes, truncated and oversized messages, deeply nested JSON, wrong types, extreme numbers,
NaN/inf, unicode tricks, timestamps far in the past and future, duplicates. The budget per
property is bounded so `make test` stays fast; `HYPOTHESIS_PROFILE=long` runs 100x more.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import schemas
from schemas import Topics
from schemas.codec import fingerprint
from schemas.exceptions import InvalidInput, Reason, SchemaError
from schemas.raw import MAX_RAW_BYTES, parse_raw_reading
from streams.air_quality import AirQualityPipeline, SourceRecord
from streams.time import HourlyWindows

settings.register_profile(
    "default", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "long", max_examples=30_000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

HOUR_MS = 3_600_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00Z
REASONS = {reason.value for reason in Reason}

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
hostile_text = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "dongsi\u200b",  # zero-width space
        "dоngsi",  # Cyrillic o
        "\u202edongsi",  # right-to-left override
        "ｄｏｎｇｓｉ",  # full-width
        "a" * 10_000,
        "pm25\n",
        "PM2.5",
    ]
)
timestamps = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from(
        [
            "0001-01-01T00:00:00+00:00",
            "9999-12-31T23:59:59.999+00:00",
            "2026-01-01T00:00:00",  # no zone
            "2026-02-30T00:00:00Z",
            "1e20",
            "NaN",
        ]
    ),
    st.floats(),
)
values = st.one_of(
    st.floats(),  # NaN, inf, huge, tiny
    st.integers(min_value=-(10**400), max_value=10**400),
    st.sampled_from(["1e999", "-0", "12,5", "0x10", "NaN", "Infinity", "", None, True]),
    json_value,
)


@st.composite
def reading_like(draw: Any) -> dict[str, Any]:
    """A raw reading with any of its fields replaced by something hostile."""
    record: dict[str, Any] = {
        "station_id": "dongsi",
        "sensor_id": "dongsi-pm25",
        "pollutant": "pm25",
        "value": 12.5,
        "unit": "ug/m3",
        "ts": T0,
    }
    # sorted: a set's iteration order is not stable across runs, and hypothesis replays
    # draws in order (HYPOTHESIS_PROFILE=long found it: FlakyStrategyDefinition)
    names = draw(st.sets(st.sampled_from([*record, "lat", "lon", "extra"]), max_size=4))
    for field in sorted(names):
        record[field] = draw(
            st.one_of(json_value, hostile_text, values, timestamps)
            if field != "extra"
            else json_value
        )
    if draw(st.booleans()):
        record.pop(draw(st.sampled_from(sorted(record))), None)
    return record


def encoded(record: Any) -> bytes:
    return json.dumps(record, default=str, allow_nan=True).encode()


# --- the raw decoder ------------------------------------------------------------------------


@given(st.binary(max_size=4096))
def test_random_bytes_are_a_reading_or_a_reasoned_rejection(data: bytes) -> None:
    try:
        parse_raw_reading(data)
    except InvalidInput as error:
        assert error.reason.value in REASONS and error.detail


@given(reading_like())
def test_hostile_fields_are_a_reading_or_a_reasoned_rejection(record: dict[str, Any]) -> None:
    try:
        reading = parse_raw_reading(encoded(record))
    except InvalidInput as error:
        assert error.reason.value in REASONS and error.detail
    else:
        assert reading.station_id.isprintable() and reading.value.is_finite()


@given(st.binary(min_size=1, max_size=512), st.integers(min_value=0, max_value=200))
def test_framed_avro_with_a_damaged_body_is_rejected_as_avro(body: bytes, cut: int) -> None:
    good = schemas.encode(
        "raw_reading",
        {
            "station_id": "dongsi",
            "sensor_id": None,
            "pollutant": "pm25",
            "value": "12.5",
            "unit": "ug/m3",
            "ts": T0,
            "lat": None,
            "lon": None,
        },
    )
    for data in (good[:10] + body, good[: min(cut, len(good) - 1)]):
        try:
            parse_raw_reading(data)
        except InvalidInput as error:
            assert error.reason.value in REASONS


@given(st.binary(max_size=2048))
def test_decode_raises_only_schema_errors(data: bytes) -> None:
    with contextlib.suppress(SchemaError):
        schemas.decode(b"\xc3\x01" + fingerprint("aqi_hourly") + data)


def test_deeply_nested_json_is_rejected_not_a_crash() -> None:
    for data in (b"[" * 200_000, b'{"a":' * 100_000, b"[" * 50 + b"]" * 50):
        try:
            parse_raw_reading(data)
        except InvalidInput as error:
            assert error.reason in (Reason.INVALID_JSON, Reason.MISSING_FIELD, Reason.TOO_LARGE)


def test_a_message_above_the_size_cap_is_rejected_before_it_is_parsed() -> None:
    padding = " " * MAX_RAW_BYTES
    data = (
        encoded(
            {"station_id": "dongsi", "pollutant": "pm25", "value": 1, "unit": "ug/m3", "ts": T0}
        )[:-1]
        + padding.encode()
        + b"}"
    )
    try:
        parse_raw_reading(data)
    except InvalidInput as error:
        assert error.reason is Reason.TOO_LARGE
        assert str(MAX_RAW_BYTES) in error.detail
    else:
        raise AssertionError("an oversized message was accepted")


# --- the worker's pure step: exactly one place for every message ------------------------------


class States(dict[str, bytes]):
    def load(self, key: str) -> bytes | None:
        return self.get(key)


def real_readings(hours: int) -> list[tuple[bytes, bytes]]:
    """One station, two pollutants, every 20 minutes: enough to close hours."""
    messages = []
    for minute in range(0, hours * 60, 20):
        for pollutant, value in (("pm25", 10 + minute % 17), ("no2", 20 + minute % 11)):
            body = {
                "station_id": "dongsi",
                "pollutant": pollutant,
                "value": value,
                "unit": "ug/m3" if pollutant == "pm25" else "ppb",
                "ts": T0 + minute * 60_000,
            }
            messages.append((b"dongsi", json.dumps(body).encode()))
    return messages


def run(messages: list[tuple[bytes | None, bytes]]) -> tuple[Any, list[Any]]:
    pipeline = AirQualityPipeline(Topics(), HourlyWindows(10 * 60_000))
    states = States()
    records = [SourceRecord("raw", 0, i, key, value) for i, (key, value) in enumerate(messages)]
    result = pipeline.process(records, states)
    return result, records


def is_a_reading(data: bytes) -> bool:
    try:
        parse_raw_reading(data)
    except InvalidInput:
        return False
    return True


def outputs_on(result: Any, topic: str) -> list[dict[str, Any]]:
    return [schemas.decode(o.value) for o in result.outputs if o.topic == topic]


@given(
    st.lists(
        st.one_of(
            st.binary(max_size=300),
            reading_like().map(encoded),
            st.sampled_from([b"", b"null", b"[]", b"{}", b"\xc3\x01"]),
        ),
        min_size=1,
        max_size=60,
    ),
    st.randoms(use_true_random=False),
)
@settings(max_examples=30)
def test_fuzz_mixed_into_real_readings_leaves_the_real_results_unchanged(
    hostile: list[bytes], rng: Any
) -> None:
    real = real_readings(3)
    mixed: list[tuple[bytes | None, bytes]] = list(real)
    for data in hostile:  # at random places, keyed like a real station or not at all
        key = rng.choice([b"dongsi", b"x", None])
        if key == b"dongsi" and is_a_reading(data):
            key = None  # a well-formed reading is not hostile: keep it out of the real station
        mixed.insert(rng.randrange(len(mixed) + 1), (key, data))
    clean, _ = run(real)
    result, records = run(mixed)

    # every message is in exactly one place: accepted, or dead-lettered with its own bytes
    letters = outputs_on(result, "civic.deadletter")
    lettered = Counter(letter["source_offset"] for letter in letters)
    assert all(count == 1 for count in lettered.values())
    assert result.accepted + len(letters) == len(records)
    for letter in letters:
        assert letter["value"] == records[letter["source_offset"]].value
        assert letter["reason"] in REASONS
    # the real readings' results are untouched by the fuzz around them
    assert result.accepted == clean.accepted
    for topic in ("civic.aqi.hourly", "civic.enriched.air-quality"):
        assert outputs_on(result, topic) == outputs_on(clean, topic)


def test_duplicates_are_dead_lettered_once_each_and_change_nothing() -> None:
    real = real_readings(3)
    clean, _ = run(real)
    doubled = [message for message in real for _ in range(2)]
    result, _ = run(doubled)
    letters = outputs_on(result, "civic.deadletter")
    assert len(letters) == len(real)
    assert {letter["reason"] for letter in letters} == {"duplicate"}
    assert outputs_on(result, "civic.aqi.hourly") == outputs_on(clean, "civic.aqi.hourly")


# --- far-future timestamps: one bad clock makes no real reading late ---------------------------


@given(
    st.lists(
        st.integers(min_value=31 * 24 * HOUR_MS, max_value=7_000 * 365 * 24 * HOUR_MS),
        min_size=1,
        max_size=12,  # fewer than REANCHOR_AFTER + 1: they can never move stream time
    ),
    st.randoms(use_true_random=False),
)
@settings(max_examples=40)
def test_readings_far_ahead_of_their_station_are_dead_lettered_and_change_nothing(
    aheads: list[int], rng: Any
) -> None:
    real = real_readings(4)
    newest = T0 + 4 * HOUR_MS
    future = [
        (
            b"dongsi",
            json.dumps(
                {
                    "station_id": "dongsi",
                    "pollutant": rng.choice(["pm25", "no2"]),
                    "value": 10,
                    "unit": "ug/m3",
                    "ts": newest + ahead,
                }
            ).encode(),
        )
        for ahead in aheads
    ]
    mixed: list[tuple[bytes | None, bytes]] = list(real)
    for message in future:  # after the station's first reading: it has a stream time
        mixed.insert(rng.randrange(1, len(mixed) + 1), message)
    clean, _ = run(real)
    result, _ = run(mixed)
    letters = outputs_on(result, "civic.deadletter")
    assert sorted(letter["value"] for letter in letters) == sorted(v for _, v in future)
    assert {letter["reason"] for letter in letters} <= {"invalid_timestamp"}
    for topic in ("civic.aqi.hourly", "civic.enriched.air-quality"):
        assert outputs_on(result, topic) == outputs_on(clean, topic)


# --- the incident decoder and pipeline ----------------------------------------------------------

INCIDENT = {
    "incident_id": "inc-1",
    "source": "sfpd",
    "offence_code": "51040",
    "category": "Non-Criminal",
    "subcategory": "Non-Criminal",
    "description": "Aided Case",
    "occurred_at": "2018-12-01T00:12:00-08:00",
    "reported_at": "2018-12-01T00:30:00-08:00",
    "address": "NATOMA ST \\ MARY ST",
    "lat": 37.78,
    "lon": -122.41,
    "district": "Southern",
    "status": "Open or Active",
    "extra": {},
}


@st.composite
def incident_like(draw: Any) -> dict[str, Any]:
    """A raw incident row with any of its fields replaced by something hostile."""
    record = dict(INCIDENT)
    for name in sorted(draw(st.sets(st.sampled_from([*record, "heartbeat"]), max_size=4))):
        record[name] = draw(st.one_of(json_value, hostile_text, values, timestamps))
    if draw(st.booleans()):
        record.pop(draw(st.sampled_from(sorted(record))), None)
    return record


@given(st.binary(max_size=4096))
def test_random_bytes_are_an_incident_row_or_a_reasoned_rejection(data: bytes) -> None:
    from schemas.raw_incident import parse_raw_incident

    try:
        parse_raw_incident(data)
    except InvalidInput as error:
        assert error.reason.value in REASONS and error.detail


@given(incident_like())
def test_hostile_incident_fields_are_a_row_or_a_reasoned_rejection(record: dict[str, Any]) -> None:
    from schemas.raw_incident import IncidentHeartbeat, parse_raw_incident

    try:
        parsed = parse_raw_incident(encoded(record))
    except InvalidInput as error:
        assert error.reason.value in REASONS and error.detail
    else:
        if not isinstance(parsed, IncidentHeartbeat):
            assert parsed.incident_id.isprintable() and parsed.occurred_ms >= 0
            assert parsed.lat is None or -90 <= parsed.lat <= 90


def test_deeply_nested_incident_json_is_rejected_not_a_crash() -> None:
    from schemas.raw_incident import parse_raw_incident

    for data in (b"[" * 200_000, b'{"a":' * 100_000):
        try:
            parse_raw_incident(data)
        except InvalidInput as error:
            assert error.reason in (Reason.INVALID_JSON, Reason.MISSING_FIELD)


def _incident_pipeline() -> Any:
    from civicstream.settings import BUNDLED_CITIES, load_city
    from streams.incidents import IncidentPipeline

    sources = load_city(BUNDLED_CITIES / "san_francisco.toml").incident_sources
    return IncidentPipeline(Topics(), sources)


def _real_incidents(count: int) -> list[tuple[bytes | None, bytes]]:
    rows = []
    for i in range(count):
        minute = 7 * i
        body = dict(INCIDENT, incident_id=f"real-{i}")
        body["occurred_at"] = f"2018-12-01T{minute // 60:02d}:{minute % 60:02d}:00-08:00"
        body["reported_at"] = body["occurred_at"]
        rows.append((f"real-{i}".encode(), json.dumps(body).encode()))
    rows.append(
        (None, json.dumps({"heartbeat": "2018-12-09T00:00:00Z", "source": "sfpd"}).encode())
    )
    return rows


def _run_incidents(messages: list[tuple[bytes | None, bytes]]) -> tuple[Any, list[Any]]:
    states = States()
    records = [SourceRecord("raw-incidents", 0, i, k, v) for i, (k, v) in enumerate(messages)]
    return _incident_pipeline().process(records, states), records


@given(
    st.lists(
        st.one_of(
            st.binary(max_size=300),
            incident_like().map(encoded),
            st.sampled_from([b"", b"null", b"[]", b"{}", b"\xc3\x01"]),
        ),
        min_size=1,
        max_size=40,
    ),
    st.randoms(use_true_random=False),
)
@settings(max_examples=30)
def test_fuzz_mixed_into_real_incidents_leaves_the_published_data_unchanged(
    hostile: list[bytes], rng: Any
) -> None:
    from schemas.raw_incident import parse_raw_incident

    real = _real_incidents(30)
    mixed: list[tuple[bytes | None, bytes]] = list(real[:-1])
    for data in hostile:  # unkeyed: a well-formed row then fails its key check (wrong_key)
        try:
            parse_raw_incident(data)
            continue  # a well-formed row or heartbeat is not hostile: leave it out
        except InvalidInput:
            pass
        mixed.insert(rng.randrange(1, len(mixed) + 1), (rng.choice([b"inc-1", None]), data))
    mixed.append(real[-1])
    clean, _ = _run_incidents(real)
    result, records = _run_incidents(mixed)
    letters = outputs_on(result, "civic.deadletter")
    assert len(letters) == len(mixed) - len(real)
    assert all(letter["value"] == records[letter["source_offset"]].value for letter in letters)
    for topic in ("civic.incidents.published", "civic.incidents.stats"):
        assert outputs_on(result, topic) == outputs_on(clean, topic)


# --- the sink's decode path ---------------------------------------------------------------------


class _Message:
    def __init__(self, value: bytes | None) -> None:
        self.value = value


def _stored_samples() -> dict[str, dict[str, Any]]:
    """One real record of every contract the sink stores, from the pipelines."""
    samples: dict[str, dict[str, Any]] = {}
    result, _ = run(real_readings(30))
    incidents, _ = _run_incidents(_real_incidents(30))
    for output in [*result.outputs, *incidents.outputs]:
        name, record = schemas.codec.decode_as(output.value)
        samples.setdefault(name, record)
    return samples


SAMPLES = _stored_samples()
_STORE: list[Any] = []


@given(
    st.sampled_from(sorted(SAMPLES)),
    st.dictionaries(st.text(max_size=12), st.one_of(json_value, values, hostile_text)),
    st.binary(max_size=64),
    st.integers(min_value=0, max_value=400),
)
def test_the_sink_routes_any_message_to_a_storable_row_or_a_reasoned_dead_letter(
    contract: str, changes: dict[str, Any], noise: bytes, cut: int
) -> None:
    """Whatever arrives on an output topic, the sink either gets a row its store takes
    (SQLite, written for real) or a dead-letter reason; it never raises."""
    from sinks.store import open_store
    from sinks.worker import SinkWorker

    record = dict(SAMPLES[contract])
    for name, value in changes.items():
        if name in record or not name:
            record[name or next(iter(record))] = value
    candidates: list[bytes | None] = [None, noise, b"\xc3\x01" + noise]
    try:
        good = schemas.encode(contract, record)
    except Exception:  # not encodable as the contract: the producer side refuses it
        good = schemas.encode(contract, SAMPLES[contract])
    candidates += [good, good[: min(cut, len(good))], good[:10] + noise]
    for value in candidates:
        routed = SinkWorker._route(_Message(value))
        if isinstance(routed, tuple):
            dataset, row = routed
            if not _STORE:  # one migrated in-memory store for every example
                _STORE.append(open_store("sqlite:///:memory:"))
            _STORE[0].write_rows({dataset.name: [row]})
        else:
            assert routed.reason.value in REASONS and routed.detail


def test_a_coordinate_beyond_any_float_is_an_invalid_field_not_an_overflow() -> None:
    """Found by the fuzz: JSON integers have no size limit, and float() of a 400-digit one
    raised OverflowError out of the incident decoder (the worker then dead-lettered it as
    `unprocessable`, not as the bad field it is)."""
    from schemas.raw_incident import parse_raw_incident

    for name in ("lat", "lon"):
        data = json.dumps(INCIDENT | {name: 10**400}).encode()
        try:
            parse_raw_incident(data)
        except InvalidInput as error:
            assert error.reason is Reason.INVALID_FIELD and name in error.detail
        else:
            raise AssertionError("a coordinate of 400 digits was accepted")
