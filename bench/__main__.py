"""`python -m bench` (or `make bench`): end-to-end throughput beside an aiokafka baseline.

For each workload the raw topic is filled first, then the clock runs while
  * the baseline — a plain aiokafka consume → produce loop, no processing — copies it, and
  * civicstream — the Faust worker, then the sink into SQLite — processes it,
both on the same broker in the same run. Start-up (process start, group join, table
recovery) is reported apart from the steady rate. A pure, in-process run of the
air-quality step (no Kafka) shows the cost of the processing itself.
Results go to stdout and bench/results/<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from civicstream.localbroker import load_local_kafka
from civicstream.produce import produce
from civicstream.simulate import simulate_readings
from civicstream.sources import open_sources
from civicstream.status import pipeline_status
from schemas import Topics
from sinks.store import open_store
from streams.admin import ensure_topics
from streams.air_quality import AirQualityPipeline, SourceRecord
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
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=f"{source}-baseline",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
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


def _civicstream(bootstrap: str, topics: Topics, total: int, workdir: Path, partitions: int):
    env = dict(
        os.environ,
        CIVIC_KAFKA_BOOTSTRAP=bootstrap,
        CIVIC_TOPIC_PREFIX=topics.prefix,
        CIVIC_PARTITIONS=str(partitions),
        CIVIC_STORE_URL=f"sqlite:///{workdir / 'store.db'}",
        PYTHONPATH=str(ROOT),
    )
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
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            process.wait(timeout=30)
    first = first or done
    with open_store(f"sqlite:///{workdir / 'store.db'}") as store:
        rows = {"aqi_hourly": store.count("aqi_hourly"), "readings": store.count("readings")}
    return {
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
    pipeline = AirQualityPipeline(Topics(), HourlyWindows(600_000))
    states = _DictStates()
    source = [SourceRecord("raw", 0, i, r.key, r.value) for i, r in enumerate(records)]
    started = time.perf_counter()
    outputs = 0
    for start in range(0, len(source), batch):
        result = pipeline.process(source[start : start + batch], states)
        states.update((u.station_id, u.data) for u in result.state_updates)
        outputs += len(result.outputs)
    elapsed = time.perf_counter() - started
    return {
        "records": len(records),
        "seconds": round(elapsed, 2),
        "per_s": round(len(records) / elapsed),
        "outputs": outputs,
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
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "partitions": args.partitions,
        "workloads": {},
    }
    try:
        for name, records in (
            ("beijing", workload("beijing", args.days, 0)),
            ("simulate", workload("simulate", 0, args.simulate)),
        ):
            tag = f"bench-{name}-{int(time.time())}."
            topics = Topics(tag)
            ensure_topics(bootstrap, [*topics.all(), f"{tag}baseline-out"], args.partitions)
            loaded = produce(records, bootstrap=bootstrap, topic=topics.raw_air_quality)
            print(
                f"\n{name}: {loaded.records:,} readings loaded at {loaded.per_second:,.0f}/s "
                "(kafka-python producer)"
            )
            baseline = asyncio.run(
                _baseline(bootstrap, topics.raw_air_quality, f"{tag}baseline-out", loaded.records)
            )
            print(f"  baseline aiokafka consume→produce: {baseline['per_s']:,}/s")
            workdir = workroot / name
            workdir.mkdir()
            ours = _civicstream(bootstrap, topics, loaded.records, workdir, args.partitions)
            print(
                f"  civicstream raw → worker → sink → SQLite: {ours['per_s']:,}/s steady, "
                f"{ours['end_to_end_per_s']:,}/s incl. {ours['startup_s']}s start-up "
                f"(worker alone {ours['worker_per_s']:,}/s); "
                f"peak RSS {ours['peak_rss_mib']} MiB; rows {ours['store_rows']}"
            )
            pure = _in_process(records)
            print(f"  air-quality step alone (no Kafka): {pure['per_s']:,}/s")
            results["workloads"][name] = {
                "produce_per_s": round(loaded.per_second),
                "baseline": baseline,
                "civicstream": ours,
                "in_process": pure,
            }
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
