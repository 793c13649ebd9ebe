"""Topic and consumer-group names: part of the public contract.

A replay namespace (``CIVIC_TOPIC_PREFIX``) prefixes every name, so a replay never touches
live topics.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Topics"]


@dataclass(frozen=True)
class Topics:
    """The topic names in one namespace."""

    prefix: str = ""

    @property
    def raw_air_quality(self) -> str:
        """Raw readings, JSON or Avro; key station_id."""
        return f"{self.prefix}civic.raw.air-quality"

    @property
    def enriched_air_quality(self) -> str:
        """Enriched readings (Avro); key station_id."""
        return f"{self.prefix}civic.enriched.air-quality"

    @property
    def aqi_hourly(self) -> str:
        """Hourly AQI records (Avro), emitted once when final; key station_id."""
        return f"{self.prefix}civic.aqi.hourly"

    @property
    def deadletter(self) -> str:
        """Rejected input with original bytes and reason (Avro); key = source key."""
        return f"{self.prefix}civic.deadletter"

    @property
    def worker_group(self) -> str:
        """Consumer group (and Faust app id) of the stream worker."""
        return f"{self.prefix}civicstream-air-quality"

    @property
    def sink_group(self) -> str:
        """Consumer group of the sink worker."""
        return f"{self.prefix}civicstream-sink"

    @property
    def internal(self) -> tuple[str, ...]:
        """Topics the stream worker creates for itself (state changelog, Faust's leader)."""
        app_id = self.worker_group
        return (f"{app_id}-station-state-changelog", f"{app_id}-__assignor-__leader")

    def all(self) -> tuple[str, ...]:
        """Every topic the air-quality pipeline uses, raw first."""
        return (self.raw_air_quality, self.enriched_air_quality, self.aqi_hourly, self.deadletter)
