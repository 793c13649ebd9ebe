"""The air-quality step as a specification: windows, lateness, dead letters, determinism."""

from __future__ import annotations

import json
import random
from decimal import Decimal
from itertools import count

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors import aqi
from schemas import Topics, decode, encode
from schemas.raw import RawReading, reading_to_avro
from streams.air_quality import AirQualityPipeline, Gap, Output, SourceRecord, progress_key
from streams.time import HOUR_MS, HourlyWindows

RAW = "civic.raw.air-quality"
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MINUTE = 60_000
LATENESS = 10 * MINUTE


class MemoryStates(dict[str, bytes]):
    """The StateStore protocol over a dict, recording the partition of each write."""

    def __init__(self) -> None:
        super().__init__()
        self.partitions: dict[str, int] = {}

    def load(self, station_id: str) -> bytes | None:
        return self.get(station_id)


def process(pipeline: AirQualityPipeline, records, states: MemoryStates):
    """One batch as the worker runs it: outputs first, then the new states."""
    result = pipeline.process(records, states)
    for update in result.state_updates:
        states[update.station_id] = update.data
        states.partitions[update.station_id] = update.partition
    return result


def reading(
    ts_ms: int,
    pollutant: str = "pm25",
    value: float | str = 35.9,
    *,
    station: str = "dongsi",
    unit: str = "ug/m3",
    **extra: object,
) -> bytes:
    body = {
        "station_id": station,
        "pollutant": pollutant,
        "value": value,
        "unit": unit,
        "ts": ts_ms,
        **extra,
    }
    return json.dumps(body).encode()


@pytest.fixture
def make_records():
    """Factory: raw values → SourceRecords with consecutive offsets on partition 0."""
    offsets = count()

    def make(values: list[bytes], key: bytes | None = b"dongsi", partition: int = 0):
        return [SourceRecord(RAW, partition, next(offsets), key, v) for v in values]

    return make


@pytest.fixture
def pipeline() -> AirQualityPipeline:
    return AirQualityPipeline(Topics(), HourlyWindows(LATENESS), {"dongsi": (39.929, 116.417)})


def of_topic(outputs: list[Output], topic: str) -> list[dict]:
    return [decode(o.value) for o in outputs if o.topic == topic]


def hourly(outputs: list[Output]) -> list[dict]:
    return of_topic(outputs, "civic.aqi.hourly")


def dead(outputs: list[Output]) -> list[dict]:
    return of_topic(outputs, "civic.deadletter")


