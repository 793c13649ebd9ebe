"""`civicstream serve` as a user runs it: a real process, a real port, Ctrl-C to stop."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from sinks.store import open_store
from tests.unit.test_cli import ROOT, civicstream
from tests.unit.test_store import aqi


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_json(url: str, process: subprocess.Popen[str], timeout: float = 30) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.loads(response.read())
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {timeout}s")


@pytest.mark.parametrize("how", ["flag", "env"])
def test_serve_answers_on_its_port_and_stops_on_ctrl_c(tmp_path: Path, how: str) -> None:
    store_url = f"sqlite:///{tmp_path}/served.db"
    with open_store(store_url) as store:
        store.write_batch({"aqi_hourly": [aqi("dongsi", 1)]})
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT), CIVIC_STORE_URL=store_url)
    argv = [sys.executable, "-m", "civicstream", "serve"]
    if how == "flag":
        argv += ["--port", str(port), "--host", "127.0.0.1"]
    else:
        env["CIVIC_API_PORT"] = str(port)
    process = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        now = wait_for_json(f"http://127.0.0.1:{port}/api/air-quality/now", process)
        assert [s["station_id"] for s in now["stations"]] == ["dongsi"]  # type: ignore[index]
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert f"http://localhost:{port}/" in stderr
    assert "Traceback" not in stderr


def test_serve_says_when_the_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = civicstream(
            "serve", "--port", str(port), CIVIC_STORE_URL=f"sqlite:///{tmp_path}/s.db"
        )
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_serve_says_when_the_store_cannot_be_opened() -> None:
    result = civicstream(
        "serve", "--port", "0", CIVIC_STORE_URL="postgresql://civic@127.0.0.1:1/civic"
    )
    assert result.returncode == 2
    assert "cannot open PostgreSQL store" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_has_help_and_a_bad_port_setting_is_named() -> None:
    assert "CIVIC_API_PORT" in civicstream("serve", "--help").stdout + civicstream("--help").stdout
    result = civicstream("serve", CIVIC_API_PORT="eighty")
    assert result.returncode == 2
    assert "CIVIC_API_PORT" in result.stderr
