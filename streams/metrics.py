"""Prometheus metrics of the stream worker.

The pure pipeline reports what happened in a `BatchResult`; `WorkerMetrics.record_batch`
turns it into metrics in one place, so neither `processors/` nor the pipeline ever touch
a metric. Faust is not imported here: its monitor is read through `FaustMonitor`.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from processors.aqi import CATEGORIES
from streams.air_quality import DEFAULT_STALE_AFTER_MS, BatchResult
from telemetry import ConsumerMetrics, MetricSet, observe_times

if TYPE_CHECKING:
    from streams.incidents import IncidentBatchResult

__all__ = ["FaustMonitor", "IncidentMetrics", "SensorClock", "WorkerMetrics"]

TopicPartition = tuple[str, int]
HOUR_WINDOW = "hour"


class SensorClock:
    """Newest event time per sensor (station and pollutant) and which sensors are stale.

    A sensor is stale when its newest reading is more than `stale_after_ms` older than the
    newest reading of any sensor this worker processes: staleness in *stream* time, as
    CIVIC_STALE_AFTER defines it, so a replay of old data is judged like live data. A
    worker that receives nothing at all marks nothing stale; that shows as event-time lag.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.stale_after_ms = DEFAULT_STALE_AFTER_MS
        self._newest: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        registry.register(self)

    def observe(self, newest: Mapping[tuple[str, str], int]) -> None:
        with self._lock:
            for sensor, ts_ms in newest.items():
                if ts_ms > self._newest.get(sensor, -1):
                    self._newest[sensor] = ts_ms

    def retain(self, stations: Collection[str]) -> None:
        with self._lock:
            for sensor in [s for s in self._newest if s[0] not in stations]:
                del self._newest[sensor]

    def stale(self) -> dict[tuple[str, str], bool]:
        """Every known sensor and whether it is stale now."""
        with self._lock:
            newest = dict(self._newest)
        if not newest:
            return {}
        reference = max(newest.values())
        return {s: reference - ts > self.stale_after_ms for s, ts in sorted(newest.items())}

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            newest = dict(self._newest)
        last, stale, count = self._families()
        for (station, pollutant), is_stale in self.stale().items():
            last.add_metric([station, pollutant], newest[(station, pollutant)] / 1000)
            if is_stale:  # only stale sensors: a series per sensor costs every scrape
                stale.add_metric([station, pollutant], 1.0)
        count.add_metric([], len(stale.samples))
        yield from (last, stale, count)

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        labels = ["station", "pollutant"]
        return (
            GaugeMetricFamily(
                "civicstream_sensor_last_event_timestamp_seconds",
                "Event time of the sensor's newest accepted reading (Unix seconds).",
                labels=labels,
            ),
            GaugeMetricFamily(
                "civicstream_sensor_stale",
                "1 for each sensor that sent nothing for longer than CIVIC_STALE_AFTER of "
                "stream time (the newest event time of this worker); absent otherwise.",
                labels=labels,
            ),
            GaugeMetricFamily(
                "civicstream_sensors_stale",
                "Number of stale sensors (see civicstream_sensor_stale).",
            ),
        )


class _Monitor(Protocol):
    rebalances: int


