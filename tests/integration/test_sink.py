"""The sink worker against a real broker: exact rows, replays, dead letters, kills.

Fixtures `kafka_bootstrap` and `topic_prefix` come from tests/conftest.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError
from prometheus_client import CollectorRegistry

import schemas
from schemas import Topics
from sinks import open_store
from sinks.exceptions import StoreError
from sinks.store import Store
from sinks.worker import BatchStats, SinkWorker

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
H0 = datetime(2026, 3, 1, 0, tzinfo=UTC)
DEADLINE_S = 90.0


# --- helpers --------------------------------------------------------------------------------


def aqi(station: str, hour: int, value: int = 50) -> dict[str, Any]:
    return {
        "station_id": station,
        "hour_start": H0 + timedelta(hours=hour),
        "aqi": value,
        "category": "Good" if value <= 50 else "Moderate",
        "main_pollutant": "pm25_nowcast",
        "sub_indices": {"pm25_nowcast": value, "o3_8h": 12},
        "concentrations": {"pm25_nowcast": value / 4, "o3_8h": 0.03},
        "hourly_means": {"pm25": value / 4},
        "reading_count": 24,
        "excluded_count": 0,
        "reason": None,
        "aqi_version": "EPA-454/B-24-002",
    }


def reading(station: str, pollutant: str, n: int, value: float = 10.0) -> dict[str, Any]:
    ts = H0 + timedelta(seconds=37 * n, milliseconds=n % 1000)
    return {
        "station_id": station,
        "sensor_id": f"{station}-{pollutant}",
        "pollutant": pollutant,
        "ts": ts,
        "hour_start": ts.replace(minute=0, second=0, microsecond=0),
        "value": value,
        "unit": "ug/m3",
        "value_epa": value,
        "unit_epa": "ug/m3",
        "mean_1h": value + 0.5,
        "mean_8h": None,
        "mean_24h": value - 0.25,
        "lat": 39.9,
        "lon": 116.4,
        "flags": ["suspect"] if n % 7 == 0 else [],
        "anomaly_score": None,
    }


def prefix_of(topic_prefix: Any) -> str:
    """The bare prefix, whether the fixture is a factory (``topic_prefix()``) or a string."""
    return str(topic_prefix()) if callable(topic_prefix) else str(topic_prefix)


@dataclass
class Env:
    bootstrap: str
    topics: Topics
    tmp_path: Path
    admin: Any
    database_url: str | None = None  # a PostgreSQL database instead of the SQLite file

    def group(self, name: str) -> str:
        return f"{self.topics.prefix}{name}-{uuid.uuid4().hex[:6]}"

    @property
    def store_url(self) -> str:
        return self.database_url or f"sqlite:///{self.tmp_path}/store/civic.db"


@pytest.fixture
def env(kafka_bootstrap: str, topic_prefix: Any, tmp_path: Path) -> Iterator[Env]:
    topics = Topics(prefix_of(topic_prefix))
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    names = {topics.aqi_hourly: 2, topics.enriched_air_quality: 3, topics.deadletter: 1}
    try:
        admin.create_topics(
            {name: {"num_partitions": n, "replication_factor": 1} for name, n in names.items()}
        )
        admin.wait_for_topics(list(names), timeout_ms=30_000)
        yield Env(kafka_bootstrap, topics, tmp_path, admin)
    finally:
        try:
            admin.delete_topics(list(names))
        finally:
            admin.close()


class Produced:
    """Messages sent, and the end offset of every partition they went to."""

    def __init__(self) -> None:
        self.end_offsets: dict[TopicPartition, int] = {}
        self.records: dict[str, list[dict[str, Any]]] = {"aqi_hourly": [], "readings": []}

    def total(self) -> int:
        return sum(self.end_offsets.values())


def produce(
    env: Env,
    messages: Sequence[tuple[str, bytes | None, bytes | None, int | None]],
    produced: Produced | None = None,
) -> Produced:
    """Send (topic, key, value, partition) in order; wait for every acknowledgement."""
    produced = produced or Produced()
    producer = KafkaProducer(bootstrap_servers=env.bootstrap, acks="all", linger_ms=5)
    try:
        futures = [
            producer.send(topic, key=key, value=value, partition=partition)
            for topic, key, value, partition in messages
        ]
        producer.flush(timeout=60)
        for future in futures:
            meta = future.get(timeout=60)
            tp = TopicPartition(meta.topic, meta.partition)
            produced.end_offsets[tp] = max(produced.end_offsets.get(tp, 0), meta.offset + 1)
    finally:
        producer.close()
    return produced


def send_records(
    env: Env,
    aqi_records: Sequence[dict[str, Any]],
    readings: Sequence[dict[str, Any]],
    produced: Produced | None = None,
) -> Produced:
    messages: list[tuple[str, bytes | None, bytes | None, int | None]] = []
    for record in aqi_records:
        value = schemas.encode("aqi_hourly", record)
        messages.append((env.topics.aqi_hourly, record["station_id"].encode(), value, None))
    for record in readings:
        value = schemas.encode("enriched_reading", record)
        key = record["station_id"].encode()
        messages.append((env.topics.enriched_air_quality, key, value, None))
    produced = produce(env, messages, produced)
    produced.records["aqi_hourly"].extend(aqi_records)
    produced.records["readings"].extend(readings)
    return produced


def expected_rows(
    aqi_records: Sequence[dict[str, Any]], readings: Sequence[dict[str, Any]]
) -> dict[str, list[dict[str, Any]]]:
    """The rows a correct sink ends with: the records upserted in production order."""
    with open_store("sqlite:///:memory:") as model:
        for record in aqi_records:
            model.write_batch({"aqi_hourly": [record]})
        for record in readings:
            model.write_batch({"readings": [record]})
        return snapshot(model)


def snapshot(store: Store) -> dict[str, list[dict[str, Any]]]:
    return {name: store.fetch(name) for name in ("aqi_hourly", "readings")}


def committed(env: Env, group: str) -> dict[TopicPartition, int]:
    """The group's committed offsets; empty while its coordinator is not known yet."""
    try:
        offsets = env.admin.list_group_offsets({group: None}).get(group, {})
    except KafkaError as error:
        if not error.retriable:
            raise
        return {}
    return {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


def wait_for(predicate: Callable[[], bool], what: str, deadline_s: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + deadline_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {deadline_s:.0f}s waiting for {what}")
        time.sleep(0.05)


def drain(worker: SinkWorker, env: Env, group: str, produced: Produced) -> None:
    """Run batches until the group has committed every produced offset."""
    deadline = time.monotonic() + DEADLINE_S
    while committed(env, group) != produced.end_offsets:
        if time.monotonic() > deadline:
            pytest.fail(f"sink did not commit {produced.end_offsets} in {DEADLINE_S:.0f}s")
        worker.run_once(timeout_ms=200)


def read_deadletters(env: Env, expected: int) -> list[tuple[bytes | None, dict[str, Any]]]:
    consumer = KafkaConsumer(
        env.topics.deadletter,
        bootstrap_servers=env.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=1_000,
    )
    found: list[tuple[bytes | None, dict[str, Any]]] = []
    deadline = time.monotonic() + DEADLINE_S
    try:
        while len(found) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                found.extend((m.key, schemas.decode(m.value)) for m in batch)
    finally:
        consumer.close()
    return found


@pytest.fixture(params=["sqlite", "postgresql"])
def any_env(request: pytest.FixtureRequest, env: Env) -> Env:
    """`env` with the store on each backend (PostgreSQL: the session's real server)."""
    if request.param == "postgresql":
        env.database_url = request.getfixturevalue("postgres_url")
    return env


# --- the worker in process ------------------------------------------------------------------


def test_sink_stores_exact_rows_and_a_second_group_replays_them_as_a_no_op(any_env: Env) -> None:
    env = any_env
    stations = ["dongsi", "guanyuan", "tiantan", "wanliu"]
    aqi_records = [aqi(s, h, 20 + 7 * h) for s in stations for h in range(6)]
    readings = [reading(s, p, n) for s in stations for p in ("pm25", "o3") for n in range(40)]
    # corrections: same natural keys, produced later (same key -> same partition, later offset)
    aqi_records += [aqi("dongsi", 2, 99), aqi("wanliu", 5, 1)]
    readings += [reading("tiantan", "o3", 3, value=77.5)]
    produced = send_records(env, aqi_records, readings)
    expected = expected_rows(produced.records["aqi_hourly"], produced.records["readings"])
    assert len(expected["aqi_hourly"]) == 24 and len(expected["readings"]) == 320

    batches: list[BatchStats] = []
    registry = CollectorRegistry()
    group = env.group("sink-a")
    with SinkWorker(
        env.bootstrap,
        env.topics,
        env.store_url,
        group_id=group,
        batch_size=50,
        on_batch=batches.append,
        registry=registry,
    ) as worker:
        drain(worker, env, group, produced)
        assert worker.totals.consumed == produced.total() == 24 + 2 + 320 + 1

    with open_store(env.store_url) as store:
        first = snapshot(store)
    assert first == expected
    corrected = [r for r in first["aqi_hourly"] if r["station_id"] == "dongsi"][2]
    assert (corrected["hour_start"], corrected["aqi"]) == ("2026-03-01T02:00:00Z", 99)

    assert sum(b.consumed for b in batches) == produced.total()
    assert max(b.consumed for b in batches) <= 50
    assert sum(b.written["aqi_hourly"] for b in batches) == 26

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert sample("civicstream_sink_rows_written_total", dataset="readings") == 321
    assert sample("civicstream_sink_rows_written_total", dataset="aqi_hourly") == 26
    assert sample("civicstream_sink_write_failures_total", dataset="readings") == 0
    assert sample("civicstream_sink_commits_total") == len(batches)
    assert not [f for f in registry.collect() if f.name == "civicstream_dead_letters" and f.samples]
    assert sample("civicstream_sink_batch_seconds_count") == len(batches)
    consumed = sum(
        sample("civicstream_events_consumed_total", topic=topic) or 0
        for topic in (env.topics.aqi_hourly, env.topics.enriched_air_quality)
    )
    assert consumed == produced.total()
    latency_count = sum(
        sample("civicstream_processing_latency_seconds_count", topic=topic) or 0
        for topic in (env.topics.aqi_hourly, env.topics.enriched_air_quality)
    )
    assert latency_count == produced.total()
    for tp in produced.end_offsets:  # all caught up
        lag = sample(
            "civicstream_consumer_lag_offsets", topic=tp.topic, partition=str(tp.partition)
        )
        assert lag == 0

    # a second sink, new group: re-reads everything from the start, changes nothing
    group_b = env.group("sink-b")
    with SinkWorker(
        env.bootstrap, env.topics, env.store_url, group_id=group_b, registry=CollectorRegistry()
    ) as again:
        drain(again, env, group_b, produced)
        assert again.totals.consumed == produced.total()
    with open_store(env.store_url) as store:
        assert snapshot(store) == first


def test_corrupt_messages_are_dead_lettered_and_the_good_ones_around_them_stored(
    env: Env,
) -> None:
    good = [reading("dongsi", "pm25", n) for n in range(6)]
    nan_reading = {**reading("dongsi", "pm25", 99), "value": float("nan")}
    bad: list[tuple[bytes | None, bytes | None, str]] = [
        (None, b'{"station_id": "dongsi", "value": 1}', "invalid_avro"),  # JSON, no key
        (b"dongsi", schemas.encode("enriched_reading", good[0])[:-3], "invalid_avro"),
        (b"dongsi", None, "invalid_avro"),  # a tombstone
        (
            b"dongsi",
            schemas.encode(
                "raw_reading",
                {
                    "station_id": "dongsi",
                    "pollutant": "pm25",
                    "value": 1.0,
                    "unit": "ug/m3",
                    "ts": H0,
                    "sensor_id": None,
                    "lat": None,
                    "lon": None,
                },
            ),
            "invalid_avro",
        ),
        (b"dongsi", schemas.encode("enriched_reading", nan_reading), "invalid_field"),
    ]
    topic = env.topics.enriched_air_quality
    messages: list[tuple[str, bytes | None, bytes | None, int | None]] = []
    bad_offsets: list[int] = []
    for i, record in enumerate(good):  # good, bad, good, bad, ..., good: all in partition 1
        messages.append((topic, b"dongsi", schemas.encode("enriched_reading", record), 1))
        if i < len(bad):
            key, value, _ = bad[i]
            bad_offsets.append(len(messages))
            messages.append((topic, key, value, 1))
    produced = produce(env, messages)
    assert produced.end_offsets == {TopicPartition(topic, 1): len(good) + len(bad)}

    registry = CollectorRegistry()
    group = env.group("sink")
    with SinkWorker(
        env.bootstrap, env.topics, env.store_url, group_id=group, registry=registry
    ) as worker:
        drain(worker, env, group, produced)
        assert worker.totals.deadletters == len(bad)

    with open_store(env.store_url) as store:
        assert snapshot(store) == expected_rows([], good)
        assert store.count("readings") == len(good)

    letters = read_deadletters(env, len(bad))
    assert len(letters) == len(bad)
    for (key, letter), (bad_key, bad_value, reason), offset in zip(
        letters, bad, bad_offsets, strict=True
    ):
        assert key == bad_key  # the dead letter keeps the source key
        assert letter["key"] == bad_key
        assert letter["value"] == bad_value  # byte for byte
        assert letter["reason"] == reason
        assert letter["detail"]
        assert (letter["source_topic"], letter["source_partition"]) == (topic, 1)
        assert letter["source_offset"] == offset
    for reason in ("invalid_avro", "invalid_field"):
        expected = sum(1 for *_, r in bad if r == reason)
        assert registry.get_sample_value("civicstream_dead_letters_total", {"reason": reason}) == (
            expected
        )
    assert registry.get_sample_value(
        "civicstream_events_produced_total", {"topic": env.topics.deadletter}
    ) == len(bad)


def test_a_failed_store_transaction_commits_nothing_and_the_retry_loses_nothing(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    readings = [reading("dongsi", "pm25", n) for n in range(30)]
    produced = send_records(env, [], readings)
    group = env.group("sink")
    registry = CollectorRegistry()
    with SinkWorker(
        env.bootstrap, env.topics, env.store_url, group_id=group, registry=registry
    ) as worker:
        store = worker._store
        real_write = store.write_rows
        failures: list[int] = []

        def failing_write(*args: Any, **kwargs: Any) -> None:
            failures.append(1)
            raise StoreError("disk on fire")

        monkeypatch.setattr(store, "write_rows", failing_write)
        deadline = time.monotonic() + DEADLINE_S
        with pytest.raises(StoreError, match="disk on fire"):
            while time.monotonic() < deadline:
                worker.run_once(timeout_ms=200)
        assert failures == [1]
        assert committed(env, group) == {}  # nothing committed for the failed batch
        failed = registry.get_sample_value(
            "civicstream_sink_write_failures_total", {"dataset": "readings"}
        )
        assert failed == 1
        assert stored(env) == 0

        monkeypatch.setattr(store, "write_rows", real_write)
        drain(worker, env, group, produced)  # the same worker, retrying: nothing skipped
    with open_store(env.store_url) as check:
        assert snapshot(check) == expected_rows([], readings)


def test_the_running_sink_retries_a_failing_store_until_it_writes_again(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    readings = [reading("dongsi", "pm25", n) for n in range(20)]
    produced = send_records(env, [], readings)
    group = env.group("sink")
    registry = CollectorRegistry()
    worker = SinkWorker(env.bootstrap, env.topics, env.store_url, group_id=group, registry=registry)
    real_write = worker._store.write_rows
    failures: list[int] = []

    def flaky_write(*args: Any, **kwargs: Any) -> None:
        if len(failures) < 2:
            failures.append(1)
            raise StoreError("database is locked")
        real_write(*args, **kwargs)

    monkeypatch.setattr(worker._store, "write_rows", flaky_write)
    stop = threading.Event()
    runner = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    runner.start()
    try:
        wait_for(lambda: committed(env, group) == produced.end_offsets, "the sink to recover")
    finally:
        stop.set()
        runner.join(timeout=30)
    assert not runner.is_alive()
    assert failures == [1, 1]
    assert (
        registry.get_sample_value("civicstream_sink_write_failures_total", {"dataset": "readings"})
        == 2
    )
    with open_store(env.store_url) as check:
        assert snapshot(check) == expected_rows([], readings)


# --- the worker as a process, killed mid-stream ---------------------------------------------


def start_sink(env: Env, group: str, log: Path) -> subprocess.Popen[bytes]:
    child_env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "CIVIC_KAFKA_BOOTSTRAP": env.bootstrap,
        "CIVIC_STORE_URL": env.store_url,
        "CIVIC_TOPIC_PREFIX": env.topics.prefix,
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sinks.worker",
                "--group",
                group,
                "--batch-size",
                "40",
                "--log-every",
                "1",
                # the group waits at most 6 s for a killed worker before reassigning
                "--session-timeout-ms",
                "6000",
            ],
            cwd=env.tmp_path,
            env=child_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stored(env: Env) -> int:
    if env.database_url is None and not (env.tmp_path / "store" / "civic.db").exists():
        return 0
    with open_store(env.store_url) as store:
        return store.count("readings")


def test_a_sink_killed_mid_stream_and_restarted_ends_with_exactly_the_records(
    any_env: Env,
) -> None:
    env = any_env
    stations = [f"station-{i:02d}" for i in range(12)]
    readings = [reading(s, p, n) for s in stations for p in ("pm25", "no2") for n in range(400)]
    produced = send_records(env, [], readings)
    total = produced.total()
    assert total == len(readings) == 9600
    expected = expected_rows([], produced.records["readings"])
    group = env.group("sink")
    log = env.tmp_path / "sink.log"

    def check_commit_after_write() -> int:
        """The committed offsets never run ahead of the store (every key is unique)."""
        done = sum(committed(env, group).values())  # read the commits first ...
        rows = stored(env)  # ... then the store, which only grows
        assert rows >= done, f"offsets committed for {done} records, only {rows} stored"
        return rows

    sink = start_sink(env, group, log)
    try:
        wait_for(lambda: check_commit_after_write() >= total // 5, "the first fifth stored")
        sink.send_signal(signal.SIGKILL)
        assert sink.wait(timeout=30) == -signal.SIGKILL
    finally:
        if sink.poll() is None:
            sink.kill()
            sink.wait()
    at_kill = check_commit_after_write()
    assert at_kill < total, "the sink finished before it was killed: make the stream longer"

    sink = start_sink(env, group, log)
    try:
        wait_for(
            lambda: committed(env, group) == produced.end_offsets,
            "the restarted sink to commit every offset",
        )
        assert check_commit_after_write() == total
        sink.send_signal(signal.SIGTERM)
        assert sink.wait(timeout=30) == 0, log.read_text()
    finally:
        if sink.poll() is None:
            sink.kill()
            sink.wait()

    with open_store(env.store_url) as store:
        assert snapshot(store) == expected
    assert "stopped:" in log.read_text()


def test_the_running_sink_rides_out_a_broker_it_cannot_reach_at_the_offset_commit(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the chaos run: a broker restart that fell on the offset commit raised out of
    the sink (KafkaConnectionError), which exited. The batch is already stored; the sink
    must rewind it, wait, and commit again — ending with exactly the records."""
    from kafka.errors import KafkaConnectionError

    readings = [reading("dongsi", "pm25", n) for n in range(20)]
    produced = send_records(env, [], readings)
    group = env.group("sink")
    worker = SinkWorker(env.bootstrap, env.topics, env.store_url, group_id=group)
    real_commit = worker._consumer.commit
    failures: list[int] = []

    def unreachable_commit(*args: Any, **kwargs: Any) -> None:
        if len(failures) < 2:
            failures.append(1)
            raise KafkaConnectionError("111 ECONNREFUSED")
        real_commit(*args, **kwargs)

    monkeypatch.setattr(worker._consumer, "commit", unreachable_commit)
    stop = threading.Event()
    runner = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    runner.start()
    try:
        wait_for(lambda: committed(env, group) == produced.end_offsets, "the sink to recover")
    finally:
        stop.set()
        runner.join(timeout=30)
    assert not runner.is_alive()
    assert failures == [1, 1]
    with open_store(env.store_url) as check:
        assert snapshot(check) == expected_rows([], readings)
