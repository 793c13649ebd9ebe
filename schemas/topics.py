"""Topic and consumer-group names: part of the public contract.

A replay namespace (``CIVIC_TOPIC_PREFIX``) prefixes every name, so a replay never touches
live topics.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DEADLETTER_MAX_MESSAGE_BYTES",
    "MAX_MESSAGE_BYTES",
    "SINGLE_PARTITION",
    "Topics",
    "partitions_for",
]

MAX_MESSAGE_BYTES = 1024 * 1024
"""The largest message the raw and output topics take (the broker refuses larger ones)."""
DEADLETTER_MAX_MESSAGE_BYTES = 2 * MAX_MESSAGE_BYTES + 64 * 1024
"""Room in the dead-letter topic for the largest raw message, its key and the envelope."""

SINGLE_PARTITION: tuple[str, ...] = ("civic.raw.incidents",)
"""Topics (without prefix) that have exactly one partition, whatever the default.

Incident statistics count distinct incidents per district and day across all incidents,
and their publication delay and corrections follow one stream time: that needs every
incident row in one ordered stream. One partition carries far more than any city's
incident volume (thousands of rows per second against a few per minute).
"""


def partitions_for(topic: str, default: int) -> int:
    """The partition count `topic` is created with (any namespace prefix)."""
    return 1 if topic.endswith(SINGLE_PARTITION) else default


@dataclass(frozen=True)
class Topics:
    """The topic names in one namespace."""

    prefix: str = ""

    @property
    def raw_air_quality(self) -> str:
        """Raw readings, JSON or Avro; key station_id."""
        return f"{self.prefix}civic.raw.air-quality"

    @property
    def raw_incidents(self) -> str:
        """Raw incident reports, JSON or Avro; key incident_id."""
        return f"{self.prefix}civic.raw.incidents"

    @property
    def enriched_air_quality(self) -> str:
        """Enriched readings (Avro); key station_id."""
        return f"{self.prefix}civic.enriched.air-quality"

    @property
    def aqi_hourly(self) -> str:
        """Hourly AQI records (Avro), emitted once when final; key station_id."""
        return f"{self.prefix}civic.aqi.hourly"

    @property
    def aqi_daily(self) -> str:
        """Daily AQI records (Avro), a higher revision on correction; key station_id."""
        return f"{self.prefix}civic.aqi.daily"

    @property
    def anomalies(self) -> str:
        """Anomaly events: faulty readings, unusual air, stale sensors (Avro); key station_id."""
        return f"{self.prefix}civic.anomalies"

    @property
    def hourly_by_area(self) -> str:
        """Internal: hourly AQI records re-keyed by area, where stations meet for the
        neighbour check (streams.neighbourhood); key area. As many partitions as the raw
        air-quality topic."""
        return f"{self.prefix}civic.internal.hourly-by-area"

    @property
    def incidents_published(self) -> str:
        """Privacy-safe incidents (Avro); key incident_id."""
        return f"{self.prefix}civic.incidents.published"

    @property
    def incidents_stats(self) -> str:
        """Daily incident counts per district and category, revised on correction; key district."""
        return f"{self.prefix}civic.incidents.stats"

    @property
    def deadletter(self) -> str:
        """Rejected input with original bytes and reason (Avro); key = source key."""
        return f"{self.prefix}civic.deadletter"

    @property
    def worker_group(self) -> str:
        """Consumer group (and Faust app id) of the stream worker."""
        return f"{self.prefix}civicstream-air-quality"

    @property
    def archive_group(self) -> str:
        """Consumer group of the archive sink (its offsets are for lag only: see sinks/archive)."""
        return f"{self.prefix}civicstream-archive"

    @property
    def sink_group(self) -> str:
        """Consumer group of the sink worker."""
        return f"{self.prefix}civicstream-sink"

    @property
    def ckan_group(self) -> str:
        """Consumer group of the sink that publishes to a CKAN portal."""
        return f"{self.prefix}civicstream-ckan"

    @property
    def internal(self) -> tuple[str, ...]:
        """Topics the stream worker creates for itself (state changelogs, Faust's leader)."""
        app_id = self.worker_group
        return (
            f"{app_id}-station-state-changelog",
            f"{app_id}-incident-state-changelog",
            f"{app_id}-area-state-changelog",
            f"{app_id}-__assignor-__leader",
        )

    @property
    def raw(self) -> tuple[str, ...]:
        """The topics that carry input from outside (what the archive keeps)."""
        return (self.raw_air_quality, self.raw_incidents)

    @property
    def outputs(self) -> tuple[str, ...]:
        """The topics the stream worker publishes (what the sink stores), dead letters aside."""
        return (
            self.enriched_air_quality,
            self.aqi_hourly,
            self.aqi_daily,
            self.anomalies,
            self.incidents_published,
            self.incidents_stats,
        )

    def all(self) -> tuple[str, ...]:
        """Every topic of the namespace that is created up front: the public ones (raw
        first, dead letters last) and the area topic between stream steps."""
        return (*self.raw, *self.outputs, self.hourly_by_area, self.deadletter)