class FaustMonitor:
    """What Faust's own monitor counts that is worth a metric, read at scrape time.

    Faust's PrometheusMonitor is not used: it needs Faust's web server, names its metrics
    after the app id (which carries the replay prefix, so names change per namespace),
    observes latencies in milliseconds, counts only sends made through `Topic.send` (the
    worker produces through the producer, for its commit order) and clears its per-topic
    counters at every rebalance. Faust's plain monitor runs anyway; this reads it.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.monitor: _Monitor | None = None
        registry.register(self)

    def bind(self, monitor: _Monitor) -> None:
        self.monitor = monitor

    def describe(self) -> Iterator[Metric]:
        yield self._rebalances()

    def collect(self) -> Iterator[Metric]:
        family = self._rebalances()
        if self.monitor is not None:
            family.add_metric([], float(self.monitor.rebalances or 0))
        yield family

    @staticmethod
    def _rebalances() -> CounterMetricFamily:
        return CounterMetricFamily(
            "civicstream_worker_rebalances",
            "Consumer-group rebalances this worker took part in (Faust's monitor).",
        )


class WorkerMetrics(MetricSet):
    """Every metric of the stream worker; `record_batch` updates them after a batch."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.consumer = ConsumerMetrics.of(registry)
        self.records = Counter(
            "civicstream_worker_records",
            "Raw records handled, by outcome (accepted, dead_letter, redelivered, skipped).",
            ["outcome"],
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "civicstream_worker_batch_seconds",
            "Time to process one batch of raw records and make its outputs durable.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=registry,
        )
        self.windows_open = Gauge(
            "civicstream_windows_open",
            "Event-time windows still open (not yet final) in the stations this worker owns.",
            ["window"],
            registry=registry,
        )
        self.windows_finalized = Counter(
            "civicstream_windows_finalized",
            "Event-time windows made final and published.",
            ["window"],
            registry=registry,
        )
        self.late_events = Counter(
            "civicstream_late_events",
            "Events whose window was already final when they arrived.",
            ["window"],
            registry=registry,
        )
        self.aqi = Gauge(
            "civicstream_aqi",
            "US EPA AQI of the station's newest final hour (NaN when that hour has no index).",
            ["station"],
            registry=registry,
        )
        self.aqi_category = Gauge(
            "civicstream_aqi_category",
            "1 for the EPA category of the station's newest final hour (one series per "
            "station; absent while that hour has no index).",
            ["station", "category"],
            registry=registry,
        )
        self.anomalies = Counter(
            "civicstream_anomalies",
            "Anomalies detected in readings, by kind (fed by the anomaly detector).",
            ["kind"],
            registry=registry,
        )
        self.sensors = SensorClock(registry)
        self.faust = FaustMonitor(registry)
        for outcome in ("accepted", "dead_letter", "redelivered", "skipped"):
            self.records.labels(outcome)
        self.windows_open.labels(HOUR_WINDOW)
        self.windows_finalized.labels(HOUR_WINDOW)
        self.late_events.labels(HOUR_WINDOW)
        self._positions: dict[TopicPartition, int] = {}
        self._station_partitions: dict[str, int] = {}
        self._open_windows: dict[str, int] = {}
        self._categories: dict[str, str | None] = {}
        self._lock = threading.RLock()

    def record_batch(
        self,
        records: Sequence[Any],
        result: BatchResult,
        received: Sequence[float | None],
        durable_at: float,
        batch_seconds: float,
    ) -> None:
        """Update every metric after a batch whose outputs became durable at `durable_at`.

        `records` are the batch's consumed messages (their topic, partition and offset);
        `received[i]` is when `records[i]` arrived (same clock as `durable_at`), or None.
        """
        consumer = self.consumer
        consumed: dict[str, int] = {}
        # Records of one fetch arrived together: each arrival time (and topic) is observed
        # once, as many times as it has records.
        arrivals: dict[tuple[str, float], int] = {}
        for record, arrived in zip(records, received, strict=True):
            topic = record.topic
            consumed[topic] = consumed.get(topic, 0) + 1
            key = (topic, record.partition)
            if record.offset >= self._positions.get(key, -1):
                self._positions[key] = record.offset + 1
            if arrived is not None:
                arrivals[(topic, arrived)] = arrivals.get((topic, arrived), 0) + 1
        for (topic, arrived), count in arrivals.items():
            observe_times(consumer.latency.labels(topic), durable_at - arrived, count)
        for topic, count in consumed.items():
            consumer.consumed.labels(topic).inc(count)
        produced: dict[str, int] = {}
        for output in result.outputs:
            produced[output.topic] = produced.get(output.topic, 0) + 1
        for topic, count in produced.items():
            consumer.produced.labels(topic).inc(count)
        for reason, count in result.dead_letters.items():
            consumer.dead_letters.labels(reason).inc(count)
        for (topic, partition), ts_ms in result.newest_event_ms.items():
            consumer.event_time_lag.observe(topic, partition, ts_ms / 1000)

        self.batch_seconds.observe(batch_seconds)
        self.records.labels("accepted").inc(result.accepted)
        self.records.labels("redelivered").inc(result.redelivered)
        self.records.labels("skipped").inc(result.skipped)
        self.records.labels("dead_letter").inc(sum(result.dead_letters.values()))
        self.windows_finalized.labels(HOUR_WINDOW).inc(result.hours_closed)
        self.late_events.labels(HOUR_WINDOW).inc(result.dead_letters.get("late", 0))
        for kind, count in result.anomalies.items():
            self.anomalies.labels(kind).inc(count)
        for station, record in result.latest_aqi.items():
            self._set_aqi(station, record.get("aqi"), record.get("category"))
        self.sensors.observe(result.sensor_event_ms)
        with self._lock:
            for update in result.state_updates:
                if not update.station_id.startswith("\x00"):  # progress records are not stations
                    self._station_partitions[update.station_id] = update.partition
            self._open_windows.update(result.open_windows)
            self.windows_open.labels(HOUR_WINDOW).set(sum(self._open_windows.values()))

    def _set_aqi(self, station: str, aqi: int | None, category: str | None) -> None:
        self.aqi.labels(station).set(float("nan") if aqi is None else aqi)
        if category not in CATEGORIES:
            category = None
        with self._lock:
            previous = self._categories.get(station)
            if previous is not None and previous != category:
                self.aqi_category.remove(station, previous)
            if category is not None:
                self.aqi_category.labels(station, category).set(1.0)
            self._categories[station] = category

    def update_consumer_lag(
        self, end_offsets: Mapping[TopicPartition, int], committed: Mapping[Any, int | None]
    ) -> None:
        """Consumer lag of the partitions this worker owns now (`end_offsets`' keys).

        The position is the next offset after the last record processed, or the group's
        committed offset for a partition this worker has not processed yet.
        """
        lags: dict[TopicPartition, int] = {}
        for tp, end in end_offsets.items():
            known = [p for p in (self._positions.get(tp), committed.get(tp)) if p is not None]
            if known:
                lags[tp] = max(0, end - max(known))
        self.consumer.set_consumer_lag(lags)
        self.retain_partitions(set(end_offsets))

    def retain_partitions(self, owned: Collection[TopicPartition]) -> None:
        """Drop the series of partitions (and their stations) another worker owns now."""
        self.consumer.retain_partitions(owned)
        partitions = {partition for _, partition in owned}
        with self._lock:
            gone = [s for s, p in self._station_partitions.items() if p not in partitions]
            for station in gone:
                del self._station_partitions[station]
                self._open_windows.pop(station, None)
                self.aqi.remove(station)
                self.aqi_category.remove_by_labels({"station": station})
                self._categories.pop(station, None)
            kept = set(self._station_partitions)
            self.windows_open.labels(HOUR_WINDOW).set(sum(self._open_windows.values()))
        self.sensors.retain(kept)


