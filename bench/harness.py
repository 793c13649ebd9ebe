"""What every benchmark section shares: the broker, civicstream processes, offsets, /proc.

The benchmark starts the real processes (`python -m civicstream worker`, `... sink`, the
peers) and watches them from outside: progress from the consumer groups' committed
offsets, memory (RSS) and CPU time from /proc. Offsets are read with clients kept open
for the whole run, so watching costs the 2-core machine little.
"""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer
from kafka.errors import KafkaError
from kafka.structs import TopicPartition

from civicstream.localbroker import load_local_kafka
from kafkaconf import KafkaSecurity
from schemas import Topics

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SECURITY = KafkaSecurity.from_env()  # the same settings the worker and sink get (CIVIC_KAFKA_*)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- /proc


def rss_kib(pid: int) -> int:
    """Resident memory of a process now (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def own_cpu_seconds() -> float:
    """CPU time of this benchmark process so far (all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # guest time is already in user
    return (total - idle) / CLOCK_TICKS, total / CLOCK_TICKS


class CpuMeter:
    """Machine CPU use between start and `read()`: cores busy on average."""

    def __init__(self) -> None:
        self.busy, self.total = machine_cpu()
        self.started = time.monotonic()

    def read(self) -> dict[str, float]:
        busy, total = machine_cpu()
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return {
            "cores_busy": round((busy - self.busy) / elapsed, 2),
            "busy_fraction": round((busy - self.busy) / max(total - self.total, 1e-9), 3),
        }


def machine() -> dict[str, Any]:
    """The machine a run measured: cores, CPU model, memory, Python, load average."""
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_gib = 0.0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = int(line.split()[1]) / 1024 / 1024
    return {
        "cores": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem_gib, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_before": [round(v, 2) for v in os.getloadavg()],
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# ---------------------------------------------------------------- the broker


@dataclass
class Broker:
    bootstrap: str
    kafka_version: str
    start_s: float | None = None
    handle: Any = None

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.stop()


def kafka_jar_version() -> str:
    """The Apache Kafka release of the local broker's jars (deploy/local-kafka/libs)."""
    local = load_local_kafka()
    jars = sorted(Path(local.LIBS).glob("kafka_2.13-*.jar"))
    return jars[-1].name.removeprefix("kafka_2.13-").removesuffix(".jar") if jars else "?"


def start_broker(bootstrap: str | None, workroot: Path) -> Broker:
    """The broker at `bootstrap`, or a new one of the run's own (deploy/local-kafka)."""
    if bootstrap:
        return Broker(bootstrap, f"{kafka_jar_version()} (jars here; broker given by --bootstrap)")
    local = load_local_kafka()
    started = time.perf_counter()
    handle = local.start(workroot / "kafka", local.free_port(), local.free_port())
    elapsed = time.perf_counter() - started
    print(f"broker started in {elapsed:.1f} s at {handle.bootstrap}", flush=True)
    return Broker(handle.bootstrap, kafka_jar_version(), round(elapsed, 1), handle)


def broker_pid(broker: Broker) -> int | None:
    return int(broker.handle.pid) if broker.handle is not None else None


# ---------------------------------------------------------------- offsets


class Offsets:
    """End offsets of topics and committed offsets of groups, with long-lived clients."""

    def __init__(self, bootstrap: str) -> None:
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, **SECURITY.kafka_python()
        )
        self.admin = KafkaAdminClient(bootstrap_servers=bootstrap, **SECURITY.kafka_python())
        self._partitions: dict[str, list[TopicPartition]] = {}

    def _tps(self, topic: str) -> list[TopicPartition]:
        if topic not in self._partitions:
            partitions = self.consumer.partitions_for_topic(topic) or set()
            if not partitions:
                return []  # not created yet: ask again next time
            self._partitions[topic] = [TopicPartition(topic, p) for p in sorted(partitions)]
        return self._partitions[topic]

    def ends(self, topics: Iterable[str]) -> dict[str, int]:
        """Records ever written per topic (sum of partition end offsets)."""
        wanted = {topic: self._tps(topic) for topic in topics}
        offsets = self.consumer.end_offsets([tp for tps in wanted.values() for tp in tps])
        return {topic: sum(offsets[tp] for tp in tps) for topic, tps in wanted.items()}

    def end_by_partition(self, topic: str) -> dict[int, int]:
        return {tp.partition: o for tp, o in self.consumer.end_offsets(self._tps(topic)).items()}

    def committed(self, group: str) -> dict[str, int]:
        """Records a group has committed, per topic (sum over partitions)."""
        try:
            offsets = self.admin.list_group_offsets(group).get(group, {})
        except Exception:  # the group does not exist yet
            return {}
        totals: dict[str, int] = {}
        for tp, meta in offsets.items():
            if meta.offset >= 0:
                totals[tp.topic] = totals.get(tp.topic, 0) + meta.offset
        return totals

    def group_state(self, group: str) -> tuple[str, int]:
        """The group's state and member count ("Stable", 2); ("?", 0) while the broker has
        no coordinator for it yet (a new broker creates its offsets topic on demand)."""
        try:
            described = self.admin.describe_groups([group])[group]
        except KafkaError:
            return "?", 0
        return described.get("group_state", "?"), len(described.get("members") or [])

    def wait_for_group(self, group: str, members: int, timeout_s: float = 120) -> float:
        """Seconds until the group is Stable with `members` members."""
        started = time.monotonic()
        while self.group_state(group) != ("Stable", members):
            if time.monotonic() - started > timeout_s:
                msg = f"group {group} not stable with {members} members after {timeout_s:.0f} s"
                raise TimeoutError(msg)
            time.sleep(0.2)
        return time.monotonic() - started

    def close(self) -> None:
        self.consumer.close()
        self.admin.close()


def read_topic(bootstrap: str, topic: str) -> Iterator[Any]:
    """Every record of `topic` now, partition by partition."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, **SECURITY.kafka_python()
    )
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not tps:
            return
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            for batch in consumer.poll(timeout_ms=1000, max_records=50_000).values():
                yield from batch
    finally:
        consumer.close()


# ---------------------------------------------------------------- civicstream processes


SCRAPE_INTERVAL_S = 5.0
"""The scrape interval of deploy/prometheus/prometheus.yml."""


class Scraper(threading.Thread):
    """What a Prometheus asks of the processes: /metrics of each, every `interval` s.

    One scrape at a time, each waited for (a slow one delays the next instead of piling
    up beside it); the longest scrape and the largest page per port are kept.
    """

    def __init__(self, ports: dict[int, str], interval: float) -> None:
        super().__init__(name="scraper", daemon=True)
        self.ports, self.interval = ports, interval
        self.stop = threading.Event()
        self.longest_s: dict[str, float] = {}
        self.largest_bytes: dict[str, int] = {}

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            for port, name in list(self.ports.items()):
                began = time.perf_counter()
                try:
                    url = f"http://127.0.0.1:{port}/metrics"
                    with urllib.request.urlopen(url, timeout=300) as response:
                        size = len(response.read())
                except OSError:
                    continue  # not serving yet
                took = time.perf_counter() - began
                self.longest_s[name] = max(self.longest_s.get(name, 0.0), took)
                self.largest_bytes[name] = max(self.largest_bytes.get(name, 0), size)


@dataclass
class Watched:
    """A process started by the benchmark, with what /proc said about it."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    started_at: float = field(default_factory=time.time)
    peak_rss_kib: int = 0
    last_rss_kib: int = 0
    cpu_s: float = 0.0

    def sample(self) -> None:
        rss = rss_kib(self.process.pid)
        if rss:
            self.last_rss_kib = rss
            self.peak_rss_kib = max(self.peak_rss_kib, rss)
            self.cpu_s = cpu_seconds(self.process.pid)

    def check(self) -> None:
        if self.process.poll() is not None:
            tail = self.log.read_text(errors="replace")[-3000:]
            msg = f"{self.name} exited with {self.process.returncode}:\n{tail}"
            raise RuntimeError(msg)

    def summary(self) -> dict[str, Any]:
        return {
            "peak_rss_mib": round(self.peak_rss_kib / 1024, 1),
            "final_rss_mib": round(self.last_rss_kib / 1024, 1),
            "cpu_s": round(self.cpu_s, 2),
        }


def start_process(name: str, argv: list[str], env: dict[str, str], log: Path) -> Watched:
    process = subprocess.Popen(
        argv,
        env=env,
        cwd=ROOT,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    return Watched(name, process, log)


def stop_processes(watched: Iterable[Watched], timeout: float = 30) -> None:
    items = list(watched)
    for item in items:
        if item.process.poll() is None:
            item.process.terminate()
    for item in items:
        try:
            item.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            item.process.kill()
            item.process.wait()


class Civicstream:
    """The worker(s) and the sink of one topic namespace, as users run them.

    With `metrics` each process serves /metrics and is scraped every `scrape_interval`
    seconds (what a Prometheus would cost); without, CIVIC_METRICS_PORT=0 keeps no metric.
    """

    def __init__(
        self,
        bootstrap: str,
        topics: Topics,
        workdir: Path,
        partitions: int,
        *,
        metrics: bool = True,
        scrape_interval: float = SCRAPE_INTERVAL_S,
    ) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.workdir = workdir
        self.partitions = partitions
        self.metrics = metrics
        self.store_path = workdir / "store.db"
        self.processes: dict[str, Watched] = {}
        self._ports: dict[int, str] = {}
        self._scraper = Scraper(self._ports, scrape_interval)
        workdir.mkdir(parents=True, exist_ok=True)

    def env(self, **extra: str) -> dict[str, str]:
        return dict(
            os.environ,
            CIVIC_KAFKA_BOOTSTRAP=self.bootstrap,
            CIVIC_TOPIC_PREFIX=self.topics.prefix,
            CIVIC_PARTITIONS=str(self.partitions),
            CIVIC_STORE_URL=f"sqlite:///{self.store_path}",
            CIVIC_STATE_DIR=str(self.workdir / "state"),
            PYTHONPATH=str(ROOT),
            **extra,
        )

    def _port(self, name: str) -> str:
        if not self.metrics:
            return "0"
        port = free_port()
        self._ports[port] = name
        return str(port)

    def start(self, *, workers: int = 1, sink: bool = True) -> None:
        for index in range(workers):
            name = "worker" if workers == 1 else f"worker-{index + 1}"
            env = self.env(CIVIC_METRICS_PORT=self._port(name))
            self.processes[name] = start_process(
                name,
                [sys.executable, "-m", "civicstream", "worker"],
                env,
                self.workdir / f"{name}.log",
            )
        if sink:
            env = self.env(CIVIC_SINK_METRICS_PORT=self._port("sink"))
            self.processes["sink"] = start_process(
                "sink",
                [sys.executable, "-m", "civicstream", "sink"],
                env,
                self.workdir / "sink.log",
            )
        if self.metrics:
            self._scraper.start()

    def watch(self) -> None:
        """Sample memory and CPU of every process; raise if one died."""
        for item in self.processes.values():
            item.check()
            item.sample()

    def stop(self) -> dict[str, dict[str, Any]]:
        self._scraper.stop.set()
        for item in self.processes.values():
            item.sample()
        stop_processes(self.processes.values())
        summary = {name: item.summary() for name, item in self.processes.items()}
        for name, longest in self._scraper.longest_s.items():
            summary[name]["scrape_max_s"] = round(longest, 2)
            summary[name]["scrape_max_kib"] = round(self._scraper.largest_bytes[name] / 1024)
        return summary

    def done_before(self, committed: int) -> int:
        """The records to leave out of a steady part that starts now, at the first commit
        seen (`committed` records): those the workers had applied by then, committed or
        not."""
        return max(committed, self.applied() or 0)

    def applied(self) -> int | None:
        """Raw records the workers have applied (accepted or dead-lettered), from their
        own /metrics; None without metrics. Their committed offsets trail this by up to a
        commit interval, so a rate counted from the first commit would include records
        applied before it."""
        ports = [port for port, name in self._ports.items() if name.startswith("worker")]
        if not ports:
            return None
        total = 0.0
        for port in ports:
            try:
                url = f"http://127.0.0.1:{port}/metrics"
                with urllib.request.urlopen(url, timeout=5) as response:
                    text = response.read().decode()
            except OSError:
                return None
            for line in text.splitlines():
                if line.startswith("civicstream_worker_records_total{") and (
                    'outcome="accepted"' in line or 'outcome="dead_letter"' in line
                ):
                    total += float(line.rpartition(" ")[2])
        return int(total)

    @property
    def stored_topics(self) -> list[str]:
        return [self.topics.enriched_air_quality, self.topics.aqi_hourly, self.topics.aqi_daily]

    def progress(self, offsets: Offsets) -> dict[str, int]:
        """Raw records written and processed; outputs written and stored."""
        raw = self.topics.raw_air_quality
        ends = offsets.ends([raw, *self.stored_topics])
        worker = offsets.committed(self.topics.worker_group).get(raw, 0)
        sink = offsets.committed(self.topics.sink_group)
        return {
            "raw": ends[raw],
            "processed": worker,
            "outputs": sum(ends[t] for t in self.stored_topics),
            "stored": sum(sink.get(t, 0) for t in self.stored_topics),
        }


def caught_up(progress: dict[str, int], total: int, *, sink: bool = True) -> bool:
    """Every raw record processed and (with a sink) every output stored."""
    done = progress["processed"] >= total
    return done and (not sink or progress["stored"] >= progress["outputs"])
