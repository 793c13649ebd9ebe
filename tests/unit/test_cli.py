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
    for command in ("run", "worker", "sink", "topics", "replay-file", "simulate", "tail", "export"):
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


def test_export_writes_fiware_entities_of_the_latest_hour_of_each_station(tmp_path):
    import json

    import schemas
    from sinks.store import open_store

    url = f"sqlite:///{tmp_path}/store.db"
    records = [
        {
            "station_id": station,
            "hour_start": 1_364_738_400_000 + hour * 3_600_000,  # 2013-03-31T14:00Z
            "aqi": 60 + hour,
            "category": "Moderate",
            "main_pollutant": "pm25_nowcast",
            "sub_indices": {"pm25_nowcast": 60 + hour},
            "concentrations": {"pm25_nowcast": 17.4},
            "hourly_means": {"pm25": 17.5, "o3": 0.03},
            "reading_count": 2,
            "reason": None,
        }
        for station in ("dongsi", "tiantan", "not-in-the-city-file")
        for hour in range(3)
    ]
    with open_store(url) as store:
        store.write_batch(
            {"aqi_hourly": [schemas.decode(schemas.encode("aqi_hourly", r)) for r in records]}
        )
    out = tmp_path / "fiware.json"
    result = civicstream("export", "--model", "fiware", "-o", str(out), CIVIC_STORE_URL=url)
    assert result.returncode == 0, result.stderr
    entities = json.loads(out.read_text())
    assert [e["id"] for e in entities] == [
        "urn:ngsi-ld:AirQualityObserved:dongsi:2013-03-31T16:00:00Z",
        "urn:ngsi-ld:AirQualityObserved:tiantan:2013-03-31T16:00:00Z",
    ]
    assert entities[0]["airQualityIndex"]["value"] == 62
    assert entities[0]["o3"]["unitCode"] == "59"
