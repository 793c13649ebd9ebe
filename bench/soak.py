"""`python -m bench.soak --minutes 30 --rate R` (or `make soak`): a sustained load, measured.

Synthetic stations (civicstream simulate's readings: 100 stations, 6 pollutants, a minute
of event time per round) go to the raw topic at a steady `--rate` records/s for
`--minutes`, through the real worker and sink (SQLite store) on a broker of the run's own.
Every `--sample-seconds` the run records the worker's consumer lag (raw records not yet
committed by the worker), the sink's lag (output records not yet stored) and the resident
memory (RSS) of the worker and the sink. At the end it waits for the pipeline to drain and
accounts for every raw record: a row in `readings` or a dead letter. Results go to
bench/results/soak-<time>.{json,md,png} (the plot needs matplotlib: the `bench` extra).

`--measure-max` instead fills the raw topic first and measures how many records/s the
worker and sink get through once started (the ceiling to choose a sustainable rate below).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kafka import KafkaProducer

from civicstream.localbroker import load_local_kafka
from civicstream.simulate import simulate_readings
from kafkaconf import KafkaSecurity
from schemas import Topics, decode
from sinks.store import open_store
from streams.admin import committed_offsets, end_offsets, ensure_topics

SECURITY = KafkaSecurity.from_env()  # the same settings the workers get (CIVIC_KAFKA_*)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
START_MS = 1_767_225_600_000  # 2026-01-01T00:00Z
STATIONS = 100
STORED = ("enriched_air_quality", "aqi_hourly", "aqi_daily")


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Pipeline:
    """A worker and a sink for one namespace, logs and store in `workdir`."""

    def __init__(self, bootstrap: str, workdir: Path, partitions: int) -> None:
        self.bootstrap = bootstrap
        self.workdir = workdir
        self.topics = Topics("soak.")
        self.partitions = partitions
        self.store_url = f"sqlite:///{workdir / 'store.db'}"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.exits: list[str] = []
        ensure_topics(bootstrap, self.topics.all(), partitions, security=SECURITY)

    def start(self) -> None:
        for name in ("worker", "sink"):
            self._start(name)

    def _start(self, name: str) -> None:
        env = dict(
            os.environ,
            CIVIC_KAFKA_BOOTSTRAP=self.bootstrap,
            CIVIC_TOPIC_PREFIX=self.topics.prefix,
            CIVIC_PARTITIONS=str(self.partitions),
            CIVIC_STORE_URL=self.store_url,
            PYTHONPATH=str(ROOT),
        )
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "civicstream", name],
            env=env,
            stdout=(self.workdir / f"{name}.log").open("ab"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def check_alive(self) -> None:
        """Restart a process that exited, as a supervisor would (Compose's restart policy),
        and record it: the soak reports every such exit (its log stays in the work dir)."""
        for name, process in list(self.processes.items()):
            if process.poll() is not None:
                print(f"! {name} exited with {process.returncode}; restarting it", flush=True)
                self.exits.append(f"{name} exited with {process.returncode}")
                self._start(name)

    def stop(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()

    def sample(self) -> dict[str, Any]:
        """Offsets and memory now: lags in records, RSS in MiB."""
        stored = [getattr(self.topics, name) for name in STORED]
        raw = self.topics.raw_air_quality
        ends = end_offsets(
            self.bootstrap, [raw, *stored, self.topics.deadletter], security=SECURITY
        )
        worker = committed_offsets(self.bootstrap, self.topics.worker_group, security=SECURITY)
        sink = committed_offsets(self.bootstrap, self.topics.sink_group, security=SECURITY)
        return {
            "raw": ends[raw],
            "worker_committed": worker.get(raw, 0),
            "worker_lag": ends[raw] - worker.get(raw, 0),
            "outputs": sum(ends[t] for t in stored),
            "sink_committed": sum(sink.get(t, 0) for t in stored),
            "sink_lag": sum(ends[t] - sink.get(t, 0) for t in stored),
            "dead_letters": ends[self.topics.deadletter],
            "rss_mib": {n: round(rss_mib(p.pid), 1) for n, p in self.processes.items()},
        }


class Producer(threading.Thread):
    """Sends synthetic readings at a steady rate (records/s) until `stop` or `count`."""

    def __init__(self, bootstrap: str, topic: str, rate: float, count: int) -> None:
        super().__init__(name="soak-producer", daemon=True)
        self.bootstrap = bootstrap
        self.topic = topic
        self.rate = rate
        self.count = count
        self.sent = 0
        self.last_ts_ms = 0
        self.readings: Any = None  # default: simulate_readings(STATIONS, count, START_MS)
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        producer = KafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            linger_ms=20,
            batch_size=256 * 1024,
            **SECURITY.kafka_python(),
        )
        readings = self.readings or simulate_readings(STATIONS, self.count, START_MS)
        started = time.monotonic()
        try:
            for record in readings:
                self.last_ts_ms = max(self.last_ts_ms, record.ts_ms)
                if self.stop.is_set():
                    break
                if self.rate > 0 and self.sent % 100 == 0:
                    due = started + self.sent / self.rate
                    wait = due - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)
                producer.send(self.topic, key=record.key, value=record.value)
                self.sent += 1
            producer.flush()
        except BaseException as error:  # reported by the main thread
            self.error = error
        finally:
            producer.close()


def account(pipeline: Pipeline, sent: int) -> dict[str, int]:
    """Every raw record ends in one place: a stored reading or a dead letter."""
    with open_store(pipeline.store_url) as store:
        readings = store.count("readings")
        hourly = store.count("aqi_hourly")
    from kafka import KafkaConsumer
    from kafka.structs import TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=pipeline.bootstrap, enable_auto_commit=False, **SECURITY.kafka_python()
    )
    raw_letters: set[tuple[int, int]] = set()
    try:
        topic = pipeline.topics.deadletter
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            for batch in consumer.poll(timeout_ms=1000).values():
                for record in batch:
                    letter = decode(record.value)
                    if letter["source_topic"] == pipeline.topics.raw_air_quality:
                        raw_letters.add((letter["source_partition"], letter["source_offset"]))
    finally:
        consumer.close()
    return {
        "sent": sent,
        "stored_readings": readings,
        "dead_lettered": len(raw_letters),
        "unaccounted": sent - readings - len(raw_letters),
        "aqi_hourly_rows": hourly,
    }


def measure_max(pipeline: Pipeline, records: int, seconds: float) -> dict[str, Any]:
    """Fill the raw topic, start the pipeline, and take its steady rate once it runs."""
    producer = Producer(pipeline.bootstrap, pipeline.topics.raw_air_quality, 0, records)
    producer.run()
    print(f"filled the raw topic with {producer.sent:,} records", flush=True)
    pipeline.start()
    samples = []
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        pipeline.check_alive()
        samples.append((time.monotonic(), pipeline.sample()))
        if samples[-1][1]["worker_lag"] == 0 and samples[-1][1]["sink_lag"] == 0:
            break
        time.sleep(2)
    moving = [(t, s) for t, s in samples if s["worker_committed"] > 0]
    if len(moving) < 2:
        raise RuntimeError("the pipeline did not get going within the measurement")
    (t0, first), (t1, last) = moving[0], moving[-1]
    worker_rate = (last["worker_committed"] - first["worker_committed"]) / (t1 - t0)
    sink_rate = (last["sink_committed"] - first["sink_committed"]) / (t1 - t0)
    # the sink stores more records than come in (hourly and daily too): in raw records/s
    ratio = last["raw"] / max(1, last["outputs"])
    return {
        "records": producer.sent,
        "seconds": round(t1 - t0, 1),
        "worker_per_s": round(worker_rate),
        "sink_raw_equivalent_per_s": round(sink_rate * ratio),
        "max_per_s": round(min(worker_rate, sink_rate * ratio)),
    }


def soak(pipeline: Pipeline, rate: float, minutes: float, every: float) -> dict[str, Any]:
    pipeline.start()
    producer = Producer(
        pipeline.bootstrap, pipeline.topics.raw_air_quality, rate, int(rate * minutes * 60)
    )
    samples: list[dict[str, Any]] = []
    began = time.monotonic()
    producer.start()
    try:
        while producer.is_alive():
            pipeline.check_alive()
            sample = pipeline.sample()
            sample["t"] = round(time.monotonic() - began, 1)
            sample["sent"] = producer.sent
            samples.append(sample)
            if len(samples) % 12 == 1:
                print(
                    f"{sample['t']:7.0f}s sent {sample['sent']:,} worker lag "
                    f"{sample['worker_lag']:,} sink lag {sample['sink_lag']:,} rss "
                    f"{sample['rss_mib']}",
                    flush=True,
                )
            time.sleep(every)
        if producer.error is not None:
            raise producer.error
        produced_s = time.monotonic() - began
        # The newest hour of every station is still open (not final, not yet stored): one
        # reading per station and pollutant two hours later closes it. These closing
        # readings stay open themselves and are not part of the accounting.
        closing = Producer(pipeline.bootstrap, pipeline.topics.raw_air_quality, 0, 0)
        closing.readings = simulate_readings(
            STATIONS, STATIONS * 6, producer.last_ts_ms + 2 * 3_600_000, seed=1
        )
        closing.count = STATIONS * 6
        closing.run()
        total = producer.sent + closing.sent
        drained = time.monotonic()
        while True:  # drain: everything sent is processed and stored
            pipeline.check_alive()
            sample = pipeline.sample()
            if sample["raw"] >= total and not sample["worker_lag"] + sample["sink_lag"]:
                break
            time.sleep(1)
        drain_s = time.monotonic() - drained
    finally:
        producer.stop.set()
    return {
        "rate_target_per_s": rate,
        "sent": producer.sent,
        "produce_seconds": round(produced_s, 1),
        "rate_achieved_per_s": round(producer.sent / produced_s),
        "drain_seconds_after": round(drain_s, 1),
        "samples": samples,
    }


def summarise(run: dict[str, Any]) -> dict[str, Any]:
    samples = run["samples"]
    steady = [s for s in samples if s["t"] >= 60] or samples  # after start-up
    tail = samples[-max(1, len(samples) // 10) :]
    head = steady[: max(1, len(steady) // 10)]

    def rss(rows: list[dict[str, Any]], name: str) -> float:
        return round(statistics.median(r["rss_mib"][name] for r in rows), 1)

    return {
        "max_worker_lag": max(s["worker_lag"] for s in samples),
        "max_sink_lag": max(s["sink_lag"] for s in samples),
        "max_worker_lag_seconds": round(
            max(s["worker_lag"] for s in samples) / run["rate_target_per_s"], 1
        ),
        "p95_worker_lag": sorted(s["worker_lag"] for s in samples)[int(0.95 * (len(samples) - 1))],
        "rss_mib": {
            name: {
                "start": rss(head, name),
                "end": rss(tail, name),
                "max": max(s["rss_mib"][name] for s in samples),
            }
            for name in ("worker", "sink")
        },
    }


def plot(run: dict[str, Any], path: Path, title: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no matplotlib (pip install -e '.[bench]'): no plot", file=sys.stderr)
        return False
    samples = run["samples"]
    minutes = [s["t"] / 60 for s in samples]
    figure, (lag, memory) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    lag.plot(minutes, [s["worker_lag"] for s in samples], label="worker lag (raw records)")
    lag.plot(minutes, [s["sink_lag"] for s in samples], label="sink lag (output records)")
    lag.set_ylabel("records behind")
    lag.legend(loc="upper right")
    lag.grid(alpha=0.3)
    for name in ("worker", "sink"):
        memory.plot(minutes, [s["rss_mib"][name] for s in samples], label=f"{name} RSS")
    memory.set_ylabel("MiB")
    memory.set_ylim(bottom=0)
    memory.set_xlabel("minutes")
    memory.legend(loc="lower right")
    memory.grid(alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return True


def markdown(result: dict[str, Any]) -> str:
    s = result["summary"]
    a = result["accounting"]
    rss = s["rss_mib"]
    return "\n".join(
        [
            f"# Soak run {result['when']}",
            "",
            f"- machine: {result['machine']['cpus']} cores (shared), Python "
            f"{result['machine']['python']}; {result['partitions']} partitions, SQLite store",
            f"- rate: {result['rate_target_per_s']:,.0f} records/s target, "
            f"{result['rate_achieved_per_s']:,} achieved, for {result['produce_seconds'] / 60:.1f}"
            f" min ({a['sent']:,} records); drained {result['drain_seconds_after']} s after",
            f"- max worker lag: {s['max_worker_lag']:,} records "
            f"(~{s['max_worker_lag_seconds']} s of input), p95 {s['p95_worker_lag']:,}; "
            f"max sink lag: {s['max_sink_lag']:,} records",
            f"- worker RSS: {rss['worker']['start']} MiB after start-up → "
            f"{rss['worker']['end']} MiB at the end (max {rss['worker']['max']})",
            f"- sink RSS: {rss['sink']['start']} MiB → {rss['sink']['end']} MiB "
            f"(max {rss['sink']['max']})",
            f"- processes that exited (restarted as a supervisor would): "
            f"{len(result['exits_restarted'])} {result['exits_restarted'] or ''}",
            f"- accounted for: {a['stored_readings']:,} stored readings + "
            f"{a['dead_lettered']:,} dead letters of {a['sent']:,} sent; "
            f"unaccounted {a['unaccounted']}",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--minutes", type=float, default=30.0, help="[%(default)s]")
    parser.add_argument("--rate", type=float, default=1000.0, help="records/s [%(default)s]")
    parser.add_argument("--partitions", type=int, default=4, help="[%(default)s]")
    parser.add_argument("--sample-seconds", type=float, default=5.0, help="[%(default)s]")
    parser.add_argument(
        "--measure-max", action="store_true", help="measure the ceiling instead of soaking"
    )
    parser.add_argument(
        "--max-records", type=int, default=200_000, help="--measure-max: records [%(default)s]"
    )
    parser.add_argument("--bootstrap", help="use this broker instead of starting one")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (broker, store)")
    args = parser.parse_args(argv)
    # SIGTERM stops the run like Ctrl-C: the worker, the sink and the broker are stopped
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))

    workdir = Path(tempfile.mkdtemp(prefix="civicstream-soak-"))
    broker = None
    if args.bootstrap:
        bootstrap = args.bootstrap
    else:
        local = load_local_kafka()
        broker = local.start(workdir / "kafka", *local.free_ports(2))
        bootstrap = broker.bootstrap
    print(f"broker {bootstrap}; work dir {workdir}", flush=True)
    pipeline = Pipeline(bootstrap, workdir, args.partitions)
    when = datetime.now(tz=UTC)
    stamp = when.strftime("%Y-%m-%dT%H%M%S")
    RESULTS.mkdir(parents=True, exist_ok=True)
    machine = {"cpus": os.cpu_count(), "python": platform.python_version()}
    try:
        if args.measure_max:
            result = {"when": when.isoformat(timespec="seconds"), "machine": machine}
            result |= measure_max(pipeline, args.max_records, 240)
            path = RESULTS / f"soak-max-{stamp}.json"
            path.write_text(json.dumps(result, indent=1) + "\n")
            print(json.dumps(result, indent=1))
            return 0
        run = soak(pipeline, args.rate, args.minutes, args.sample_seconds)
        result = {
            "when": when.isoformat(timespec="seconds"),
            "machine": machine,
            "partitions": args.partitions,
            **{k: v for k, v in run.items() if k != "samples"},
            "summary": summarise(run),
            "accounting": account(pipeline, run["sent"]),
            "exits_restarted": pipeline.exits,
            "samples": run["samples"],
        }
    finally:
        pipeline.stop()
        if broker is not None:
            broker.stop()
        if not args.keep and not pipeline.exits and sys.exc_info()[0] is None:
            shutil.rmtree(workdir, ignore_errors=True)  # kept after an exit or an error
    base = RESULTS / f"soak-{stamp}"
    base.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    base.with_suffix(".md").write_text(markdown(result))
    title = f"civicstream soak: {args.rate:,.0f} records/s for {args.minutes:g} min"
    plotted = plot(run, base.with_suffix(".png"), title)
    print(markdown(result))
    print(f"results: {base}.json, .md" + (", .png" if plotted else ""))
    return 0 if result["accounting"]["unaccounted"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
