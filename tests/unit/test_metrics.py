"""The worker's and the sink's metrics: what a batch shows, naming rules, stale sensors."""

from __future__ import annotations

import json
import math
import time

import pytest
from prometheus_client import CollectorRegistry

from processors import aqi
from schemas import Topics, decode
from sinks.metrics import SinkMetrics
from streams.air_quality import AirQualityPipeline, BatchResult, SourceRecord
from streams.metrics import WorkerMetrics
from streams.time import HourlyWindows
from telemetry import ConsumerMetrics, EventTimeLag, metric_names, new_registry

RAW = "civic.raw.air-quality"
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
HOUR = 3_600_000
MINUTE = 60_000


def raw(ts_ms: int, value: float, station: str = "dongsi", pollutant: str = "pm25") -> bytes:
    body = {"station_id": station, "pollutant": pollutant, "value": value, "unit": "ug/m3"}
    return json.dumps({**body, "ts": ts_ms}).encode()


class States(dict[str, bytes]):
    def load(self, key: str) -> bytes | None:
        return self.get(key)


class Worker:
    """The agent's loop without Kafka: pipeline, state writes, then `record_batch`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.pipeline = AirQualityPipeline(Topics(), HourlyWindows(10 * MINUTE))
        self.metrics = WorkerMetrics.of(registry)
        self.states = States()
        self.offsets = {0: 0, 1: 0}
        self.outputs: list = []

    def batch(self, messages: list[tuple[int, bytes, bytes]]) -> None:
        records = []
        for partition, key, value in messages:
            records.append(SourceRecord(RAW, partition, self.offsets[partition], key, value))
            self.offsets[partition] += 1
        result = self.pipeline.process(records, self.states)
        self.states.update((u.station_id, u.data) for u in result.state_updates)
        self.outputs += result.outputs
        now = time.monotonic()
        arrived = [now - 0.2] * len(records)
        self.metrics.record_batch(records, result, arrived, now, 0.2)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_a_batch_shows_as_events_dead_letters_windows_and_the_newest_aqi_per_station(registry):
    worker = Worker(registry)
    dongsi = [raw(T0 + h * HOUR + 10 * MINUTE, 30.0 + 10 * h) for h in range(5)]
    tiantan = [raw(T0 + h * HOUR + 20 * MINUTE, 160.0, station="tiantan") for h in range(4)]
    worker.batch(
        [(0, b"dongsi", v) for v in dongsi[:3]]
        + [(1, b"tiantan", v) for v in tiantan]
        + [(0, b"dongsi", b"{not json"), (0, b"dongsi", raw(T0, 1.0, pollutant="radon"))]
    )
    worker.batch([(0, b"dongsi", v) for v in dongsi[3:]] + [(0, b"dongsi", raw(T0 + 5, 9.0))])

    consumed = value(registry, "civicstream_events_consumed_total", topic=RAW)
    assert consumed == 3 + 4 + 2 + 2 + 1
    for topic in (Topics().enriched_air_quality, Topics().aqi_hourly, Topics().deadletter):
        produced = sum(1 for o in worker.outputs if o.topic == topic)
        assert value(registry, "civicstream_events_produced_total", topic=topic) == produced
    assert value(registry, "civicstream_dead_letters_total", reason="invalid_json") == 1
    assert value(registry, "civicstream_dead_letters_total", reason="unknown_pollutant") == 1
    assert value(registry, "civicstream_dead_letters_total", reason="late") == 1
    assert value(registry, "civicstream_late_events_total", window="hour") == 1
    assert value(registry, "civicstream_worker_records_total", outcome="accepted") == 9
    assert value(registry, "civicstream_worker_records_total", outcome="dead_letter") == 3

    hourly = [decode(o.value) for o in worker.outputs if o.topic == Topics().aqi_hourly]
    closed = len(hourly)
    assert value(registry, "civicstream_windows_finalized_total", window="hour") == closed
    assert value(registry, "civicstream_windows_open", window="hour") == 9 - closed
    for station in ("dongsi", "tiantan"):
        newest = max(
            (r for r in hourly if r["station_id"] == station), key=lambda r: r["hour_start"]
        )
        gauge = value(registry, "civicstream_aqi", station=station)
        assert gauge == newest["aqi"] or (newest["aqi"] is None and math.isnan(gauge))
        for category in aqi.CATEGORIES:
            expected = 1.0 if category == newest["category"] else None
            assert (
                value(registry, "civicstream_aqi_category", station=station, category=category)
                == expected
            )
    assert value(registry, "civicstream_aqi", station="tiantan") >= 151  # Unhealthy or worse

    assert value(registry, "civicstream_processing_latency_seconds_count", topic=RAW) == consumed
    latency_sum = value(registry, "civicstream_processing_latency_seconds_sum", topic=RAW)
    assert latency_sum == pytest.approx(0.2 * consumed)
    lag = value(registry, "civicstream_event_time_lag_seconds", topic=RAW, partition="0")
    assert lag == pytest.approx(time.time() - (T0 + 4 * HOUR + 10 * MINUTE) / 1000, abs=60)


def assert_same_latency_histogram(registry: CollectorRegistry, reference: CollectorRegistry):
    """Every bucket, sum and count of the latency histogram as in `reference`."""
    samples = [
        (sample.name, sample.labels, sample.value)
        for family in reference.collect()
        if family.name == "civicstream_processing_latency_seconds"
        for sample in family.samples
        if not sample.name.endswith("_created")
    ]
    assert len(samples) > 10
    for name, labels, expected in samples:
        assert value(registry, name, **labels) == pytest.approx(expected), (name, labels)


def test_latency_counts_each_record_in_the_bucket_of_its_own_arrival(registry):
    """Records arrive in fetches; each is observed once, at durable time − its arrival."""
    metrics = WorkerMetrics.of(registry)
    other = "civic.raw.other"
    arrivals = [0.0] * 5 + [0.9] * 3 + [0.0] * 2 + [None] * 2 + [0.99] * 4
    topics = [RAW] * 14 + [other] * 2
    records = [SourceRecord(t, 0, i, b"k", b"v") for i, t in enumerate(topics)]
    durable_at = 1.0  # latencies: 1.0 s ×7, 0.1 s ×3, 0.01 s ×2 (RAW), 0.01 s ×2 (other)
    metrics.record_batch(records, BatchResult(), arrivals, durable_at, 0.0)

    reference = CollectorRegistry()  # the same records, observed one at a time
    histogram = WorkerMetrics.of(reference).consumer.latency
    for record, arrived in zip(records, arrivals, strict=True):
        if arrived is not None:
            histogram.labels(record.topic).observe(durable_at - arrived)
    assert_same_latency_histogram(registry, reference)
    assert value(registry, "civicstream_processing_latency_seconds_count", topic=RAW) == 12
    assert value(registry, "civicstream_processing_latency_seconds_count", topic=other) == 2


@pytest.mark.parametrize("seconds", [0.0, 0.004, 0.1, 0.7, 59.0, 61.0])
def test_a_batchs_latency_counts_as_one_observation_per_record(registry, seconds):
    """The sinks observe a batch's records at once; the buckets, sum and count are those
    of one observation per record."""
    ConsumerMetrics.of(registry).observe_latency("t", seconds, 7)
    ConsumerMetrics.of(registry).observe_latency("t", seconds, 0)  # an empty batch
    reference = CollectorRegistry()
    for _ in range(7):
        ConsumerMetrics.of(reference).latency.labels("t").observe(seconds)
    assert_same_latency_histogram(registry, reference)


def test_a_station_shows_one_category_series_the_current_one(registry):
    metrics = WorkerMetrics.of(registry)

    def newest_hour(aqi_value, category):
        result = BatchResult(latest_aqi={"dongsi": {"aqi": aqi_value, "category": category}})
        metrics.record_batch([], result, [], time.monotonic(), 0.0)
        return {
            s.labels["category"]: s.value
            for family in registry.collect()
            if family.name == "civicstream_aqi_category"
            for s in family.samples
        }

    assert newest_hour(160, "Unhealthy") == {"Unhealthy": 1.0}
    assert newest_hour(70, "Moderate") == {"Moderate": 1.0}
    assert newest_hour(None, None) == {}
    assert math.isnan(value(registry, "civicstream_aqi", station="dongsi"))


def test_a_sensor_is_stale_after_stale_after_of_stream_time_without_readings(registry):
    worker = Worker(registry)
    worker.metrics.sensors.stale_after_ms = 2 * HOUR
    worker.batch(
        [(0, b"dongsi", raw(T0, 10.0, pollutant="no2")), (0, b"dongsi", raw(T0, 10.0))]
        + [(0, b"dongsi", raw(T0 + h * HOUR, 10.0)) for h in range(1, 3)]
    )
    assert value(registry, "civicstream_sensor_stale", station="dongsi", pollutant="no2") is None
    assert value(registry, "civicstream_sensors_stale") == 0

    worker.batch([(0, b"dongsi", raw(T0 + 2 * HOUR + 1, 10.0))])  # 2 h + 1 ms after the NO2
    assert value(registry, "civicstream_sensor_stale", station="dongsi", pollutant="no2") == 1
    assert value(registry, "civicstream_sensor_stale", station="dongsi", pollutant="pm25") is None
    assert value(registry, "civicstream_sensors_stale") == 1
    assert (
        value(
            registry,
            "civicstream_sensor_last_event_timestamp_seconds",
            station="dongsi",
            pollutant="no2",
        )
        == T0 / 1000
    )


def test_consumer_lag_counts_from_the_last_processed_offset_and_forgets_partitions_moved_away(
    registry,
):
    worker = Worker(registry)
    worker.batch([(0, b"dongsi", raw(T0 + h * HOUR, 40.0)) for h in range(3)])
    worker.batch([(1, b"tiantan", raw(T0 + h * HOUR, 40.0, station="tiantan")) for h in range(3)])
    metrics = worker.metrics

    metrics.update_consumer_lag({(RAW, 0): 10, (RAW, 1): 3, (RAW, 2): 7}, {(RAW, 2): 5})
    assert value(registry, "civicstream_consumer_lag_offsets", topic=RAW, partition="0") == 7
    assert value(registry, "civicstream_consumer_lag_offsets", topic=RAW, partition="1") == 0
    assert value(registry, "civicstream_consumer_lag_offsets", topic=RAW, partition="2") == 2

    metrics.update_consumer_lag({(RAW, 0): 10}, {})  # partitions 1 and 2 went to another worker
    assert value(registry, "civicstream_consumer_lag_offsets", topic=RAW, partition="1") is None
    assert value(registry, "civicstream_event_time_lag_seconds", topic=RAW, partition="1") is None
    assert value(registry, "civicstream_aqi", station="tiantan") is None
    last_event = "civicstream_sensor_last_event_timestamp_seconds"
    assert value(registry, last_event, station="tiantan", pollutant="pm25") is None
    assert value(registry, last_event, station="dongsi", pollutant="pm25") is not None
    assert value(registry, "civicstream_aqi", station="dongsi") is not None


def test_event_time_lag_is_computed_when_scraped_so_a_stalled_partition_shows_growing_lag():
    registry = CollectorRegistry()
    now = [1000.0]
    lag = EventTimeLag(registry, clock=lambda: now[0])
    lag.observe("raw", 0, 990.0)
    lag.observe("raw", 0, 980.0)  # older: changes nothing
    assert value(registry, "civicstream_event_time_lag_seconds", topic="raw", partition="0") == 10
    now[0] = 1300.0
    assert value(registry, "civicstream_event_time_lag_seconds", topic="raw", partition="0") == 310


def test_sets_of_metrics_are_made_once_per_registry_and_shared_between_processes_parts(registry):
    worker, sink = WorkerMetrics.of(registry), SinkMetrics.of(registry)
    assert WorkerMetrics.of(registry) is worker
    assert worker.consumer is sink.consumer is ConsumerMetrics.of(registry)
    assert WorkerMetrics.of(CollectorRegistry()) is not worker


# --- naming rules ----------------------------------------------------------------------------


def exported() -> set[str]:
    registry = new_registry()
    WorkerMetrics.of(registry)
    SinkMetrics.of(registry)
    return metric_names(registry)


def test_every_metric_follows_the_prometheus_naming_rules():
    registry = new_registry()
    WorkerMetrics.of(registry)
    SinkMetrics.of(registry)
    ours = [f for f in registry.collect() if f.name.startswith("civicstream_")]
    assert len(ours) >= 20
    for family in ours:
        if family.type == "counter":  # exported with _total; no unit-less "_count" names
            assert not family.name.endswith(("_total", "_count"))
        if family.type == "histogram":
            assert family.name.endswith("_seconds"), family.name
        assert "_ms" not in family.name and "milli" not in family.name
        assert family.documentation
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes"} <= exported()


def test_labels_have_low_cardinality_never_a_reading_a_key_or_an_offset(registry):
    worker = Worker(registry)
    worker.batch([(0, b"dongsi", raw(T0 + h * HOUR, 40.0 + h)) for h in range(4)])
    worker.batch([(0, b"dongsi", b"{")])
    worker.metrics.update_consumer_lag({(RAW, 0): 10}, {})
    SinkMetrics.of(registry).written({"readings": 3}, 0.01)
    allowed = {"topic", "partition", "reason", "outcome", "window", "station", "category"}
    allowed |= {"pollutant", "kind", "dataset", "le"}
    seen = set()
    for family in registry.collect():
        for sample in family.samples:
            seen |= set(sample.labels)
            assert set(sample.labels) <= allowed, (family.name, sample.labels)
    assert {"topic", "partition", "reason", "station", "category", "pollutant"} <= seen
