"""One station's event-time state: open hours, closed hourly means, local days, stream time.

`StationState` is a plain value with `snapshot()`/`restore()`: the worker keeps it in a
changelog-backed Faust table, so a restarted or rebalanced worker resumes exactly where
the last durable write left it. Nothing here touches Kafka or a clock.

Daily AQI (local standard-time days, `streams.time.LocalDays`): the hourly means of closed
hours stay in `history` for as long as a day may still need them. A day is *final* once
stream time reaches its end + 7 hours (the last ozone and CO windows end at 07:00 of the
next day) + the allowed lateness; it is published then, as revision 0. Every hour it
uses is final by then, so an accepted reading can no longer change it. What can: a
reading that arrives after its hour was final, for an hour that had *no* reading of that
pollutant (a gap, e.g. a gateway uploading buffered data). Such a reading cannot change
the hourly record or the readings dataset (both are published once, final), but while
its day is *correctable* (up to one day of stream time after the day was final) it fills
the gap in the day's hourly series, and the day is published again with the next
revision if its record changes. Readings for hours that had data are late, as before.

Anomaly detection: every pollutant of a station has its `processors.anomaly` detector
(`Series`), fed with an hour's readings in time order when the hour is final, so that
readings arriving out of order within the allowed lateness change nothing. Readings with
a fault flag are left out of the hourly means (so out of the AQI and the daily AQI), and
the hourly record counts them in `excluded_count`. Each flag of a published reading is
one anomaly event, and so is a series that has been silent for longer than the stale
limit of the station's stream time (`stale_sensors`). Late readings that fill a day's
gap (`fill_late`) are not shown to the detector.

Spikes: only a series' next reading tells a spike from a step. A final hour whose last
reading of some series may still be a spike (`SeriesDetector.spike_pending`) is *held*
(`HeldHour`): it is published when every such series has been given its next reading
(that reading's hour is final and judged), or when stream time reaches
`HourlyWindows.publish_by` (end + lateness + the spike wait), whichever comes first.
Hours are published in order, so the hours after a held one wait for it (their rolling
means need its mean), and so does a day that contains one. All of it is decided by event
time, so what is published never depends on batching; a spike never enters a published
mean unless its next reading comes after the wait (then only its anomaly event says so).
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import islice
from typing import Any, Final, Literal

from processors import aqi, daily, health, rolling
from processors.anomaly import FAULT_FLAGS, SeriesDetector, Verdict
from processors.units import EPA_UNITS
from streams.time import (
    DAY_MS,
    HOUR_MS,
    AheadRun,
    HourlyWindows,
    LocalDays,
    far_ahead,
    hour_start,
)

__all__ = [
    "CORRECTION_MS",
    "DAILY_TAIL_MS",
    "AcceptedReading",
    "Closed",
    "ClosedHour",
    "HeldHour",
    "Series",
    "StationState",
]

_SNAPSHOT_VERSION = 4
_OPEN_HOURS_MARK = "\x00open-hours\x00"  # where snapshot_json splices the open hours
# 1: no daily state, no correction on readings; 2: no anomaly detectors (both still
# restored: the detectors start fresh and learn the series again).
_HISTORY_HOURS = 24  # the hourly look-back: 24 h rolling means (NowCast needs 12)
_SPAN_MS = (_HISTORY_HOURS - 1) * HOUR_MS
DAILY_TAIL_MS = daily.NEXT_DAY_HOURS * HOUR_MS
"""The next day's hours a day's ozone and CO windows reach into (07:00)."""
CORRECTION_MS = DAY_MS
"""How long (stream time) after it was final a day can still be corrected."""

_NO_MEANS = (None, None, None)  # a pollutant whose readings this hour were all faulty
# json.dumps with any option builds a JSONEncoder per call: these are built once.
_compact_json: Final = json.JSONEncoder(separators=(",", ":")).encode
_snapshot_json: Final = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode
_digest_json: Final = json.JSONEncoder(separators=(",", ":"), sort_keys=True, default=str).encode
LateOutcome = Literal["filled", "late", "duplicate"]


def _as_float(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


# Not frozen: a frozen dataclass sets each field through object.__setattr__ (2-3x slower
# to build, and one is built per reading). Treated as a value all the same: never mutated.
# Its __init__ is written out: the one dataclasses generates runs interpreted even in the
# compiled build (mypyc compiles only what the class body holds).
@dataclass(slots=True, init=False)
class AcceptedReading:
    """A validated reading waiting for its hour to become final."""

    pollutant: str
    ts_ms: int
    sensor_id: str | None
    value: Decimal
    unit: str
    value_epa: Decimal
    lat: float | None
    lon: float | None
    correction: str | None = None
    """The correction model behind `value_epa` (PurpleAir sensors), else None."""
    flags: tuple[str, ...] = ()
    """The anomaly detector's flags, sorted; a spike is added when the next reading shows it."""
    score: float | None = None
    """The anomaly score; None when the detector did not see the reading (out of order)."""
    expected: tuple[float, float] | None = None
    """The range the detector expected (EPA units), None while it learns."""
    detail: str = ""
    _row_json: str | None = field(default=None, init=False, repr=False, compare=False)
    """`to_row()` as JSON, made once: a reading is saved with its station every batch
    until its hour closes (`judged` makes a fresh reading without it)."""
    _floats: tuple[float, float] | None = field(default=None, init=False, repr=False, compare=False)
    """(value, value_epa) as floats (`as_floats`)."""

    def __init__(
        self,
        pollutant: str,
        ts_ms: int,
        sensor_id: str | None,
        value: Decimal,
        unit: str,
        value_epa: Decimal,
        lat: float | None,
        lon: float | None,
        correction: str | None = None,
        flags: tuple[str, ...] = (),
        score: float | None = None,
        expected: tuple[float, float] | None = None,
        detail: str = "",
    ) -> None:
        self.pollutant = pollutant
        self.ts_ms = ts_ms
        self.sensor_id = sensor_id
        self.value = value
        self.unit = unit
        self.value_epa = value_epa
        self.lat = lat
        self.lon = lon
        self.correction = correction
        self.flags = flags
        self.score = score
        self.expected = expected
        self.detail = detail
        self._row_json = None
        self._floats = None

    def as_floats(self) -> tuple[float, float]:
        """(value, value_epa) as floats, converted once: the detector, the staleness check
        and the outputs all take floats, and a Decimal converts through its text."""
        if self._floats is None:
            self._floats = (float(self.value), float(self.value_epa))
        return self._floats

    @property
    def is_fault(self) -> bool:
        """True when a fault flag keeps the reading out of the hourly means and the AQI."""
        return not FAULT_FLAGS.isdisjoint(self.flags)

    def judged(self, verdict: Verdict) -> AcceptedReading:
        """This reading with the detector's verdict on it."""
        fresh = AcceptedReading(  # not dataclasses.replace: that is 3x slower, per reading
            pollutant=self.pollutant,
            ts_ms=self.ts_ms,
            sensor_id=self.sensor_id,
            value=self.value,
            unit=self.unit,
            value_epa=self.value_epa,
            lat=self.lat,
            lon=self.lon,
            correction=self.correction,
            flags=tuple(sorted(verdict.flags)),
            score=verdict.score,
            expected=verdict.expected,
            detail=verdict.detail,
        )
        fresh._floats = self._floats
        return fresh

    def to_row(self) -> list[Any]:
        return [
            self.pollutant,
            self.ts_ms,
            self.sensor_id,
            str(self.value),
            self.unit,
            str(self.value_epa),
            self.lat,
            self.lon,
            self.correction,
            list(self.flags),
            self.score,
            None if self.expected is None else list(self.expected),
            self.detail,
        ]

    def row_json(self) -> str:
        if self._row_json is None:
            self._row_json = _compact_json(self.to_row())
        return self._row_json

    @classmethod
    def from_row(cls, row: list[Any]) -> AcceptedReading:
        pollutant, ts_ms, sensor_id, value, unit, value_epa, lat, lon, *rest = row
        correction = rest[0] if rest else None  # version 1 rows have no correction
        # version 1 and 2 rows have no verdict
        flags, score, expected, detail = rest[1:5] if len(rest) >= 5 else ([], None, None, "")
        return cls(
            pollutant,
            ts_ms,
            sensor_id,
            Decimal(value),
            unit,
            Decimal(value_epa),
            lat,
            lon,
            correction,
            tuple(flags),
            score,
            None if expected is None else (expected[0], expected[1]),
            detail,
        )


