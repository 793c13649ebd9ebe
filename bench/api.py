"""`python -m bench.api` (or `make bench-api`): the open-data store and its API, measured.

On SQLite (a file, ``synchronous=FULL``) and on PostgreSQL (a local server started here
with its durable defaults: fsync on, synchronous commit), in one run:

1. **sink upserts**: rows/s of `Store.write_batch` in the sink's batch size (2,000
   records), first as new rows, then the same batches again (a re-delivery: every row an
   update); on PostgreSQL both write paths (pipelined executemany and COPY into a staging
   table), to choose `copy_threshold`;
2. **API requests/s** of ``civicstream serve`` (its own process) under a load generator on
   loopback: ``wrk`` when installed (Debian package), else a small aiohttp client; a page
   of ``records`` (100 rows, filtered and sorted) and ``/api/air-quality/now``;
3. **export MB/s**: whole-dataset downloads (CSV, JSON lines, GeoJSON) read by a
   streaming client, with the server's peak RSS (memory stays flat: rows are streamed).

Load is bounded in count and time and only ever sent to 127.0.0.1. Results go to stdout
and bench/results/api-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from civicstream.localbroker import load_local_postgres
from sinks._postgres import PostgreSQLStore
from sinks.store import open_store

ROOT = Path(__file__).resolve().parents[1]
H0 = datetime(2013, 3, 1, tzinfo=UTC)
STATIONS = [
    "aotizhongxin", "changping", "dingling", "dongsi", "guanyuan", "gucheng",
    "huairou", "nongzhanguan", "shunyi", "tiantan", "wanliu", "wanshouxigong",
]  # fmt: skip
POLLUTANTS = ("pm25", "pm10", "o3", "no2", "so2", "co")


# --- data ------------------------------------------------------------------------------------


def aqi_records(hours: int) -> Iterator[dict[str, Any]]:
    for hour in range(hours):
        for n, station in enumerate(STATIONS):
            value = 20 + (hour * 7 + n * 13) % 300
            yield {
                "station_id": station,
                "hour_start": H0 + timedelta(hours=hour),
                "aqi": value,
                "category": "Moderate",
                "main_pollutant": "pm25_nowcast",
                "sub_indices": {"pm25_nowcast": value, "o3_8h": 31, "no2_1h": 12, "co_8h": 7},
                "concentrations": {"pm25_nowcast": value / 3.1, "o3_8h": 0.031, "co_8h": 0.7},
                "hourly_means": {"pm25": value / 3.0, "o3": 0.0305, "no2": 21.5, "co": 0.71},
                "reading_count": 6,
                "reason": None,
                "aqi_version": "EPA-454/B-24-002",
            }


def reading_records(hours: int) -> Iterator[dict[str, Any]]:
    for hour in range(hours):
        start = H0 + timedelta(hours=hour)
        for n, station in enumerate(STATIONS):
            for pollutant in POLLUTANTS:
                value = 3.0 + (hour * 11 + n * 5) % 250 + 0.25
                yield {
                    "station_id": station,
                    "sensor_id": f"{station}-{pollutant}",
                    "pollutant": pollutant,
                    "ts": start,
                    "hour_start": start,
                    "value": value,
                    "unit": "ug/m3",
                    "value_epa": value,
                    "unit_epa": "ug/m3",
                    "mean_1h": value,
                    "mean_8h": value * 0.97 if hour >= 6 else None,
                    "mean_24h": value * 1.02 if hour >= 18 else None,
                    "lat": 39.9 + n / 100,
                    "lon": 116.3 + n / 100,
                    "flags": [],
                    "anomaly_score": None,
                }


def batches(records: Iterator[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    result: list[list[dict[str, Any]]] = [[]]
    for record in records:
        if len(result[-1]) == size:
            result.append([])
        result[-1].append(record)
    return result


# --- 1. upserts ------------------------------------------------------------------------------


def time_upserts(url: str, name: str, data: list[list[dict[str, Any]]], **options: Any) -> dict:
    store = PostgreSQLStore(url, **options) if options else open_store(url)
    rows = sum(len(batch) for batch in data)
    with store:
        rates = {}
        for phase in ("insert", "update"):
            started = time.perf_counter()
            for batch in data:
                store.write_batch({name: batch})
            rates[phase] = round(rows / (time.perf_counter() - started))
        assert store.count(name) == rows
    return {"rows": rows, "rows_per_s": rates}


# --- 2. requests/s ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(store_url: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    # One load generator on loopback is one client: the per-client rate limit would turn
    # the measurement into one of 429s.
    env = dict(
        os.environ, CIVIC_STORE_URL=store_url, PYTHONPATH=str(ROOT), CIVIC_API_RATE_LIMIT="off"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "civicstream", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/api/datasets", timeout=5).read()
            return process, url
        except OSError:
            time.sleep(0.1)
    process.kill()
    msg = "civicstream serve did not start"
    raise RuntimeError(msg)


def peak_rss_mib(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+) kB", text)
    return round(int(match.group(1)) / 1024, 1) if match else 0.0


def wrk(url: str, seconds: int, connections: int) -> dict:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.MULTILINE))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "tool": "wrk -t1",
        "requests_per_s": round(rate),
        "p50": latency.get("50"),
        "p99": latency.get("99"),
        "non_2xx": int(errors.group(1)) if errors else 0,
    }


async def _client_load(url: str, seconds: int, connections: int) -> dict:
    import aiohttp

    done = 0
    bad = 0
    latencies: list[float] = []
    deadline = time.monotonic() + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal done, bad
        while time.monotonic() < deadline:
            started = time.perf_counter()
            async with session.get(url) as response:
                await response.read()
                bad += response.status != 200
            latencies.append(time.perf_counter() - started)
            done += 1

    async with aiohttp.ClientSession() as session:
        started = time.monotonic()
        await asyncio.gather(*(worker(session) for _ in range(connections)))
        elapsed = time.monotonic() - started
    latencies.sort()
    return {
        "tool": "aiohttp client",
        "requests_per_s": round(done / elapsed),
        "p50": f"{latencies[len(latencies) // 2] * 1000:.2f}ms",
        "p99": f"{latencies[int(len(latencies) * 0.99)] * 1000:.2f}ms",
        "non_2xx": bad,
    }


def load(url: str, seconds: int, connections: int) -> dict:
    if shutil.which("wrk"):
        return wrk(url, seconds, connections)
    return asyncio.run(_client_load(url, seconds, connections))


def export(url: str) -> dict:
    started = time.perf_counter()
    size = 0
    with urllib.request.urlopen(url, timeout=600) as response:
        while chunk := response.read(1 << 16):
            size += len(chunk)
    elapsed = time.perf_counter() - started
    return {
        "mb": round(size / 1e6, 1),
        "seconds": round(elapsed, 2),
        "mb_per_s": round(size / 1e6 / elapsed, 1),
    }


# --- main -------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=int, default=2000, help="hours of data [%(default)s]")
    parser.add_argument("--batch", type=int, default=2000, help="records per batch [%(default)s]")
    parser.add_argument("--seconds", type=int, default=10, help="per load test [%(default)s]")
    parser.add_argument("--connections", type=int, default=16, help="[%(default)s]")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="civic-bench-api-"))
    aqi = batches(aqi_records(args.hours), args.batch)
    readings = batches(reading_records(args.hours), args.batch)
    results: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "hours": args.hours,
        "batch": args.batch,
        "upserts": {},
        "api": {},
    }
    server = load_local_postgres().start(fast=False)  # a temp dir of its own
    try:
        databases = iter(server.create_database(f"bench{n}") for n in range(100))
        urls = {"sqlite": f"sqlite:///{workdir}/bench.db", "postgresql": next(databases)}
        print(f"data: {sum(map(len, aqi)):,} aqi_hourly rows, {sum(map(len, readings)):,} readings")
        # 1. upserts
        for backend, url in urls.items():
            for name, data in (("aqi_hourly", aqi), ("readings", readings)):
                result = time_upserts(url, name, data)
                results["upserts"][f"{backend}/{name}"] = result
                print(f"upsert {backend:10s} {name:10s} {result['rows_per_s']}")
        # PostgreSQL's two write paths, by batch size (on the first 21,600 readings)
        sample = [r for batch in readings for r in batch][:21_600]
        for size in (200, 1000, 2000, 10_000):
            for path, threshold in (("executemany", 10**9), ("copy", 1)):
                result = time_upserts(
                    next(databases),
                    "readings",
                    batches(iter(sample), size),
                    copy_threshold=threshold,
                )
                results["upserts"][f"postgresql/readings/{path}/batch{size}"] = result
                print(
                    f"upsert postgresql  readings   {path:11s} batch {size:6,} "
                    f"{result['rows_per_s']}"
                )
        # 2. and 3. the API over each backend
        for backend, url in urls.items():
            process, base = start_server(url)
            try:
                api: dict[str, Any] = {}
                targets = {
                    "records": "/api/datasets/readings/records?station_id=dongsi&pollutant=pm25"
                    "&sort=-ts&limit=100",
                    "records_cursor": "/api/datasets/aqi_hourly/records?limit=100",
                    "air_quality_now": "/api/air-quality/now",
                }
                for label, path in targets.items():
                    api[label] = load(base + path, args.seconds, args.connections)
                    print(f"api    {backend:10s} {label:16s} {api[label]}")
                rss_before = peak_rss_mib(process.pid)
                for fmt in ("csv", "jsonl", "geojson"):
                    api[f"export_{fmt}"] = export(
                        f"{base}/api/datasets/readings/records?format={fmt}"
                    )
                    print(f"export {backend:10s} {fmt:16s} {api[f'export_{fmt}']}")
                api["server_peak_rss_mib"] = {
                    "before_exports": rss_before,
                    "after_exports": peak_rss_mib(process.pid),
                }
                print(f"server peak RSS MiB {api['server_peak_rss_mib']}")
                results["api"][backend] = api
            finally:
                process.send_signal(signal.SIGINT)
                process.wait(30)
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"api-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
