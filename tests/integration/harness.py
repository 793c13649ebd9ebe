"""A pipeline under test: real worker and sink processes on the session's real broker."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer
from kafka.structs import TopicPartition

from civicstream.status import (
    IncidentStatus,
    PipelineStatus,
    wait_until_caught_up,
    wait_until_incidents_caught_up,
)
from kafkaconf import KafkaSecurity
from schemas import Topics, decode
from sinks.store import open_store
from streams.admin import committed_offsets, end_offsets, ensure_topics

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PipelineUnderTest:
    """One namespace: its topics, a stream worker, a sink worker and a store."""

    bootstrap: str
    prefix: str
    workdir: Path
    partitions: int = 3
    lateness: str = "10m"
    metrics: bool = False
    """Serve /metrics: the worker and the sink each on a free port (`metrics_ports`)."""
    config: str | None = None  # CIVIC_CONFIG: city files separated by os.pathsep
    kafka_env: dict[str, str] = field(default_factory=dict)
    """CIVIC_KAFKA_* security settings of every process (and of the harness's own clients);
    empty: PLAINTEXT, whatever the test session's environment says."""
    process_kafka_env: dict[str, dict[str, str]] = field(default_factory=dict)
    """Per process name (`start`), settings over `kafka_env`: e.g. a Kafka user of its own."""
    env: dict[str, str] = field(default_factory=dict)
    """More environment for every process (e.g. CIVIC_STATE_STORE)."""
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.security = KafkaSecurity.from_env(self.kafka_env)
        self.topics = Topics(self.prefix)
        self.store_url = f"sqlite:///{self.workdir / 'store.db'}"
        self.archive_dir = self.workdir / "archive"
        self.metrics_ports = {"worker": free_port(), "sink": free_port()} if self.metrics else {}
        ensure_topics(self.bootstrap, self.topics.all(), self.partitions, security=self.security)

    # -- processes ----------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CIVIC_KAFKA_")}
        env.update(self.kafka_env)
        env.update(
            CIVIC_KAFKA_BOOTSTRAP=self.bootstrap,
            CIVIC_TOPIC_PREFIX=self.prefix,
            CIVIC_PARTITIONS=str(self.partitions),
            CIVIC_STORE_URL=self.store_url,
            CIVIC_ALLOWED_LATENESS=self.lateness,
            CIVIC_ARCHIVE_DIR=str(self.archive_dir),
            CIVIC_METRICS_PORT=str(self.metrics_ports.get("worker", 0)),
            CIVIC_SINK_METRICS_PORT=str(self.metrics_ports.get("sink", 0)),
            PYTHONPATH=str(PROJECT_ROOT),
        )
        if self.config is not None:
            env["CIVIC_CONFIG"] = self.config
        env.update(self.env)
        return env

    def cli(self, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
        """Run `civicstream ARGS` in this namespace; fails the test if it fails."""
        result = subprocess.run(
            [sys.executable, "-m", "civicstream", *args],
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            cwd=self.workdir,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return result

    def start(
        self,
        name: str,
        *options: str,
        command: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        """Start a process called `name` running `civicstream COMMAND OPTIONS` (COMMAND
        defaults to the name: `worker`, `sink` or `archive`; `env` adds to its environment);
        logs in the test's work dir."""
        log = (self.workdir / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "civicstream", command or name, *options],
            env={**self._env(), **self.process_kafka_env.get(name, {}), **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.workdir,
        )

    def start_all(self) -> PipelineUnderTest:
        self.start("worker")
        self.start("sink")
        return self

    def kill(self, name: str) -> None:
        """SIGKILL: no shutdown hooks, no final commit — a crash."""
        process = self.processes.pop(name)
        process.kill()
        process.wait(timeout=30)

    def terminate(self, name: str) -> None:
        """SIGTERM and wait: a clean shutdown (final commit, stores closed)."""
        process = self.processes.pop(name)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise AssertionError(f"{name} exited with {process.returncode}:\n{self.log(name)}")

    def civicstream(self, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
        """Run a civicstream command in this pipeline's environment and work dir."""
        return subprocess.run(
            [sys.executable, "-m", "civicstream", *args],
            env=self._env(),
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    def log(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text(errors="replace")[-4000:]

    # -- data -----------------------------------------------------------------------------
    def send(self, messages: Iterable[tuple[bytes | None, bytes]], topic: str | None = None) -> int:
        """Send (key, value) pairs to `topic` (default: the raw air-quality topic)."""
        producer = KafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", **self.security.kafka_python()
        )
        topic = topic or self.topics.raw_air_quality
        futures = [producer.send(topic, key=k, value=v) for k, v in messages]
        producer.flush()
        producer.close()
        for future in futures:
            future.get(timeout=0)  # raises if Kafka refused it
        return len(futures)

    def send_incidents(self, messages: Iterable[tuple[bytes | None, bytes]]) -> int:
        """Send raw incident rows (key, value) to the raw incidents topic, in order."""
        producer = KafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            linger_ms=20,
            batch_size=512 * 1024,
            **self.security.kafka_python(),
        )
        futures = [producer.send(self.topics.raw_incidents, key=k, value=v) for k, v in messages]
        producer.flush()
        producer.close()
        for future in futures:
            future.get(timeout=0)
        return len(futures)

    def wait_until_incidents_caught_up(
        self, expected_raw: int, timeout_s: float = 120
    ) -> IncidentStatus:
        return wait_until_incidents_caught_up(
            self.bootstrap,
            self.topics,
            expected_raw=expected_raw,
            timeout_s=timeout_s,
            check=self.check_alive,
            security=self.security,
        )

    def wait_until_caught_up(self, expected_raw: int, timeout_s: float = 120) -> PipelineStatus:
        return wait_until_caught_up(
            self.bootstrap,
            self.topics,
            expected_raw=expected_raw,
            timeout_s=timeout_s,
            check=self.check_alive,
            security=self.security,
        )

    def read_topic(self, topic: str) -> list[tuple[bytes | None, dict[str, Any], int, int]]:
        """Every record of `topic`: (key, decoded value, partition, offset), by partition."""
        return [
            (record.key, decode(record.value), record.partition, record.offset)
            for record in self._consume_all(topic)
        ]

    def read_topic_raw(self, topic: str) -> dict[tuple[int, int], bytes | None]:
        """Every record's value bytes by (partition, offset)."""
        return {(r.partition, r.offset): r.value for r in self._consume_all(topic)}

    def _consume_all(self, topic: str) -> list[Any]:
        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            **self.security.kafka_python(),
        )
        try:
            tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            ends = consumer.end_offsets(tps)
            records = []
            while any(consumer.position(tp) < ends[tp] for tp in tps):
                for batch in consumer.poll(timeout_ms=1000).values():
                    records.extend(batch)
            return sorted(records, key=lambda r: (r.partition, r.offset))
        finally:
            consumer.close()

    def rows(self, dataset: str) -> list[dict[str, Any]]:
        with open_store(self.store_url) as store:
            return store.fetch(dataset)

    def wait_until_archived(self, timeout_s: float = 60) -> None:
        """Poll until the archive sink has committed every record of the raw topics."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.check_alive()
            ends = end_offsets(self.bootstrap, self.topics.raw, security=self.security)
            done = committed_offsets(
                self.bootstrap, self.topics.archive_group, security=self.security
            )
            if all(done.get(topic, 0) >= end for topic, end in ends.items()):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"archive at {done} of {ends} after {timeout_s} s")
            time.sleep(0.1)

    def wait_until_hourly_output(self, minimum: int, timeout_s: float = 120) -> None:
        """Poll until the worker has produced at least `minimum` hourly records."""
        deadline = time.monotonic() + timeout_s
        hourly = self.topics.aqi_hourly
        while end_offsets(self.bootstrap, [hourly], security=self.security)[hourly] < minimum:
            self.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"fewer than {minimum} hourly records after {timeout_s} s")
            time.sleep(0.1)