@dataclass
class Series:
    """One pollutant of a station as the anomaly detector sees it."""

    detector: SeriesDetector
    last_fed_ms: int | None = None
    """Event time of the newest reading fed to the detector (its hour is final)."""
    last_seen_ms: int | None = None
    """Event time of the newest accepted reading (what staleness is measured from)."""
    last_value: float | None = None
    """Its value in EPA units (what a stale event reports)."""
    stale: bool = False
    """True once the silence since `last_seen_ms` has been reported."""
    _encoded: str | None = field(default=None, repr=False, compare=False)
    """The detector's state as saved, until it is fed again (a station is saved every batch,
    its detectors change once an hour)."""

    def update(self, ts_s: float, value_epa: float, value: float) -> Verdict:
        """Feed the detector (the only way its state changes)."""
        self._encoded = None
        return self.detector.update(ts_s, value_epa, value)

    def to_row(self) -> list[Any]:
        if self._encoded is None:
            self._encoded = base64.b64encode(self.detector.to_bytes()).decode()
        return [self._encoded, self.last_fed_ms, self.last_seen_ms, self.last_value, self.stale]

    @classmethod
    def from_row(cls, row: list[Any]) -> Series:
        data, last_fed_ms, last_seen_ms, last_value, stale = row
        detector = SeriesDetector.from_bytes(base64.b64decode(data))
        return cls(detector, last_fed_ms, last_seen_ms, last_value, stale)


