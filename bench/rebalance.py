"""`python -m bench.rebalance`: how long output stops when a worker joins and when one dies.

Readings stream at a steady rate (synthetic stations over every partition, one event hour
per station and step, so hours close and publish all the time) through two workers of one
consumer group; a third joins, then the first is SIGKILLed. The output
topic (enriched readings, one per reading) is created with broker timestamps
(LogAppendTime), so each record carries the time the broker appended it. After each
event the longest gap between consecutive output records is reported — over the whole
topic (every worker stopped: the rebalance itself) and within any one partition (what a
consumer of that partition sees: for a dead worker's partitions it includes the session
timeout) — beside the same figures for the quiet period before the first event.

    python -m bench.rebalance                     # starts its own broker
    python -m bench.rebalance --bootstrap 127.0.0.1:19092 --store rocksdb
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.structs import TopicPartition

from civicstream.localbroker import load_local_kafka
from civicstream.simulate import simulate_readings
from kafkaconf import KafkaSecurity
from schemas import Topics
from streams.admin import ensure_topics
from streams.app import HEARTBEAT_SECONDS, SESSION_TIMEOUT_SECONDS

ROOT = Path(__file__).resolve().parents[1]
SECURITY = KafkaSecurity.from_env()  # the same settings the workers get (CIVIC_KAFKA_*)
START_MS = 1_767_225_600_000  # 2026-01-01 00:00Z


class SteadyProducer(threading.Thread):
    """Sends synthetic readings at `rate` per second until stopped."""

    def __init__(self, bootstrap: str, topic: str, rate: float, stations: int) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.rate, self.stations = bootstrap, topic, rate, stations
        self.stop = threading.Event()
        self.sent = 0

    def run(self) -> None:
        producer = KafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", linger_ms=5, **SECURITY.kafka_python()
        )
        # One event hour per station and step: every partition closes an hour (and so
        # publishes enriched readings) about twice a second at the default rate.
        records = simulate_readings(self.stations, 10**9, START_MS, step_ms=3_600_000)
        started = time.monotonic()
        for record in records:
            if self.stop.is_set():
                break
            due = started + self.sent / self.rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            producer.send(self.topic, key=record.key, value=record.value)
            self.sent += 1
        producer.flush()
        producer.close()


def group_members(bootstrap: str, group: str) -> tuple[str, int]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, **SECURITY.kafka_python())
    try:
        described = admin.describe_groups([group])[group]
    finally:
        admin.close()
    return described.get("group_state", "?"), len(described.get("members") or [])


def wait_for_group(bootstrap: str, group: str, members: int, timeout_s: float = 120) -> float:
    """Seconds until the group is Stable with `members` members."""
    started = time.monotonic()
    while group_members(bootstrap, group) != ("Stable", members):
        if time.monotonic() - started > timeout_s:
            msg = f"group {group} not stable with {members} members after {timeout_s:.0f} s"
            raise TimeoutError(msg)
        time.sleep(0.2)
    return time.monotonic() - started


def output_times(bootstrap: str, topic: str) -> dict[int, list[int]]:
    """Broker append times (ms) of every record of `topic`, by partition, in order."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, **SECURITY.kafka_python()
    )
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        times: dict[int, list[int]] = {tp.partition: [] for tp in tps}
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            for tp, batch in consumer.poll(timeout_ms=1000, max_records=50_000).items():
                times[tp.partition].extend(record.timestamp for record in batch)
        return times
    finally:
        consumer.close()


def longest_gap(times: list[int], start_ms: int, end_ms: int) -> float:
    """Longest silence (s) between output records within [start_ms, end_ms), counting from
    the last record before `start_ms` and up to `end_ms`."""
    before = [t for t in times if t < start_ms]
    inside = [t for t in times if start_ms <= t < end_ms]
    points = [before[-1] if before else start_ms, *inside, end_ms]
    return max(b - a for a, b in itertools.pairwise(points)) / 1000


