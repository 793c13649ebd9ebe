"""The RocksDB table store (CIVIC_STATE_STORE=rocksdb): state kept on local disk.

A worker stopped and started again continues from its local state, reading nothing back
from the changelog; a worker with an empty state directory recovers from the changelog.
Either way the results are one uninterrupted in-memory worker's. (SIGKILL and partitions
moving between workers: test_scale_out.py, which also passes with CIVIC_STATE_STORE=rocksdb
in the environment.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer
from kafka.structs import TopicPartition
from rocksdict import Options, Rdict

from tests.integration.test_scale_out import all_stations

pytestmark = pytest.mark.integration

OFFSET_KEY = b"__faust\0offset__"  # where Faust keeps a partition's changelog offset


def changelog_latest(pipeline: Any) -> tuple[dict[int, dict[bytes, bytes]], dict[int, int]]:
    """The station-state changelog compacted (latest value per key), and its end offsets."""
    topic = f"{pipeline.topics.worker_group}-station-state-changelog"
    latest: dict[int, dict[bytes, bytes]] = {}
    for record in pipeline._consume_all(topic):
        latest.setdefault(record.partition, {})[record.key] = record.value
    consumer = KafkaConsumer(bootstrap_servers=pipeline.bootstrap)
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        ends = {tp.partition: offset for tp, offset in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()
    return latest, ends


def local_tables(state_dir: Path) -> dict[int, dict[bytes, bytes]]:
    """What the stopped worker keeps on disk: the station-state databases, by partition."""
    found = {}
    for path in sorted(state_dir.rglob("station-state-*.db")):
        partition = int(path.name.removesuffix(".db").rpartition("-")[2])
        db = Rdict(str(path), Options(raw_mode=True))
        try:
            found[partition] = {bytes(k): bytes(v) for k, v in db.items()}
        finally:
            db.close()
    return found


def test_a_rocksdb_worker_restarts_from_local_state_and_recovers_from_the_changelog(
    pipeline_factory,
):
    messages = all_stations(3)
    thirds = [messages[: len(messages) // 3], messages[len(messages) // 3 : 2 * len(messages) // 3]]
    thirds.append(messages[2 * len(messages) // 3 :])

    memory = pipeline_factory("memory", partitions=6).start_all()
    memory.send(messages)

    rocks = pipeline_factory("rocks", partitions=6, env={"CIVIC_STATE_STORE": "rocksdb"})
    rocks.start("worker")
    rocks.start("sink")
    rocks.send(thirds[0])
    rocks.wait_until_caught_up(len(thirds[0]), timeout_s=180)
    rocks.terminate("worker")

    # The state is on disk (./data/state by default), complete and current: every key's
    # latest changelog value, and each partition's changelog offset, so a restart reads
    # nothing back from Kafka.
    state_dir = rocks.workdir / "data" / "state"
    local = local_tables(state_dir)
    latest, ends = changelog_latest(rocks)
    assert latest and set(latest) <= set(local)
    for partition, values in latest.items():
        stored = dict(local[partition])
        assert int(stored.pop(OFFSET_KEY)) == ends[partition] - 1
        assert stored == values

    rocks.start("worker")  # the same state directory: continues from it
    rocks.send(thirds[1])
    rocks.wait_until_caught_up(len(thirds[0]) + len(thirds[1]), timeout_s=180)

    # A worker that lost its disk (a new machine) rebuilds its state from the changelog.
    rocks.terminate("worker")
    rocks.start("worker", env={"CIVIC_STATE_DIR": str(rocks.workdir / "new-disk")})
    rocks.send(thirds[2])
    rocks.wait_until_caught_up(len(messages), timeout_s=180)
    rocks.terminate("worker")
    rebuilt = local_tables(rocks.workdir / "new-disk")
    latest, _ = changelog_latest(rocks)
    rebuilt_values = {
        p: {k: v for k, v in t.items() if k != OFFSET_KEY} for p, t in rebuilt.items()
    }
    assert {p: t for p, t in rebuilt_values.items() if t} == latest
    memory.wait_until_caught_up(len(messages), timeout_s=180)

    assert rocks.read_topic(rocks.topics.deadletter) == []
    expected_hours = memory.rows("aqi_hourly")
    assert len(expected_hours) > 12 * 24 * 2
    assert rocks.rows("aqi_hourly") == expected_hours
    assert rocks.rows("readings") == memory.rows("readings")
    assert rocks.rows("aqi_daily") == memory.rows("aqi_daily")
