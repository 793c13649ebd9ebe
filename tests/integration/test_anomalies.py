"""A faulty sensor on the real broker: what civic.anomalies and the open data say about it,
and that its faults leave the hourly AQI as it would be without them.

Station `faulty` sends PM2.5 every 5 minutes for five and a half days (a daily cycle plus
autocorrelated noise: enough history for the detector to know the series) and PM10 every
hour. Its PM2.5 sensor spikes once (the last reading of its hour, so the hour must wait
for the next reading), sticks at one value for three hours, and then falls silent while
PM10 goes on. Station `clean` sends the same readings less those the pipeline flagged as
faults: its hourly AQI is what the faulty station's must be.
"""

from __future__ import annotations

import json
import math
import random
from datetime import datetime
from typing import Any

import pytest

pytestmark = pytest.mark.integration

MINUTE = 60_000
HOUR = 60 * MINUTE
STEP = 5 * MINUTE
T0 = 1_748_736_000_000  # 2025-06-01 00:00 UTC
SPIKE = T0 + 122 * HOUR + 55 * MINUTE  # the last reading of its hour
STUCK = range(T0 + 126 * HOUR, T0 + 129 * HOUR, STEP)  # 36 readings of one value
SILENT = T0 + 132 * HOUR  # PM2.5 sends nothing from here on
END = T0 + 135 * HOUR  # PM10 goes on until here
STALE_AFTER = 2 * HOUR  # CIVIC_STALE_AFTER's default
FAULTS = {"out_of_range", "sentinel", "stuck", "spike"}


def honest_pm25() -> dict[int, float]:
    """ts → µg/m³: a daily cycle around 35 with AR(1) noise, rounded like a real feed."""
    rng = random.Random(4)
    noise = 0.0
    values = {}
    for ts in range(T0, SILENT, STEP):
        noise = 0.8 * noise + rng.gauss(0, 1.5)
        daily = 10 * math.sin(2 * math.pi * (ts - T0) / (24 * HOUR))
        values[ts] = round(max(1.0, 35 + daily + noise), 1)
    return values


def station_readings(station: str, leave_out: set[int] = frozenset()) -> list[tuple[bytes, bytes]]:
    """The faulty sensor's raw readings, as `station`, without the PM2.5 at `leave_out`."""
    pm25 = honest_pm25()
    stuck_at = pm25[STUCK[0] - STEP]  # the sensor freezes at its last good value
    rng = random.Random(5)
    messages = []
    for ts in range(T0, END + STEP, STEP):
        if ts in pm25 and ts not in leave_out:
            value = 300.0 if ts == SPIKE else stuck_at if ts in STUCK else pm25[ts]
            messages.append(body(station, "pm25", ts, value))
        if ts % HOUR == 0:
            messages.append(body(station, "pm10", ts, round(60 + rng.gauss(0, 8), 1)))
    return messages


def body(station: str, pollutant: str, ts: int, value: float) -> tuple[bytes, bytes]:
    reading = {
        "station_id": station,
        "sensor_id": f"{station}-{pollutant}",
        "pollutant": pollutant,
        "value": value,
        "unit": "ug/m3",
        "ts": ts,
    }
    return station.encode(), json.dumps(reading).encode()


def millis(iso: str) -> int:
    """A store timestamp ('2025-06-01T00:05:00Z') as epoch ms."""
    return round(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def hourly_aqi(rows: list[dict[str, Any]], station: str) -> list[dict[str, Any]]:
    """A station's hourly AQI rows as a resident reads them (who and how many excluded aside)."""
    skip = {"station_id", "excluded_count"}
    return [
        {k: v for k, v in row.items() if k not in skip}
        for row in rows
        if row["station_id"] == station
    ]


def test_a_sensor_that_spikes_sticks_and_goes_silent_is_reported_and_moves_no_aqi(
    pipeline_factory,
):
    pipeline = pipeline_factory("faults").start_all()
    faulty = station_readings("faulty")
    sent = pipeline.send(faulty)
    pipeline.wait_until_caught_up(sent)

    # The anomalies dataset: one spike, the stuck run (once it is improbable), one stale.
    rows = [r for r in pipeline.rows("anomalies") if r["station_id"] == "faulty"]
    faults = {(r["kind"], millis(r["ts"])) for r in rows if r["kind"] in FAULTS}
    assert {ts for kind, ts in faults if kind == "spike"} == {SPIKE}
    stuck = sorted(ts for kind, ts in faults if kind == "stuck")
    assert set(stuck) <= set(STUCK[1:]) and STUCK[-1] in stuck
    assert len(stuck) >= len(STUCK) // 2  # flagged from the reading the run became improbable
    assert {kind for kind, _ in faults} == {"spike", "stuck"}  # no honest reading is a fault
    stale = [r for r in rows if r["kind"] == "stale"]
    assert [(r["pollutant"], millis(r["ts"])) for r in stale] == [
        ("pm25", SILENT - STEP + STALE_AFTER)
    ]
    assert stale[0]["value"] == honest_pm25()[SILENT - STEP]  # the last reading before
    spike = next(r for r in rows if r["kind"] == "spike")
    assert (spike["value"], spike["unit"], spike["sensor_id"]) == (300.0, "ug/m3", "faulty-pm25")
    assert spike["expected_low"] < 100 < 300 and "jumped" in spike["detail"]
    # the same events on civic.anomalies as in the dataset
    events = [v for _, v, *_ in pipeline.read_topic(pipeline.topics.anomalies)]
    assert len(events) == len(rows)

    # Each fault is flagged on its enriched reading and counted out of its hour.
    enriched = [v for _, v, *_ in pipeline.read_topic(pipeline.topics.enriched_air_quality)]
    flagged = {
        round(r["ts"].timestamp() * 1000) for r in enriched if FAULTS.intersection(r["flags"])
    }
    assert flagged == {ts for _, ts in faults}
    hours = {millis(r["hour_start"]): r for r in pipeline.rows("aqi_hourly")}
    assert hours[SPIKE - SPIKE % HOUR]["excluded_count"] == 1  # the spike ended its hour
    assert sum(r["excluded_count"] for r in hours.values()) == len(flagged)

    # The same readings less the faults, as another station: the very same hourly AQI.
    clean = station_readings("clean", leave_out=flagged)
    sent += pipeline.send(clean)
    pipeline.wait_until_caught_up(sent)
    clean_rows = [r for r in pipeline.rows("anomalies") if r["station_id"] == "clean"]
    assert not [r for r in clean_rows if r["kind"] in FAULTS]
    stored = pipeline.rows("aqi_hourly")
    assert len(hourly_aqi(stored, "faulty")) == (END - T0) // HOUR - 1  # every final hour
    assert hourly_aqi(stored, "faulty") == hourly_aqi(stored, "clean")