def gaps(times: dict[int, list[int]], start_ms: int, end_ms: int) -> dict[str, float]:
    merged = sorted(t for partition in times.values() for t in partition)
    per_partition = {p: longest_gap(t, start_ms, end_ms) for p, t in times.items()}
    return {
        "topic_s": round(longest_gap(merged, start_ms, end_ms), 2),
        "partition_s": round(max(per_partition.values()), 2),
        "per_partition_s": {str(p): round(g, 2) for p, g in sorted(per_partition.items())},
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.rebalance",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--bootstrap", default=os.environ.get("CIVIC_BENCH_BOOTSTRAP"))
    parser.add_argument("--partitions", type=int, default=6, help="[6]")
    parser.add_argument("--rate", type=float, default=300, help="readings per second [300]")
    parser.add_argument(
        "--stations", type=int, default=24, help="synthetic stations, on every partition [24]"
    )
    parser.add_argument(
        "--phase", type=float, default=40, help="seconds between events, and after [40]"
    )
    parser.add_argument("--store", choices=("memory", "rocksdb"), default="memory")
    parser.add_argument("--standby-replicas", type=int, default=1, help="[1]")
    parser.add_argument("--loglevel", default="warning", help="the workers' log level [warning]")
    args = parser.parse_args()

    workroot = Path(tempfile.mkdtemp(prefix="civicstream-rebalance-"))
    broker = None
    if args.bootstrap:
        bootstrap = args.bootstrap
    else:
        local = load_local_kafka()
        broker = local.start(workroot / "kafka", local.free_port(), local.free_port())
        bootstrap = broker.bootstrap
    topics = Topics(f"bench-rebalance-{int(time.time())}.")
    output = topics.enriched_air_quality
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, **SECURITY.kafka_python())
    try:
        admin.create_topics(
            [
                NewTopic(
                    output,
                    args.partitions,
                    1,
                    topic_configs={"message.timestamp.type": "LogAppendTime"},
                )
            ]
        )
    finally:
        admin.close()
    ensure_topics(bootstrap, topics.all(), args.partitions, security=SECURITY)
    env = dict(
        os.environ,
        CIVIC_KAFKA_BOOTSTRAP=bootstrap,
        CIVIC_TOPIC_PREFIX=topics.prefix,
        CIVIC_PARTITIONS=str(args.partitions),
        CIVIC_STATE_STORE=args.store,
        CIVIC_STANDBY_REPLICAS=str(args.standby_replicas),
        CIVIC_METRICS_PORT="0",
        PYTHONPATH=str(ROOT),
    )
    workers: dict[str, subprocess.Popen[bytes]] = {}

    def start(name: str) -> None:
        log = (workroot / f"{name}.log").open("ab")
        workers[name] = subprocess.Popen(
            [sys.executable, "-m", "civicstream", "worker", "--loglevel", args.loglevel],
            env={**env, "CIVIC_STATE_DIR": str(workroot / name / "state")},
            cwd=workroot,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def now_ms() -> int:
        return int(time.time() * 1000)

    producer = SteadyProducer(bootstrap, topics.raw_air_quality, args.rate, args.stations)
    events: dict[str, int] = {}
    try:
        start("worker-1")
        start("worker-2")
        producer.start()
        stable = wait_for_group(bootstrap, topics.worker_group, 2)
        print(f"2 workers stable after {stable:.1f} s; steady state for {args.phase:g} s")
        time.sleep(args.phase)
        events["join"] = now_ms()
        start("worker-3")
        stable = wait_for_group(bootstrap, topics.worker_group, 3)
        print(f"worker-3 joined: group stable with 3 after {stable:.1f} s")
        time.sleep(max(0.0, args.phase - stable))
        events["die"] = now_ms()
        workers["worker-1"].kill()
        stable = wait_for_group(bootstrap, topics.worker_group, 2)
        print(f"worker-1 SIGKILLed: group stable with 2 after {stable:.1f} s")
        time.sleep(max(0.0, args.phase - stable))
        events["end"] = now_ms()
        producer.stop.set()
        producer.join()
        time.sleep(3)  # the last records' outputs
        times = output_times(bootstrap, output)
    finally:
        producer.stop.set()
        for process in workers.values():
            if process.poll() is None:
                process.terminate()
        for process in workers.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        if broker is not None:
            broker.stop()

    steady_from = events["join"] - int(args.phase * 1000) + 10_000
    results = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "store": args.store,
        "standby_replicas": args.standby_replicas,
        "partitions": args.partitions,
        "rate_per_s": args.rate,
        "readings_sent": producer.sent,
        "outputs": sum(len(t) for t in times.values()),
        "session_timeout_s": SESSION_TIMEOUT_SECONDS,
        "heartbeat_s": HEARTBEAT_SECONDS,
        "steady": gaps(times, steady_from, events["join"]),
        "join": gaps(times, events["join"], events["die"]),
        "die": gaps(times, events["die"], events["end"]),
    }
    print(
        f"\n{args.store} store, {args.standby_replicas} standby replica(s), {args.partitions} "
        f"partitions, {args.rate:g} readings/s, session timeout {SESSION_TIMEOUT_SECONDS:g} s "
        f"(heartbeat {HEARTBEAT_SECONDS:g} s); {producer.sent:,} readings → "
        f"{results['outputs']:,} enriched records"
    )
    print("longest silence of the output (broker append times), seconds:")
    print(f"  {'':24s} {'whole topic':>12s} {'one partition':>14s}")
    for name, label in (
        ("steady", "steady (2 workers)"),
        ("join", "worker-3 joins"),
        ("die", "worker-1 SIGKILLed"),
    ):
        row = results[name]
        print(f"  {label:24s} {row['topic_s']:12.2f} {row['partition_s']:14.2f}")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    path = out / f"rebalance-{results['when'].replace(':', '')}-{args.store}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\n{path.relative_to(ROOT)}; worker logs in {workroot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
