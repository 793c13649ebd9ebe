"""End to end on the real broker: raw readings in, exact AQI records and store rows out."""

from __future__ import annotations

import json
import random
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest

from civicstream.sources import open_sources
from schemas import Topics, decode
from schemas.raw import RawReading, reading_to_avro
from streams.air_quality import AirQualityPipeline, SourceRecord
from streams.time import HourlyWindows

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
HOUR = 3_600_000
MINUTE = 60_000
DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "airquality"


def reading(
    ts_ms: int, pollutant: str, value: float, unit: str = "ug/m3", station: str = "s1"
) -> tuple[bytes, bytes]:
    body = {
        "station_id": station,
        "sensor_id": f"{station}-{pollutant}",
        "pollutant": pollutant,
        "value": value,
        "unit": unit,
        "ts": ts_ms,
    }
    return station.encode(), json.dumps(body).encode()


def known_readings() -> list[tuple[bytes, bytes]]:
    """Three hours of one station; the hour after them closes the third."""
    avro = reading_to_avro(
        RawReading(
            "s1", "s1-pm25", "pm25", Decimal("35.9"), "ug/m3", T0 + HOUR + 20 * MINUTE, None, None
        )
    )
    return [
        reading(T0 + 10 * MINUTE, "pm25", 30.0),
        reading(T0 + 40 * MINUTE, "pm25", 41.8),  # hour 0 mean 35.9
        (b"s1", avro),  # hour 1: 35.9, sent as Avro
        reading(T0 + 2 * HOUR + 5 * MINUTE, "pm25", 35.9),
        reading(T0 + 2 * HOUR + 6 * MINUTE, "no2", 100, "ppb"),
        reading(T0 + 3 * HOUR + 10 * MINUTE, "pm25", 10.0),  # stream time closes hour 2
    ]


EXPECTED_HOURLY = [
    {
        "hour": 0,
        "aqi": None,
        "category": None,
        "main_pollutant": None,
        "sub_indices": {},
        "concentrations": {},
        "hourly_means": {"pm25": 35.9},
        "reading_count": 2,
        "reason": "insufficient_data",
    },
    {
        "hour": 1,
        "aqi": 102,
        "category": "Unhealthy for Sensitive Groups",
        "main_pollutant": "pm25_nowcast",
        "sub_indices": {"pm25_nowcast": 102},
        "concentrations": {"pm25_nowcast": 35.9},
        "hourly_means": {"pm25": 35.9},
        "reading_count": 1,
        "reason": None,
    },
    {
        "hour": 2,
        "aqi": 102,
        "category": "Unhealthy for Sensitive Groups",
        "main_pollutant": "pm25_nowcast",
        "sub_indices": {"pm25_nowcast": 102, "no2_1h": 100},
        "concentrations": {"pm25_nowcast": 35.9, "no2_1h": 100.0},
        "hourly_means": {"pm25": 35.9, "no2": 100.0},
        "reading_count": 2,
        "reason": None,
    },
]


def _as_expected(record: dict) -> dict:
    return {
        "hour": (int(record["hour_start"].timestamp() * 1000) - T0) // HOUR,
        **{
            k: record[k]
            for k in (
                "aqi",
                "category",
                "main_pollutant",
                "sub_indices",
                "concentrations",
                "hourly_means",
                "reading_count",
                "reason",
            )
        },
    }


def test_known_readings_give_exact_hourly_aqi_records_and_store_rows(pipeline_factory):
    pipeline = pipeline_factory("exact").start_all()
    sent = pipeline.send(known_readings())
    pipeline.wait_until_caught_up(sent)

    records = pipeline.read_topic(pipeline.topics.aqi_hourly)
    assert [key for key, *_ in records] == [b"s1"] * 3
    assert [_as_expected(value) for _, value, *_ in records] == EXPECTED_HOURLY
    assert {value["aqi_version"] for _, value, *_ in records} == {"EPA-454/B-24-002"}

    rows = pipeline.rows("aqi_hourly")
    assert [
        (r["station_id"], r["hour_start"], r["aqi"], r["category"], r["main_pollutant"])
        for r in rows
    ] == [
        ("s1", "2026-01-01T00:00:00Z", None, None, None),
        ("s1", "2026-01-01T01:00:00Z", 102, "Unhealthy for Sensitive Groups", "pm25_nowcast"),
        ("s1", "2026-01-01T02:00:00Z", 102, "Unhealthy for Sensitive Groups", "pm25_nowcast"),
    ]
    readings = pipeline.rows("readings")
    assert len(readings) == 5  # the closing reading's hour is still open
    no2 = next(r for r in readings if r["pollutant"] == "no2")
    assert (no2["value_epa"], no2["unit_epa"], no2["mean_1h"]) == (100.0, "ppb", 100.0)
    # the worker keeps its files under data/state, never in the directory it started in
    assert [p.name for p in pipeline.workdir.iterdir() if p.name.endswith("-data")] == []


