"""Replays equal live: archive → replay → diff-datasets, on the real broker, real processes."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import fastavro
import pytest
from kafka import KafkaConsumer
from kafka.structs import TopicPartition

from civicstream.settings import BUNDLED_CITIES
from civicstream.sources import open_sources
from sinks._datasets import DATASETS

pytestmark = pytest.mark.integration

HOUR = 3_600_000
DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "airquality"
SFPD = DATA.parent / "incidents" / "SFPD_Incident_Reports_2018-12.csv"
BEIJING_START = 1_362_067_200_000  # 2013-03-01 00:00 Beijing time


def station_days(station: str, days: int, first_day: int = 0) -> list[tuple[bytes, bytes]]:
    path = DATA / f"PRSA_Data_{station}_20130301-20170228.csv"
    since = BEIJING_START + first_day * 24 * HOUR
    return [(r.key, r.value) for r in open_sources([path], None, since, since + days * 24 * HOUR)]


def diff(pipeline, a: str, b: str):
    result = pipeline.civicstream("diff-datasets", a, b, "--max-keys", "0")
    assert result.returncode in (0, 1), result.stderr
    return result


def test_a_replay_of_the_archive_equals_live_with_other_partitions_and_batches(
    pipeline_factory,
):
    cities = os.pathsep.join(
        str(BUNDLED_CITIES / name) for name in ("beijing.toml", "san_francisco.toml")
    )
    live = pipeline_factory("live", partitions=3, config=cities).start_all()
    live.start("archive", "--flush-seconds", "0.5")
    readings = live.send(station_days("Dongsi", 14))
    live.cli("replay-file", "--format", "sfpd", str(SFPD), "--advance", "4d")
    incident_rows = 11_884 + 1  # the rows and the closing heartbeat
    sent = readings + incident_rows
    live.wait_until_caught_up(readings)
    live.wait_until_incidents_caught_up(incident_rows, timeout_s=180)
    live.wait_until_archived()
    assert len(live.rows("aqi_hourly")) > 300
    assert len(live.rows("incidents")) == 9_749 and live.rows("incident_counts")
    assert live.rows("anomalies")  # detector state and verdicts must replay too

    replay = live.civicstream(
        "replay", "--namespace", "again", "--partitions", "1", "--batch-max", "7", timeout_s=300
    )
    assert replay.returncode == 0, replay.stderr
    assert f"Replayed {sent:,} events" in replay.stderr

    result = diff(live, "live", "again")
    assert result.returncode == 0, result.stdout
    for name in DATASETS:
        assert f"{name} " in result.stdout and "equal" in result.stdout
    assert "DIFFERENT" not in result.stdout

    # Incidents alone: the readings path is caught up at once, and the replay must still
    # wait for every incident to be stored before it stops its worker and sink.
    alone = live.civicstream("replay", "--namespace", "alone", "--topics", "incidents")
    assert alone.returncode == 0, alone.stderr
    assert f"Replayed {incident_rows:,} events" in alone.stderr
    assert f"processed {incident_rows:,}/{incident_rows:,} incident rows" in alone.stderr
    assert "incidents 9,749 rows" in alone.stderr
    compared = diff(live, "live", "alone").stdout.splitlines()
    incident_lines = [line for line in compared if line.startswith("incident")]
    assert len(incident_lines) == 2 and all(" equal " in line for line in incident_lines)


def test_a_replay_into_the_live_datasets_changes_nothing_that_live_computed(pipeline_factory):
    live = pipeline_factory("live", partitions=2).start_all()
    live.start("archive", "--flush-seconds", "0.5")
    sent = live.send(station_days("Dongsi", 7))
    live.wait_until_caught_up(sent)
    live.wait_until_archived()
    before = {name: live.rows(name) for name in DATASETS}

    replay = live.civicstream("replay", "--into-live", "--batch-max", "3")
    assert replay.returncode == 0, replay.stderr
    assert f"Store {live.store_url}" in replay.stderr
    sink_log = (live.workdir / "data" / "logs" / "replay-into-live" / "sink.log").read_text()
    # the datasets are listed by name: aqi_daily=... comes first
    stored = re.search(r"stopped: (\d+) consumed, written [^\n]*?\baqi_hourly=(\d+)", sink_log)
    assert stored and int(stored.group(2)) == len(before["aqi_hourly"])  # it did write them
    assert {name: live.rows(name) for name in DATASETS} == before


def test_a_replay_from_kafka_by_time_range_equals_live_for_that_range(pipeline_factory):
    live = pipeline_factory("live", partitions=2).start_all()
    before = live.send(station_days("Tiantan", 2))
    live.wait_until_caught_up(before)
    since = int(time.time() * 1000)  # after Tiantan's Kafka timestamps: they are processed
    sent = live.send(station_days("Dongsi", 14))
    live.wait_until_caught_up(before + sent)
    until = int(time.time() * 1000) + 1

    replay = live.civicstream(
        "replay",
        "--from-kafka",
        "--since",
        _iso(since),
        "--until",
        _iso(until),
        "--namespace",
        "kafka",
        "--partitions",
        "5",
        "--batch-max",
        "11",
    )
    assert replay.returncode == 0, replay.stderr
    assert f"Replayed {sent:,} events" in replay.stderr

    result = diff(live, "live", "kafka")
    assert result.returncode == 1  # Tiantan was sent before the range: live only
    lines = result.stdout.splitlines()
    only_live = [line for line in lines if line.startswith("  only in A:")]
    assert only_live and all("station_id=tiantan" in line for line in only_live)
    assert not [line for line in lines if line.startswith(("  only in B:", "  changed:"))]


def _iso(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def _archived(root: Path) -> list[tuple[str, int, int, bytes | None, bytes | None]]:
    rows = []
    for path in sorted(root.glob("topic=*/date=*/hour=*/*.avro")):
        with path.open("rb") as handle:
            rows.extend(
                (r["topic"], r["partition"], r["offset"], r["key"], r["value"])
                for r in fastavro.reader(handle)
            )
    return rows


def _in_kafka(bootstrap: str, topics) -> list[tuple[str, int, int, bytes | None, bytes | None]]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tps = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        records = []
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            for batch in consumer.poll(timeout_ms=1000).values():
                records.extend((r.topic, r.partition, r.offset, r.key, r.value) for r in batch)
        return records
    finally:
        consumer.close()


def test_an_archive_sink_killed_mid_run_keeps_every_event_exactly_once(pipeline_factory):
    pipeline = pipeline_factory("archive", partitions=3)
    readings = station_days("Dongsi", 14)
    garbage = [(b"dongsi", b"\xff\xfe not utf-8"), (None, b"{not json"), (b"x", b'{"ts": "soon"}')]
    mixed = readings[:500] + garbage + readings[500:]
    incidents = [
        (
            f"inc-{i}".encode(),
            json.dumps(
                {"incident_id": f"inc-{i}", "occurred_at": f"2018-12-0{1 + i % 9}T10:00Z"}
            ).encode(),
        )
        for i in range(300)
    ]
    pipeline.send(mixed)
    pipeline.send(incidents, topic=pipeline.topics.raw_incidents)
    total = len(mixed) + len(incidents)
    flags = ("--flush-records", "40", "--flush-seconds", "0.1")

    from streams.admin import committed_offsets

    for fraction in (0.2, 0.6):  # SIGKILL twice, at different points of the run
        pipeline.start("archive", *flags)
        deadline = time.monotonic() + 60
        while sum(committed_offsets(pipeline.bootstrap, pipeline.topics.archive_group).values()) < (
            fraction * total
        ):
            pipeline.check_alive()
            assert time.monotonic() < deadline, pipeline.log("archive")
            time.sleep(0.02)
        pipeline.kill("archive")
    pipeline.start("archive", *flags)
    pipeline.wait_until_archived()
    pipeline.stop()

    archived = _archived(pipeline.archive_dir)
    in_kafka = _in_kafka(pipeline.bootstrap, pipeline.topics.raw)
    assert len(in_kafka) == total
    assert len(archived) == len(set((t, p, o) for t, p, o, *_ in archived))  # no duplicates
    assert sorted(archived) == sorted(in_kafka)  # none missing, bytes as sent
    assert not list(pipeline.archive_dir.rglob("*.tmp"))
    assert "resumes at offset" in pipeline.log("archive")
    # undecodable records are kept, under the hour of their Kafka timestamp
    assert any(v == b"\xff\xfe not utf-8" for *_, v in archived)


def test_an_archive_sink_refuses_to_mix_a_recreated_topic_into_the_archive(
    pipeline_factory,
):
    from streams.admin import delete_topics, ensure_topics

    pipeline = pipeline_factory("recreated", partitions=1)
    pipeline.start("archive", "--flush-seconds", "0.1")
    pipeline.send(station_days("Dongsi", 1))
    pipeline.wait_until_archived()
    pipeline.stop()
    delete_topics(pipeline.bootstrap, [pipeline.topics.raw_air_quality])
    ensure_topics(pipeline.bootstrap, [pipeline.topics.raw_air_quality], 1)
    pipeline.send(station_days("Dongsi", 1, first_day=1)[:5])
    pipeline.start("archive", "--flush-seconds", "0.1")
    process = pipeline.processes["archive"]
    assert process.wait(timeout=60) == 1
    assert "delivers offset 0, but the archive holds it up to" in pipeline.log("archive")
