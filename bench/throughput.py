"""Throughput: the same raw topic, consumed by the baseline, civicstream and the peers.

The raw topic is filled once; every contender then reads it from the start with its own
consumer group, one after the other, on the same broker:

* baseline — a bare aiokafka loop: consume, produce one message per input (acks=all),
  flush and commit per batch; no decoding;
* civicstream — `civicstream worker` and `civicstream sink` (SQLite store), as users
  run them; done when every raw record is processed and every output is stored;
* peers — bench/peers: the hourly-mean + AQI job with Faust (naive) and Quix Streams,
  each its own process; done when it has processed every raw record.

Each reports readings/s over its steady part (first record processed → last), start-up
(process start, group join, recovery) apart.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client import CollectorRegistry

from bench.harness import (
    ROOT,
    SCRAPE_INTERVAL_S,
    SECURITY,
    Civicstream,
    CpuMeter,
    Offsets,
    caught_up,
    own_cpu_seconds,
    start_process,
    stop_processes,
)
from civicstream.produce import produce
from civicstream.simulate import simulate_readings
from civicstream.sources import open_sources
from schemas import Topics
from sinks.store import open_store
from streams.admin import ensure_topics
from streams.air_quality import AirQualityPipeline, SourceRecord
from streams.metrics import WorkerMetrics
from streams.time import HourlyWindows

DATA = ROOT / ".." / "shared" / "data" / "airquality"
BEIJING_START_MS = 1_362_067_200_000  # 2013-03-01 00:00 Beijing
SIMULATE_START_MS = 1_767_225_600_000  # 2026-01-01 00:00Z
HOUR_MS = 3_600_000
PEERS = {
    "faust": "bench.peers.faust_naive",
    "faust-floor": "bench.peers.faust_floor",
    "quix": "bench.peers.quix",
}
PEER_NEEDS = {"faust": "faust", "faust-floor": "faust", "quix": "quixstreams"}


def workload(name: str, days: int, count: int) -> list[Any]:
    """The fixed input: Beijing's 12 stations (hourly, 6 pollutants) for `days` days, or
    `count` simulated readings (100 stations, one event minute per round)."""
    if name == "beijing":
        files = sorted(DATA.glob("PRSA_Data_*.csv"))
        if not files:
            msg = f"no Beijing data in {DATA.resolve()} (../shared/data/airquality)"
            raise FileNotFoundError(msg)
        until = BEIJING_START_MS + days * 86_400_000
        return list(open_sources(files, None, BEIJING_START_MS, until))
    return list(simulate_readings(stations=100, count=count, start_ms=SIMULATE_START_MS))


def load(bootstrap: str, topic: str, records: Sequence[Any]) -> dict[str, Any]:
    loaded = produce(records, bootstrap=bootstrap, topic=topic, security=SECURITY)
    return {"records": loaded.records, "per_s": round(loaded.per_second)}


# ---------------------------------------------------------------- the baseline


async def _baseline(
    bootstrap: str, source: str, target: str, total: int, run: int
) -> dict[str, Any]:
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=f"{source}-baseline-{run}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **SECURITY.aiokafka(),
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, **SECURITY.aiokafka()
    )
    started = time.perf_counter()
    await consumer.start()
    await producer.start()
    first = None
    cpu_first = 0.0
    seen = 0
    try:
        while seen < total:
            batches = await consumer.getmany(timeout_ms=500, max_records=2000)
            for records in batches.values():
                if first is None:
                    first = time.perf_counter()
                    cpu_first = own_cpu_seconds()
                for record in records:
                    await producer.send(target, key=record.key, value=record.value)
                seen += len(records)
            await producer.flush()
            await consumer.commit()
        done = time.perf_counter()
        cpu_s = own_cpu_seconds() - cpu_first
    finally:
        await producer.stop()
        await consumer.stop()
    first = first or done
    return {
        "records": seen,
        "startup_s": round(first - started, 2),
        "steady_s": round(done - first, 2),
        "per_s": round(seen / max(done - first, 1e-9)),
        "cpu_us_per_reading": round(cpu_s / max(seen, 1) * 1e6),
    }


def baseline(bootstrap: str, topics: Topics, total: int, run: int = 0) -> dict[str, Any]:
    """A bare aiokafka consume → produce loop: the ceiling for a Python consumer here.
    Each `run` reads the raw topic from the start with a consumer group of its own."""
    target = f"{topics.prefix}baseline-out"
    return asyncio.run(_baseline(bootstrap, topics.raw_air_quality, target, total, run))


# ---------------------------------------------------------------- civicstream


def civicstream(
    bootstrap: str,
    topics: Topics,
    total: int,
    workdir: Path,
    partitions: int,
    *,
    metrics: bool,
    poll_s: float = 0.25,
    budget_s: float | None = None,
    scrape_interval: float = SCRAPE_INTERVAL_S,
) -> dict[str, Any]:
    """Worker + sink over the filled raw topic until every output is stored, or until
    `budget_s` has passed: then the result says `complete: false` and its rate is the
    raw records processed so far per second."""
    pipeline = Civicstream(
        bootstrap, topics, workdir, partitions, metrics=metrics, scrape_interval=scrape_interval
    )
    offsets = Offsets(bootstrap)
    started = time.perf_counter()
    pipeline.start()
    first = worker_done = None
    at_first = 0  # raw records already committed when progress was first seen
    agreed = 0
    cpu_at_first: dict[str, float] = {}
    meter = None
    complete = True
    processed = 0
    try:
        while True:
            pipeline.watch()
            progress = pipeline.progress(offsets)
            now = time.perf_counter()
            if first is None and progress["processed"] > 0:
                first, at_first = now, pipeline.done_before(progress["processed"])
                cpu_at_first = {name: item.cpu_s for name, item in pipeline.processes.items()}
                cpu_at_first["bench"] = own_cpu_seconds()
                meter = CpuMeter()
            if worker_done is None and progress["processed"] >= total:
                worker_done = now
            processed = progress["processed"]
            # Offsets are read one topic at a time: caught up must hold on two polls.
            agreed = agreed + 1 if caught_up(progress, total) else 0
            if agreed >= 2:
                break
            if budget_s is not None and now - started > budget_s:
                complete = False
                break
            time.sleep(poll_s)
        done = time.perf_counter()
        pipeline.watch()
        machine_cpu = meter.read() if meter is not None else None
        bench_cpu = own_cpu_seconds()
    finally:
        processes = pipeline.stop()
        offsets.close()
    first = first or done
    steady = max(done - first, 1e-9)
    # The steady part: from the first commit seen to the end, and the records applied after
    # it (a worker commits about once a second: what it did before the first commit is
    # start-up and those records, left out of both the time and the count; the records it
    # had applied but not committed yet are read from its /metrics).
    counted = (total if complete else processed) - at_first
    used = {
        name: pipeline.processes[name].cpu_s - cpu_at_first.get(name, 0.0) for name in processes
    }
    cores = {name: round(cpu / steady, 2) for name, cpu in used.items()}
    if machine_cpu is not None:
        cores["bench"] = round((bench_cpu - cpu_at_first["bench"]) / steady, 2)
        cores["machine"] = machine_cpu["cores_busy"]
    with open_store(f"sqlite:///{pipeline.store_path}") as store:
        rows = {name: store.count(name) for name in ("readings", "aqi_hourly", "aqi_daily")}
    return {
        "metrics": metrics,
        "records": total,
        "complete": complete,
        "processed": total if complete else processed,
        "startup_s": round(first - started, 2),
        "steady_s": round(steady, 2),
        "per_s": round(counted / steady),
        "end_to_end_per_s": round((total if complete else processed) / (done - started)),
        "worker_per_s": round(counted / max((worker_done or done) - first, 1e-9)),
        "store_rows": rows,
        "processes": processes,
        "cores_busy_steady": cores,
        "worker_cpu_us_per_reading": round(used["worker"] / max(counted, 1) * 1e6),
        "cpu_us_per_reading": round(sum(used.values()) / max(counted, 1) * 1e6),
    }


# ---------------------------------------------------------------- peers


def peer_available(name: str) -> str | None:
    """None when the peer can run here, else why not."""
    module = PEER_NEEDS[name]
    if importlib.util.find_spec(module) is None:
        return f"{module} is not installed (pip install -e '.[bench]')"
    return None


def peer(
    name: str,
    bootstrap: str,
    topics: Topics,
    total: int,
    workdir: Path,
    partitions: int,
    *,
    timeout_s: float = 600,
) -> dict[str, Any]:
    """Run one peer over the filled raw topic until it has processed every record."""
    why_not = peer_available(name)
    if why_not is not None:
        return {"skipped": why_not}
    workdir.mkdir(parents=True, exist_ok=True)
    output = f"{topics.prefix}{name}-out"
    ensure_topics(bootstrap, [output], partitions, security=SECURITY)
    result = workdir / "result.json"
    argv = [
        sys.executable,
        "-m",
        PEERS[name],
        "--bootstrap",
        bootstrap,
        "--topic",
        topics.raw_air_quality,
        "--output",
        output,
        "--group",
        f"{topics.prefix}{name}-peer",
        "--partitions",
        str(partitions),
        "--expect",
        str(total),
        "--result",
        str(result),
        "--state-dir",
        str(workdir / "state"),
    ]
    started = time.time()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    process = start_process(name, argv, env, workdir / "log")
    try:
        deadline = time.monotonic() + timeout_s
        while not result.exists():
            process.check()
            process.sample()
            if time.monotonic() > deadline:
                msg = f"peer {name} did not finish in {timeout_s:.0f} s; log {process.log}"
                raise TimeoutError(msg)
            time.sleep(0.25)
        process.sample()
    finally:
        stop_processes([process])
    report = json.loads(result.read_text())
    steady = max(report["done"] - report["first"], 1e-9)
    return {
        "records": report["records"],
        "startup_s": round(report["first"] - started, 2),
        "steady_s": round(steady, 2),
        "per_s": round(report["records"] / steady),
        "hourly_records_so_far": report["outputs_so_far"],
        "cpu_us_per_reading": round(report["cpu_s"] / max(report["records"], 1) * 1e6),
        "process": process.summary(),
    }


# ---------------------------------------------------------------- the step alone


class _DictStates(dict[str, bytes]):
    def load(self, key: str) -> bytes | None:
        return self.get(key)


def in_process(records: Sequence[Any], batch: int = 2000) -> dict[str, Any]:
    """The air-quality step alone (no Kafka), then the worker's metric updates for the same
    batches: the cost of the processing itself."""
    pipeline = AirQualityPipeline(Topics(), HourlyWindows(600_000))
    states = _DictStates()
    source = [SourceRecord("raw", 0, i, r.key, r.value) for i, r in enumerate(records)]
    started = time.perf_counter()
    outputs = 0
    batches = []
    for start in range(0, len(source), batch):
        chunk = source[start : start + batch]
        result = pipeline.process(chunk, states)
        states.update((u.station_id, u.data) for u in result.state_updates)
        outputs += len(result.outputs)
        batches.append((chunk, result))
    elapsed = time.perf_counter() - started
    recording = []
    for _ in range(3):  # WorkerMetrics.record_batch alone, on a fresh registry, best of 3
        recorder = WorkerMetrics.of(CollectorRegistry())
        began = time.perf_counter()
        for chunk, result in batches:
            now = time.monotonic()
            recorder.record_batch(chunk, result, [now] * len(chunk), now, 0.0)
        recording.append(time.perf_counter() - began)
    return {
        "records": len(records),
        "seconds": round(elapsed, 2),
        "per_s": round(len(records) / elapsed),
        "us_per_record": round(elapsed / len(records) * 1e6, 1),
        "outputs": outputs,
        "metrics_us_per_record": round(min(recording) / len(records) * 1e6, 2),
    }
