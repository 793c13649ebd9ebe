"""The commands a user types, run as a user runs them, on the session's real broker."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from civicstream.monitoring import find_prometheus
from civicstream.sources import open_sources
from sinks.store import open_store

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / ".." / "shared" / "data" / "airquality"
INCIDENTS = ROOT / ".." / "shared" / "data" / "incidents"
HOUR = 3_600_000
LATENESS = 600_000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(bootstrap: str, prefix: str, store: Path) -> dict[str, str]:
    return dict(
        os.environ,
        CIVIC_KAFKA_BOOTSTRAP=bootstrap,
        CIVIC_TOPIC_PREFIX=prefix,
        CIVIC_STORE_URL=f"sqlite:///{store}",
        CIVIC_API_PORT=str(_free_port()),  # `run` starts `serve` too
        PYTHONPATH=str(ROOT),
    )


def _civicstream(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "civicstream", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _final_station_hours(since_ms: int, until_ms: int) -> int:
    """Independent count: station-hours with data whose end + lateness the station reached."""
    hours: dict[bytes, set[int]] = {}
    newest: dict[bytes, int] = {}
    for record in open_sources(sorted(DATA.glob("PRSA_Data_*.csv")), None, since_ms, until_ms):
        hours.setdefault(record.key, set()).add(record.ts_ms - record.ts_ms % HOUR)
        newest[record.key] = max(newest.get(record.key, 0), record.ts_ms)
    return sum(
        1
        for key, starts in hours.items()
        for start in starts
        if start + HOUR + LATENESS <= newest[key]
    )


def test_run_replays_the_beijing_data_and_says_where_the_results_are(
    kafka_bootstrap, topic_prefix, tmp_path
):
    store = tmp_path / "store.db"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "civicstream",
            "run",
            "--exit-when-done",
            "--until",
            "2013-03-02T09:00:00+08:00",  # the 08:00 readings close March 1st (07:00 + 10 min)
            "--data-dir",
            str(DATA),
            "--incident-dir",
            str(INCIDENTS),
        ],
        cwd=tmp_path,
        env=_env(kafka_bootstrap, str(topic_prefix), store),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "replaying 12 Beijing stations" in result.stderr
    assert "replaying SFPD_Incident_Reports_2018-12.csv" in result.stderr
    assert "Where the open data is" in result.stderr
    assert "12 daily AQI rows (station × local day)" in result.stderr
    assert "/metrics" in result.stderr
    if find_prometheus():
        assert "• Prometheus at http://127.0.0.1:" in result.stderr
    assert "Incidents (sfpd): 11,884 rows → 9,749 incidents" in result.stderr
    assert str(store) in result.stderr
    assert "api/datasets · catalog http://localhost:" in result.stderr
    with open_store(f"sqlite:///{store}") as opened:
        assert opened.count("incidents") == 9_749
        expected = _final_station_hours(1_362_067_200_000, 1_362_153_600_000 + 9 * HOUR)
        assert opened.count("aqi_hourly") == expected
        days = opened.fetch("aqi_daily")
        assert {(row["day"], row["revision"]) for row in days} == {("2013-03-01", 0)}
        assert len(days) == 12
        assert {row["station_id"] for row in opened.fetch("aqi_hourly")} == {
            path.name.split("_")[2].lower() for path in DATA.glob("PRSA_Data_*.csv")
        }
    assert (tmp_path / "data" / "logs" / "worker.log").exists()


def test_replay_file_sends_json_lines_byte_for_byte(kafka_bootstrap, topic_prefix, tmp_path):
    lines = [
        json.dumps(
            {
                "station_id": "a",
                "pollutant": "pm25",
                "value": 5,
                "unit": "ug/m3",
                "ts": "2026-01-01T00:00:00Z",
            }
        ).encode(),
        b"{not a reading",
    ]
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    result = subprocess.run(
        [sys.executable, "-m", "civicstream", "replay-file", str(path), "--format", "json"],
        env=_env(kafka_bootstrap, str(topic_prefix), tmp_path / "s.db"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "sent 2 readings" in result.stdout

    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        f"{topic_prefix}civic.raw.air-quality",
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    received = {(m.key, m.value) for m in consumer}
    consumer.close()
    assert received == {(b"a", lines[0]), (None, lines[1])}

    tailed = subprocess.run(
        [sys.executable, "-m", "civicstream", "tail", "raw", "-n", "5"],
        env=_env(kafka_bootstrap, str(topic_prefix), tmp_path / "s.db"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert tailed.returncode == 0, tailed.stderr
    values = [json.loads(line)["value"] for line in tailed.stdout.splitlines()]
    assert sorted(map(str, values)) == sorted([str(json.loads(lines[0])), "{not a reading"])


def _processes_with(marker: str) -> list[int]:
    """PIDs whose environment contains `marker` (the test's unique topic prefix)."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker.encode() in environ.read_bytes():
                found.append(int(environ.parent.name))
        except OSError:
            continue
    return found


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_ctrl_c_stops_everything_run_started(kafka_bootstrap, topic_prefix, tmp_path):
    """Even when `run` was started in the background by a script (`run &`), which leaves it
    SIGINT ignored."""
    marker = f"CIVIC_TOPIC_PREFIX={topic_prefix}"
    run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "civicstream",
            "run",
            "--until",
            "2013-03-01T06:00:00+08:00",
            "--data-dir",
            str(DATA),
            "--incidents",
            "none",
        ],
        cwd=tmp_path,
        env=_env(kafka_bootstrap, str(topic_prefix), tmp_path / "store.db"),
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        preexec_fn=_ignore_sigint,
    )
    try:
        seen = []
        for line in run.stderr:
            seen.append(line)
            if "Ctrl-C stops everything" in line:
                break
        assert any("stays live" in line for line in seen), "".join(seen)
        # run, worker, sink, serve, and Prometheus scraping them when it is installed
        assert len(_processes_with(marker)) == (5 if find_prometheus() else 4)
        run.send_signal(signal.SIGINT)
        assert run.wait(timeout=60) == 0
    finally:
        if run.poll() is None:
            run.kill()
    assert _processes_with(marker) == []