def test_bad_and_late_input_is_dead_lettered_while_good_readings_flow(pipeline_factory):
    pipeline = pipeline_factory("dlq").start_all()
    bad = [
        (b"s1", b"{this is not json"),
        (b"s1", reading(T0, "pm1", 5)[1]),
        (b"s1", reading(T0, "pm25", -3)[1]),
        (b"s1", b'{"station_id":"s1","pollutant":"pm25","value":NaN,"unit":"ug/m3","ts":1}'),
        (b"s1", b'{"station_id":"s1","pollutant":"pm25","unit":"ug/m3","ts":1}'),
        (b"s1", reading(T0, "pm25", 5, unit="furlongs")[1]),
        (b"other", reading(T0, "pm25", 5)[1]),
    ]
    late = reading(T0 + 30 * MINUTE, "pm25", 12.0)  # hour 0 closed by then
    messages = known_readings()
    mixed = [
        messages[0],
        bad[0],
        messages[1],
        *bad[1:4],
        messages[2],
        messages[3],
        *bad[4:],
        messages[4],
        messages[5],
        late,
    ]
    sent = pipeline.send(mixed)
    pipeline.wait_until_caught_up(sent)

    letters = pipeline.read_topic(pipeline.topics.deadletter)
    by_value = {value["value"]: value for _, value, *_ in letters}
    expected_reasons = [
        "invalid_json",
        "unknown_pollutant",
        "invalid_value",
        "invalid_value",
        "missing_field",
        "unknown_unit",
        "wrong_key",
        "late",
    ]
    assert [by_value[v]["reason"] for _, v in [*bad, late]] == expected_reasons
    for key, value, *_ in letters:
        assert value["source_topic"] == pipeline.topics.raw_air_quality
        assert value["detail"]
        assert key == value["key"]
    raw = pipeline.read_topic_raw(pipeline.topics.raw_air_quality)
    for _, value, *_ in letters:  # original bytes at the recorded partition and offset
        assert raw[(value["source_partition"], value["source_offset"])] == value["value"]
    hourly = [_as_expected(v) for _, v, *_ in pipeline.read_topic(pipeline.topics.aqi_hourly)]
    assert hourly == EXPECTED_HOURLY


def test_out_of_order_within_the_lateness_gives_identical_results(pipeline_factory):
    in_order = pipeline_factory("ordered").start_all()
    shuffled = pipeline_factory("shuffled").start_all()
    messages = known_readings()
    # Hour 1 after hour 2, hour 0's readings swapped, hour 2's no2 after the hour has
    # ended but within the 10 minutes of lateness.
    early_close = reading(T0 + 3 * HOUR + 5 * MINUTE, "pm25", 10.0)
    reordered = [
        messages[1],
        messages[0],
        messages[3],
        messages[2],
        early_close,
        messages[4],
        messages[5],
    ]
    in_order.send([*messages[:5], early_close, messages[5]])
    shuffled.send(reordered)
    in_order.wait_until_caught_up(len(reordered))
    shuffled.wait_until_caught_up(len(reordered))
    assert shuffled.rows("aqi_hourly") == in_order.rows("aqi_hourly")
    assert shuffled.rows("readings") == in_order.rows("readings")
    assert len(in_order.rows("aqi_hourly")) == 3
    assert shuffled.read_topic(shuffled.topics.deadletter) == []


def beijing_days(days: int) -> list[tuple[bytes, bytes]]:
    files = [
        DATA / "PRSA_Data_Dongsi_20130301-20170228.csv",
        DATA / "PRSA_Data_Tiantan_20130301-20170228.csv",
        DATA / "PRSA_Data_Huairou_20130301-20170228.csv",
    ]
    start = 1_362_067_200_000  # 2013-02-28T16:00Z = 2013-03-01 00:00 Beijing
    records = open_sources(files, None, start, start + days * 24 * HOUR)
    return [(r.key, r.value) for r in records]


# Hourly data, 10 minutes of lateness: the newest hour of each of the 3 stations is open,
# and so is the one before it (it closes at hh:10 of the newest, which has no reading yet).
OPEN_AT_END = 2 * 3


