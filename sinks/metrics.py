"""Prometheus metrics of the sink worker (and a pattern for the other sinks)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram

from sinks._datasets import DATASETS
from telemetry import ConsumerMetrics, MetricSet

__all__ = ["SinkMetrics"]

_WRITE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class SinkMetrics(MetricSet):
    """Rows, store-write latency and failures per dataset, plus `ConsumerMetrics`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.consumer = ConsumerMetrics.of(registry)
        self.rows_written = Counter(
            "civicstream_sink_rows_written",
            "Records upserted into the store (or portal), per dataset (a re-delivered record "
            "counts again; the upsert by natural key makes it a no-op).",
            ["dataset"],
            registry=registry,
        )
        self.write_seconds = Histogram(
            "civicstream_sink_write_seconds",
            "Duration of the store transactions that wrote rows of the dataset (one "
            "transaction per batch holds every dataset of the batch).",
            ["dataset"],
            buckets=_WRITE_BUCKETS,
            registry=registry,
        )
        self.write_failures = Counter(
            "civicstream_sink_write_failures",
            "Store transactions that failed (rolled back, retried) while holding rows of "
            "the dataset.",
            ["dataset"],
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "civicstream_sink_batch_seconds",
            "Time from a batch's poll to its offset commit.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=registry,
        )
        self.commits = Counter(
            "civicstream_sink_commits",
            "Kafka offset commits made after a store transaction.",
            registry=registry,
        )
        for name in DATASETS:
            self.rows_written.labels(name)
            self.write_seconds.labels(name)
            self.write_failures.labels(name)

    def written(self, rows: dict[str, int], seconds: float) -> None:
        for name, count in rows.items():
            if count:
                self.rows_written.labels(name).inc(count)
                self.write_seconds.labels(name).observe(seconds)

    def write_failed(self, datasets: Iterable[str]) -> None:
        for name in datasets:
            self.write_failures.labels(name).inc()
