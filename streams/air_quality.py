"""The air-quality pipeline step, as a pure function of a batch of raw records and state.

Raw record → parse (schemas) → domain checks (processors) → station state (event-time
hours) → outputs. The Faust agent in streams.app only moves records in and out; every
decision is made here, so it is tested without a broker.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from processors import purpleair
from processors.exceptions import InvalidValue
from processors.validation import InvalidReading, check_reading
from schemas import InvalidInput, Reason, Topics, encode, parse_raw_reading
from schemas.raw import RawReading
from streams.station import AcceptedReading, StationState
from streams.time import DAY_MS, MAX_AHEAD_MS, REANCHOR_AFTER, HourlyWindows, LocalDays

DEFAULT_STALE_AFTER_MS = 2 * 3_600_000
"""Stream-time silence after which a sensor is reported stale (CIVIC_STALE_AFTER)."""

__all__ = [
    "AirQualityPipeline",
    "BatchResult",
    "Gap",
    "Output",
    "SensorTypes",
    "SourceRecord",
    "StateStore",
    "StateUpdate",
    "progress_key",
    "progress_update",
]


# Not frozen: a frozen dataclass sets each field through object.__setattr__ (2-3x slower
# to build, and one is built per reading). Treated as a value all the same: never mutated.
# Its __init__ is written out: the one dataclasses generates runs interpreted even in the
# compiled build (mypyc compiles only what the class body holds).
@dataclass(slots=True, init=False)
class SourceRecord:
    """One consumed Kafka record, bytes as they arrived."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None

    def __init__(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value


# Not frozen: a frozen dataclass sets each field through object.__setattr__ (2-3x slower
# to build, and one is built per reading). Treated as a value all the same: never mutated.
# Its __init__ is written out: the one dataclasses generates runs interpreted even in the
# compiled build (mypyc compiles only what the class body holds).
@dataclass(slots=True, init=False)
class Output:
    """A record to produce: topic, key, framed Avro value."""

    topic: str
    key: bytes | None
    value: bytes

    def __init__(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
    ) -> None:
        self.topic = topic
        self.key = key
        self.value = value


class StateStore(Protocol):
    """Where station states live between batches (a Faust table in the worker)."""

    def load(self, station_id: str) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class StateUpdate:
    """A station's new state and the partition its records (and so its changelog) live in."""

    station_id: str
    partition: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Gap:
    """Offsets `expected` .. `first_seen` - 1 of a partition were never delivered."""

    expected: int
    first_seen: int


@dataclass
class BatchResult:
    """What one batch produced, for the agent to send and for metrics and progress.

    `outputs` must be durable before `state_updates` are written: a state remembers the
    source offsets it has applied, and re-delivered records are skipped on that basis, so
    a state must never be durable ahead of the outputs those records produced.
    `gaps` holds, per partition, the next offset to apply and the first offset seen beyond
    it: records after a gap were not applied and must be delivered again (streams.gaps).
    """

    outputs: list[Output] = field(default_factory=list)
    state_updates: list[StateUpdate] = field(default_factory=list)
    gaps: dict[int, Gap] = field(default_factory=dict)
    accepted: int = 0
    redelivered: int = 0
    skipped: int = 0
    hours_closed: int = 0
    days_published: int = 0
    """Daily AQI records published, first publications and corrections."""
    daily_corrections: int = 0
    """Late readings that filled a gap of a correctable day (counted in `accepted` too)."""
    dead_letters: Counter[str] = field(default_factory=Counter)
    # For metrics (streams.metrics turns these into gauges; nothing here touches a metric):
    newest_event_ms: dict[tuple[str, int], int] = field(default_factory=dict)
    """(topic, partition) -> event time of the newest reading accepted from it."""
    sensor_event_ms: dict[tuple[str, str], int] = field(default_factory=dict)
    """(station, pollutant) -> event time of the sensor's newest accepted reading."""
    open_windows: dict[str, int] = field(default_factory=dict)
    """Station -> hours still open after the batch (for every station the batch touched)."""
    latest_aqi: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Station -> the AqiHourly record of its newest hour made final in this batch."""
    anomalies: Counter[str] = field(default_factory=Counter)
    """Anomaly kind -> readings flagged with it (fed by the anomaly detector)."""
    hourly: list[tuple[int, str, bytes]] = field(default_factory=list)
    """(hour start ms, station, Avro value) of each hourly AQI record in `outputs`, in
    their order: what the neighbour check re-keys them by, without decoding them again."""


_PROGRESS_PREFIX = "\x00progress/"  # station ids cannot contain control characters


def progress_key(partition: int) -> str:
    """The state-table key of a raw partition's progress (next offset to apply).

    Source progress lives with the state, in the same changelog partition, instead of in
    the consumer group's committed offsets: Faust can commit past records it never
    delivered (around rebalances), so the committed offset is only a starting hint.
    """
    return f"{_PROGRESS_PREFIX}{partition}"


def load_progress(store: StateStore, partition: int) -> int | None:
    data = store.load(progress_key(partition))
    return int(json.loads(data)["next_offset"]) if data else None


def progress_update(partition: int, next_offset: int) -> StateUpdate:
    """The state-table write that records a partition's next offset to apply."""
    data = json.dumps({"next_offset": next_offset}).encode()
    return StateUpdate(progress_key(partition), partition, data)


def _keep_newest(newest: dict[Any, int], key: Any, ts_ms: int) -> None:
    if ts_ms > newest.get(key, -1):
        newest[key] = ts_ms


DECODED_STATES_MAX = 2048
"""Station states kept decoded between batches (a station with an hour of minute readings
of six pollutants is about 100 kB decoded): the stations of recent batches, which are the
ones the next batches touch, whatever the city's size."""


def encode_state(state: StationState) -> bytes:
    return state.snapshot_json().encode()


def decode_state(data: bytes) -> StationState:
    return StationState.restore(json.loads(data))


@dataclass(frozen=True)
class SensorTypes:
    """Which stations and sensors are low-cost PurpleAir sensors (from the city file).

    Their PM2.5 readings are corrected with EPA's US-wide correction from the A and B
    channels and the relative humidity they carry (processors.purpleair).
    """

    purpleair_stations: frozenset[str] = frozenset()
    purpleair_sensors: frozenset[str] = frozenset()

    def is_purpleair(self, station_id: str, sensor_id: str | None) -> bool:
        return station_id in self.purpleair_stations or (
            sensor_id is not None and sensor_id in self.purpleair_sensors
        )


class SensorKinds(Protocol):
    """What the pipeline asks about a reading's sensor (SensorTypes answers from the city
    file). A protocol, not the class: the compiled step takes any such object."""

    def is_purpleair(self, station_id: str, sensor_id: str | None) -> bool: ...


class AirQualityPipeline:
    """Validates raw readings, keeps hourly windows and local days per station, emits the
    final hours and days."""

    def __init__(
        self,
        topics: Topics,
        windows: HourlyWindows,
        coordinates: dict[str, tuple[float, float]] | None = None,
        days: LocalDays | None = None,
        sensors: SensorKinds | None = None,
        stale_after_ms: int = DEFAULT_STALE_AFTER_MS,
    ) -> None:
        self.stale_after_ms = stale_after_ms
        self.topics = topics
        self.windows = windows
        self.coordinates = coordinates or {}
        self.days = days or LocalDays()
        self.sensors: SensorKinds = sensors or SensorTypes()
        # Station states decoded by an earlier batch, with the exact bytes they were saved
        # as: a station whose stored bytes are still those skips decoding. An entry is taken
        # out while its batch runs and put back only with the batch's new bytes, so a batch
        # that fails half-way leaves nothing behind that the store does not hold.
        # Least recently saved first; at most DECODED_STATES_MAX are kept.
        self._decoded: dict[str, tuple[bytes, StationState]] = {}

    def process(self, records: Sequence[SourceRecord], store: StateStore) -> BatchResult:
        """Apply a batch in order; return outputs in produce order, then the new states.

        `store` is only read; the caller writes `state_updates` once the outputs are durable.
        """
        run = self.start(store)
        run.feed(records)
        return run.finish()

    def start(self, store: StateStore) -> BatchRun:
        """A batch to apply in slices (`BatchRun.feed`, then `finish`): the same result as
        `process` over the slices joined, with room for other work between slices."""
        return BatchRun(self, store)

    def _load(self, station_id: str, store: StateStore) -> StationState:
        stored = store.load(station_id)
        cached = self._decoded.pop(station_id, None)
        if cached is not None and stored is not None and cached[0] == stored:
            return cached[1]
        return decode_state(stored) if stored else StationState(station_id)

    def _close(self, state: StationState, result: BatchResult) -> None:
        """Publish what stream time has made final: hours (with their readings), then days.

        Called as soon as a station's stream time advances (or a late reading corrects a
        day), so outputs are the same whatever the batch boundaries.
        """
        key = state.station_id.encode()
        coordinates = self.coordinates.get(state.station_id)
        closed = state.close(self.windows, self.days, coordinates, self.stale_after_ms)
        for hour in closed.hours:
            result.hours_closed += 1
            result.outputs.extend(
                Output(self.topics.enriched_air_quality, key, encode("enriched_reading", row))
                for row in hour.enriched
            )
            hourly = encode("aqi_hourly", hour.aqi_record)
            result.outputs.append(Output(self.topics.aqi_hourly, key, hourly))
            result.hourly.append((int(hour.aqi_record["hour_start"]), state.station_id, hourly))
            self._anomalies(hour.anomalies, result)
            result.latest_aqi[state.station_id] = hour.aqi_record
        for day in closed.days:
            result.days_published += 1
            result.outputs.append(Output(self.topics.aqi_daily, key, encode("aqi_daily", day)))
        self._anomalies(closed.stale, result)

    def _anomalies(self, events: list[dict[str, Any]], result: BatchResult) -> None:
        """Publish anomaly events on civic.anomalies and count them by kind."""
        for event in events:
            result.anomalies[event["kind"]] += 1
            key = event["station_id"].encode()
            result.outputs.append(Output(self.topics.anomalies, key, encode("anomaly", event)))

    def _parse(
        self, record: SourceRecord, result: BatchResult
    ) -> tuple[RawReading, AcceptedReading] | None:
        if not record.value:
            self._dead_letter(record, Reason.INVALID_ENCODING, "empty message value", result)
            return None
        try:
            raw = parse_raw_reading(record.value)
        except InvalidInput as error:
            self._dead_letter(record, error.reason, error.detail, result)
            return None
        if record.key != raw.station_id.encode():
            detail = f"message key {record.key!r} must be the station_id {raw.station_id!r}"
            self._dead_letter(record, Reason.WRONG_KEY, detail, result, raw.ts_ms)
            return None
        try:
            value_epa = check_reading(raw.pollutant, raw.value, raw.unit)
        except InvalidReading as error:
            self._dead_letter(record, Reason(error.reason), error.detail, result, raw.ts_ms)
            return None
        correction = None
        if raw.pollutant == "pm25" and self.sensors.is_purpleair(raw.station_id, raw.sensor_id):
            corrected = self._purpleair(record, raw, result)
            if corrected is None:
                return None
            value_epa, correction = corrected.pm25, corrected.model
        accepted = AcceptedReading(
            pollutant=raw.pollutant,
            ts_ms=raw.ts_ms,
            sensor_id=raw.sensor_id,
            value=raw.value,
            unit=raw.unit,
            value_epa=value_epa,
            lat=raw.lat,
            lon=raw.lon,
            correction=correction,
        )
        return raw, accepted

    def _purpleair(
        self, record: SourceRecord, raw: RawReading, result: BatchResult
    ) -> purpleair.Correction | None:
        """EPA's correction of a PurpleAir PM2.5 reading; None (dead-lettered) when it
        lacks its inputs or its channels disagree beyond EPA's cleaning criteria."""
        a, b, rh = raw.channel_a, raw.channel_b, raw.relative_humidity
        if a is None or b is None or rh is None:
            detail = "a PurpleAir PM2.5 reading needs channel_a, channel_b and relative_humidity"
            self._dead_letter(record, Reason.MISSING_FIELD, detail, result, raw.ts_ms)
            return None
        try:
            return purpleair.correct_pm25(a, b, rh)
        except purpleair.ChannelDisagreement as error:
            reason = Reason.CHANNEL_DISAGREEMENT
            self._dead_letter(record, reason, str(error), result, raw.ts_ms)
        except InvalidValue as error:
            self._dead_letter(record, Reason.INVALID_VALUE, str(error), result, raw.ts_ms)
        return None

    def _dead_letter(
        self,
        record: SourceRecord,
        reason: Reason,
        detail: str,
        result: BatchResult,
        event_ts: int | None = None,
    ) -> None:
        result.dead_letters[reason.value] += 1
        letter = {
            "source_topic": record.topic,
            "source_partition": record.partition,
            "source_offset": record.offset,
            "key": record.key,
            "value": record.value,
            "reason": reason.value,
            "detail": detail,
            "event_ts": event_ts,
        }
        result.outputs.append(
            Output(self.topics.deadletter, record.key, encode("deadletter", letter))
        )


class BatchRun:
    """One batch being applied by an AirQualityPipeline, fed in slices, in order."""

    def __init__(self, pipeline: AirQualityPipeline, store: StateStore) -> None:
        self.pipeline = pipeline
        self.store = store
        self.result = BatchResult()
        self.touched: dict[str, tuple[StationState, int]] = {}
        self.next_offsets: dict[int, int | None] = {}

    def feed(self, records: Sequence[SourceRecord]) -> None:
        """Apply the batch's next records."""
        pipeline, store, result = self.pipeline, self.store, self.result
        touched, next_offsets = self.touched, self.next_offsets
        for record in records:
            partition = record.partition
            if partition not in next_offsets:
                next_offsets[partition] = load_progress(store, partition)
            expected = next_offsets[partition]
            if expected is not None and record.offset < expected:
                result.redelivered += 1  # applied by an earlier batch
                continue
            if expected is not None and record.offset > expected:
                # The consumer skipped records (Faust can, around rebalances): apply nothing
                # of this partition until it has been rewound to the first one not applied.
                gap = result.gaps.get(partition)
                if gap is None or record.offset < gap.first_seen:
                    result.gaps[partition] = Gap(expected, record.offset)
                result.skipped += 1
                continue
            next_offsets[partition] = record.offset + 1
            try:
                reading = pipeline._parse(record, result)
            except Exception as error:  # a gap in validation must not stop the worker
                detail = f"{type(error).__name__}: {error}"
                pipeline._dead_letter(record, Reason.UNPROCESSABLE, detail, result)
                continue
            if reading is None:
                continue
            raw, accepted = reading
            if raw.station_id in touched:
                state = touched[raw.station_id][0]
            else:
                state = pipeline._load(raw.station_id, store)
            touched[raw.station_id] = (state, record.partition)
            if state.already_applied(record.partition, record.offset):
                result.redelivered += 1
                continue
            state.mark_applied(record.partition, record.offset)
            if state.is_far_ahead(accepted.ts_ms):
                detail = (
                    f"ts {accepted.ts_ms} is more than {MAX_AHEAD_MS // DAY_MS} days ahead of "
                    f"the station's stream time {state.stream_time_ms} (a clock error; "
                    f"{REANCHOR_AFTER + 1} agreeing readings in a row move stream time)"
                )
                reason = Reason.INVALID_TIMESTAMP
                pipeline._dead_letter(record, reason, detail, result, accepted.ts_ms)
            elif state.is_late(accepted.ts_ms, pipeline.windows):
                outcome = state.fill_late(accepted, pipeline.windows, pipeline.days)
                if outcome == "filled":
                    result.accepted += 1
                    result.daily_corrections += 1
                    pipeline._close(state, result)
                else:
                    detail = (
                        f"hour of {accepted.ts_ms} closed at stream time {state.stream_time_ms}"
                        f" (allowed lateness {pipeline.windows.allowed_lateness_ms} ms)"
                    )
                    if outcome == "duplicate":
                        detail = f"{accepted.pollutant} at {accepted.ts_ms} already filled its hour"
                    reason = Reason.LATE if outcome == "late" else Reason.DUPLICATE
                    pipeline._dead_letter(record, reason, detail, result, accepted.ts_ms)
            elif state.is_duplicate(accepted):
                detail = f"{accepted.pollutant} at {accepted.ts_ms} was already accepted"
                pipeline._dead_letter(record, Reason.DUPLICATE, detail, result, accepted.ts_ms)
            else:
                before = state.stream_time_ms
                state.add(accepted)
                result.accepted += 1
                _keep_newest(result.newest_event_ms, (record.topic, partition), accepted.ts_ms)
                sensor = (raw.station_id, accepted.pollutant)
                _keep_newest(result.sensor_event_ms, sensor, accepted.ts_ms)
                if state.stream_time_ms != before:
                    pipeline._close(state, result)

    def finish(self) -> BatchResult:
        """The batch's result: its outputs, then the new states of the stations it touched
        and the progress of its partitions."""
        pipeline, result = self.pipeline, self.result
        touched, next_offsets = self.touched, self.next_offsets
        for station_id, (state, partition) in touched.items():
            result.open_windows[station_id] = len(state.open_hours)
            data = encode_state(state)
            result.state_updates.append(StateUpdate(station_id, partition, data))
            pipeline._decoded[station_id] = (data, state)
        while len(pipeline._decoded) > DECODED_STATES_MAX:
            del pipeline._decoded[next(iter(pipeline._decoded))]
        # Progress last: a crash before it leaves station states ahead of it, and their own
        # source offsets make the re-delivered records no-ops.
        for partition, next_offset in sorted(next_offsets.items()):
            if next_offset is not None:
                result.state_updates.append(progress_update(partition, next_offset))
        return result