class TestFinalHours:
    def test_an_hour_is_published_once_stream_time_reaches_its_end_plus_lateness(
        self, pipeline, make_records
    ):
        states = MemoryStates()
        first = process(pipeline, make_records([reading(T0 + 30 * MINUTE)]), states)
        assert hourly(first.outputs) == []
        just_before = T0 + HOUR_MS + LATENESS - 1
        second = process(pipeline, make_records([reading(just_before)]), states)
        assert hourly(second.outputs) == []
        third = process(pipeline, make_records([reading(T0 + HOUR_MS + LATENESS)]), states)
        records = hourly(third.outputs)
        assert [r["hour_start"].timestamp() * 1000 for r in records] == [T0]
        assert third.hours_closed == 1

    def test_each_hourly_record_is_listed_with_its_hour_and_station_for_the_area_topic(
        self, pipeline, make_records
    ):
        values = [reading(T0 + h * HOUR_MS, value=10.0 + h) for h in range(4)]
        values.append(reading(T0 + 4 * HOUR_MS + LATENESS))
        result = process(pipeline, make_records(values), MemoryStates())
        records = [o for o in result.outputs if o.topic == "civic.aqi.hourly"]
        assert len(records) == 4
        assert result.hourly == [
            (T0 + h * HOUR_MS, "dongsi", r.value) for h, r in enumerate(records)
        ]

    def test_the_hourly_record_carries_the_epa_aqi_of_the_nowcast(self, pipeline, make_records):
        values = [reading(T0 + h * HOUR_MS, value=35.9) for h in range(3)]
        values.append(reading(T0 + 3 * HOUR_MS + LATENESS))
        result = process(pipeline, make_records(values), MemoryStates())
        last = hourly(result.outputs)[-1]
        assert last["station_id"] == "dongsi"
        assert last["aqi"] == 102
        assert last["category"] == "Unhealthy for Sensitive Groups"
        assert last["main_pollutant"] == "pm25_nowcast"
        assert last["sub_indices"] == {"pm25_nowcast": 102}
        assert last["concentrations"] == {"pm25_nowcast": 35.9}
        assert last["hourly_means"] == {"pm25": 35.9}
        assert last["aqi_version"] == aqi.AQI_VERSION == "EPA-454/B-24-002"

    def test_an_hour_with_one_reading_has_no_nowcast_yet(self, pipeline, make_records):
        values = [reading(T0), reading(T0 + HOUR_MS + LATENESS)]
        result = process(pipeline, make_records(values), MemoryStates())
        (record,) = hourly(result.outputs)
        assert record["aqi"] is None
        assert record["reason"] == "insufficient_data"

    def test_gases_are_converted_to_epa_units_and_averaged_per_hour(self, pipeline, make_records):
        values = [
            reading(T0 + 10 * MINUTE, "no2", 100, unit="ug/m3"),
            reading(T0 + 40 * MINUTE, "no2", 0.05, unit="ppm"),
            reading(T0 + HOUR_MS + LATENESS),
        ]
        result = process(pipeline, make_records(values), MemoryStates())
        (record,) = hourly(result.outputs)
        mean = (Decimal(100) * Decimal("24.45") / Decimal("46.01") + 50) / 2
        assert record["hourly_means"]["no2"] == pytest.approx(float(mean))
        assert record["sub_indices"]["no2_1h"] == aqi.sub_index("no2_1h", mean)

    def test_enriched_readings_follow_their_hour_with_rolling_means(self, pipeline, make_records):
        values = [reading(T0 + h * HOUR_MS, "pm10", 10 * (h + 1)) for h in range(8)]
        values.append(reading(T0 + 8 * HOUR_MS + LATENESS, "pm10", 1))
        result = process(pipeline, make_records(values), MemoryStates())
        enriched = of_topic(result.outputs, "civic.enriched.air-quality")
        assert len(enriched) == 8
        last = enriched[-1]
        assert last["value_epa"] == 80 and last["unit_epa"] == "ug/m3"
        assert last["mean_1h"] == 80
        assert last["mean_8h"] == 45  # mean of 10..80
        assert last["mean_24h"] is None  # 8 of 24 hours < 18
        assert (last["lat"], last["lon"]) == (39.929, 116.417)
        assert enriched[4]["mean_8h"] is None  # 5 of 8 hours < 6

    def test_stream_time_is_per_station(self, pipeline, make_records):
        states = MemoryStates()
        values = [reading(T0, station="a"), reading(T0 + 5 * HOUR_MS, station="b")]
        records = [*make_records(values[:1], key=b"a"), *make_records(values[1:], key=b"b")]
        result = process(pipeline, records, states)
        assert hourly(result.outputs) == []  # b's progress does not close a's hour


