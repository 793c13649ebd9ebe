"""Hostile input through the real worker: the fuzz is dead-lettered, the real results stand.

A seeded mix of hostile messages (tests/fuzz/stream.py: random bytes, truncated and
oversized messages, deeply nested JSON, wrong types, NaN/inf, unicode tricks, timestamps
from year 1, 9999 and years ahead of the station's or source's stream time) is sent between
real readings and real SFPD incident rows. The worker keeps running, every hostile message
reaches the dead-letter topic exactly once with its original bytes, and every dataset
equals a clean run's. `make fuzz-long` runs the same with 100,000 hostile messages.
"""

from __future__ import annotations

import os

import pytest

from civicstream.settings import BUNDLED_CITIES
from tests.fuzz.stream import fuzzed_run
from tests.integration.test_pipeline import beijing_days

pytestmark = pytest.mark.integration

CITIES = os.pathsep.join(
    str(BUNDLED_CITIES / name) for name in ("beijing.toml", "san_francisco.toml")
)


def sfpd_rows(days: int) -> list[tuple[bytes | None, bytes]]:
    from civicstream.settings import bundled_incident_source
    from schemas.raw_incident import heartbeat_to_json
    from tests.chaos.harness import ADVANCE_MS, DAY_MS, SFPD, SFPD_START_MS, read_incidents

    source = bundled_incident_source("sfpd")
    assert source is not None
    rows = list(
        read_incidents(
            [SFPD], source.name, source.timezone, SFPD_START_MS, SFPD_START_MS + days * DAY_MS
        )
    )
    heartbeat = max(r.ts_ms for r in rows) + ADVANCE_MS
    return [(r.key, r.value) for r in rows] + [(None, heartbeat_to_json(source.name, heartbeat))]


def test_fuzz_between_real_readings_and_incidents_is_dead_lettered_and_changes_no_result(
    pipeline_factory,
):
    clean = pipeline_factory("clean", partitions=2, config=CITIES).start_all()
    fuzzed = pipeline_factory("fuzzed", partitions=2, config=CITIES).start_all()
    report = fuzzed_run(
        clean, fuzzed, beijing_days(2), sfpd_rows(2), hostile_count=1500, seed=20261127
    )
    print(report.summary())
    assert report.readings.exact, report.readings
    assert report.incidents.exact, report.incidents
    assert report.readings.reasons["too_large"] == 2
    assert report.readings.reasons["invalid_timestamp"] > 0  # year 1, 9999 and years ahead
    assert report.incidents.reasons["invalid_timestamp"] > 0
    assert report.differences == 0
    assert report.rows["aqi_hourly"] > 100 and report.rows["incidents"] > 100
