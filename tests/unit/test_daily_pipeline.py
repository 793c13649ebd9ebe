"""The daily AQI in the air-quality step: local standard-time days, publication when final,
revisions when a late reading fills a gap, and the low-cost sensor correction."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from schemas import Topics, decode
from streams.air_quality import (
    AirQualityPipeline,
    SensorTypes,
    SourceRecord,
    decode_state,
    encode_state,
)
from streams.station import StationState
from streams.time import DAY_MS, HOUR_MS, HourlyWindows, LocalDays, standard_offset_ms

RAW = "civic.raw.air-quality"
MINUTE = 60_000
LATENESS = 10 * MINUTE
BEIJING = LocalDays(standard_offset_ms("Asia/Shanghai"))
DAY0 = 1_362_067_200_000  # 2013-03-01 00:00 Beijing = 2013-02-28T16:00Z


class States(dict[str, bytes]):
    def load(self, key: str) -> bytes | None:
        return self.get(key)


class Run:
    """Feeds records one batch at a time, as the worker does, and keeps the states."""

    def __init__(self, pipeline: AirQualityPipeline) -> None:
        self.pipeline = pipeline
        self.states = States()
        self.offset = 0

    def send(self, *values: bytes, station: str = "s1"):
        records = []
        for value in values:
            records.append(SourceRecord(RAW, 0, self.offset, station.encode(), value))
            self.offset += 1
        result = self.pipeline.process(records, self.states)
        for update in result.state_updates:
            self.states[update.station_id] = update.data
        return result


def reading(ts_ms: int, pollutant: str = "pm25", value: float | str = 35.9, **extra) -> bytes:
    unit = {"o3": "ppm", "co": "ppm", "so2": "ppb", "no2": "ppb"}.get(pollutant, "ug/m3")
    body = {"station_id": "s1", "pollutant": pollutant, "value": value, "unit": unit}
    return json.dumps({**body, "ts": ts_ms, **extra}).encode()


def daily(result) -> list[dict]:
    return [decode(o.value) for o in result.outputs if o.topic == "civic.aqi.daily"]


def enriched(result) -> list[dict]:
    return [decode(o.value) for o in result.outputs if o.topic == "civic.enriched.air-quality"]


def dead(result) -> list[str]:
    return [decode(o.value)["reason"] for o in result.outputs if o.topic == "civic.deadletter"]


def pipeline(days: LocalDays = BEIJING, **options) -> AirQualityPipeline:
    return AirQualityPipeline(Topics(), HourlyWindows(LATENESS), days=days, **options)


def hours(start: int, count: int, pollutant: str = "pm25", value: float = 35.9) -> list[bytes]:
    return [reading(start + i * HOUR_MS + 5 * MINUTE, pollutant, value) for i in range(count)]


# --- publication ---------------------------------------------------------------------


def test_a_day_is_published_once_stream_time_passes_its_end_the_tail_and_the_lateness():
    run = Run(pipeline())
    assert daily(run.send(*hours(DAY0, 31))) == []  # up to 06:05 of the next day
    # 07:10 next day: 07:00 + 10 min lateness reached, the 06:00 hour (the tail's last) final
    (record,) = daily(run.send(reading(DAY0 + DAY_MS + 7 * HOUR_MS + LATENESS)))
    assert record["day"] == date(2013, 3, 1)
    assert record["day_start"] == datetime(2013, 2, 28, 16, tzinfo=UTC)
    assert record["utc_offset_minutes"] == 480
    assert record["revision"] == 0
    # 24 hours of 35.9 µg/m³ → 102 (the TAD's worked example)
    assert (record["aqi"], record["category"], record["main_pollutant"]) == (
        102,
        "Unhealthy for Sensitive Groups",
        "pm25_24h",
    )
    assert record["completeness"] == {"pm25_24h": 24}
    assert record["health_message"].startswith("People with heart or lung disease")
    assert daily(run.send(reading(DAY0 + DAY_MS + 8 * HOUR_MS))) == []  # never again


def test_one_minute_before_the_day_is_final_nothing_is_published():
    run = Run(pipeline())
    run.send(*hours(DAY0, 31))
    assert daily(run.send(reading(DAY0 + DAY_MS + 7 * HOUR_MS + LATENESS - 1))) == []


def test_an_incomplete_day_is_published_with_its_reason():
    run = Run(pipeline())
    run.send(*hours(DAY0 + 7 * HOUR_MS, 17))  # 07:00–23:00: 17 hours of PM2.5
    (record,) = daily(run.send(reading(DAY0 + 2 * DAY_MS)))
    assert record["aqi"] is None
    assert record["reason"] == "insufficient_data"
    assert record["reasons"] == {"pm25": "incomplete_day"}
    assert record["completeness"] == {"pm25_24h": 17}
    assert record["health_message"] is None


def test_ozone_uses_the_first_seven_hours_of_the_next_day():
    run = Run(pipeline())
    run.send(*hours(DAY0, 24, "o3", 0.060))
    # next day 00:00–06:00 at 0.090: window 23:00–07:00 = (0.060 + 7·0.090)/8 = 0.08625 → 151
    run.send(*hours(DAY0 + DAY_MS, 7, "o3", 0.090))
    (record,) = daily(run.send(reading(DAY0 + DAY_MS + 8 * HOUR_MS, "o3", 0.05)))
    assert record["concentrations"]["o3_8h"] == 0.086
    assert record["sub_indices"]["o3_8h"] == 151
    assert record["completeness"]["o3_8h"] == 17


def test_days_follow_the_local_standard_day_not_utc():
    run = Run(pipeline())
    # 2013-03-01 15:00–16:00 UTC is the last hour of the Beijing day (23:00–24:00 +08)
    run.send(reading(DAY0 - HOUR_MS + MINUTE, value=100.0))
    records = daily(run.send(*hours(DAY0, 24)))  # 2013-02-28 is final at 07:10 on 03-01
    records += daily(run.send(reading(DAY0 + 2 * DAY_MS)))
    assert [r["day"] for r in records] == [date(2013, 2, 28), date(2013, 3, 1)]
    assert records[0]["completeness"] == {"pm25_24h": 1}
    assert records[1]["concentrations"] == {"pm25_24h": 35.9}


def test_a_day_across_the_daylight_saving_change_is_24_standard_hours():
    new_york = LocalDays(standard_offset_ms("America/New_York"))
    assert new_york.offset_ms == -5 * HOUR_MS
    # 2024-03-10: clocks jump from 02:00 EST to 03:00 EDT; the standard day still runs
    # 00:00–24:00 EST = 05:00Z to 05:00Z next day, 24 hours.
    start = int(datetime(2024, 3, 10, 5, tzinfo=UTC).timestamp() * 1000)
    run = Run(pipeline(new_york))
    run.send(reading(start - HOUR_MS + MINUTE, value=500.0))  # 23:xx EST the day before
    run.send(*hours(start, 24, value=20.0))
    run.send(reading(start + DAY_MS + MINUTE, value=500.0))  # 00:xx EST next day (01:xx EDT)
    records = daily(run.send(reading(start + 2 * DAY_MS)))
    day = next(r for r in records if r["day"] == date(2024, 3, 10))
    assert day["day_start"] == datetime(2024, 3, 10, 5, tzinfo=UTC)
    assert day["utc_offset_minutes"] == -300
    assert day["completeness"] == {"pm25_24h": 24}
    assert day["concentrations"] == {"pm25_24h": 20.0}  # neither neighbour's 500 leaks in


def test_southern_hemisphere_zones_use_their_standard_offset_too():
    assert standard_offset_ms("Australia/Sydney") == 10 * HOUR_MS  # January is AEDT (+11)
    assert standard_offset_ms("Europe/Berlin") == HOUR_MS
    with pytest.raises(ValueError, match="unknown time zone"):
        standard_offset_ms("Mars/Olympus_Mons")


# --- corrections -------------------------------------------------------------------------


def _published_day_with_a_gap() -> Run:
    """Day 2013-03-01 with PM2.5 in 17 hours (hours 3–9 missing): published incomplete."""
    run = Run(pipeline())
    run.send(*[h for i, h in enumerate(hours(DAY0, 24)) if not 3 <= i <= 9])
    (record,) = daily(run.send(reading(DAY0 + DAY_MS + 8 * HOUR_MS)))
    assert (record["revision"], record["aqi"], record["completeness"]) == (
        0,
        None,
        {"pm25_24h": 17},
    )
    return run


def test_a_late_reading_that_fills_a_gap_publishes_the_next_revision():
    run = _published_day_with_a_gap()
    result = run.send(reading(DAY0 + 3 * HOUR_MS + 30 * MINUTE))
    assert dead(result) == []
    assert result.daily_corrections == 1
    (record,) = daily(result)
    assert (record["revision"], record["aqi"], record["completeness"]) == (
        1,
        102,
        {"pm25_24h": 18},
    )
    assert [o.topic for o in result.outputs] == ["civic.aqi.daily"]  # the hour stays final


def test_a_late_reading_for_an_hour_that_had_data_is_dead_lettered_and_changes_nothing():
    run = _published_day_with_a_gap()
    result = run.send(reading(DAY0 + 2 * HOUR_MS + 30 * MINUTE, value=500.0))
    assert dead(result) == ["late"]
    assert daily(result) == []


def test_the_same_late_reading_twice_is_a_duplicate():
    run = _published_day_with_a_gap()
    run.send(reading(DAY0 + 3 * HOUR_MS + 30 * MINUTE))
    result = run.send(reading(DAY0 + 3 * HOUR_MS + 30 * MINUTE))
    assert dead(result) == ["duplicate"]
    assert daily(result) == []


def test_a_correction_that_changes_nothing_publishes_nothing():
    run = _published_day_with_a_gap()
    run.send(reading(DAY0 + 3 * HOUR_MS + 30 * MINUTE))  # revision 1
    # a second reading in the filled hour: same mean 35.9, so the record is unchanged
    result = run.send(reading(DAY0 + 3 * HOUR_MS + 40 * MINUTE))
    assert (dead(result), daily(result), result.daily_corrections) == ([], [], 1)


def test_a_day_can_be_corrected_for_one_day_of_stream_time_after_it_was_final():
    run = _published_day_with_a_gap()
    final_at = DAY0 + DAY_MS + 7 * HOUR_MS + LATENESS
    run.send(reading(final_at + DAY_MS - 2 * MINUTE, value=1.0))
    assert daily(run.send(reading(DAY0 + 4 * HOUR_MS)))[0]["revision"] == 1
    run.send(reading(final_at + DAY_MS, value=1.0))  # now the day has left the horizon
    assert dead(run.send(reading(DAY0 + 5 * HOUR_MS))) == ["late"]


def test_a_late_reading_in_the_next_days_first_hours_corrects_the_day_before():
    run = Run(pipeline())
    run.send(*hours(DAY0, 24, "o3", 0.060), *hours(DAY0 + DAY_MS + HOUR_MS, 6, "o3", 0.060))
    (record,) = daily(run.send(reading(DAY0 + DAY_MS + 8 * HOUR_MS, "o3", 0.06)))
    assert record["completeness"]["o3_8h"] == 17
    # the next day's 00:00 hour arrives late at 0.600: window 17:00–01:00 of the first day
    # = (7·0.060 + 0.600)/8 = 0.1275 → 0.127 → 201–300 segment
    result = run.send(reading(DAY0 + DAY_MS + 30 * MINUTE, "o3", 0.6))
    (corrected,) = daily(result)
    assert (corrected["day"], corrected["revision"]) == (date(2013, 3, 1), 1)
    assert corrected["concentrations"]["o3_8h"] == 0.127


def test_batches_never_change_what_is_published_even_with_corrections():
    values = [h for i, h in enumerate(hours(DAY0, 48)) if i != 5]
    values += [reading(DAY0 + 5 * HOUR_MS + MINUTE, value=80.0)]  # fills a published gap
    values += hours(DAY0 + 48 * HOUR_MS, 40)

    def outputs(batch: int) -> list:
        run = Run(pipeline())
        collected = []
        for start in range(0, len(values), batch):
            collected.extend(run.send(*values[start : start + batch]).outputs)
        return collected

    reference = outputs(len(values))
    assert [decode(o.value)["revision"] for o in reference if o.topic == "civic.aqi.daily"] == [
        0,
        1,
        0,
        0,
    ]
    for batch in (1, 5, 33):
        assert outputs(batch) == reference


def test_a_station_restored_before_every_reading_keeps_and_forgets_what_one_kept_in_memory_does():
    """A station kept in memory skips the scan for hours to forget until a day moves on;
    one restored from its saved bytes scans at once. Both keep exactly the same hours."""
    values = [h for i, h in enumerate(hours(DAY0, 48)) if i != 5]
    values += [reading(DAY0 + 5 * HOUR_MS + MINUTE, value=80.0)]  # a late fill
    values += hours(DAY0 + 48 * HOUR_MS, 24 * 4)
    kept = Run(pipeline())
    restored = Run(pipeline())
    for value in values:
        in_memory = kept.send(value)
        restored.pipeline = pipeline()  # nothing decoded before: every state is restored
        from_bytes = restored.send(value)
        assert from_bytes.outputs == in_memory.outputs
        assert restored.states == kept.states
    history = decode_state(kept.states["s1"]).history["pm25"]
    assert min(history) > DAY0 + 2 * DAY_MS  # the first days were forgotten


# --- state -----------------------------------------------------------------------------


def test_the_daily_state_survives_a_snapshot_and_stays_bounded():
    run = _published_day_with_a_gap()
    run.send(*hours(DAY0 + 32 * HOUR_MS, 24 * 6))  # six more days
    state = decode_state(run.states["s1"])
    assert encode_state(decode_state(encode_state(state))) == run.states["s1"]
    kept = sorted(state.history["pm25"])
    assert (kept[-1] - kept[0]) // HOUR_MS < 3 * 24  # never more than about three days
    assert len(state.published_days) <= 2


def test_a_version_1_snapshot_restores_and_publishes_only_whole_days():
    old = {
        "v": 1,
        "station_id": "s1",
        "stream_time_ms": DAY0 + 20 * HOUR_MS,
        "source_partition": 0,
        "source_offset": 99,
        "open_hours": {
            str(DAY0 + 20 * HOUR_MS): [
                ["pm25", DAY0 + 20 * HOUR_MS, None, "35.9", "ug/m3", "35.9", None, None]
            ]
        },
        "history": {"pm25": {str(DAY0 + h * HOUR_MS): "35.9" for h in range(2, 20)}},
    }
    run = Run(pipeline())
    run.states["s1"] = json.dumps(old).encode()
    run.offset = 100
    result = run.send(*hours(DAY0 + 21 * HOUR_MS, 40))
    # 2013-03-01 started before the restored history: not published (it would be partial)
    assert [r["day"] for r in daily(result)] == [date(2013, 3, 2)]
    assert decode_state(run.states["s1"]).open_hours  # and the state is version 2 now


def test_an_old_reading_row_without_a_correction_restores():
    state = StationState.restore(
        {
            "v": 1,
            "station_id": "s1",
            "stream_time_ms": DAY0,
            "source_partition": None,
            "source_offset": -1,
            "open_hours": {str(DAY0): [["pm25", DAY0, "x", "1", "ug/m3", "1", 1.0, 2.0]]},
            "history": {},
        }
    )
    (only,) = state.open_hours[DAY0].values()
    assert only.correction is None and only.value_epa == Decimal(1)


# --- low-cost sensors -----------------------------------------------------------------------


PURPLEAIR = SensorTypes(purpleair_sensors=frozenset({"pa-7"}))


def purple(ts_ms: int, a: float | None, b: float | None, rh: float | None) -> bytes:
    extra = {"sensor_id": "pa-7", "channel_a": a, "channel_b": b, "relative_humidity": rh}
    return reading(ts_ms, "pm25", 21.0, **{k: v for k, v in extra.items() if v is not None})


def test_purpleair_pm25_is_corrected_and_the_model_recorded():
    run = Run(pipeline(sensors=PURPLEAIR))
    result = run.send(purple(DAY0, 20.0, 22.0, 50.0), reading(DAY0 + 2 * HOUR_MS))
    (enriched,) = [
        decode(o.value) for o in result.outputs if o.topic.endswith("enriched.air-quality")
    ]
    # (20 + 22)/2 = 21 → 0.524·21 − 0.0862·50 + 5.75 = 12.444
    assert enriched["value"] == 21.0 and enriched["value_epa"] == 12.444
    assert enriched["correction"] == "epa-purpleair-us-2021"
    (hour,) = [decode(o.value) for o in result.outputs if o.topic == "civic.aqi.hourly"]
    assert hour["hourly_means"] == {"pm25": 12.444}


def test_a_reference_instrument_is_not_corrected():
    run = Run(pipeline(sensors=PURPLEAIR))
    other = reading(DAY0, sensor_id="ref-1", channel_a=1.0, channel_b=1.0, relative_humidity=9)
    result = run.send(other, reading(DAY0 + 2 * HOUR_MS))
    (row,) = enriched(result)
    assert (row["value_epa"], row["correction"]) == (35.9, None)


def test_a_station_marked_purpleair_corrects_all_its_pm25():
    sensors = SensorTypes(purpleair_stations=frozenset({"s1"}))
    run = Run(pipeline(sensors=sensors))
    result = run.send(reading(DAY0, channel_a=10, channel_b=10, relative_humidity=0))
    assert result.accepted == 1  # 0.524·10 + 5.75 = 10.99


def test_disagreeing_channels_are_dead_lettered_as_channel_disagreement():
    run = Run(pipeline(sensors=PURPLEAIR))
    result = run.send(purple(DAY0, 10.0, 30.0, 40.0))
    assert dead(result) == ["channel_disagreement"]
    assert result.accepted == 0


def test_a_purpleair_reading_without_its_channels_is_dead_lettered():
    run = Run(pipeline(sensors=PURPLEAIR))
    assert dead(run.send(purple(DAY0, 10.0, None, 40.0))) == ["missing_field"]
    assert dead(run.send(purple(DAY0 + 1, 10.0, 10.0, 140.0))) == ["invalid_value"]


def test_hourly_records_carry_the_health_message_of_their_category_and_pollutant():
    run = Run(pipeline())
    result = run.send(*hours(DAY0, 4, "no2", 120))
    records = [decode(o.value) for o in result.outputs if o.topic == "civic.aqi.hourly"]
    assert records[0]["category"] == "Unhealthy for Sensitive Groups"
    assert records[0]["health_message"] == (
        "People with asthma, children and older adults should limit prolonged exertion "
        "especially near busy roads."
    )
