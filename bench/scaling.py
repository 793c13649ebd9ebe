"""Scaling: many stations (throughput, state per station and pollutant, memory), and one
against two worker processes on two partitions.

Stations: for each count, simulated stations (6 pollutants, one event hour per round) go
through the worker and the sink, `readings` in total but at least one round (every
station reports every pollutant once). After the run the station-state changelog is read
back: the newest snapshot of each station (what the worker stores, streams/station.py
`snapshot()`), its size averaged over stations and divided by the 6 pollutants. The
worker's RSS after the run, against the smallest count's, gives RSS growth per station.
A snapshot grows with the hours a station has seen until pruning bounds it (24 hourly
means, plus the days that may still be corrected), so the steady-state size is measured
too: in-process, `steady_hours` hours of readings for a few stations.

Workers: the raw topic has 2 partitions; 1 then 2 worker processes (no sink: the worker
stage alone) join the group on an empty topic, the readings are produced, and the rate is
raw records committed per second. The machine's CPU use over the same interval shows
whether the cores, not the workers, are the limit.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from bench import throughput
from bench.harness import (
    SCRAPE_INTERVAL_S,
    SECURITY,
    Civicstream,
    CpuMeter,
    Offsets,
    cpu_seconds,
    own_cpu_seconds,
    read_topic,
)
from civicstream.simulate import simulate_readings
from schemas import Topics
from streams.admin import ensure_topics
from streams.air_quality import AirQualityPipeline, SourceRecord
from streams.time import HourlyWindows, LocalDays

HOUR_MS = 3_600_000
START_MS = 1_767_225_600_000  # 2026-01-01 00:00Z
POLLUTANTS = 6
_PROGRESS_PREFIX = b"\x00"  # the state table's progress keys (streams.air_quality)


def state_sizes(bootstrap: str, topics: Topics) -> dict[str, Any]:
    """The newest snapshot per station in the worker's changelog: count and sizes."""
    changelog = f"{topics.worker_group}-station-state-changelog"
    newest: dict[bytes, int] = {}
    for record in read_topic(bootstrap, changelog):
        if record.key is None or record.key.startswith(_PROGRESS_PREFIX):
            continue
        if record.value is None:
            newest.pop(record.key, None)
        else:
            newest[record.key] = len(record.value)
    sizes = list(newest.values())
    mean = statistics.fmean(sizes) if sizes else 0.0
    return {
        "stations_in_changelog": len(sizes),
        "snapshot_bytes_mean": round(mean),
        "snapshot_bytes_max": max(sizes, default=0),
        "bytes_per_station_pollutant": round(mean / POLLUTANTS),
    }