def station_hours_with_data(messages: list[tuple[bytes, bytes]]) -> int:
    hours = set()
    for key, value in messages:
        ts = datetime.fromisoformat(json.loads(value)["ts"])
        hours.add((key, ts.replace(minute=0, second=0)))
    return len(hours)


def test_a_worker_killed_mid_stream_resumes_to_the_same_store(pipeline_factory):
    messages = beijing_days(4)
    half = len(messages) // 2
    steady = pipeline_factory("steady", partitions=3).start_all()
    crashy = pipeline_factory("crashy", partitions=1).start_all()
    steady.send(messages)

    crashy.send(messages[:half])
    crashy.wait_until_caught_up(half)
    crashy.kill("worker")
    crashy.kill("sink")
    crashy.send(messages[half:])
    crashy.start_all()

    steady.wait_until_caught_up(len(messages), timeout_s=180)
    crashy.wait_until_caught_up(len(messages), timeout_s=180)
    assert crashy.read_topic(crashy.topics.deadletter) == []
    expected_hours = steady.rows("aqi_hourly")
    assert len(expected_hours) == station_hours_with_data(messages) - OPEN_AT_END
    assert crashy.rows("aqi_hourly") == expected_hours
    assert crashy.rows("readings") == steady.rows("readings")


def _reference_hours(messages: list[tuple[bytes, bytes]]) -> dict[tuple, dict]:
    """The hourly records of the same readings through the pure step, no Kafka, no crash."""

    class States(dict):
        def load(self, key):
            return self.get(key)

    pipeline = AirQualityPipeline(Topics(), HourlyWindows(10 * MINUTE))
    states = States()
    records = [SourceRecord("raw", 0, i, k, v) for i, (k, v) in enumerate(messages)]
    result = pipeline.process(records, states)
    hours = [decode(o.value) for o in result.outputs if o.topic == "civic.aqi.hourly"]
    return {(h["station_id"], h["hour_start"]): h for h in hours}


def test_a_worker_killed_while_it_works_publishes_what_an_unbroken_run_would(pipeline_factory):
    """SIGKILL as soon as the worker has published output, whatever it was doing then."""
    messages = beijing_days(2)
    pipeline = pipeline_factory("redelivery", partitions=2).start_all()
    rng = random.Random(7)
    cut = rng.randrange(len(messages) // 3, 2 * len(messages) // 3)
    pipeline.send(messages[:cut])
    pipeline.wait_until_hourly_output(minimum=5)
    pipeline.kill("worker")
    pipeline.send(messages[cut:])
    pipeline.start("worker")
    pipeline.wait_until_caught_up(len(messages), timeout_s=180)
    assert pipeline.read_topic(pipeline.topics.deadletter) == []
    published = {
        (v["station_id"], v["hour_start"]): v
        for _, v, *_ in pipeline.read_topic(pipeline.topics.aqi_hourly)
    }
    assert published == _reference_hours(messages)
    assert len(pipeline.rows("aqi_hourly")) == len(published)


def test_records_deleted_while_the_worker_was_down_are_moved_past(pipeline_factory):
    """Retention removed records the worker never applied: it goes on from the earliest."""
    from kafka import KafkaAdminClient
    from kafka.structs import TopicPartition

    messages = beijing_days(2)
    pipeline = pipeline_factory("retention", partitions=1).start_all()
    first = len(messages) // 3
    pipeline.send(messages[:first])
    pipeline.wait_until_caught_up(first)
    pipeline.kill("worker")
    pipeline.send(messages[first:])
    deleted_before = first + 60
    admin = KafkaAdminClient(bootstrap_servers=pipeline.bootstrap)
    admin.delete_records({TopicPartition(pipeline.topics.raw_air_quality, 0): deleted_before})
    admin.close()
    pipeline.start("worker")
    pipeline.wait_until_caught_up(len(messages), timeout_s=180)
    assert f"offsets {first}..{deleted_before - 1} hold no records" in pipeline.log("worker")
    applied = {(k, json.loads(v)["pollutant"], json.loads(v)["ts"]) for k, v in messages}
    published = {
        (v["station_id"].encode(), v["pollutant"], v["ts"])
        for _, v, *_ in pipeline.read_topic(pipeline.topics.enriched_air_quality)
    }
    assert len(published) == len(pipeline.rows("readings"))
    kept = [m for i, m in enumerate(messages) if i < first or i >= deleted_before]
    assert len(published) > len(kept) - 6 * 3 * 3  # all but the still-open hours
    assert len(applied) > len(published)  # the deleted readings are not there