class TestDeadLetters:
    @pytest.mark.parametrize(
        ("value", "reason"),
        [
            (b"{not json", "invalid_json"),
            (b"\xff\xfe\x00", "invalid_encoding"),
            (b"", "invalid_encoding"),
            (b'["a", "list"]', "invalid_json"),
            (reading(T0, "pm1"), "unknown_pollutant"),
            (reading(T0, unit="ppt"), "unknown_unit"),
            (reading(T0, "pm25", 5, unit="ppm"), "unknown_unit"),
            (reading(T0, value=-1), "invalid_value"),
            (reading(T0, value=1e9), "invalid_value"),
            (
                b'{"station_id":"dongsi","pollutant":"pm25","value":NaN,"unit":"ug/m3","ts":1}',
                "invalid_value",
            ),
            (reading(T0, value="12"), "invalid_value"),
            (b'{"station_id":"dongsi","pollutant":"pm25","unit":"ug/m3","ts":1}', "missing_field"),
            (b'{"pollutant":"pm25","value":1,"unit":"ug/m3","ts":1}', "missing_field"),
            (
                b'{"station_id":"dongsi","pollutant":"pm25","value":1,"unit":"ug/m3",'
                b'"ts":"2026-01-01T10:00:00"}',
                "invalid_timestamp",
            ),
            (b"\xc3\x01" + b"\x00" * 8 + b"junk", "invalid_avro"),
            (
                b'{"station_id":"dongsi","pollutant":"o3","value":1e999999999,"unit":"ppb","ts":1}',
                "invalid_value",
            ),
            (
                encode(
                    "raw_reading",
                    {
                        "station_id": "dongsi",
                        "sensor_id": None,
                        "lat": None,
                        "lon": None,
                        "pollutant": "pm25",
                        "value": 1.0,
                        "unit": "ug/m3",
                        "ts": 2**62,
                    },
                ),
                "invalid_avro",
            ),
        ],
    )
    def test_bad_input_is_dead_lettered_with_its_bytes_and_the_worker_carries_on(
        self, pipeline, make_records, value, reason
    ):
        good = reading(T0)
        records = make_records([value, good])
        result = process(pipeline, records, MemoryStates())
        (letter,) = dead(result.outputs)
        assert letter["reason"] == reason
        assert letter["value"] == value
        assert letter["key"] == b"dongsi"
        assert (letter["source_topic"], letter["source_partition"], letter["source_offset"]) == (
            RAW,
            0,
            records[0].offset,
        )
        assert letter["detail"]
        assert result.accepted == 1

    def test_an_unexpected_error_dead_letters_the_record_instead_of_stopping(self, make_records):
        class BrokenSensorKinds:
            def is_purpleair(self, station_id, sensor_id):
                raise RuntimeError("a bug")

        pipeline = AirQualityPipeline(
            Topics(), HourlyWindows(LATENESS), sensors=BrokenSensorKinds()
        )
        result = process(pipeline, make_records([reading(T0)]), MemoryStates())
        (letter,) = dead(result.outputs)
        assert (letter["reason"], letter["detail"]) == ("unprocessable", "RuntimeError: a bug")

    def test_a_key_other_than_the_station_id_is_rejected(self, pipeline, make_records):
        result = process(pipeline, make_records([reading(T0)], key=None), MemoryStates())
        assert [d["reason"] for d in dead(result.outputs)] == ["wrong_key"]

    def test_a_late_event_is_dead_lettered_with_its_event_time(self, pipeline, make_records):
        # Its hour had a PM2.5 reading and is final: the late one changes nothing.
        values = [reading(T0), reading(T0 + HOUR_MS + LATENESS), reading(T0 + 59 * MINUTE)]
        result = process(pipeline, make_records(values), MemoryStates())
        (letter,) = dead(result.outputs)
        assert letter["reason"] == "late"
        assert letter["value"] == values[2]
        assert letter["event_ts"].timestamp() * 1000 == T0 + 59 * MINUTE

    def test_an_event_within_the_lateness_is_accepted(self, pipeline, make_records):
        values = [reading(T0 + HOUR_MS + LATENESS - 1), reading(T0 + 59 * MINUTE)]
        result = process(pipeline, make_records(values), MemoryStates())
        assert dead(result.outputs) == []
        assert result.accepted == 2

    def test_a_second_reading_for_the_same_time_is_a_duplicate(self, pipeline, make_records):
        values = [reading(T0, value=10), reading(T0, value=11)]
        result = process(pipeline, make_records(values), MemoryStates())
        assert [d["reason"] for d in dead(result.outputs)] == ["duplicate"]

    def test_avro_input_is_accepted_like_json(self, pipeline, make_records):
        avro = reading_to_avro(
            RawReading("dongsi", None, "pm25", Decimal("35.9"), "ug/m3", T0, None, None)
        )
        result = process(pipeline, make_records([avro]), MemoryStates())
        assert result.accepted == 1 and dead(result.outputs) == []