@dataclass
class HeldHour:
    """A final hour, judged by the detectors, waiting for its spikes to be confirmed."""

    hour_ms: int
    readings: dict[tuple[str, int], AcceptedReading]
    """(pollutant, ts) → the reading with its verdict (revised if the next one showed a spike)."""
    events: list[dict[str, Any]] = field(default_factory=list)
    """Spike events of readings in hours already published, found while judging this one."""
    waiting: set[str] = field(default_factory=set)
    """Pollutants whose last reading here may still be a spike: not yet given the next."""

    def to_row(self) -> list[Any]:
        rows = [r.to_row() for _, r in sorted(self.readings.items())]
        return [rows, self.events, sorted(self.waiting)]

    @classmethod
    def from_row(cls, hour_ms: int, row: list[Any]) -> HeldHour:
        rows, events, waiting = row
        readings = [AcceptedReading.from_row(r) for r in rows]
        return cls(hour_ms, {(r.pollutant, r.ts_ms): r for r in readings}, events, set(waiting))


@dataclass(frozen=True)
class ClosedHour:
    """What a final hour publishes: the hourly AQI record and the enriched readings."""

    aqi_record: dict[str, Any]
    enriched: list[dict[str, Any]]
    anomalies: list[dict[str, Any]] = field(default_factory=list)
    """One anomaly event per flag of each flagged reading, in reading order."""


@dataclass(frozen=True)
class Closed:
    """What one closing step publishes: final hours, then daily AQI records (revisions)."""

    hours: list[ClosedHour] = field(default_factory=list)
    days: list[dict[str, Any]] = field(default_factory=list)
    stale: list[dict[str, Any]] = field(default_factory=list)
    """Anomaly events (kind ``stale``) of sensors whose silence passed the limit."""


