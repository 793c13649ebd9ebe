"""The anomaly detector in the air-quality stream: flags on readings, faults out of the
AQI, anomaly events for faults and silent sensors."""

from __future__ import annotations

import random

from schemas import Topics
from streams.air_quality import AirQualityPipeline, SourceRecord
from streams.time import HourlyWindows
from tests.unit.test_air_quality_pipeline import (
    LATENESS,
    MINUTE,
    T0,
    MemoryStates,
    hourly,
    of_topic,
    process,
    reading,
)

STEP = 10 * MINUTE
SPIKE_AT = 200  # a reading in the middle of an hour
STUCK = range(220, 250)  # five hours of one value


def pm25_series() -> list[tuple[int, float]]:
    """40 hours of honest PM2.5 every 10 minutes, a spike, a stuck run, then silence
    after reading 260 (the station's ozone goes on for 4 more hours)."""
    rng = random.Random(7)
    series = []
    for i in range(260):
        value = round(40 + rng.gauss(0, 4), 1)
        if i == SPIKE_AT:
            value = 400.0
        elif i in STUCK:
            value = 41.3
        series.append((T0 + i * STEP, value))
    return series


def raw(drop: frozenset[int] = frozenset()) -> list[bytes]:
    """The station's raw readings, without the PM2.5 readings at the times in `drop`."""
    rng = random.Random(8)
    values = []
    pm25 = dict(pm25_series())
    for i in range(260 + 24):
        ts = T0 + i * STEP
        if ts in pm25 and ts not in drop:
            values.append(reading(ts, "pm25", pm25[ts]))
        values.append(reading(ts, "o3", round(0.03 + rng.gauss(0, 0.003), 4), unit="ppm"))
    return values


def ms(when) -> int:
    return round(when.timestamp() * 1000)


def run(values: list[bytes], batch: int = 50):
    pipeline = AirQualityPipeline(Topics(), HourlyWindows(LATENESS), {"dongsi": (39.929, 116.417)})
    states = MemoryStates()
    outputs = []
    anomalies: dict[str, int] = {}
    offset = 0
    for start in range(0, len(values), batch):
        records = [
            SourceRecord("civic.raw.air-quality", 0, offset + k, b"dongsi", v)
            for k, v in enumerate(values[start : start + batch])
        ]
        offset += len(records)
        result = process(pipeline, records, states)
        outputs.extend(result.outputs)
        for kind, n in result.anomalies.items():
            anomalies[kind] = anomalies.get(kind, 0) + n
    return outputs, anomalies, states


def test_a_sensor_that_spikes_sticks_and_goes_silent_is_reported() -> None:
    outputs, counted, _ = run(raw())
    events = [e for e in of_topic(outputs, "civic.anomalies") if e["pollutant"] == "pm25"]
    kinds = {(e["kind"], ms(e["ts"])) for e in events}
    assert ("spike", T0 + SPIKE_AT * STEP) in kinds
    stuck = sorted(ts for kind, ts in kinds if kind == "stuck")
    assert stuck and all(T0 + STUCK[0] * STEP < ts <= T0 + STUCK[-1] * STEP for ts in stuck)
    assert [ms(e["ts"]) for e in events if e["kind"] == "stale"] == [
        T0 + 259 * STEP + 2 * 3_600_000
    ]
    assert counted["stale"] == 1
    assert counted["stuck"] >= len(stuck)
    enriched = {
        ms(r["ts"]): r
        for r in of_topic(outputs, "civic.enriched.air-quality")
        if r["pollutant"] == "pm25"
    }
    assert "spike" in enriched[T0 + SPIKE_AT * STEP]["flags"]
    assert all(0.0 <= r["anomaly_score"] <= 1.0 for r in enriched.values())


def test_faulty_readings_do_not_move_the_hourly_aqi() -> None:
    spike_ts = T0 + SPIKE_AT * STEP
    with_faults = hourly(run(raw())[0])
    without_spike = hourly(run(raw(drop=frozenset({spike_ts})))[0])
    stuck_hour = ms_hour(T0 + STUCK[0] * STEP)
    before = [r for r in with_faults if ms(r["hour_start"]) < stuck_hour]
    strip = lambda r: {k: v for k, v in r.items() if k != "excluded_count"}  # noqa: E731
    assert [strip(r) for r in before] == [strip(r) for r in without_spike[: len(before)]]
    spike_hour = next(r for r in with_faults if ms(r["hour_start"]) == ms_hour(spike_ts))
    assert spike_hour["excluded_count"] == 1
    stuck_hours = [r for r in with_faults if ms(r["hour_start"]) >= stuck_hour]
    # the readings of the run from the length the series makes improbable on
    assert sum(r["excluded_count"] for r in stuck_hours) >= 10


def ms_hour(ts_ms: int) -> int:
    return ts_ms - ts_ms % 3_600_000


def test_results_do_not_depend_on_batches_or_restarts() -> None:
    values = raw()
    first, _, states = run(values, 50)
    second, _, _ = run(values, 7)
    assert first == second
    assert b'"series"' in states["dongsi"]