def _day_of_readings(seed: int) -> list[bytes]:
    rng = random.Random(seed)
    values = []
    for minute in range(0, 6 * 60, 7):
        for pollutant, unit, scale in (
            ("pm25", "ug/m3", 80),
            ("o3", "ppm", 0.09),
            ("co", "mg/m3", 9),
            ("so2", "ppb", 60),
        ):
            values.append(
                reading(T0 + minute * MINUTE, pollutant, round(rng.random() * scale, 3), unit=unit)
            )
    return values


def _run(pipeline, values: list[bytes], batch: int) -> list[Output]:
    states = MemoryStates()
    records = [SourceRecord(RAW, 0, i, b"dongsi", v) for i, v in enumerate(values)]
    outputs: list[Output] = []
    for start in range(0, len(records), batch):
        outputs.extend(process(pipeline, records[start : start + batch], states).outputs)
    return outputs


class TestDeterminism:
    def test_batch_size_does_not_change_a_single_byte(self, pipeline):
        values = _day_of_readings(1)
        reference = _run(pipeline, values, len(values))
        for batch in (1, 7, 500):
            assert _run(pipeline, values, batch) == reference

    def test_a_batch_fed_in_slices_gives_exactly_the_batch_processed_whole(self):
        """The worker feeds a batch 250 records at a time, the loop running in between."""
        values = _day_of_readings(3)
        records = [SourceRecord(RAW, 0, i, b"dongsi", v) for i, v in enumerate(values)]
        whole = AirQualityPipeline(Topics(), HourlyWindows(LATENESS)).process(
            records, MemoryStates()
        )
        run = AirQualityPipeline(Topics(), HourlyWindows(LATENESS)).start(MemoryStates())
        for start in range(0, len(records), 7):
            run.feed(records[start : start + 7])
        sliced = run.finish()
        assert sliced.outputs == whole.outputs and len(whole.outputs) > 100
        assert sliced.state_updates == whole.state_updates
        assert (sliced.accepted, sliced.hours_closed) == (whole.accepted, whole.hours_closed)

    @settings(max_examples=25, deadline=None)
    @given(seed=st.integers(0, 10_000))
    def test_out_of_order_within_the_lateness_gives_identical_results(self, seed):
        pipeline = AirQualityPipeline(Topics(), HourlyWindows(LATENESS))
        values = _day_of_readings(2)
        # Shuffle inside windows of 5 minutes of event time: always within the lateness.
        rng = random.Random(seed)
        shuffled = []
        for start in range(0, len(values), 8):
            chunk = values[start : start + 8]
            rng.shuffle(chunk)
            shuffled.extend(chunk)
        in_order = _run(pipeline, values, 50)
        reordered = _run(pipeline, shuffled, 50)
        assert [o for o in reordered if o.topic != "civic.deadletter"] == [
            o for o in in_order if o.topic != "civic.deadletter"
        ]
        assert dead(reordered) == []

    def test_redelivered_records_change_nothing(self, pipeline):
        values = _day_of_readings(3)
        states = MemoryStates()
        records = [SourceRecord(RAW, 0, i, b"dongsi", v) for i, v in enumerate(values)]
        first = process(pipeline, records, states)
        assert first.outputs
        again = process(pipeline, records, states)
        assert again.outputs == [] and again.redelivered == len(records)

    def test_state_snapshot_round_trips(self, pipeline, make_records):
        states = MemoryStates()
        process(pipeline, make_records(_day_of_readings(4)), states)
        from streams.air_quality import decode_state, encode_state

        state = decode_state(states["dongsi"])
        assert encode_state(decode_state(encode_state(state))) == states["dongsi"]
        assert state.open_hours and state.history

    def test_the_saved_state_is_its_snapshot_as_sorted_json(self, pipeline, make_records):
        from streams.air_quality import decode_state

        states = MemoryStates()
        values = _day_of_readings(5)
        for start in range(0, len(values), 37):  # open hours saved part-way, many times
            process(pipeline, make_records(values[start : start + 37]), states)
            state = decode_state(states["dongsi"])
            snapshot = json.dumps(state.snapshot(), separators=(",", ":"), sort_keys=True)
            assert states["dongsi"] == snapshot.encode()

    def test_a_version_3_state_with_its_hour_table_restores_the_same(self, pipeline, make_records):
        from streams.air_quality import decode_state
        from streams.station import StationState

        states = MemoryStates()
        process(pipeline, make_records(_day_of_readings(7)), states)
        snapshot = json.loads(states["dongsi"])
        assert snapshot["v"] == 4
        old = dict(snapshot, v=3)
        old["history"] = {
            pollutant: {str(h): str(v) for h, v in sorted(means.items())}
            for pollutant, means in decode_state(states["dongsi"]).history.items()
        }
        restored = StationState.restore(old)
        assert restored.history
        assert restored.snapshot() == decode_state(states["dongsi"]).snapshot()

    def test_a_batch_whose_state_was_not_saved_is_applied_again(self, pipeline, make_records):
        """The worker keeps decoded states between batches, but only while the store holds
        the bytes it saved: after a crash before the save, the store's state counts."""
        values = _day_of_readings(6)
        first, second = make_records(values[:100]), make_records(values[100:])
        states = MemoryStates()
        process(pipeline, first, states)
        before_second = MemoryStates()
        before_second.update(states)
        applied = process(pipeline, second, states)
        assert applied.outputs
        # The second batch's outputs were sent but its states never reached the store.
        again = process(pipeline, second, before_second)
        assert again.outputs == applied.outputs and again.redelivered == 0

    def test_state_is_written_to_the_partition_of_the_stations_records(
        self, pipeline, make_records
    ):
        states = MemoryStates()
        process(pipeline, make_records([reading(T0)], partition=2), states)
        assert states.partitions == {"dongsi": 2, progress_key(2): 2}


