"""Prometheus metrics of the stream worker (names follow prometheus-client's rules)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

if TYPE_CHECKING:
    from streams.incidents import IncidentBatchResult

__all__ = ["IncidentMetrics", "WorkerMetrics"]


@dataclass(frozen=True)
class WorkerMetrics:
    """The worker's counters; pass a fresh CollectorRegistry in tests."""

    records: Counter
    dead_letters: Counter
    hours_closed: Counter
    batch_seconds: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry = REGISTRY) -> WorkerMetrics:
        return cls(
            records=Counter(
                "civicstream_worker_records_total",
                "Raw records consumed, by outcome (accepted, dead_letter, redelivered, skipped).",
                ["outcome"],
                registry=registry,
            ),
            dead_letters=Counter(
                "civicstream_worker_deadletters_total",
                "Records sent to the dead-letter topic, by reason.",
                ["reason"],
                registry=registry,
            ),
            hours_closed=Counter(
                "civicstream_worker_hours_closed_total",
                "Station hours made final and published to civic.aqi.hourly.",
                registry=registry,
            ),
            batch_seconds=Histogram(
                "civicstream_worker_batch_seconds",
                "Time to process one batch of raw records, in seconds.",
                registry=registry,
            ),
        )


@dataclass(frozen=True)
class IncidentMetrics:
    """The incident agent's counters; pass a fresh CollectorRegistry in tests."""

    records: Counter
    dead_letters: Counter
    published: Counter
    count_rows: Counter
    corrections: Counter
    batch_seconds: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry = REGISTRY) -> IncidentMetrics:
        return cls(
            records=Counter(
                "civicstream_worker_incident_records_total",
                "Raw incident rows consumed, by outcome (accepted, unchanged, heartbeat, "
                "dead_letter, redelivered, skipped).",
                ["outcome"],
                registry=registry,
            ),
            dead_letters=Counter(
                "civicstream_worker_incident_deadletters_total",
                "Incident rows sent to the dead-letter topic, by reason.",
                ["reason"],
                registry=registry,
            ),
            published=Counter(
                "civicstream_worker_incidents_published_total",
                "Incident records published to civic.incidents.published (revisions too).",
                registry=registry,
            ),
            count_rows=Counter(
                "civicstream_worker_incident_count_rows_total",
                "Daily count rows published to civic.incidents.stats.",
                registry=registry,
            ),
            corrections=Counter(
                "civicstream_worker_incident_corrections_total",
                "Complete days published again because a late report changed them.",
                registry=registry,
            ),
            batch_seconds=Histogram(
                "civicstream_worker_incident_batch_seconds",
                "Time to process one batch of raw incident rows, in seconds.",
                registry=registry,
            ),
        )

    def observe(self, result: IncidentBatchResult, seconds: float) -> None:
        """Count one processed batch."""
        self.batch_seconds.observe(seconds)
        for outcome in ("accepted", "unchanged", "redelivered", "skipped"):
            self.records.labels(outcome).inc(getattr(result, outcome))
        self.records.labels("heartbeat").inc(result.heartbeats)
        for reason, count in result.dead_letters.items():
            self.records.labels("dead_letter").inc(count)
            self.dead_letters.labels(reason).inc(count)
        self.published.inc(result.published)
        self.count_rows.inc(result.stats_rows)
        self.corrections.inc(result.corrections)