class IncidentMetrics(MetricSet):
    """The incident agent's metrics: its records by outcome, what it published, and the
    consumer metrics every process reports (events per topic, dead letters by reason)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.consumer = ConsumerMetrics.of(registry)
        self.records = Counter(
            "civicstream_worker_incident_records",
            "Raw incident rows consumed, by outcome (accepted, unchanged, heartbeat, "
            "dead_letter, redelivered, skipped).",
            ["outcome"],
            registry=registry,
        )
        self.published = Counter(
            "civicstream_worker_incidents_published",
            "Incident records published to civic.incidents.published (revisions too).",
            registry=registry,
        )
        self.count_rows = Counter(
            "civicstream_worker_incident_count_rows",
            "Daily count rows published to civic.incidents.stats.",
            registry=registry,
        )
        self.corrections = Counter(
            "civicstream_worker_incident_corrections",
            "Complete days published again because a late report changed them.",
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "civicstream_worker_incident_batch_seconds",
            "Time to process one batch of raw incident rows and make its outputs durable.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=registry,
        )
        for outcome in ("accepted", "unchanged", "heartbeat", "dead_letter", "redelivered"):
            self.records.labels(outcome)
        self.records.labels("skipped")

    def observe(self, records: Sequence[Any], result: IncidentBatchResult, seconds: float) -> None:
        """Count one processed batch of `records` (anything with a `topic`)."""
        self.batch_seconds.observe(seconds)
        for outcome in ("accepted", "unchanged", "redelivered", "skipped"):
            self.records.labels(outcome).inc(getattr(result, outcome))
        self.records.labels("heartbeat").inc(result.heartbeats)
        self.records.labels("dead_letter").inc(sum(result.dead_letters.values()))
        self.published.inc(result.published)
        self.count_rows.inc(result.stats_rows)
        self.corrections.inc(result.corrections)
        consumed: dict[str, int] = {}
        for record in records:
            consumed[record.topic] = consumed.get(record.topic, 0) + 1
        for topic, count in consumed.items():
            self.consumer.consumed.labels(topic).inc(count)
        produced: dict[str, int] = {}
        for output in result.outputs:
            produced[output.topic] = produced.get(output.topic, 0) + 1
        for topic, count in produced.items():
            self.consumer.produced.labels(topic).inc(count)
        for reason, count in result.dead_letters.items():
            self.consumer.dead_letters.labels(reason).inc(count)