class TestSourceProgress:
    """Which raw records are applied is decided by the state, whatever the consumer does."""

    def _records(self, values, partition=0, start=0):
        return [SourceRecord(RAW, partition, start + i, b"dongsi", v) for i, v in enumerate(values)]

    def test_a_gap_in_offsets_applies_nothing_more_and_asks_for_a_rewind(self, pipeline):
        values = _day_of_readings(5)[:40]
        states = MemoryStates()
        process(pipeline, self._records(values[:10]), states)
        after_gap = self._records(values[12:20], start=12)  # offsets 10 and 11 never came
        result = process(pipeline, after_gap, states)
        assert result.gaps == {0: Gap(10, 12)}
        assert result.accepted == 0 and result.outputs == [] and result.skipped == 8

    def test_rewinding_gives_exactly_the_results_of_a_gapless_run(self, pipeline):
        values = _day_of_readings(6)
        gapless = _run(pipeline, values, 25)
        states = MemoryStates()
        records = self._records(values)
        outputs = list(process(pipeline, records[:30], states).outputs)
        skipped = process(pipeline, records[35:60], states)  # a consumer that skipped 30..34
        assert skipped.gaps == {0: Gap(30, 35)}
        outputs += skipped.outputs
        for start in range(30, len(records), 25):  # after the seek back to 30
            outputs += process(pipeline, records[start : start + 25], states).outputs
        assert outputs == gapless

    def test_other_partitions_carry_on_during_a_rewind(self, pipeline):
        states = MemoryStates()
        a = [SourceRecord(RAW, 0, 0, b"a", reading(T0, station="a"))]
        b = [SourceRecord(RAW, 1, 0, b"b", reading(T0, station="b"))]
        process(pipeline, [*a, *b], states)
        gap = [
            SourceRecord(RAW, 0, 5, b"a", reading(T0 + MINUTE, station="a")),
            SourceRecord(RAW, 1, 1, b"b", reading(T0 + MINUTE, station="b")),
        ]
        result = process(pipeline, gap, states)
        assert result.gaps == {0: Gap(1, 5)}
        assert result.accepted == 1

    def test_station_states_ahead_of_the_progress_record_are_not_applied_twice(self, pipeline):
        values = _day_of_readings(7)
        records = self._records(values)
        states = MemoryStates()
        first = pipeline.process(records, states)
        for update in first.state_updates:  # a crash after the station states were written
            if not update.station_id.startswith("\x00"):
                states[update.station_id] = update.data
        again = pipeline.process(records, states)
        assert again.accepted == 0 and again.outputs == []
        assert again.redelivered == len(records)

    def test_a_station_id_with_control_characters_is_refused(self, pipeline, make_records):
        result = process(
            pipeline,
            make_records([reading(T0, station="\x00progress/0")], key=b"\x00progress/0"),
            MemoryStates(),
        )
        assert [d["reason"] for d in dead(result.outputs)] == ["invalid_field"]


