"""Prometheus metrics shared by every long-running civicstream process.

The pattern, for the stream worker, the sinks and the API alike:

1. Define the process's metrics as a `MetricSet` subclass (names ``civicstream_*``, base
   units, ``_total`` for counters, ``_seconds``/``_bytes`` suffixes, labels of low
   cardinality: topic, partition, reason, dataset, station — never a reading or a key).
2. Get it with ``MyMetrics.of(registry)``: one instance per registry, so several workers
   in one process (tests) share their collectors, and a test passes a fresh
   `CollectorRegistry` instead of the global one.
3. A process that consumes Kafka also reports `ConsumerMetrics` (events consumed and
   produced per topic, dead letters by reason, processing latency, consumer lag) under
   the same names as every other consumer; Prometheus' ``job`` label tells them apart.
4. ``serve(port)`` exposes ``/metrics`` (the default registry also carries
   prometheus-client's process, platform and garbage-collector collectors).

`metric_names(registry)` lists every sample name a registry can export, from the
definitions themselves; the tests check dashboards and alert rules against it.
"""

from __future__ import annotations

from telemetry._consumer import ConsumerMetrics, EventTimeLag, observe_times
from telemetry._registry import MetricSet, metric_names, new_registry, serve

__all__ = [
    "ConsumerMetrics",
    "EventTimeLag",
    "MetricSet",
    "metric_names",
    "new_registry",
    "observe_times",
    "serve",
]
