"""What a user sees before anything runs: help and clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def civicstream(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "civicstream", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT), **env),
        timeout=60,
        check=False,
    )


def test_help_lists_every_command_and_the_configuration():
    result = civicstream("--help")
    assert result.returncode == 0
    for word in (
        "run",
        "worker",
        "sink",
        "topics",
        "replay-file",
        "simulate",
        "CIVIC_KAFKA_BOOTSTRAP",
        "CIVIC_ALLOWED_LATENESS",
        "CIVIC_TOPIC_PREFIX",
    ):
        assert word in result.stdout


def test_each_command_has_its_own_help():
    for command in ("run", "worker", "sink", "topics", "replay-file", "simulate", "tail"):
        result = civicstream(command, "--help")
        assert result.returncode == 0, command
        assert "usage:" in result.stdout


def test_a_bad_setting_is_a_clear_error_not_a_traceback():
    result = civicstream("topics", CIVIC_ALLOWED_LATENESS="soon")
    assert result.returncode == 2
    assert "CIVIC_ALLOWED_LATENESS" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unreachable_broker_is_named(tmp_path):
    result = civicstream("topics", CIVIC_KAFKA_BOOTSTRAP="127.0.0.1:1")
    assert result.returncode == 3
    assert "127.0.0.1:1" in result.stderr
    assert "make kafka-up" in result.stderr


def test_replay_as_avro_re_encodes_readings_and_passes_the_rest_through():
    from civicstream.commands import _as_avro
    from civicstream.sources.base import SourceRecord
    from schemas import decode

    good = b'{"station_id":"a","pollutant":"pm25","value":1.5,"unit":"ug/m3","ts":1000}'
    out = list(_as_avro([SourceRecord(1000, b"a", good), SourceRecord(0, None, b"{broken")]))
    assert decode(out[0].value)["value"] == 1.5
    assert out[1].value == b"{broken"
