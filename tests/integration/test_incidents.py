"""End to end on the real broker: the SFPD and Pittsburgh exports in, open data out.

The reference counts are computed here straight from the CSV files (not through the
project's readers): distinct incident ids per district and local day.
"""

from __future__ import annotations

import csv
import os
import time
from collections import defaultdict
from pathlib import Path

import pytest

from civicstream.settings import BUNDLED_CITIES
from civicstream.sources.incidents import read_pittsburgh_fire, read_sfpd
from schemas.raw_incident import heartbeat_to_json

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "incidents"
SFPD = DATA / "SFPD_Incident_Reports_2018-12.csv"
PITTSBURGH = DATA / "Pittsburgh_Fire_Incidents.csv"
FOUR_DAYS_MS = 4 * 86_400_000


def reference_counts() -> dict[tuple[str, str], set[str]]:
    """Distinct incident ids per (district, local day), read directly from the CSVs."""
    incidents: dict[tuple[str, str], set[str]] = defaultdict(set)
    with SFPD.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            day = row["Incident Date"].replace("/", "-")  # already the San Francisco day
            incidents[(row["Police District"], day)].add(row["Incident ID"])
    with PITTSBURGH.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if not row["alarm_time"]:
                continue  # no time, no day: dead-lettered
            number = row["council_district"]
            district = f"Council District {number}" if number else "unknown"
            incidents[(district, row["alarm_time"][:10])].add(row["call_no"])
    return incidents


def test_both_exports_give_one_row_per_incident_and_counts_equal_to_the_files(
    pipeline_factory,
):
    config = os.pathsep.join(
        str(BUNDLED_CITIES / name) for name in ("san_francisco.toml", "pittsburgh.toml")
    )
    pipeline = pipeline_factory("cities", config=config).start_all()
    sfpd, pittsburgh = read_sfpd(SFPD), read_pittsburgh_fire(PITTSBURGH)
    # Both sources heartbeat four days after their last row: the publication delay of
    # every incident (72 h) has then passed in each source's own stream time.
    messages = [(r.key, r.value) for r in (*sfpd, *pittsburgh)]
    messages += [
        (None, heartbeat_to_json("sfpd", max(r.ts_ms for r in sfpd) + FOUR_DAYS_MS)),
        (
            None,
            heartbeat_to_json("pittsburgh-fire", max(r.ts_ms for r in pittsburgh) + FOUR_DAYS_MS),
        ),
    ]
    started = time.monotonic()
    sent = pipeline.send_incidents(messages)
    status = pipeline.wait_until_incidents_caught_up(sent, timeout_s=180)
    elapsed = time.monotonic() - started
    rate = sent / elapsed
    print(f"\n{sent:,} incident rows through worker and sink in {elapsed:.1f}s ({rate:,.0f}/s)")

    reference = reference_counts()
    incidents = pipeline.rows("incidents")
    assert len(incidents) == sum(len(ids) for ids in reference.values()) == 9_749 + 8_927
    assert {r["incident_id"] for r in incidents} == set().union(*reference.values())

    counts = {
        (r["district"], r["day"]): r
        for r in pipeline.rows("incident_counts")
        if r["category"] == "all"
    }
    assert counts.keys() == reference.keys()
    for cell, ids in reference.items():
        row = counts[cell]
        if len(ids) >= 3:
            assert (row["count"], row["suppressed"]) == (len(ids), 0), cell
        else:
            assert (row["count"], row["suppressed"]) == (None, 1), cell
    suppressed = sum(1 for r in pipeline.rows("incident_counts") if r["suppressed"])
    print(f"{len(counts):,} district-days, {suppressed:,} suppressed cells")

    dead = pipeline.read_topic(pipeline.topics.deadletter)
    assert [letter["reason"] for _, letter, *_ in dead] == ["missing_field"] * 18
    assert status.published_written >= len(incidents)
