"""The sink publishing to a CKAN portal, as a process, against a real broker.

The portal is a real HTTP server speaking CKAN's DataStore Action API (tests/ckan_portal.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import tests.integration.test_sink as sink_tests
from tests.ckan_portal import Portal, running_portal
from tests.integration.test_sink import (
    ROOT,
    Env,
    aqi,
    committed,
    expected_rows,
    send_records,
    wait_for,
)

pytestmark = pytest.mark.integration

env = sink_tests.env  # the fixture: topics of a fresh namespace on the real broker

TOKEN = "portal-token-0451"


def start_ckan_sink(env: Env, url: str, group: str, log: Path) -> subprocess.Popen[bytes]:
    child_env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "CIVIC_KAFKA_BOOTSTRAP": env.bootstrap,
        "CIVIC_TOPIC_PREFIX": env.topics.prefix,
        "CIVIC_CKAN_TOKEN": TOKEN,
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "civicstream",
                "sink",
                "--ckan-url",
                url,
                "--ckan-resource",
                "aqi_hourly=res-aqi",
                "--ckan-chunk-size",
                "25",
                "--group",
                group,
                "--batch-size",
                "60",
                "--log-every",
                "1",
                "--session-timeout-ms",
                "6000",
            ],
            cwd=env.tmp_path,
            env=child_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def published(portal: Portal) -> list[dict[str, Any]]:
    with portal.lock:
        table = portal.tables.get("res-aqi")
        return [] if table is None else [table.rows[key] for key in sorted(table.rows)]


def test_the_ckan_sink_publishes_every_hourly_aqi_row_and_commits_only_what_ckan_took(
    env: Env,
) -> None:
    stations = [f"station-{i:02d}" for i in range(8)]
    records = [aqi(s, h, 5 * h) for s in stations for h in range(50)]
    records += [aqi("station-03", 7, 199)]  # a correction: same key, later offset
    produced = send_records(env, records, [])
    expected = expected_rows(produced.records["aqi_hourly"], [])["aqi_hourly"]
    for row in expected:
        for name in ("sub_indices", "concentrations", "hourly_means"):
            row[name] = json.loads(row[name])
    group = env.group("ckan")
    log = env.tmp_path / "ckan-sink.log"

    with running_portal(TOKEN, {"res-aqi"}) as (url, portal):
        portal.fail_next = 4  # the portal is overloaded at first: the sink retries
        sink = start_ckan_sink(env, url, group, log)
        try:

            def commits_never_run_ahead_of_ckan() -> bool:
                done = sum(committed(env, group).values())  # commits first, then rows
                rows = len(published(portal))
                # every record has a key of its own but the one correction
                assert rows >= done - 1, f"offsets committed for {done}, {rows} rows published"
                return committed(env, group) == produced.end_offsets

            wait_for(commits_never_run_ahead_of_ckan, "the CKAN sink to commit every offset")
            assert published(portal) == expected
            corrected = [r for r in published(portal) if r["station_id"] == "station-03"][7]
            assert corrected["aqi"] == 199

            # killed and restarted from the committed offsets: nothing changes
            sink.send_signal(signal.SIGKILL)
            sink.wait(timeout=30)
            sink = start_ckan_sink(env, url, group, log)
            send_records(env, [aqi("station-00", 0, 1)], [], produced)
            wait_for(
                lambda: committed(env, group) == produced.end_offsets,
                "the restarted CKAN sink to commit the new record",
            )
            rows = published(portal)
            assert len(rows) == len(expected)
            assert rows[0]["aqi"] == 1
            assert rows[1:] == expected[1:]
            sink.send_signal(signal.SIGTERM)
            assert sink.wait(timeout=30) == 0, log.read_text()
        finally:
            if sink.poll() is None:
                sink.kill()
                sink.wait()
    text = log.read_text()
    assert TOKEN not in text
    assert "retrying" in text


def test_the_ckan_sink_refuses_to_start_without_a_resource(env: Env) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "civicstream", "sink", "--ckan-url", "http://127.0.0.1:9"],
        env={**os.environ, "PYTHONPATH": str(ROOT), "CIVIC_KAFKA_BOOTSTRAP": env.bootstrap},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "needs at least one --ckan-resource" in result.stderr