# -- timestamps far in the future ---------------------------------------------------------------


def test_a_reading_far_ahead_of_its_station_is_dead_lettered_and_moves_no_stream_time(
    pipeline, make_records
):
    """One reading from a broken clock (a year ahead) must not make every later reading of
    its station late: it is dead-lettered invalid_timestamp with its bytes and a reason, and
    the station's results are those without it."""
    year = 365 * 24 * HOUR_MS
    real = [reading(T0 + i * 20 * MINUTE) for i in range(12)]
    future = reading(T0 + year)
    clean = process(pipeline, make_records(real), MemoryStates())
    states = MemoryStates()
    result = process(pipeline, make_records([*real[:3], future, *real[3:]]), states)
    letters = [decode(o.value) for o in result.outputs if o.topic == "civic.deadletter"]
    assert [(d["reason"], d["value"]) for d in letters] == [("invalid_timestamp", future)]
    assert "days ahead of the station's stream time" in letters[0]["detail"]
    published = [o for o in result.outputs if o.topic != "civic.deadletter"]
    assert [(o.topic, o.key, o.value) for o in published] == [
        (o.topic, o.key, o.value) for o in clean.outputs
    ]


def test_a_station_back_after_a_long_silence_is_accepted_once_its_readings_agree(
    pipeline, make_records
):
    """Readings that all lie weeks ahead are a station back from an outage: the first
    REANCHOR_AFTER are dead-lettered, then its stream time moves and readings flow again,
    the same whatever the batches."""
    from streams.time import REANCHOR_AFTER

    weeks = 6 * 7 * 24 * HOUR_MS  # beyond MAX_AHEAD_MS (30 days)
    before = [reading(T0 + i * 20 * MINUTE) for i in range(6)]
    after = [reading(T0 + weeks + i * 20 * MINUTE) for i in range(REANCHOR_AFTER + 10)]
    outcomes = []
    for batch in (len(before) + len(after), 5):
        states = MemoryStates()
        records = make_records([*before, *after])
        letters = []
        for start in range(0, len(records), batch):
            result = process(pipeline, records[start : start + batch], states)
            letters += [decode(o.value) for o in result.outputs if o.topic == "civic.deadletter"]
        first = records[0].offset
        outcomes.append([(d["reason"], d["source_offset"] - first) for d in letters])
    assert outcomes[0] == outcomes[1]
    assert [offset for _, offset in outcomes[0]] == [len(before) + i for i in range(REANCHOR_AFTER)]
    assert {reason for reason, _ in outcomes[0]} == {"invalid_timestamp"}


def test_no_history_means_nothing_is_far_ahead(pipeline, make_records):
    """A station's first reading sets its stream time, however far in the future."""
    result = process(pipeline, make_records([reading(T0 + 5 * 365 * 24 * HOUR_MS)]), MemoryStates())
    assert result.accepted == 1
