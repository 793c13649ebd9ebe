"""Event time: clock hours, stream time and when an hour is final.

Stream time is kept per station (the largest event time seen for that station's key),
not per partition. Which hours are final, and which events are late, then depend only on
the station's own events in their Kafka order — never on how stations share partitions,
on the partition count, on batch sizes or on processing speed. That is what makes a
replay into a namespace with a different partition count reproduce live results exactly.

A clock error must not move stream time far ahead (every later event would be late):
an event more than `MAX_AHEAD_MS` ahead of its stream time is rejected (`far_ahead`),
unless `REANCHOR_AFTER` such events in a row agree, which is a source back from a long
silence rather than a bad clock. The rule reads the same key's events only, so it too
decides alike in every replay.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "DAY_MS",
    "HOUR_MS",
    "MAX_AHEAD_MS",
    "REANCHOR_AFTER",
    "AheadRun",
    "HourlyWindows",
    "LocalDays",
    "far_ahead",
    "hour_start",
    "standard_offset_ms",
]

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
MAX_AHEAD_MS = 30 * DAY_MS  # the Beijing data has a station silent for 14 days
REANCHOR_AFTER = 12
_EPOCH_DAY = date(1970, 1, 1)

AheadRun = tuple[int, int]
"""(event time of the first, count) of a run of consecutive far-ahead events."""


def far_ahead(
    stream_time_ms: int | None, ts_ms: int, run: AheadRun | None
) -> tuple[bool, AheadRun | None]:
    """Is an event at `ts_ms` too far ahead of `stream_time_ms` to accept? And the run of
    far-ahead events after it (None: no run).

    An event more than `MAX_AHEAD_MS` ahead is rejected and counted; events that lie
    within `MAX_AHEAD_MS` of the run's first one extend the run, others start a new one.
    The event after `REANCHOR_AFTER` agreeing ones is accepted (and moves stream time).
    An event that is not far ahead ends the run. No stream time yet: nothing is ahead.
    """
    if stream_time_ms is None or ts_ms <= stream_time_ms + MAX_AHEAD_MS:
        return False, None
    if run is not None and abs(ts_ms - run[0]) <= MAX_AHEAD_MS:
        run = (run[0], run[1] + 1)
    else:
        run = (ts_ms, 1)
    if run[1] > REANCHOR_AFTER:
        return False, None
    return True, run


_REFERENCE = datetime(2024, 1, 15, 12, tzinfo=UTC)


def hour_start(ts_ms: int) -> int:
    """Start of the clock hour (UTC epoch ms) that contains `ts_ms`."""
    return ts_ms - ts_ms % HOUR_MS


@dataclass(frozen=True)
class HourlyWindows:
    """Tumbling clock-hour windows with a grace period (`allowed_lateness_ms`).

    An hour is final once stream time reaches the hour's end plus the allowed lateness;
    an event for a final hour is late. A final hour whose last reading of a series may
    still turn out to be a spike (only the series' next reading can tell) is published
    once that next reading has been judged, or at the latest when stream time reaches
    the hour's end + lateness + `spike_wait_ms` (`publish_by`; CIVIC_SPIKE_WAIT).
    """

    allowed_lateness_ms: int
    spike_wait_ms: int = HOUR_MS

    def closes_at(self, hour_start_ms: int) -> int:
        """Stream time at which the hour starting at `hour_start_ms` becomes final."""
        return hour_start_ms + HOUR_MS + self.allowed_lateness_ms

    def is_final(self, hour_start_ms: int, stream_time_ms: int | None) -> bool:
        """True when no more events for that hour are accepted."""
        return stream_time_ms is not None and stream_time_ms >= self.closes_at(hour_start_ms)

    def publish_by(self, hour_start_ms: int) -> int:
        """Stream time at which a final hour is published even if a spike is unconfirmed."""
        return self.closes_at(hour_start_ms) + self.spike_wait_ms


def standard_offset_ms(zone: str) -> int:
    """The zone's *standard* UTC offset in ms: what its clocks show without daylight saving.

    ``utcoffset() - dst()`` at a fixed instant (2024-01-15 12:00 UTC), so the answer is the
    same on every machine and in both hemispheres (Sydney is on daylight time in January:
    +11:00 - 1:00 = +10:00). America/New_York gives -5 h all year, Asia/Shanghai +8 h.
    Raises ValueError for a zone name the time-zone database does not know.
    """
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError) as error:
        msg = f"unknown time zone {zone!r}: {error}"
        raise ValueError(msg) from None
    local = _REFERENCE.astimezone(tz)
    offset = local.utcoffset() or timedelta(0)
    return (offset - (local.dst() or timedelta(0))) // timedelta(milliseconds=1)


@dataclass(frozen=True)
class LocalDays:
    """Days from midnight to midnight in local standard time: one fixed UTC offset all year.

    The EPA daily AQI is computed over local standard time (no daylight-saving shift), so
    every day has exactly 24 clock hours. Hours are the pipeline's UTC clock hours; for the
    rare zones whose standard offset is not a whole number of hours (India +5:30), a day
    is the 24 UTC clock hours from the one that contains local midnight.
    """

    offset_ms: int = 0

    @property
    def _aligned_offset_ms(self) -> int:
        return -(-self.offset_ms // HOUR_MS) * HOUR_MS  # rounded up to a whole hour

    def day_start(self, ts_ms: int) -> int:
        """UTC epoch ms of the start of the local standard day that contains `ts_ms`."""
        local = ts_ms + self._aligned_offset_ms
        return local - local % DAY_MS - self._aligned_offset_ms

    def date_of(self, day_start_ms: int) -> date:
        """The calendar date of the day starting at `day_start_ms`."""
        return _EPOCH_DAY + timedelta(days=(day_start_ms + self._aligned_offset_ms) // DAY_MS)

    @property
    def offset_minutes(self) -> int:
        return self.offset_ms // 60_000
