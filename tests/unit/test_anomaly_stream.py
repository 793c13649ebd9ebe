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


def run(values: list[bytes], batch: int = 50, windows: HourlyWindows | None = None):
    windows = windows or HourlyWindows(LATENESS)
    pipeline = AirQualityPipeline(Topics(), windows, {"dongsi": (39.929, 116.417)})
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


# --- hourly stations: a spike is its hour's last reading -------------------------------

HOUR = 3_600_000
SPIKE_HOUR = 180  # the detector is warm after 150 readings


def hourly_station(
    drop: frozenset[int] = frozenset(), spike_at: int = SPIKE_HOUR, hours: int = 200
) -> list[bytes]:
    """PM2.5 and ozone once an hour, on the hour (like the Beijing stations), with one PM2.5
    spike; the PM2.5 readings of the hours in `drop` are missing."""
    rng = random.Random(11)
    values = []
    for h in range(hours):
        pm25 = 400.0 if h == spike_at else round(40 + rng.gauss(0, 4), 1)
        o3 = round(0.03 + rng.gauss(0, 0.003), 4)
        if h not in drop:
            values.append(reading(T0 + h * HOUR, "pm25", pm25))
        values.append(reading(T0 + h * HOUR, "o3", o3, unit="ppm"))
    return values


def published_at(values: list[bytes], windows: HourlyWindows) -> dict[int, int]:
    """Hour start → index of the reading whose processing published its hourly record."""
    pipeline = AirQualityPipeline(Topics(), windows)
    states = MemoryStates()
    when = {}
    for i, value in enumerate(values):
        record = SourceRecord("civic.raw.air-quality", 0, i, b"dongsi", value)
        for record_out in hourly(process(pipeline, [record], states).outputs):
            when[ms(record_out["hour_start"])] = i
    return when


def test_at_an_hourly_station_a_spike_never_enters_a_published_mean() -> None:
    outputs, counted, _ = run(hourly_station())
    spike_ts = T0 + SPIKE_HOUR * HOUR
    record = next(r for r in hourly(outputs) if ms(r["hour_start"]) == spike_ts)
    assert record["excluded_count"] == 1 and "pm25" not in record["hourly_means"]
    spiked = next(
        r
        for r in of_topic(outputs, "civic.enriched.air-quality")
        if ms(r["ts"]) == spike_ts and r["pollutant"] == "pm25"
    )
    assert "spike" in spiked["flags"]
    [event] = [e for e in of_topic(outputs, "civic.anomalies") if e["kind"] == "spike"]
    assert ms(event["ts"]) == spike_ts and "already published" not in event["detail"]
    # the same hourly AQI as if the spiking reading had never been sent
    without = hourly(run(hourly_station(drop=frozenset({SPIKE_HOUR})))[0])
    strip = lambda r: {k: v for k, v in r.items() if k != "excluded_count"}  # noqa: E731
    assert [strip(r) for r in hourly(outputs)] == [strip(r) for r in without]
    assert counted["spike"] == 1


def test_only_an_hour_whose_last_reading_may_be_a_spike_waits_for_the_next_one() -> None:
    values = hourly_station()
    when = published_at(values, HourlyWindows(LATENESS))
    # readings come in pairs (pm25, o3) per hour; hour h is final with the reading at h + 2
    final_at = {T0 + h * HOUR: 2 * (h + 2) for h in range(198)}
    spike_ts = T0 + SPIKE_HOUR * HOUR
    held = {hour for hour in final_at if when[hour] != final_at[hour]}
    # the spike's hour and the few whose last reading jumped as far (the spike's way back
    # among them) wait for the next hour; all others are published when they are final
    assert spike_ts in held and spike_ts + HOUR in held
    assert len(held) <= len(final_at) // 20
    assert all(when[hour] == final_at[hour + HOUR] for hour in held)  # one hour later


def test_a_next_reading_later_than_the_spike_wait_publishes_the_hour_without_it() -> None:
    gap = frozenset({SPIKE_HOUR + 1})  # the PM2.5 reading after the spike is missing
    outputs = run(hourly_station(drop=gap))[0]
    spike_ts = T0 + SPIKE_HOUR * HOUR
    record = next(r for r in hourly(outputs) if ms(r["hour_start"]) == spike_ts)
    assert record["excluded_count"] == 0 and record["hourly_means"]["pm25"] == 400.0
    [event] = [e for e in of_topic(outputs, "civic.anomalies") if e["kind"] == "spike"]
    assert ms(event["ts"]) == spike_ts and "already published" in event["detail"]
    # a longer wait (CIVIC_SPIKE_WAIT=2h) keeps it out
    waiting = HourlyWindows(LATENESS, spike_wait_ms=2 * HOUR)
    longer = hourly(run(hourly_station(drop=gap), windows=waiting)[0])
    record = next(r for r in longer if ms(r["hour_start"]) == spike_ts)
    assert record["excluded_count"] == 1 and "pm25" not in record["hourly_means"]


def test_held_hours_do_not_depend_on_batches_or_restarts() -> None:
    values = hourly_station()
    assert run(values, 1)[0] == run(values, 50)[0] == run(values, 7)[0]
