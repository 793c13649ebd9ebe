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
from streams.admin import end_offsets

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "incidents"
SFPD = DATA / "SFPD_Incident_Reports_2018-12.csv"
PITTSBURGH = DATA / "Pittsburgh_Fire_Incidents.csv"
CITIES = os.pathsep.join(
    str(BUNDLED_CITIES / name) for name in ("san_francisco.toml", "pittsburgh.toml")
)


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


def test_both_exports_through_a_killed_worker_give_counts_equal_to_the_files(pipeline_factory):
    """The whole SFPD and Pittsburgh files, the worker killed (SIGKILL) half-way.

    After the crash the store must still hold exactly one row per incident and counts
    equal to the files: an incident counted twice, or a state lost with the process (its
    revisions would restart below the stored ones, which the store keeps), would show.
    """
    pipeline = pipeline_factory("cities", config=CITIES).start_all()
    started = time.monotonic()
    # Each replay ends with its source's heartbeat four days after its last row: the
    # publication delay (72 h) of every incident has then passed in that source's time.
    for fmt, path in (("sfpd", SFPD), ("pittsburgh-fire", PITTSBURGH)):
        pipeline.cli("replay-file", "--format", fmt, str(path), "--advance", "4d")
    # A crash mid-stream: the worker is killed once a few thousand incidents are out.
    published = pipeline.topics.incidents_published
    deadline = time.monotonic() + 120
    while end_offsets(pipeline.bootstrap, [published])[published] < 3_000:
        assert time.monotonic() < deadline, pipeline.log("worker")
        time.sleep(0.05)
    pipeline.kill("worker")
    pipeline.start("worker")
    sent = 11_884 + 8_945 + 2
    status = pipeline.wait_until_incidents_caught_up(sent, timeout_s=300)
    elapsed = time.monotonic() - started
    print(f"\n{sent:,} incident rows replayed, processed and stored in {elapsed:.1f}s")

    # One row per incident, and per district and day the distinct incidents of the files.
    reference = reference_counts()
    incidents = pipeline.rows("incidents")
    assert len(incidents) == sum(len(ids) for ids in reference.values()) == 9_749 + 8_927
    assert {r["incident_id"] for r in incidents} == set().union(*reference.values())
    rows = pipeline.rows("incident_counts")
    totals = {(r["district"], r["day"]): r for r in rows if r["category"] == "all"}
    assert totals.keys() == reference.keys()
    for cell, ids in reference.items():
        expected = (len(ids), 0) if len(ids) >= 3 else (None, 1)  # suppressed below 3
        assert (totals[cell]["count"], totals[cell]["suppressed"]) == expected, cell
    suppressed = sum(r["suppressed"] for r in rows)
    revised = sum(r["revision"] > 1 for r in rows if r["category"] == "all")
    print(
        f"{len(rows):,} count rows, {suppressed:,} suppressed; "
        f"{revised:,} district-days revised by late reports"
    )
    # Rows without an alarm time are dead-lettered (again, if the kill came after them).
    dead = pipeline.read_topic(pipeline.topics.deadletter)
    assert {letter["reason"] for _, letter, *_ in dead} == {"missing_field"}
    assert len({letter["source_offset"] for _, letter, *_ in dead}) == 18
    assert status.raw_processed == sent
