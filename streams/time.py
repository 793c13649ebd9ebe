"""Event time: clock hours, stream time and when an hour is final.

Stream time is kept per station (the largest event time seen for that station's key),
not per partition. Which hours are final, and which events are late, then depend only on
the station's own events in their Kafka order — never on how stations share partitions,
on the partition count, on batch sizes or on processing speed. That is what makes a
replay into a namespace with a different partition count reproduce live results exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["HOUR_MS", "HourlyWindows", "hour_start"]

HOUR_MS = 3_600_000


def hour_start(ts_ms: int) -> int:
    """Start of the clock hour (UTC epoch ms) that contains `ts_ms`."""
    return ts_ms - ts_ms % HOUR_MS


@dataclass(frozen=True)
class HourlyWindows:
    """Tumbling clock-hour windows with a grace period (`allowed_lateness_ms`).

    An hour is final once stream time reaches the hour's end plus the allowed lateness;
    an event for a final hour is late.
    """

    allowed_lateness_ms: int

    def closes_at(self, hour_start_ms: int) -> int:
        """Stream time at which the hour starting at `hour_start_ms` becomes final."""
        return hour_start_ms + HOUR_MS + self.allowed_lateness_ms

    def is_final(self, hour_start_ms: int, stream_time_ms: int | None) -> bool:
        """True when no more events for that hour are accepted."""
        return stream_time_ms is not None and stream_time_ms >= self.closes_at(hour_start_ms)
