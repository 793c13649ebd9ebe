"""A month of Dongsi through the real worker and sink: every daily AQI row checked against
an independent, straightforward computation of EPA's daily rules (tests/daily_reference.py:
exact rationals, its own copy of Table 6; it does not call processors.daily or .aqi).

The reference starts from the CSV, less the readings the pipeline published with a fault
flag (issue 4: faults stay out of the means): those are read back from the enriched
topic, so every reading the pipeline kept or dropped is checked, and a fault flag on the
enriched record that the daily AQI did not honour (or the other way round) fails.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from fractions import Fraction
from pathlib import Path

import pytest

from civicstream.sources import open_sources
from tests.daily_reference import COLUMNS, epa_units, expected_day

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "airquality"
DONGSI = DATA / "PRSA_Data_Dongsi_20130301-20170228.csv"
BEIJING = timezone(timedelta(hours=8))  # Asia/Shanghai: no daylight saving, standard +08:00
FIRST_DAY = date(2013, 3, 1)
DAYS = 31  # March 2013; the replay runs on to 08:00 on April 1st, when March 31st is final
FAULTS = {"out_of_range", "sentinel", "stuck", "spike"}  # issue 4's fault vocabulary


def read_dongsi() -> dict[date, dict[str, list[Fraction | None]]]:
    """Local day → pollutant → 24 hourly values (EPA units), straight from the CSV."""
    days: dict[date, dict[str, list[Fraction | None]]] = defaultdict(
        lambda: {p: [None] * 24 for p in COLUMNS.values()}
    )
    with DONGSI.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            day = date(int(row["year"]), int(row["month"]), int(row["day"]))
            if not FIRST_DAY <= day <= FIRST_DAY + timedelta(days=DAYS):
                continue
            for column, pollutant in COLUMNS.items():
                if row[column] not in ("", "NA"):
                    days[day][pollutant][int(row["hour"])] = epa_units(pollutant, row[column])
    return days


# --- the test ----------------------------------------------------------------------------


def test_a_month_of_dongsi_gives_exactly_epas_daily_aqi(pipeline_factory):
    start = datetime(2013, 3, 1, tzinfo=BEIJING)
    until = start + timedelta(days=DAYS, hours=9)  # 08:00 closes March 31st (07:00 + 10 min)
    records = open_sources(
        [DONGSI], None, int(start.timestamp() * 1000), int(until.timestamp() * 1000)
    )
    messages = [(r.key, r.value) for r in records]
    pipeline = pipeline_factory("dongsi").start_all()
    pipeline.send(messages)
    pipeline.wait_until_caught_up(len(messages))

    published = [value for _, value, *_ in pipeline.read_topic(pipeline.topics.aqi_daily)]
    rows = {row["day"]: row for row in pipeline.rows("aqi_daily")}
    days = read_dongsi()
    enriched = [value for _, value, *_ in pipeline.read_topic(pipeline.topics.enriched_air_quality)]
    faults = [r for r in enriched if FAULTS.intersection(r["flags"])]
    assert len(faults) <= len(enriched) // 100  # real data: at most 1% are faults
    for fault in faults:  # what the pipeline left out of its means, the reference leaves out
        local = fault["ts"].astimezone(BEIJING)
        assert days[local.date()][fault["pollutant"]][local.hour] is not None
        days[local.date()][fault["pollutant"]][local.hour] = None
    expected_days = [FIRST_DAY + timedelta(days=n) for n in range(DAYS)]
    assert sorted(rows) == [d.isoformat() for d in expected_days]
    assert len(published) == DAYS and {r["revision"] for r in published} == {0}
    assert pipeline.read_topic(pipeline.topics.deadletter) == []

    for record in published:
        day = record["day"]
        want = expected_day(days[day], days[day + timedelta(days=1)])
        got = {k: record[k] for k in want}
        assert got == want, day
        assert record["station_id"] == "dongsi"
        assert record["day_start"] == datetime(day.year, day.month, day.day, tzinfo=BEIJING)
        assert record["utc_offset_minutes"] == 480
        assert (record["health_message"] is None) == (record["category"] in (None, "Good"))
        row = rows[day.isoformat()]
        assert (row["aqi"], row["main_pollutant"], row["revision"]) == (
            want["aqi"],
            want["main_pollutant"],
            0,
        )
        assert json.loads(row["completeness"]) == want["completeness"]
