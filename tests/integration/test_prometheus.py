"""A real Prometheus scrapes the real pipeline and sees exactly what the pipeline did."""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from civicstream.monitoring import JOBS, PrometheusServer, find_prometheus, prometheus_config
from sinks._datasets import DATASETS
from streams.admin import end_offsets
from tests.integration.harness import PipelineUnderTest, free_port

pytestmark = pytest.mark.integration

HOUR = 3_600_000
MINUTE = 60_000
DEADLINE_S = 30.0
WORKER, SINK = JOBS["worker"], JOBS["sink"]


def reading(station: str, pollutant: str, ts_ms: int, value: float, key: str = "") -> tuple:
    body = {"station_id": station, "pollutant": pollutant, "value": value, "unit": "ug/m3"}
    return (key or station).encode(), json.dumps({**body, "ts": ts_ms}).encode()


@pytest.fixture
def prometheus_for(tmp_path):
    """Start a real Prometheus scraping a pipeline's worker and sink every second."""
    started: list[PrometheusServer] = []

    def start(pipeline: PipelineUnderTest) -> PrometheusServer:
        binary = find_prometheus()
        if binary is None:
            pytest.fail("prometheus is missing: `make test` installs Debian's prometheus package")
        targets = {name: [f"127.0.0.1:{port}"] for name, port in pipeline.metrics_ports.items()}
        config = prometheus_config(targets, interval_s=1)
        server = PrometheusServer(tmp_path / "prometheus", free_port(), config, binary=binary)
        started.append(server.start())
        return server

    yield start
    for server in started:
        server.stop()


def eventually(observe: Callable[[], Any], expected: Any, what: str) -> None:
    """Poll until `observe()` equals `expected`; fail with the last observation."""
    deadline = time.monotonic() + DEADLINE_S
    seen: Any = None
    while time.monotonic() < deadline:
        seen = observe()
        if seen == expected:
            return
        time.sleep(0.25)
    pytest.fail(f"{what}: Prometheus shows {seen!r}, expected {expected!r}")


def by(server: PrometheusServer, expr: str, label: str) -> dict[str, float]:
    return {labels.get(label, ""): value for labels, value in server.query(expr)}


def test_prometheus_sees_events_aqi_dead_letters_lags_and_stale_sensors_as_they_are(
    pipeline_factory, prometheus_for
):
    pipeline = pipeline_factory("metrics", metrics=True)
    prometheus = prometheus_for(pipeline)
    pipeline.start_all()

    # Six hours ending two hours ago; readings at :10 and :40 (hours 0..4 become final).
    t0 = (int(time.time() * 1000) // HOUR - 8) * HOUR
    good = []
    for hour in range(6):
        for minute in (10, 40):
            ts = t0 + hour * HOUR + minute * MINUTE
            good += [reading("s1", "pm25", ts, 80.0), reading("s2", "pm25", ts, 20.0)]
            good += [reading("s3", "pm25", ts, 5.0)]
            if hour < 2:  # s3's NO2 sensor falls silent: stale after 2 h of stream time
                good.append(reading("s3", "no2", ts, 10.0))
    bad = {
        "invalid_json": [(b"s1", b"{not json"), (b"s2", b'{"station_id": ')],
        "unknown_pollutant": [reading("s2", "radon", t0, 1.0)],
        "wrong_key": [reading("s1", "pm25", t0 + 30 * MINUTE, 9.0, key="elsewhere")],
        "invalid_encoding": [(b"s3", b"")],
        "late": [reading("s1", "pm25", t0 + 5 * MINUTE, 9.0)],  # after hour 0 is final
    }
    sent = pipeline.send(good + [m for messages in bad.values() for m in messages])
    pipeline.wait_until_caught_up(sent)

    # What the pipeline produced, read from Kafka and the store.
    hourly = [value for _, value, *_ in pipeline.read_topic(pipeline.topics.aqi_hourly)]
    newest = {}
    for record in sorted(hourly, key=lambda r: r["hour_start"]):
        newest[record["station_id"]] = record["aqi"]
    assert newest["s1"] >= 151 > newest["s2"]  # Unhealthy at s1 only
    anomalies = [value for _, value, *_ in pipeline.read_topic(pipeline.topics.anomalies)]
    assert [(a["station_id"], a["pollutant"], a["kind"]) for a in anomalies] == [
        ("s3", "no2", "stale")
    ]
    outputs = [pipeline.topics.enriched_air_quality, pipeline.topics.aqi_hourly]
    outputs += [pipeline.topics.deadletter, pipeline.topics.anomalies]
    produced = {t: float(n) for t, n in end_offsets(pipeline.bootstrap, outputs).items()}
    letters = pipeline.read_topic(pipeline.topics.deadletter)
    assert Counter(v["reason"] for _, v, *_ in letters) == {r: len(m) for r, m in bad.items()}
    stored = {name: float(len(pipeline.rows(name))) for name in DATASETS}  # 0 for the others

    # What Prometheus scraped.
    eventually(lambda: by(prometheus, "up", "job"), {WORKER: 1.0, SINK: 1.0}, "targets up")
    consumed = f'sum(civicstream_events_consumed_total{{job="{WORKER}"}})'
    eventually(lambda: by(prometheus, consumed, ""), {"": float(sent)}, "events consumed")
    eventually(
        lambda: by(prometheus, f'civicstream_events_produced_total{{job="{WORKER}"}}', "topic"),
        produced,
        "events produced per topic",
    )
    eventually(
        lambda: by(prometheus, f'civicstream_dead_letters_total{{job="{WORKER}"}}', "reason"),
        {reason: float(len(messages)) for reason, messages in bad.items()},
        "dead letters by reason",
    )
    eventually(
        lambda: by(prometheus, "civicstream_aqi", "station"),
        {station: float(aqi) for station, aqi in newest.items()},
        "AQI per station",
    )
    eventually(
        lambda: by(prometheus, "civicstream_sink_rows_written_total", "dataset"),
        stored,
        "rows written per dataset",
    )
    sensors = "civicstream_sensor_stale == 1"
    eventually(
        lambda: {(s["station"], s["pollutant"]) for s, _ in prometheus.query(sensors)},
        {("s3", "no2")},
        "stale sensors",
    )
    eventually(
        lambda: by(prometheus, "sum by (job) (civicstream_consumer_lag_offsets)", "job"),
        {WORKER: 0.0, SINK: 0.0},
        "consumer lag once caught up",
    )
    firing = 'ALERTS{alertname="CivicstreamAirUnhealthy", alertstate="firing"}'
    eventually(lambda: set(by(prometheus, firing, "station")), {"s1"}, "the AQI alert")

    # Plausible values where exact ones cannot be known.
    newest_ts = (t0 + 5 * HOUR + 40 * MINUTE) / 1000
    for labels, lag in prometheus.query("civicstream_event_time_lag_seconds"):
        assert lag == pytest.approx(time.time() - newest_ts, abs=120), labels
    latency = by(prometheus, "sum by (job) (civicstream_processing_latency_seconds_count)", "job")
    assert latency[WORKER] == sent
    stored_topics = [pipeline.topics.enriched_air_quality, pipeline.topics.aqi_hourly]
    assert latency[SINK] == sum(produced[t] for t in stored_topics) + len(anomalies)
    worst = by(prometheus, "max by (job) (civicstream:processing_latency_seconds:p99_5m)", "job")
    assert all(0 < seconds < 60 for seconds in worst.values() if not math.isnan(seconds))
    memory = by(prometheus, "process_resident_memory_bytes", "job")
    assert all(10 * 2**20 < rss < 2**31 for rss in memory.values()), memory
