"""Scale-out on one machine: several workers in one consumer group give one worker's results.

Workers join and die while the stream flows; Kafka moves partitions between them, and the
station state follows its partition through the changelog.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient

from civicstream.sources import open_sources

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "airquality"
START_MS = 1_362_067_200_000  # 2013-03-01 00:00 Beijing
DAY_MS = 86_400_000


def all_stations(days: int) -> list[tuple[bytes, bytes]]:
    """Every Beijing station for `days` days, in event-time order (12 keys over 6 partitions)."""
    files = sorted(DATA.glob("PRSA_Data_*_20130301-20170228.csv"))
    assert len(files) == 12
    return [(r.key, r.value) for r in open_sources(files, None, START_MS, START_MS + days * DAY_MS)]


def raw_partitions(pipeline: Any, member: dict[str, Any]) -> set[int]:
    """The raw-topic partitions assigned to one member of the worker group."""
    assignment = member.get("member_assignment") or {}
    return {
        partition
        for entry in assignment.get("assigned_partitions", [])
        if entry["topic"] == pipeline.topics.raw_air_quality
        for partition in entry["partitions"]
    }


def wait_for_members(pipeline: Any, count: int, timeout_s: float = 90) -> list[Any]:
    """Poll the worker group until `count` members share the raw partitions; their assignments."""
    admin = KafkaAdminClient(bootstrap_servers=pipeline.bootstrap)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            pipeline.check_alive()
            group = admin.describe_groups([pipeline.topics.worker_group])[
                pipeline.topics.worker_group
            ]
            members = group.get("members") or []
            if group.get("group_state") == "Stable" and len(members) == count:
                return [raw_partitions(pipeline, member) for member in members]
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker group never had {count} stable members: {group}")
            time.sleep(0.2)
    finally:
        admin.close()


def own_state(worker: str) -> dict[str, str]:
    """A state directory per worker, as on separate machines (a RocksDB store locks its own)."""
    return {"CIVIC_STATE_DIR": f"state-{worker}"}


def test_workers_joining_and_dying_mid_stream_publish_what_one_worker_does(pipeline_factory):
    messages = all_stations(3)
    thirds = [messages[: len(messages) // 3], messages[len(messages) // 3 : 2 * len(messages) // 3]]
    thirds.append(messages[2 * len(messages) // 3 :])

    single = pipeline_factory("single", partitions=6).start_all()
    single.send(messages)

    group = pipeline_factory("group", partitions=6)
    group.start("worker-1", command="worker", env=own_state("worker-1"))
    group.start("worker-2", command="worker", env=own_state("worker-2"))
    group.start("sink")
    group.send(thirds[0])
    group.wait_until_caught_up(len(thirds[0]), timeout_s=180)

    # joins: partitions move to it mid-stream
    group.start("worker-3", command="worker", env=own_state("worker-3"))
    group.send(thirds[1])
    three = wait_for_members(group, 3)
    assert all(three) and set().union(*three) == set(range(6)), three
    group.kill("worker-1")  # dies without a goodbye: its partitions move after the session
    group.send(thirds[2])
    two = wait_for_members(group, 2)
    assert all(two) and set().union(*two) == set(range(6)), two

    single.wait_until_caught_up(len(messages), timeout_s=180)
    group.wait_until_caught_up(len(messages), timeout_s=240)
    assert group.read_topic(group.topics.deadletter) == []
    expected_hours = single.rows("aqi_hourly")
    assert len(expected_hours) > 12 * 24 * 2
    assert group.rows("aqi_hourly") == expected_hours
    assert group.rows("readings") == single.rows("readings")
    assert len(group.rows("readings")) == len(single.rows("readings")) > 0