def stations_run(
    bootstrap: str,
    workdir: Path,
    stations: int,
    readings: int,
    partitions: int,
    *,
    metrics: bool,
    budget_s: float | None = None,
    scrape_interval: float = SCRAPE_INTERVAL_S,
) -> dict[str, Any]:
    rounds = max(1, readings // (stations * POLLUTANTS))
    count = rounds * stations * POLLUTANTS
    topics = Topics(f"bench-stations-{stations}-{int(time.time())}.")
    ensure_topics(bootstrap, topics.all(), partitions, security=SECURITY)
    records = list(simulate_readings(stations, count, START_MS, step_ms=HOUR_MS))
    loaded = throughput.load(bootstrap, topics.raw_air_quality, records)
    del records
    print(
        f"  {stations:,} stations: {count:,} readings ({rounds} per station and pollutant) "
        f"loaded at {loaded['per_s']:,}/s",
        flush=True,
    )
    run = throughput.civicstream(
        bootstrap,
        topics,
        count,
        workdir,
        partitions,
        metrics=metrics,
        budget_s=budget_s,
        scrape_interval=scrape_interval,
    )
    sizes = state_sizes(bootstrap, topics)
    worker = run["processes"]["worker"]
    return {
        "stations": stations,
        "readings": count,
        "readings_per_station_pollutant": rounds,
        "complete": run["complete"],
        "processed": run["processed"],
        "per_s": run["per_s"],
        "worker_per_s": run["worker_per_s"],
        "startup_s": run["startup_s"],
        "steady_s": run["steady_s"],
        "worker_scrape_max_s": worker.get("scrape_max_s"),
        "worker_scrape_max_kib": worker.get("scrape_max_kib"),
        "rows_stored": run["store_rows"],
        "worker_final_rss_mib": worker["final_rss_mib"],
        "worker_peak_rss_mib": worker["peak_rss_mib"],
        **sizes,
    }


def with_rss_growth(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each run's worker RSS growth per station over the smallest run's (KiB)."""
    if not runs:
        return runs
    smallest = min(runs, key=lambda run: run["stations"])
    for run in runs:
        extra = run["stations"] - smallest["stations"]
        grown = (run["worker_final_rss_mib"] - smallest["worker_final_rss_mib"]) * 1024
        run["rss_growth_kib_per_station"] = round(grown / extra, 2) if extra > 0 else None
    return runs


class _DictStates(dict[str, bytes]):
    def load(self, key: str) -> bytes | None:
        return self.get(key)


def steady_state(
    stations: int = 20, hours: int = 96, days: LocalDays | None = None
) -> dict[str, Any]:
    """Snapshot size once pruning bounds it: `hours` hourly rounds for `stations`, in
    process (the same encoding the worker stores; `days`: the city's, as the worker's)."""
    pipeline = AirQualityPipeline(Topics(), HourlyWindows(600_000), days=days)
    states = _DictStates()
    records = simulate_readings(stations, stations * POLLUTANTS * hours, START_MS, step_ms=HOUR_MS)
    source = [SourceRecord("raw", 0, i, r.key, r.value) for i, r in enumerate(records)]
    sizes_by_hour = []
    batch = stations * POLLUTANTS
    for start in range(0, len(source), batch):
        result = pipeline.process(source[start : start + batch], states)
        states.update((u.station_id, u.data) for u in result.state_updates)
        sizes = [len(v) for k, v in states.items() if not k.startswith("\x00")]
        sizes_by_hour.append(statistics.fmean(sizes))
    mean = sizes_by_hour[-1]
    return {
        "stations": stations,
        "hours": hours,
        "snapshot_bytes_mean": round(mean),
        "snapshot_bytes_peak": round(max(sizes_by_hour)),
        "bytes_per_station_pollutant": round(mean / POLLUTANTS),
        "peak_bytes_per_station_pollutant": round(max(sizes_by_hour) / POLLUTANTS),
        "bytes_after_hours": {
            str(h): round(sizes_by_hour[h - 1] / POLLUTANTS)
            for h in (1, 6, 24, 48, 72, hours)
            if h <= len(sizes_by_hour)
        },
    }


def workers_run(
    bootstrap: str,
    workdir: Path,
    workers: int,
    readings: int,
    *,
    partitions: int = 2,
    stations: int = 100,
    metrics: bool,
    broker_pid: int | None = None,
    scrape_interval: float = SCRAPE_INTERVAL_S,
) -> dict[str, Any]:
    """`workers` worker processes on `partitions` partitions: raw records committed/s."""
    topics = Topics(f"bench-workers-{workers}-{int(time.time())}.")
    ensure_topics(bootstrap, topics.all(), partitions, security=SECURITY)
    pipeline = Civicstream(
        bootstrap, topics, workdir, partitions, metrics=metrics, scrape_interval=scrape_interval
    )
    offsets = Offsets(bootstrap)
    records = list(simulate_readings(stations, readings, START_MS, step_ms=HOUR_MS))
    pipeline.start(workers=workers, sink=False)
    try:
        joined = offsets.wait_for_group(topics.worker_group, workers)
        produced = throughput.load(bootstrap, topics.raw_air_quality, records)
        total = produced["records"]
        first = None
        began = time.perf_counter()
        while True:
            pipeline.watch()
            processed = pipeline.progress(offsets)["processed"]
            now = time.perf_counter()
            if first is None and processed > 0:
                first, at_first = now, pipeline.done_before(processed)
                cpu_at_first = {name: item.cpu_s for name, item in pipeline.processes.items()}
                broker_at_first = _cpu(broker_pid)
                bench_at_first = own_cpu_seconds()
                meter = CpuMeter()
            if processed >= total:
                break
            if now - began > 600:
                raise TimeoutError(f"{workers} worker(s) did not finish in 600 s")
            time.sleep(0.25)
        done = time.perf_counter()
        pipeline.watch()
        machine_cpu = meter.read()
        bench_cores = (own_cpu_seconds() - bench_at_first) / (done - first)
        broker_cores = (_cpu(broker_pid) - broker_at_first) / (done - first) if broker_pid else None
        per_partition = offsets.end_by_partition(topics.raw_air_quality)
    finally:
        processes = pipeline.stop()
        offsets.close()
    steady = max(done - first, 1e-9)
    worker_cores = {
        name: round((pipeline.processes[name].cpu_s - cpu_at_first[name]) / steady, 2)
        for name in processes
    }
    return {
        "workers": workers,
        "partitions": partitions,
        "readings": total,
        "records_per_partition": {str(p): n for p, n in sorted(per_partition.items())},
        "join_s": round(joined, 1),
        "steady_s": round(steady, 2),
        "per_s": round((total - at_first) / steady),  # after the first commit seen
        "produce_per_s": produced["per_s"],
        "machine_cores_busy": machine_cpu["cores_busy"],
        "worker_cores_busy": worker_cores,
        "broker_cores_busy": None if broker_cores is None else round(broker_cores, 2),
        "bench_cores_busy": round(bench_cores, 2),
        "other_cores_busy": round(
            machine_cpu["cores_busy"]
            - sum(worker_cores.values())
            - bench_cores
            - (broker_cores or 0.0),
            2,
        ),
        "processes": processes,
    }


def _cpu(pid: int | None) -> float:
    return cpu_seconds(pid) if pid else 0.0