@dataclass
class StationState:
    """Event-time windows of one station (see streams.time for the rules)."""

    station_id: str
    stream_time_ms: int | None = None
    source_partition: int | None = None
    source_offset: int = -1
    open_hours: dict[int, dict[tuple[str, int], AcceptedReading]] = field(default_factory=dict)
    """Hour start → its readings in the order they were accepted (only ever appended to)."""
    history: dict[str, dict[int, Decimal]] = field(default_factory=dict)
    late_fills: dict[str, dict[int, dict[int, Decimal]]] = field(default_factory=dict)
    """pollutant → hour → ts → value: late readings that filled a gap of a correctable day."""
    pending_days: set[int] = field(default_factory=set)
    """Starts of days with data that are not yet published."""
    published_days: dict[int, tuple[int, str]] = field(default_factory=dict)
    """Day start → (revision, digest of its record) of published, still correctable days."""
    daily_since_ms: int | None = None
    """Days starting before this are not published (restored from a version 1 snapshot,
    whose history cannot show them whole)."""
    series: dict[str, Series] = field(default_factory=dict)
    """Pollutant → its anomaly detector and when it last reported."""
    ahead: AheadRun | None = None
    """The current run of far-ahead readings (streams.time.far_ahead), if any."""
    held: dict[int, HeldHour] = field(default_factory=dict)
    """Final hours judged but not yet published (a spike may be pending), by hour start."""
    _dirty_days: set[int] = field(default_factory=set, repr=False, compare=False)
    _open_json: dict[int, tuple[int, str]] = field(default_factory=dict, repr=False, compare=False)
    """Hour start → (readings, their rows as JSON) of open hours (`snapshot_json`)."""
    _kept_from: int | None = field(default=None, repr=False, compare=False)
    """No hour before this is in `history` or `late_fills` (None: not known): `_prune`
    scans them only when the oldest hour to keep moves past it."""

    # -- source positions: makes re-delivery after a crash a no-op ----------------------
    def already_applied(self, partition: int, offset: int) -> bool:
        """True when this source record's effect is already part of the state."""
        return partition == self.source_partition and offset <= self.source_offset

    def mark_applied(self, partition: int, offset: int) -> None:
        self.source_partition = partition
        self.source_offset = offset

    # -- windows --------------------------------------------------------------------------
    def is_late(self, ts_ms: int, windows: HourlyWindows) -> bool:
        """True when the hour of `ts_ms` is already final in this station's stream time."""
        return windows.is_final(hour_start(ts_ms), self.stream_time_ms)

    def is_far_ahead(self, ts_ms: int) -> bool:
        """True when `ts_ms` is too far ahead of this station's stream time to accept
        (streams.time.far_ahead). Counts the run of such readings, so call it once per
        reading, in stream order."""
        rejected, self.ahead = far_ahead(self.stream_time_ms, ts_ms, self.ahead)
        return rejected

    def is_duplicate(self, reading: AcceptedReading) -> bool:
        """True when a reading of the same pollutant and time is already in its hour."""
        hour = self.open_hours.get(hour_start(reading.ts_ms), {})
        return (reading.pollutant, reading.ts_ms) in hour

    def add(self, reading: AcceptedReading) -> None:
        """Accept a reading that is neither late nor a duplicate; advance stream time."""
        hour = self.open_hours.setdefault(hour_start(reading.ts_ms), {})
        hour[(reading.pollutant, reading.ts_ms)] = reading
        if self.stream_time_ms is None or reading.ts_ms > self.stream_time_ms:
            self.stream_time_ms = reading.ts_ms
        series = self._series_of(reading.pollutant)
        if series.last_seen_ms is None or reading.ts_ms > series.last_seen_ms:
            series.last_seen_ms = reading.ts_ms
            series.last_value = reading.as_floats()[1]
            series.stale = False

    def _series_of(self, pollutant: str) -> Series:
        series = self.series.get(pollutant)
        if series is None:
            series = self.series[pollutant] = Series(SeriesDetector(pollutant))
        return series

    def _judge(self, hour_ms: int, readings: dict[tuple[str, int], AcceptedReading]) -> HeldHour:
        """Feed a final hour's readings to their series' detectors, in time order.

        Fed when the hour is final, the detector sees the same readings in the same order
        whatever order they arrived in. A spike is known one reading later: the revision
        goes to the previous reading, in this hour or in a held one; when that hour was
        already published (the next reading came after the spike wait), only its anomaly
        event reports it.
        """
        judged: dict[tuple[str, int], AcceptedReading] = {}
        events: list[dict[str, Any]] = []
        for reading in sorted(readings.values(), key=lambda r: (r.ts_ms, r.pollutant)):
            series = self._series_of(reading.pollutant)
            value, value_epa = reading.as_floats()
            verdict = series.update(reading.ts_ms / 1000.0, value_epa, value)
            previous = series.last_fed_ms
            series.last_fed_ms = reading.ts_ms
            judged[(reading.pollutant, reading.ts_ms)] = reading.judged(verdict)
            for held in self.held.values():  # the series has been given its next reading
                held.waiting.discard(reading.pollutant)
            if verdict.revision is None or previous is None:
                continue
            key = (reading.pollutant, previous)
            held_hour = self.held.get(hour_start(previous))
            if key in judged:
                judged[key] = judged[key].judged(verdict.revision)
            elif held_hour is not None and key in held_hour.readings:
                held_hour.readings[key] = held_hour.readings[key].judged(verdict.revision)
            else:
                spike = verdict.revision
                low, high = spike.expected if spike.expected is not None else (None, None)
                events.append(
                    {
                        "station_id": self.station_id,
                        "sensor_id": reading.sensor_id,
                        "pollutant": reading.pollutant,
                        "ts": previous,
                        "kind": "spike",
                        "score": spike.score,
                        "value": spike.value,
                        "unit": EPA_UNITS[reading.pollutant],
                        "expected_low": low,
                        "expected_high": high,
                        "detail": spike.detail + " (its hour was already published)",
                    }
                )
        pollutants = {pollutant for pollutant, _ in judged}
        waiting = {p for p in pollutants if self.series[p].detector.spike_pending}
        return HeldHour(hour_ms, judged, events, waiting)

    def _event(
        self, reading: AcceptedReading, kind: str, value: float | None = None
    ) -> dict[str, Any]:
        """The `civic.anomalies` record of one flag of one reading."""
        low, high = reading.expected if reading.expected is not None else (None, None)
        return {
            "station_id": self.station_id,
            "sensor_id": reading.sensor_id,
            "pollutant": reading.pollutant,
            "ts": reading.ts_ms,
            "kind": kind,
            "score": reading.score,
            "value": reading.as_floats()[1] if value is None else value,
            "unit": EPA_UNITS[reading.pollutant],
            "expected_low": low,
            "expected_high": high,
            "detail": reading.detail,
        }

    def stale_sensors(self, stale_after_ms: int) -> list[dict[str, Any]]:
        """Anomaly events for series silent longer than `stale_after_ms` of this station's
        stream time, each once per silence (a new reading ends it)."""
        events: list[dict[str, Any]] = []
        now = self.stream_time_ms
        for pollutant, series in sorted(self.series.items()):
            last = series.last_seen_ms
            if series.stale or last is None or now is None or now - last <= stale_after_ms:
                continue
            series.stale = True
            hours = stale_after_ms / HOUR_MS
            events.append(
                {
                    "station_id": self.station_id,
                    "sensor_id": None,
                    "pollutant": pollutant,
                    "ts": last + stale_after_ms,
                    "kind": "stale",
                    "score": None,
                    "value": series.last_value,
                    "unit": EPA_UNITS[pollutant],
                    "expected_low": None,
                    "expected_high": None,
                    "detail": f"no reading for more than {hours:g} h of stream time since {last}",
                }
            )
        return events

    def close_final_hours(
        self, windows: HourlyWindows, coordinates: tuple[float, float] | None = None
    ) -> list[ClosedHour]:
        """Judge every open hour that stream time has made final, oldest first; publish
        the held hours, in order, up to the first whose spike check is still pending."""
        final = sorted(h for h in self.open_hours if windows.is_final(h, self.stream_time_ms))
        for hour_ms in final:
            self.held[hour_ms] = self._judge(hour_ms, self.open_hours.pop(hour_ms))
        published: list[ClosedHour] = []
        for hour_ms in sorted(self.held):
            held = self.held[hour_ms]
            now = self.stream_time_ms
            if held.waiting and (now is None or now < windows.publish_by(hour_ms)):
                break
            del self.held[hour_ms]
            published.append(self._close(held, coordinates))
        return published

    def close(
        self,
        windows: HourlyWindows,
        days: LocalDays,
        coordinates: tuple[float, float] | None = None,
        stale_after_ms: int | None = None,
    ) -> Closed:
        """Close the final hours, publish the final days and the corrected ones, prune.

        Call it whenever stream time advanced or a late reading filled a gap: a day is
        then published exactly when it becomes final in stream time, so what is published
        (and in which revisions) never depends on how records were batched. With
        `stale_after_ms`, sensors silent for longer are reported (`Closed.stale`).
        """
        hours = self.close_final_hours(windows, coordinates)
        stale = [] if stale_after_ms is None else self.stale_sensors(stale_after_ms)
        for closed in hours:
            self.pending_days.add(days.day_start(closed.aqi_record["hour_start"]))
        records: list[dict[str, Any]] = []
        for day_start in sorted(self.pending_days):
            if self._day_final(day_start, windows):
                self.pending_days.discard(day_start)
                if self.daily_since_ms is None or day_start >= self.daily_since_ms:
                    records.append(self._publish_day(day_start, days, revision=0))
        for day_start in sorted(self._dirty_days):
            published = self.published_days.get(day_start)
            if published is not None:
                record = self._daily_record(day_start, days, published[0] + 1)
                if _digest(record) != published[1]:
                    records.append(self._publish_day(day_start, days, published[0] + 1))
        self._dirty_days.clear()
        self._prune(windows, days)
        return Closed(hours, records, stale)

    # -- daily AQI ---------------------------------------------------------------------
    def _day_final(self, day_start: int, windows: HourlyWindows) -> bool:
        """True once stream time has passed the day's end, its 7-hour tail and the lateness,
        and none of those hours is still held for a spike check."""
        final_at = day_start + DAY_MS + DAILY_TAIL_MS + windows.allowed_lateness_ms
        if self.stream_time_ms is None or self.stream_time_ms < final_at:
            return False
        return not any(day_start <= h < day_start + DAY_MS + DAILY_TAIL_MS for h in self.held)

    def _day_expired(self, day_start: int, windows: HourlyWindows) -> bool:
        """True once the day can no longer be corrected."""
        expires_at = day_start + DAY_MS + DAILY_TAIL_MS + windows.allowed_lateness_ms
        return self.stream_time_ms is not None and self.stream_time_ms >= expires_at + CORRECTION_MS

    def fill_late(
        self, reading: AcceptedReading, windows: HourlyWindows, days: LocalDays
    ) -> LateOutcome:
        """Apply a reading whose hour is final to the daily AQI, if it fills a gap.

        ``"filled"``: its hour had no reading of its pollutant and a day that uses the hour
        is still correctable; ``"duplicate"``: a late reading of the same pollutant and
        time already filled it; ``"late"``: anything else (its hour had data, or its days
        can no longer be corrected).
        """
        hour = hour_start(reading.ts_ms)
        if hour in self.history.get(reading.pollutant, {}):
            return "late"
        held = self.held.get(hour)
        if held is not None and any(p == reading.pollutant for p, _ in held.readings):
            return "late"  # the hour has data; it is only waiting for a spike check
        day_start = days.day_start(hour)
        # The day itself, and the day before when the hour is in the ozone/CO tail.
        affected = [day_start]
        if hour < day_start + DAILY_TAIL_MS:
            affected.append(day_start - DAY_MS)
        if self._day_expired(day_start, windows) or (
            self.daily_since_ms is not None and day_start < self.daily_since_ms
        ):
            return "late"
        fills = self.late_fills.setdefault(reading.pollutant, {}).setdefault(hour, {})
        if reading.ts_ms in fills:
            return "duplicate"
        fills[reading.ts_ms] = reading.value_epa
        self._keeping(hour)
        if day_start not in self.published_days:
            self.pending_days.add(day_start)
        self._dirty_days.update(affected)
        return "filled"

    def _daily_mean(self, pollutant: str, hour: int) -> Decimal | None:
        mean = self.history.get(pollutant, {}).get(hour)
        if mean is not None:
            return mean
        fills = self.late_fills.get(pollutant, {}).get(hour)
        if not fills:
            return None
        return rolling.mean(fills[ts] for ts in sorted(fills))

    def _daily_record(self, day_start: int, days: LocalDays, revision: int) -> dict[str, Any]:
        day_hours = range(day_start, day_start + DAY_MS, HOUR_MS)
        tail_hours = range(day_start + DAY_MS, day_start + DAY_MS + DAILY_TAIL_MS, HOUR_MS)
        pollutants = sorted(set(self.history) | set(self.late_fills))
        hours: dict[str, list[Decimal | None]] = {}
        head: dict[str, list[Decimal | None]] = {}
        for pollutant in pollutants:
            series = [self._daily_mean(pollutant, hour) for hour in day_hours]
            if any(value is not None for value in series):
                hours[pollutant] = series
                head[pollutant] = [self._daily_mean(pollutant, hour) for hour in tail_hours]
        result = daily.daily_aqi(hours, head)
        return {
            "station_id": self.station_id,
            "day": days.date_of(day_start),
            "day_start": day_start,
            "utc_offset_minutes": days.offset_minutes,
            "revision": revision,
            "aqi": result.aqi,
            "category": result.category,
            "main_pollutant": result.main_pollutant,
            "sub_indices": dict(result.sub_indices),
            "concentrations": {k: float(v) for k, v in result.concentrations.items()},
            "completeness": dict(result.completeness),
            "reasons": dict(result.reasons),
            "reason": result.reason,
            "health_message": health.cautionary_statement(result.category, result.main_pollutant),
            "aqi_version": aqi.AQI_VERSION,
        }

    def _publish_day(self, day_start: int, days: LocalDays, revision: int) -> dict[str, Any]:
        record = self._daily_record(day_start, days, revision)
        self.published_days[day_start] = (revision, _digest(record))
        return record

    def _prune(self, windows: HourlyWindows, days: LocalDays) -> None:
        """Forget days that can no longer be corrected, and the hours only they needed."""
        if self.stream_time_ms is None:
            return
        for day_start in [d for d in self.published_days if self._day_expired(d, windows)]:
            del self.published_days[day_start]
        for day_start in [d for d in self.pending_days if self._day_expired(d, windows)]:
            self.pending_days.discard(day_start)  # only a restored, partial day can be here
        # The oldest day still correctable starts after stream time − (day + tail +
        # lateness + correction span); its hours, and the hourly look-back, are kept.
        span = DAY_MS + DAILY_TAIL_MS + windows.allowed_lateness_ms + CORRECTION_MS
        oldest_day = days.day_start(self.stream_time_ms - span)
        if self._day_expired(oldest_day, windows):
            oldest_day += DAY_MS
        if self._kept_from is not None and oldest_day <= self._kept_from:
            return  # what is kept starts at or after oldest_day already (checked once a day)
        newest_closed = max((max(m) for m in self.history.values() if m), default=None)
        oldest_kept = oldest_day
        if newest_closed is not None:
            oldest_kept = min(oldest_kept, newest_closed - _SPAN_MS)
        for table in (self.history, self.late_fills):
            for pollutant in list(table):
                hours = table[pollutant]
                for hour_ms in [h for h in hours if h < oldest_kept]:
                    del hours[hour_ms]
                if not hours:
                    del table[pollutant]
        self._kept_from = oldest_kept

    def _keeping(self, hour_ms: int) -> None:
        """Note an hour added to `history` or `late_fills` (see `_kept_from`)."""
        if self._kept_from is not None and hour_ms < self._kept_from:
            self._kept_from = None

    def _close(self, held: HeldHour, coordinates: tuple[float, float] | None) -> ClosedHour:
        # Sorting fixes the summation order, so the means do not depend on arrival order.
        hour_ms = held.hour_ms
        ordered = [held.readings[key] for key in sorted(held.readings)]
        # Faulty readings (stuck, spike, ...) are not air: they stay out of the means.
        by_pollutant: dict[str, list[Decimal]] = {}
        excluded = 0
        for reading in ordered:
            if reading.is_fault:
                excluded += 1
            else:
                by_pollutant.setdefault(reading.pollutant, []).append(reading.value_epa)
        hourly_means = {p: rolling.mean(values) for p, values in by_pollutant.items()}
        for pollutant, hourly_mean in hourly_means.items():
            self.history.setdefault(pollutant, {})[hour_ms] = hourly_mean
        self._keeping(hour_ms)

        window = list(range(hour_ms - _SPAN_MS, hour_ms + 1, HOUR_MS))  # boxed once per hour
        series = {p: [means.get(hour) for hour in window] for p, means in self.history.items()}
        result = aqi.hourly_aqi(series)
        aqi_record = {
            "station_id": self.station_id,
            "hour_start": hour_ms,
            "aqi": result.aqi,
            "category": result.category,
            "main_pollutant": result.main_pollutant,
            "sub_indices": dict(result.sub_indices),
            "concentrations": {k: float(v) for k, v in result.concentrations.items()},
            "hourly_means": {p: float(v) for p, v in hourly_means.items()},
            "reading_count": len(ordered) - excluded,
            "excluded_count": excluded,
            "reason": result.reason,
            "aqi_version": aqi.AQI_VERSION,
            "health_message": health.cautionary_statement(result.category, result.main_pollutant),
        }
        rolling_means = {
            p: (
                _as_float(hourly_means[p]),
                _as_float(rolling.rolling_mean(series[p], 8, 6)),
                _as_float(rolling.rolling_mean(series[p], 24, 18)),
            )
            for p in hourly_means
        }
        enriched = [
            self._enriched(r, hour_ms, rolling_means.get(r.pollutant, _NO_MEANS), coordinates)
            for r in ordered
        ]
        anomalies = held.events + [self._event(r, kind) for r in ordered for kind in r.flags]
        return ClosedHour(aqi_record, enriched, anomalies)

    def _enriched(
        self,
        reading: AcceptedReading,
        hour_ms: int,
        means: tuple[float | None, float | None, float | None],
        coordinates: tuple[float, float] | None,
    ) -> dict[str, Any]:
        lat, lon = reading.lat, reading.lon
        if lat is None and lon is None and coordinates is not None:
            lat, lon = coordinates
        mean_1h, mean_8h, mean_24h = means
        value, value_epa = reading.as_floats()
        return {
            "station_id": self.station_id,
            "sensor_id": reading.sensor_id,
            "pollutant": reading.pollutant,
            "ts": reading.ts_ms,
            "hour_start": hour_ms,
            "value": value,
            "unit": reading.unit,
            "value_epa": value_epa,
            "unit_epa": EPA_UNITS[reading.pollutant],
            "mean_1h": mean_1h,
            "mean_8h": mean_8h,
            "mean_24h": mean_24h,
            "lat": lat,
            "lon": lon,
            "flags": list(reading.flags),
            "anomaly_score": reading.score,
            "correction": reading.correction,
        }

    # -- snapshot ------------------------------------------------------------------------
    def snapshot(self, *, open_hours: bool = True) -> dict[str, Any]:
        """A JSON-ready value that `restore` turns back into an equal state (without its
        open hours if `open_hours` is false: `snapshot_json` adds them)."""
        return {
            "v": _SNAPSHOT_VERSION,
            "station_id": self.station_id,
            "stream_time_ms": self.stream_time_ms,
            "source_partition": self.source_partition,
            "source_offset": self.source_offset,
            "open_hours": {
                str(h): [r.to_row() for r in readings.values()]
                for h, readings in (sorted(self.open_hours.items()) if open_hours else ())
            },
            "history": {p: _hour_run(means) for p, means in sorted(self.history.items())},
            "late_fills": {
                p: {
                    str(h): {str(ts): str(v) for ts, v in sorted(fills.items())}
                    for h, fills in sorted(hours.items())
                }
                for p, hours in sorted(self.late_fills.items())
            },
            "pending_days": sorted(self.pending_days),
            "published_days": {
                str(d): [revision, digest]
                for d, (revision, digest) in sorted(self.published_days.items())
            },
            "daily_since_ms": self.daily_since_ms,
            "series": {p: series.to_row() for p, series in sorted(self.series.items())},
            "held": {str(h): held.to_row() for h, held in sorted(self.held.items())},
        } | ({"ahead": list(self.ahead)} if self.ahead is not None else {})

    def snapshot_json(self) -> str:
        """``json.dumps(self.snapshot(), separators=(",", ":"), sort_keys=True)``, the same
        text, with the open hours' readings spliced in from their cached rows: a station is
        saved after every batch that touches it, and its open hours are most of it."""
        snapshot = self.snapshot(open_hours=False)
        snapshot["open_hours"] = _OPEN_HOURS_MARK
        text = _snapshot_json(snapshot)
        marker = json.dumps(_OPEN_HOURS_MARK)
        if text.count(marker) != 1:  # a station_id that looks like the mark: no shortcut
            return _snapshot_json(self.snapshot())
        spliced = ",".join(
            f'"{hour}":[{self._open_hour_json(int(hour))}]'
            for hour in sorted(str(h) for h in self.open_hours)
        )
        for closed in [h for h in self._open_json if h not in self.open_hours]:
            del self._open_json[closed]
        return text.replace(marker, "{" + spliced + "}")

    def _open_hour_json(self, hour_ms: int) -> str:
        """An open hour's rows as JSON, extended by the readings accepted since last time
        (an open hour is only appended to, so its text only grows at the end)."""
        readings = self.open_hours[hour_ms]
        done, text = self._open_json.get(hour_ms, (0, ""))
        if done < len(readings):
            new = ",".join(r.row_json() for r in islice(readings.values(), done, None))
            text = f"{text},{new}" if text else new
            self._open_json[hour_ms] = (len(readings), text)
        return text

    @classmethod
    def restore(cls, snapshot: dict[str, Any]) -> StationState:
        """The state a `snapshot()` describes; version 1 snapshots (before the daily AQI)
        restore too, publishing only the days their history shows whole, version 1
        and 2 snapshots (before the anomaly detectors) restore with fresh detectors, and
        versions 1 to 3 keep their history as an hour → mean table."""
        version = snapshot.get("v")
        if version not in (1, 2, 3, _SNAPSHOT_VERSION):
            msg = f"unsupported station state version {version!r}"
            raise ValueError(msg)
        open_hours: dict[int, dict[tuple[str, int], AcceptedReading]] = {}
        for hour, rows in snapshot["open_hours"].items():
            readings = [AcceptedReading.from_row(row) for row in rows]
            open_hours[int(hour)] = {(r.pollutant, r.ts_ms): r for r in readings}
        history = {p: _hours_of(saved) for p, saved in snapshot["history"].items()}
        state = cls(
            station_id=snapshot["station_id"],
            stream_time_ms=snapshot["stream_time_ms"],
            source_partition=snapshot["source_partition"],
            source_offset=snapshot["source_offset"],
            open_hours=open_hours,
            history=history,
        )
        if version == 1:
            known = [h for means in history.values() for h in means] + list(open_hours)
            state.daily_since_ms = min(known) if known else None
            return state
        state.late_fills = {
            p: {
                int(h): {int(ts): Decimal(v) for ts, v in fills.items()}
                for h, fills in hours.items()
            }
            for p, hours in snapshot["late_fills"].items()
        }
        state.pending_days = set(snapshot["pending_days"])
        state.published_days = {
            int(d): (int(revision), str(digest))
            for d, (revision, digest) in snapshot["published_days"].items()
        }
        state.daily_since_ms = snapshot["daily_since_ms"]
        state.series = {p: Series.from_row(row) for p, row in snapshot.get("series", {}).items()}
        state.held = {
            int(h): HeldHour.from_row(int(h), row) for h, row in snapshot.get("held", {}).items()
        }
        if "ahead" in snapshot:  # absent: no run of far-ahead readings
            state.ahead = (int(snapshot["ahead"][0]), int(snapshot["ahead"][1]))
        return state


def _hour_run(means: dict[int, Decimal]) -> list[Any]:
    """Hourly means as [first hour, [mean or None, ...]] (version 4): a run of hours in a
    row takes a third of the space of an hour → mean table."""
    if not means:
        return [None, []]
    first, last = min(means), max(means)
    return [first, [_text_or_none(means.get(h)) for h in range(first, last + HOUR_MS, HOUR_MS)]]


def _text_or_none(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _hours_of(saved: Any) -> dict[int, Decimal]:
    """The hour → mean table of a saved history: version 4's run, or the older table."""
    if isinstance(saved, dict):
        return {int(h): Decimal(v) for h, v in saved.items()}
    first, values = saved
    return {
        first + i * HOUR_MS: Decimal(value) for i, value in enumerate(values) if value is not None
    }


def _digest(record: dict[str, Any]) -> str:
    """A short fingerprint of a daily record's content, its revision aside."""
    content = {k: v for k, v in record.items() if k != "revision"}
    text = _digest_json(content)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
