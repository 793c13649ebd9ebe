"""Prometheus metrics of the stream worker (names follow prometheus-client's rules)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

__all__ = ["WorkerMetrics"]


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
