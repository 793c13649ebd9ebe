"""`python -m bench` (or `make bench ARGS=...`): every performance figure, one run.

On a broker of the run's own (or `--bootstrap`), in this order:

1. throughput — the raw topic is filled once with a fixed input (Beijing, 12 stations,
   `--days`), then read from the start by: a bare aiokafka consume → produce loop (the
   baseline); civicstream's worker + sink into SQLite (done when every output is stored);
   the same hourly-mean + AQI job with Faust (naive) and with Quix Streams (bench/peers);
   and the air-quality step alone, in process (bench/throughput.py);
2. latency — event-to-store p50/p95/p99 of civicstream at fractions of the rate just
   measured (bench/latency.py);
3. stations — 100, 10,000, 100,000 stations: throughput, state bytes per station and
   pollutant (the changelog's snapshots), worker RSS per station (bench/scaling.py);
4. workers — 1 and 2 worker processes on 2 partitions (bench/scaling.py);
5. profile — py-spy on a worker under load: top functions (bench/profile.py).

Writes bench/results/<time>.{json,md,png} (+ -profile.txt, -profile.folded) and ends
with the line `pipeline/baseline = X`: civicstream's readings/s over the baseline's.
`--quick` is a short run of everything (about 3 minutes); `--only` picks sections.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import latency, plot, profile, report, scaling, throughput
from bench.harness import (
    RESULTS,
    SCRAPE_INTERVAL_S,
    SECURITY,
    broker_pid,
    machine,
    start_broker,
)
from civicstream.settings import Settings
from schemas import Topics
from streams.admin import ensure_topics
from streams.time import LocalDays

SECTIONS = ("throughput", "latency", "stations", "workers", "profile")
DESCRIPTIONS = {
    "beijing": "Beijing, 12 stations × 6 pollutants, hourly, {days} days",
    "simulate": "simulated, 100 stations × 6 pollutants, one event minute per round",
}


def _csv(kind: type) -> Any:
    return lambda text: [kind(item) for item in text.split(",") if item.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="a short run of every section")
    parser.add_argument(
        "--only", type=_csv(str), default=list(SECTIONS), help=f"sections [{','.join(SECTIONS)}]"
    )
    parser.add_argument(
        "--bootstrap",
        default=os.environ.get("CIVIC_BENCH_BOOTSTRAP"),
        help="use this broker instead of starting one (quick iteration only)",
    )
    parser.add_argument("--workload", choices=("beijing", "simulate"), default="beijing")
    parser.add_argument("--days", type=int, help="Beijing days [90; quick 7]")
    parser.add_argument("--simulate", type=int, help="simulated readings [100000; quick 20000]")
    parser.add_argument("--partitions", type=int, default=4, help="throughput and latency [4]")
    parser.add_argument(
        "--peers",
        type=_csv(str),
        default=["faust", "faust-floor", "quix"],
        help="[faust,faust-floor,quix]",
    )
    parser.add_argument(
        "--metrics",
        choices=["on", "off", "both"],
        default="on",
        help="civicstream with metrics (served, scraped every second), without, or both "
        "alternately in the throughput section [on]",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="throughput runs of the baseline and of civicstream; the median of each [3]",
    )
    parser.add_argument(
        "--scrape-interval",
        type=float,
        default=SCRAPE_INTERVAL_S,
        help="seconds between scrapes of each process's /metrics, as deploy/prometheus "
        f"does [{SCRAPE_INTERVAL_S:g}]",
    )
    parser.add_argument(
        "--max-rate", type=float, help="latency: the max sustained rate (default: measured)"
    )
    parser.add_argument(
        "--fractions", type=_csv(float), default=[0.25, 0.5], help="latency: of max [0.25,0.5]"
    )
    parser.add_argument("--latency-seconds", type=float, help="per offered rate [30; quick 10]")
    parser.add_argument(
        "--stations", type=_csv(int), help="station counts [100,10000,100000; quick 100,1000,10000]"
    )
    parser.add_argument(
        "--station-readings",
        type=int,
        help="readings per station count, at least one round [60000; quick 12000]",
    )
    parser.add_argument(
        "--station-budget",
        type=float,
        help="seconds a station count may run; past it the rate so far is reported as "
        "incomplete [240; quick 60]",
    )
    parser.add_argument(
        "--worker-readings", type=int, help="readings per workers run [360000; quick 15000]"
    )
    parser.add_argument(
        "--worker-stations",
        type=int,
        default=1000,
        help="simulated stations of the workers runs; with few, their keys split unevenly "
        "over the 2 partitions and cap what a second worker can add [1000]",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {
        "days": 7 if quick else 90,
        "simulate": 20_000 if quick else 100_000,
        "latency_seconds": 10 if quick else 30,
        "stations": [100, 1000, 10_000] if quick else [100, 10_000, 100_000],
        "station_readings": 12_000 if quick else 60_000,
        "station_budget": 60 if quick else 240,
        "worker_readings": 15_000 if quick else 360_000,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    unknown = set(args.only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {','.join(SECTIONS)}")
    return args


def _step(title: str) -> float:
    print(f"\n== {title}", flush=True)
    return time.perf_counter()


def run_throughput(args: argparse.Namespace, bootstrap: str, workroot: Path) -> dict[str, Any]:
    records = throughput.workload(args.workload, args.days, args.simulate)
    topics = Topics(f"bench-throughput-{int(time.time())}.")
    ensure_topics(
        bootstrap,
        [*topics.all(), f"{topics.prefix}baseline-out"],
        args.partitions,
        security=SECURITY,
    )
    loaded = throughput.load(bootstrap, topics.raw_air_quality, records)
    total = loaded["records"]
    print(f"{total:,} readings loaded at {loaded['per_s']:,}/s (kafka-python producer)")
    # As many baseline runs as civicstream runs, the median of each: a single run of
    # either moved by a tenth between runs on the shared 2-core machine.
    bases = []
    for run in range(args.repeat):
        bases.append(throughput.baseline(bootstrap, topics, total, run))
        print(f"  baseline aiokafka consume → produce: {bases[-1]['per_s']:,}/s", flush=True)
    base = sorted(bases, key=lambda b: b["per_s"])[len(bases) // 2]
    variants = {"on": [True], "off": [False], "both": [True, False]}[args.metrics]
    runs = []
    for index in range(args.repeat):
        for metrics in variants:
            run_topics = topics
            if runs:  # a repeat: the same readings in a namespace of its own
                run_topics = Topics(f"{topics.prefix}r{index}{'m' if metrics else 'n'}-")
                ensure_topics(bootstrap, run_topics.all(), args.partitions, security=SECURITY)
                throughput.load(bootstrap, run_topics.raw_air_quality, records)
            workdir = workroot / f"civicstream-{index}-{'on' if metrics else 'off'}"
            run = throughput.civicstream(
                bootstrap,
                run_topics,
                total,
                workdir,
                args.partitions,
                metrics=metrics,
                scrape_interval=args.scrape_interval,
            )
            runs.append(run)
            w, s = run["processes"]["worker"], run["processes"]["sink"]
            print(
                f"  civicstream (metrics {'on' if metrics else 'off'}) worker + sink → SQLite: "
                f"{run['per_s']:,}/s ({run['startup_s']} s start-up; worker alone "
                f"{run['worker_per_s']:,}/s); peak RSS {w['peak_rss_mib']:.0f} / "
                f"{s['peak_rss_mib']:.0f} MiB; rows {run['store_rows']}",
                flush=True,
            )
    peers: dict[str, Any] = {}
    for name in args.peers:
        result = throughput.peer(
            name, bootstrap, topics, total, workroot / f"peer-{name}", args.partitions
        )
        peers[name] = result
        if "skipped" in result:
            print(f"  {report.PEER_LABELS.get(name, name)}: skipped ({result['skipped']})")
        else:
            print(
                f"  {report.PEER_LABELS.get(name, name)}: {result['per_s']:,}/s "
                f"({result['startup_s']} s start-up)",
                flush=True,
            )
    pure = throughput.in_process(records)
    print(f"  air-quality step alone (no Kafka): {pure['per_s']:,}/s")
    description = DESCRIPTIONS[args.workload].format(days=args.days)
    return {
        "workload": {"name": args.workload, "description": description, "records": total},
        "partitions": args.partitions,
        "produce_per_s": loaded["per_s"],
        "baseline": base,
        "baseline_runs_per_s": [b["per_s"] for b in bases],
        "civicstream": runs,
        "peers": peers,
        "in_process": pure,
        "_records": records,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.perf_counter()
    stamp = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    results: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]),
        "quick": args.quick,
        "scrape_interval_s": args.scrape_interval if args.metrics != "off" else None,
        "machine": machine(),
    }
    workroot = Path(tempfile.mkdtemp(prefix="civicstream-bench-"))
    broker = start_broker(args.bootstrap, workroot)
    results["machine"]["kafka"] = broker.kafka_version
    lateness_ms = Settings().allowed_lateness_ms
    records: list[Any] = []
    try:
        if "throughput" in args.only:
            _step("throughput")
            section = run_throughput(args, broker.bootstrap, workroot)
            records = section.pop("_records")
            results["throughput"] = section
        if "latency" in args.only:
            max_rate = args.max_rate or report.civicstream_rate(results)
            if max_rate is None:
                print("latency: skipped (no throughput measured; give --max-rate)")
            else:
                fractions = ", ".join(f"{f:.0%}" for f in args.fractions)
                _step(f"latency at {fractions} of {max_rate:,.0f}/s")
                section = latency.run(
                    broker.bootstrap,
                    workroot / "latency",
                    args.partitions,
                    max_rate,
                    fractions=args.fractions,
                    seconds=args.latency_seconds,
                    warmup_s=3 if args.quick else 5,
                    lateness_ms=lateness_ms,
                    metrics=args.metrics != "off",
                    scrape_interval=args.scrape_interval,
                )
                results["latency"] = section
                for phase in section["phases"]:
                    p = phase["latency_s"]
                    print(
                        f"  {phase['name']} ({phase['offered_per_s']:,}/s offered, "
                        f"{phase['rows']:,} rows): p50 {p['p50']} s, p95 {p['p95']} s, "
                        f"p99 {p['p99']} s, max {p['max']} s"
                    )
        if "stations" in args.only:
            _step(f"stations {', '.join(f'{n:,}' for n in args.stations)}")
            runs = [
                scaling.stations_run(
                    broker.bootstrap,
                    workroot / f"stations-{n}",
                    n,
                    args.station_readings,
                    args.partitions,
                    metrics=args.metrics != "off",
                    budget_s=args.station_budget,
                    scrape_interval=args.scrape_interval,
                )
                for n in args.stations
            ]
            runs = scaling.with_rss_growth(runs)
            days = LocalDays(Settings.from_env().city().standard_offset_ms)
            steady = scaling.steady_state(hours=48 if args.quick else 120, days=days)
            results["scaling"] = {"stations": runs, "steady_state": steady}
            for run in runs:
                if not run["complete"]:
                    print(
                        f"  {run['stations']:,} stations: INCOMPLETE, {run['processed']:,} of "
                        f"{run['readings']:,} readings processed in {args.station_budget:g} s"
                    )
                print(
                    f"  {run['stations']:,} stations: {run['per_s']:,}/s, state "
                    f"{run['bytes_per_station_pollutant']:,} B per station × pollutant, worker "
                    f"RSS {run['worker_final_rss_mib']:.0f} MiB "
                    f"({run.get('rss_growth_kib_per_station')} KiB per extra station)"
                )
            print(
                f"  steady state ({steady['hours']} h): {steady['bytes_per_station_pollutant']:,}"
                f" B per station × pollutant (peak {steady['peak_bytes_per_station_pollutant']:,})"
            )
        if "workers" in args.only:
            _step("workers: 1 and 2 on 2 partitions")
            runs = []
            for count in (1, 2):
                run = scaling.workers_run(
                    broker.bootstrap,
                    workroot / f"workers-{count}",
                    count,
                    args.worker_readings,
                    stations=args.worker_stations,
                    metrics=args.metrics != "off",
                    broker_pid=broker_pid(broker),
                    scrape_interval=args.scrape_interval,
                )
                runs.append(run)
                print(
                    f"  {count} worker(s): {run['per_s']:,}/s; machine {run['machine_cores_busy']}"
                    f" cores busy; partitions {run['records_per_partition']}",
                    flush=True,
                )
            results["workers"] = {
                "runs": runs,
                "ratio": round(runs[1]["per_s"] / runs[0]["per_s"], 2),
            }
            print(f"  2 workers / 1 worker = {results['workers']['ratio']:.2f}")
        if "profile" in args.only:
            _step("profile: py-spy on a worker")
            if not records:
                records = throughput.workload(args.workload, args.days, args.simulate)
            prof = profile.run(
                broker.bootstrap,
                workroot / "profile",
                records,
                args.partitions,
                metrics=args.metrics != "off",
                scrape_interval=args.scrape_interval,
            )
            results["profile"] = prof
            if "self" in prof:
                print(profile.render(prof))
            else:
                print(f"  skipped: {prof['skipped']}")
    finally:
        broker.stop()
        if broker.handle is not None:  # the broker's log dir: hundreds of MB, not needed
            shutil.rmtree(workroot / "kafka", ignore_errors=True)
    results["machine"]["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    results["seconds"] = round(time.perf_counter() - began)
    results["max_rss_mib_bench_process"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    base = RESULTS / stamp
    written = [base.with_suffix(".json"), base.with_suffix(".md")]
    base.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    base.with_suffix(".md").write_text(report.render(results))
    if plot.draw(results, base.with_suffix(".png")):
        written.append(base.with_suffix(".png"))
    else:
        print("no plot: matplotlib is not installed (pip install -e '.[bench]')")
    prof = results.get("profile") or {}
    if "self" in prof:
        text = RESULTS / f"{stamp}-profile.txt"
        text.write_text(profile.render(prof))
        shutil.copy(workroot / "profile" / "profile.folded", RESULTS / f"{stamp}-profile.folded")
        written += [text, RESULTS / f"{stamp}-profile.folded"]
    print("\nresults: " + ", ".join(str(p.relative_to(RESULTS.parents[1])) for p in written))
    print(f"work dir (logs): {workroot}")
    print(report.headline(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
