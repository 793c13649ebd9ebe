"""What every Kafka-consuming process reports, under the same names."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric

from telemetry._registry import MetricSet

__all__ = ["ConsumerMetrics", "EventTimeLag", "observe_times"]

TopicPartition = tuple[str, int]

# From a few milliseconds (a small batch) to a minute (a stalled flush or a rebalance).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def observe_times(histogram: Histogram, amount: float, times: int) -> None:
    """`histogram.observe(amount)` `times` times over, as one update: prometheus-client has
    no weighted observe, and a call per record cost a worker 1 % of its time. Like
    `observe`, it adds to the sum and to the one bucket `amount` falls in (the count is
    the buckets' total). `histogram` is a Histogram without labels, or a labelled child."""
    if times == 1:
        histogram.observe(amount)
        return
    if times < 1:
        return
    histogram._sum.inc(amount * times)
    for index, bound in enumerate(histogram._upper_bounds):
        if amount <= bound:
            histogram._buckets[index].inc(times)
            break


class EventTimeLag:
    """``civicstream_event_time_lag_seconds{topic,partition}``: now − the newest event time
    processed from each partition, computed when Prometheus scrapes.

    Computing it at scrape time (not when a batch is processed) is the point: a worker
    that stops processing shows a lag that keeps growing instead of a frozen value.
    """

    NAME = "civicstream_event_time_lag_seconds"
    HELP = (
        "Wall-clock time minus the newest event time processed from the partition, in "
        "seconds, at scrape time. Grows while a partition brings no newer events."
    )

    def __init__(self, registry: CollectorRegistry, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._newest: dict[TopicPartition, float] = {}
        self._lock = threading.Lock()
        registry.register(self)

    def observe(self, topic: str, partition: int, event_time_s: float) -> None:
        """Record an event time processed from the partition (older ones change nothing)."""
        key = (topic, partition)
        with self._lock:
            if event_time_s > self._newest.get(key, float("-inf")):
                self._newest[key] = event_time_s

    def retain(self, partitions: Collection[TopicPartition]) -> None:
        """Forget partitions not in `partitions` (moved to another worker in a rebalance)."""
        with self._lock:
            for key in [k for k in self._newest if k not in partitions]:
                del self._newest[key]

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(self.NAME, self.HELP, labels=["topic", "partition"])

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(self.NAME, self.HELP, labels=["topic", "partition"])
        now = self._clock()
        with self._lock:
            newest = sorted(self._newest.items())
        for (topic, partition), event_time_s in newest:
            family.add_metric([topic, str(partition)], now - event_time_s)
        yield family


class ConsumerMetrics(MetricSet):
    """Throughput, dead letters, latency and lag of a process that consumes Kafka topics."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.consumed = Counter(
            "civicstream_events_consumed",
            "Records consumed from a topic (re-deliveries included).",
            ["topic"],
            registry=registry,
        )
        self.produced = Counter(
            "civicstream_events_produced",
            "Records produced to a topic (outputs and dead letters).",
            ["topic"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "civicstream_dead_letters",
            "Records sent to the dead-letter topic, by reason.",
            ["reason"],
            registry=registry,
        )
        self.latency = Histogram(
            "civicstream_processing_latency_seconds",
            "Time from a record's arrival in the process to its batch's outputs being "
            "durable (produced and flushed, or stored and committed), per input topic.",
            ["topic"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "civicstream_consumer_lag_offsets",
            "End offset of the partition minus the next offset this process will handle.",
            ["topic", "partition"],
            registry=registry,
        )
        self.event_time_lag = EventTimeLag(registry)
        self._lag_partitions: set[TopicPartition] = set()
        self._lock = threading.Lock()

    def observe_latency(self, topic: str, seconds: float, records: int = 1) -> None:
        """`records` records of `topic`, each `seconds` from arrival to done: one latency
        observation per record, made as one update."""
        observe_times(self.latency.labels(topic), seconds, records)

    def set_consumer_lag(self, lags: Mapping[TopicPartition, int]) -> None:
        """The lag of every partition this process owns now; other partitions are dropped."""
        with self._lock:
            for topic, partition in self._lag_partitions - set(lags):
                self.consumer_lag.remove(topic, str(partition))
            for (topic, partition), lag in lags.items():
                self.consumer_lag.labels(topic, str(partition)).set(lag)
            self._lag_partitions = set(lags)

    def retain_partitions(self, partitions: Collection[TopicPartition]) -> None:
        """Drop the per-partition series of partitions this process no longer owns."""
        self.event_time_lag.retain(partitions)
        with self._lock:
            kept = {tp: tp in partitions for tp in self._lag_partitions}
            for (topic, partition), keep in kept.items():
                if not keep:
                    self.consumer_lag.remove(topic, str(partition))
            self._lag_partitions = {tp for tp, keep in kept.items() if keep}
