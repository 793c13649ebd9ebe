"""`python -m bench` (or `make bench`): end-to-end throughput beside an aiokafka baseline.

For each workload the raw topic is filled first, then the clock runs while
  * the baseline — a plain aiokafka consume → produce loop, no processing — copies it, and
  * civicstream — the Faust worker, then the sink into SQLite — processes it,
both on the same broker in the same run. Start-up (process start, group join, table
recovery) is reported apart from the steady rate. A pure, in-process run of the
air-quality step (no Kafka) shows the cost of the processing itself.
`--metrics off` runs the worker and the sink without metrics; `--metrics both` runs
civicstream with and without them, alternately, `--repeat` times (the overhead of metrics);
with metrics on, /metrics of both processes is scraped every second meanwhile.
Results go to stdout and bench/results/<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client import CollectorRegistry

from civicstream.localbroker import load_local_kafka
from civicstream.produce import produce
from civicstream.simulate import simulate_readings
from civicstream.sources import open_sources
from civicstream.status import pipeline_status
from kafkaconf import KafkaSecurity
from schemas import Topics
from sinks.store import open_store
from streams.admin import ensure_topics
from streams.air_quality import AirQualityPipeline, SourceRecord
from streams.metrics import WorkerMetrics
from streams.time import HourlyWindows

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data" / "airquality"
BEIJING_START_MS = 1_362_067_200_000  # 2013-03-01 00:00 Beijing


def workload(name: str, days: int, count: int) -> list:
    if name == "beijing":
        files = sorted(DATA.glob("PRSA_Data_*.csv"))
        until = BEIJING_START_MS + days * 86_400_000
        return list(open_sources(files, None, BEIJING_START_MS, until))
    return list(simulate_readings(stations=100, count=count, start_ms=1_767_225_600_000))


async def _baseline(bootstrap: str, source: str, target: str, total: int) -> dict:
    security = KafkaSecurity.from_env()  # the same settings the worker and sink get
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=f"{source}-baseline",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **security.aiokafka(),
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, **security.aiokafka()
    )
    started = time.perf_counter()
    await consumer.start()
    await producer.start()
    first = None
    seen = 0
    try:
        while seen < total:
            batches = await consumer.getmany(timeout_ms=500, max_records=2000)
            for records in batches.values():
                if first is None:
                    first = time.perf_counter()
                for record in records:
                    await producer.send(target, key=record.key, value=record.value)
                seen += len(records)
            await producer.flush()
            await consumer.commit()
    finally:
        await producer.stop()
        await consumer.stop()
    done = time.perf_counter()
    return {
        "records": seen,
        "startup_s": round(first - started, 2),
        "steady_s": round(done - first, 2),
        "per_s": round(seen / (done - first)),
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _scrape_every_second(ports: list[int], stop: threading.Event) -> None:
    """What a Prometheus with a 1 s scrape interval asks of the processes."""
    while not stop.wait(1.0):
        for port in ports:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    r.read()
            except OSError:
                pass  # not serving yet


def _civicstream(
    bootstrap: str, topics: Topics, total: int, workdir: Path, partitions: int, metrics: bool
):
    ports = [_free_port(), _free_port()] if metrics else [0, 0]
    env = dict(
        os.environ,
        CIVIC_KAFKA_BOOTSTRAP=bootstrap,
        CIVIC_TOPIC_PREFIX=topics.prefix,
        CIVIC_PARTITIONS=str(partitions),
        CIVIC_STORE_URL=f"sqlite:///{workdir / 'store.db'}",
        CIVIC_METRICS_PORT=str(ports[0]),
        CIVIC_SINK_METRICS_PORT=str(ports[1]),
        PYTHONPATH=str(ROOT),
    )
    scraping = threading.Event()
    if metrics:
        threading.Thread(target=_scrape_every_second, args=(ports, scraping), daemon=True).start()
    started = time.perf_counter()
    processes = {
        name: subprocess.Popen(
            [sys.executable, "-m", "civicstream", name],
            env=env,
            stdout=(workdir / f"{name}.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        for name in ("worker", "sink")
    }
    first = None
    worker_done = None
    peak_rss = {}
    try:
        while True:
            for name, process in processes.items():
                if process.poll() is not None:
                    raise RuntimeError(
                        f"{name} died: {(workdir / f'{name}.log').read_text()[-2000:]}"
                    )
                peak_rss[name] = max(peak_rss.get(name, 0), _rss_kib(process.pid))
            status = pipeline_status(bootstrap, topics)
            if first is None and status.raw_processed > 0:
                first = time.perf_counter()
            if worker_done is None and status.raw_processed >= total:
                worker_done = time.perf_counter()
            if status.caught_up and status.raw_processed >= total:
                break
            time.sleep(0.2)
        done = time.perf_counter()
    finally:
        scraping.set()
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            process.wait(timeout=30)
    first = first or done
    with open_store(f"sqlite:///{workdir / 'store.db'}") as store:
        rows = {"aqi_hourly": store.count("aqi_hourly"), "readings": store.count("readings")}
    return {
        "metrics": metrics,
        "records": total,
        "startup_s": round(first - started, 2),
        "steady_s": round(done - first, 2),
        "per_s": round(total / max(done - first, 1e-9)),
        "end_to_end_per_s": round(total / (done - started)),
        "worker_per_s": round(total / max((worker_done or done) - first, 1e-9)),
        "store_rows": rows,
        "peak_rss_mib": {k: round(v / 1024) for k, v in peak_rss.items()},
    }


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class _DictStates(dict):
    def load(self, key):
        return self.get(key)


def _in_process(records: list, batch: int = 2000) -> dict:
    """The air-quality step alone, then the worker's metric updates for the same batches."""
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
        "outputs": outputs,
        "metrics_us_per_record": round(min(recording) / len(records) * 1e6, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--days", type=int, default=14, help="Beijing days (12 stations) [14]")
    parser.add_argument("--simulate", type=int, default=100_000, help="synthetic readings [100000]")
    parser.add_argument("--partitions", type=int, default=4, help="[4]")
    parser.add_argument(
        "--metrics",
        choices=["on", "off", "both"],
        default="on",
        help="run civicstream with metrics (served and scraped every second), without, or "
        "both alternately [on]",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="civicstream runs per metrics setting [1]"
    )
    parser.add_argument(
        "--workloads", default="beijing,simulate", help="comma-separated [beijing,simulate]"
    )
    parser.add_argument(
        "--bootstrap",
        default=os.environ.get("CIVIC_BENCH_BOOTSTRAP"),
        help="use this broker instead of starting one",
    )
    args = parser.parse_args()

    broker = None
    workroot = Path(tempfile.mkdtemp(prefix="civicstream-bench-"))
    if args.bootstrap:
        bootstrap = args.bootstrap
    else:
        local = load_local_kafka()
        started = time.perf_counter()
        broker = local.start(workroot / "kafka", local.free_port(), local.free_port())
        bootstrap = broker.bootstrap
        print(f"broker started in {time.perf_counter() - started:.1f}s at {bootstrap}")
    results: dict = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "metrics": args.metrics,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "partitions": args.partitions,
        "workloads": {},
    }
    try:
        variants = {"on": [True], "off": [False], "both": [True, False]}[args.metrics]
        for name in args.workloads.split(","):
            records = workload(name, args.days, args.simulate)
            runs = []
            baseline = None
            for run in range(args.repeat):
                for metrics in variants:
                    tag = f"bench-{name}-{run}{'m' if metrics else 'n'}-{int(time.time())}."
                    topics = Topics(tag)
                    ensure_topics(bootstrap, [*topics.all(), f"{tag}baseline-out"], args.partitions)
                    loaded = produce(records, bootstrap=bootstrap, topic=topics.raw_air_quality)
                    if baseline is None:
                        print(
                            f"\n{name}: {loaded.records:,} readings loaded at "
                            f"{loaded.per_second:,.0f}/s (kafka-python producer)"
                        )
                        baseline = asyncio.run(
                            _baseline(
                                bootstrap,
                                topics.raw_air_quality,
                                f"{tag}baseline-out",
                                loaded.records,
                            )
                        )
                        print(f"  baseline aiokafka consume→produce: {baseline['per_s']:,}/s")
                    workdir = workroot / tag.rstrip(".")
                    workdir.mkdir()
                    ours = _civicstream(
                        bootstrap, topics, loaded.records, workdir, args.partitions, metrics
                    )
                    runs.append(ours)
                    print(
                        f"  civicstream (metrics {'on' if metrics else 'off'}) raw → worker → "
                        f"sink → SQLite: {ours['per_s']:,}/s steady, "
                        f"{ours['end_to_end_per_s']:,}/s incl. {ours['startup_s']}s start-up "
                        f"(worker alone {ours['worker_per_s']:,}/s); "
                        f"peak RSS {ours['peak_rss_mib']} MiB; rows {ours['store_rows']}"
                    )
            pure = _in_process(records)
            print(f"  air-quality step alone (no Kafka): {pure['per_s']:,}/s")
            print(
                f"  worker metric updates (record_batch) alone: "
                f"{pure['metrics_us_per_record']:.2f} µs per record, beside "
                f"{pure['seconds'] / pure['records'] * 1e6:.0f} µs for the step"
            )
            results["workloads"][name] = {
                "produce_per_s": round(loaded.per_second),
                "baseline": baseline,
                "civicstream": runs[0] if len(runs) == 1 else runs,
                "in_process": pure,
            }
            if args.metrics == "both":
                rates = {
                    flag: sorted(r["worker_per_s"] for r in runs if r["metrics"] == flag)
                    for flag in (True, False)
                }
                medians = {flag: values[len(values) // 2] for flag, values in rates.items()}
                overhead = 1 - medians[True] / medians[False]
                results["workloads"][name]["metrics_overhead"] = {
                    "worker_per_s_on": rates[True],
                    "worker_per_s_off": rates[False],
                    "overhead_of_median": round(overhead, 3),
                }
                print(
                    f"  metrics overhead (worker throughput, median of {args.repeat}): "
                    f"{overhead:.1%} ({medians[False]:,}/s off → {medians[True]:,}/s on)"
                )
    finally:
        if broker is not None:
            broker.stop()
    results["max_rss_mib_bench_process"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    path = out / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
