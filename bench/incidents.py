"""`python -m bench.incidents`: throughput of the incident path on the two real exports.

1. The incident step alone (no Kafka), on the SFPD and the Pittsburgh file: rows per second
   of wall time and of CPU time (the CPU figure does not depend on what else the machine
   runs).
2. End to end on a real broker: both files (20,831 rows) sent to the raw incidents topic
   first, then a worker and a sink started; rows per second from the worker's first
   processed row until the store holds everything, and the CPU seconds the two processes
   used. Also: the late corrections of the SFPD replay and the suppressed cells.

Results go to stdout and bench/results/incidents-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from civicstream.localbroker import load_local_kafka
from civicstream.produce import produce
from civicstream.settings import BUNDLED_CITIES, Settings
from civicstream.sources.base import SourceRecord as FileRecord
from civicstream.sources.incidents import read_pittsburgh_fire, read_sfpd
from civicstream.status import incident_status
from schemas import Topics
from schemas.raw_incident import heartbeat_to_json
from sinks.store import open_store
from streams.admin import ensure_topics
from streams.air_quality import SourceRecord
from streams.incidents import IncidentPipeline

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data" / "incidents"
CITIES = os.pathsep.join(
    str(BUNDLED_CITIES / name) for name in ("san_francisco.toml", "pittsburgh.toml")
)
FOUR_DAYS_MS = 4 * 86_400_000


def _rows() -> dict[str, list[FileRecord]]:
    """Each export in report order, then its source's heartbeat four days later."""
    rows = {
        "sfpd": read_sfpd(DATA / "SFPD_Incident_Reports_2018-12.csv"),
        "pittsburgh-fire": read_pittsburgh_fire(DATA / "Pittsburgh_Fire_Incidents.csv"),
    }
    for source, records in rows.items():
        last = max(r.ts_ms for r in records) + FOUR_DAYS_MS
        records.append(FileRecord(last, None, heartbeat_to_json(source, last)))
    return rows


class _Memory(dict[str, bytes]):
    def load(self, key: str) -> bytes | None:
        return self.get(key)


def in_process(records: list[FileRecord], batch: int = 2000) -> dict[str, Any]:
    pipeline = IncidentPipeline(
        Topics(), Settings.from_env({"CIVIC_CONFIG": CITIES}).incident_sources()
    )
    state = _Memory()
    source = [SourceRecord("raw", 0, n, r.key, r.value) for n, r in enumerate(records)]
    totals = {"outputs": 0, "published": 0, "stats_rows": 0, "corrections": 0}
    wall, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(source), batch):
        result = pipeline.process(source[start : start + batch], state)
        for update in result.state_updates:
            if update.data is None:
                state.pop(update.key, None)
            else:
                state[update.key] = update.data
        totals["outputs"] += len(result.outputs)
        for name in ("published", "stats_rows", "corrections"):
            totals[name] += getattr(result, name)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "rows": len(records),
        "per_s_wall": round(len(records) / wall),
        "per_s_cpu": round(len(records) / cpu),
        **totals,
    }


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def end_to_end(bootstrap: str, records: list[FileRecord], workdir: Path) -> dict[str, Any]:
    topics = Topics(f"bench-incidents-{int(time.time())}.")
    ensure_topics(bootstrap, topics.all(), 4)
    loaded = produce(records, bootstrap=bootstrap, topic=topics.raw_incidents)
    env = dict(
        os.environ,
        CIVIC_KAFKA_BOOTSTRAP=bootstrap,
        CIVIC_TOPIC_PREFIX=topics.prefix,
        CIVIC_STORE_URL=f"sqlite:///{workdir / 'store.db'}",
        CIVIC_CONFIG=CITIES,
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
    try:
        while True:
            for name, process in processes.items():
                if process.poll() is not None:
                    log = (workdir / f"{name}.log").read_text()[-2000:]
                    raise RuntimeError(f"{name} died: {log}")
            status = incident_status(bootstrap, topics)
            if first is None and status.raw_processed > 0:
                first = time.perf_counter()
            if status.caught_up and status.raw_processed >= loaded.records:
                break
            time.sleep(0.2)
        done = time.perf_counter()
        cpu = {name: round(_cpu_seconds(p.pid), 1) for name, p in processes.items()}
    finally:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            process.wait(timeout=30)
    first = first or done
    with open_store(f"sqlite:///{workdir / 'store.db'}") as store:
        counts = store.fetch("incident_counts")
        incidents = store.count("incidents")
    return {
        "rows": loaded.records,
        "startup_s": round(first - started, 1),
        "steady_s": round(done - first, 1),
        "per_s": round(loaded.records / max(done - first, 1e-9)),
        "cpu_s": cpu,
        "incidents": incidents,
        "count_rows": len(counts),
        "suppressed": sum(r["suppressed"] for r in counts),
        "spikes": sum(r["spike"] for r in counts),
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.incidents", description=__doc__)
    parser.add_argument(
        "--bootstrap",
        default=os.environ.get("CIVIC_BENCH_BOOTSTRAP"),
        help="use this broker instead of starting one",
    )
    args = parser.parse_args()
    load = os.getloadavg()[0]
    rows = _rows()
    results: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load": load},
        "in_process": {source: in_process(records) for source, records in rows.items()},
    }
    for source, result in results["in_process"].items():
        print(
            f"{source}: incident step alone {result['per_s_wall']:,} rows/s "
            f"({result['per_s_cpu']:,}/s of CPU); {result['published']:,} incident records, "
            f"{result['stats_rows']:,} count rows, {result['corrections']:,} late corrections"
        )
    workroot = Path(tempfile.mkdtemp(prefix="civicstream-bench-incidents-"))
    broker = None
    try:
        if args.bootstrap:
            bootstrap = args.bootstrap
        else:
            local = load_local_kafka()
            broker = local.start(workroot / "kafka", local.free_port(), local.free_port())
            bootstrap = broker.bootstrap
        ours = end_to_end(bootstrap, [*rows["sfpd"], *rows["pittsburgh-fire"]], workroot)
    finally:
        if broker is not None:
            broker.stop()
    results["end_to_end"] = ours
    print(
        f"both files, raw → worker → sink → SQLite: {ours['per_s']:,} rows/s after "
        f"{ours['startup_s']}s start-up; CPU seconds {ours['cpu_s']}; "
        f"{ours['count_rows']:,} count rows, {ours['suppressed']:,} suppressed, "
        f"{ours['spikes']} spikes (load average {load:.1f} on {os.cpu_count()} CPUs)"
    )
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    path = out / f"incidents-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
