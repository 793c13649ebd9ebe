"""One station's event-time state: open hours, closed hourly means, stream time.

`StationState` is a plain value with `snapshot()`/`restore()`: the worker keeps it in a
changelog-backed Faust table, so a restarted or rebalanced worker resumes exactly where
the last durable write left it. Nothing here touches Kafka or a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from processors import aqi, rolling
from processors.units import EPA_UNITS
from streams.time import HOUR_MS, HourlyWindows, hour_start

__all__ = ["AcceptedReading", "ClosedHour", "StationState"]

_SNAPSHOT_VERSION = 1
_HISTORY_HOURS = 24  # the longest look-back: 24 h rolling means (NowCast needs 12)
_SPAN_MS = (_HISTORY_HOURS - 1) * HOUR_MS


def _as_float(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True, slots=True)
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
        ]

    @classmethod
    def from_row(cls, row: list[Any]) -> AcceptedReading:
        pollutant, ts_ms, sensor_id, value, unit, value_epa, lat, lon = row
        return cls(pollutant, ts_ms, sensor_id, Decimal(value), unit, Decimal(value_epa), lat, lon)


@dataclass(frozen=True)
class ClosedHour:
    """What a final hour publishes: the hourly AQI record and the enriched readings."""

    aqi_record: dict[str, Any]
    enriched: list[dict[str, Any]]


@dataclass
class StationState:
    """Event-time windows of one station (see streams.time for the rules)."""

    station_id: str
    stream_time_ms: int | None = None
    source_partition: int | None = None
    source_offset: int = -1
    open_hours: dict[int, dict[tuple[str, int], AcceptedReading]] = field(default_factory=dict)
    history: dict[str, dict[int, Decimal]] = field(default_factory=dict)

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

    def close_final_hours(
        self, windows: HourlyWindows, coordinates: tuple[float, float] | None = None
    ) -> list[ClosedHour]:
        """Close every open hour that stream time has made final, oldest first."""
        final = sorted(h for h in self.open_hours if windows.is_final(h, self.stream_time_ms))
        return [self._close(h, self.open_hours.pop(h), coordinates) for h in final]

    def _close(
        self,
        hour_ms: int,
        readings: dict[tuple[str, int], AcceptedReading],
        coordinates: tuple[float, float] | None,
    ) -> ClosedHour:
        # Sorting fixes the summation order, so the means do not depend on arrival order.
        ordered = [readings[key] for key in sorted(readings)]
        by_pollutant: dict[str, list[Decimal]] = {}
        for reading in ordered:
            by_pollutant.setdefault(reading.pollutant, []).append(reading.value_epa)
        hourly_means = {p: rolling.mean(values) for p, values in by_pollutant.items()}
        for pollutant, hourly_mean in hourly_means.items():
            self.history.setdefault(pollutant, {})[hour_ms] = hourly_mean
        self._prune_history(hour_ms)

        series = {p: self._series(p, hour_ms) for p in self.history}
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
            "reading_count": len(ordered),
            "reason": result.reason,
            "aqi_version": aqi.AQI_VERSION,
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
            self._enriched(r, hour_ms, rolling_means[r.pollutant], coordinates) for r in ordered
        ]
        return ClosedHour(aqi_record, enriched)

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
        return {
            "station_id": self.station_id,
            "sensor_id": reading.sensor_id,
            "pollutant": reading.pollutant,
            "ts": reading.ts_ms,
            "hour_start": hour_ms,
            "value": float(reading.value),
            "unit": reading.unit,
            "value_epa": float(reading.value_epa),
            "unit_epa": EPA_UNITS[reading.pollutant],
            "mean_1h": mean_1h,
            "mean_8h": mean_8h,
            "mean_24h": mean_24h,
            "lat": lat,
            "lon": lon,
            "flags": [],
            "anomaly_score": None,
        }

    def _series(self, pollutant: str, hour_ms: int) -> list[Decimal | None]:
        """Hourly means of the 24 hours ending with `hour_ms`, oldest first."""
        get = self.history.get(pollutant, {}).get
        return [get(hour) for hour in range(hour_ms - _SPAN_MS, hour_ms + 1, HOUR_MS)]

    def _prune_history(self, newest_ms: int) -> None:
        oldest_kept = newest_ms - (_HISTORY_HOURS - 1) * HOUR_MS
        for pollutant in list(self.history):
            means = self.history[pollutant]
            for hour_ms in [h for h in means if h < oldest_kept]:
                del means[hour_ms]
            if not means:
                del self.history[pollutant]

    # -- snapshot ------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready value that `restore` turns back into an equal state."""
        return {
            "v": _SNAPSHOT_VERSION,
            "station_id": self.station_id,
            "stream_time_ms": self.stream_time_ms,
            "source_partition": self.source_partition,
            "source_offset": self.source_offset,
            "open_hours": {
                str(h): [r.to_row() for _, r in sorted(readings.items())]
                for h, readings in sorted(self.open_hours.items())
            },
            "history": {
                p: {str(h): str(v) for h, v in sorted(means.items())}
                for p, means in sorted(self.history.items())
            },
        }

    @classmethod
    def restore(cls, snapshot: dict[str, Any]) -> StationState:
        if snapshot.get("v") != _SNAPSHOT_VERSION:
            msg = f"unsupported station state version {snapshot.get('v')!r}"
            raise ValueError(msg)
        open_hours: dict[int, dict[tuple[str, int], AcceptedReading]] = {}
        for hour, rows in snapshot["open_hours"].items():
            readings = [AcceptedReading.from_row(row) for row in rows]
            open_hours[int(hour)] = {(r.pollutant, r.ts_ms): r for r in readings}
        return cls(
            station_id=snapshot["station_id"],
            stream_time_ms=snapshot["stream_time_ms"],
            source_partition=snapshot["source_partition"],
            source_offset=snapshot["source_offset"],
            open_hours=open_hours,
            history={
                p: {int(h): Decimal(v) for h, v in means.items()}
                for p, means in snapshot["history"].items()
            },
        )
