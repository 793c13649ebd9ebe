"""How far the pipeline has got: end offsets against what the worker and sink committed."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from kafkaconf import KafkaSecurity, resolve
from schemas import Topics
from streams.admin import committed_offsets, end_offsets

__all__ = [
    "IncidentStatus",
    "PipelineStatus",
    "incident_status",
    "pipeline_status",
    "wait_until_caught_up",
    "wait_until_incidents_caught_up",
]


@dataclass(frozen=True)
class PipelineStatus:
    """Records written to and committed from each topic of one namespace."""

    raw_written: int
    raw_processed: int
    enriched_written: int
    hourly_written: int
    dead_letters: int
    sink_committed: int
    daily_written: int = 0
    anomalies_written: int = 0
    area_written: int = 0
    """Hourly records re-keyed by area for the neighbour check (an internal step)."""
    area_processed: int = 0

    @property
    def caught_up(self) -> bool:
        """The worker has processed every raw record and every re-keyed hourly record, and
        the sink has stored every output."""
        return (
            self.raw_processed >= self.raw_written
            and self.area_processed >= self.area_written
            and self.sink_committed
            >= self.enriched_written
            + self.hourly_written
            + self.daily_written
            + self.anomalies_written
        )


def pipeline_status(
    bootstrap: str, topics: Topics, *, security: KafkaSecurity | None = None
) -> PipelineStatus:
    security = resolve(security)
    stored = [topics.enriched_air_quality, topics.aqi_hourly, topics.aqi_daily, topics.anomalies]
    ends = end_offsets(
        bootstrap,
        [topics.raw_air_quality, *stored, topics.hourly_by_area, topics.deadletter],
        security=security,
    )
    worker = committed_offsets(bootstrap, topics.worker_group, security=security)
    sink = committed_offsets(bootstrap, topics.sink_group, security=security)
    return PipelineStatus(
        raw_written=ends[topics.raw_air_quality],
        raw_processed=worker.get(topics.raw_air_quality, 0),
        enriched_written=ends[topics.enriched_air_quality],
        hourly_written=ends[topics.aqi_hourly],
        dead_letters=ends[topics.deadletter],
        sink_committed=sum(sink.get(topic, 0) for topic in stored),
        daily_written=ends[topics.aqi_daily],
        anomalies_written=ends[topics.anomalies],
        area_written=ends[topics.hourly_by_area],
        area_processed=worker.get(topics.hourly_by_area, 0),
    )


def wait_until_caught_up(
    bootstrap: str,
    topics: Topics,
    *,
    expected_raw: int,
    timeout_s: float,
    check: Callable[[], None] = lambda: None,
    on_status: Callable[[PipelineStatus], None] = lambda status: None,
    poll_s: float = 0.5,
    security: KafkaSecurity | None = None,
) -> PipelineStatus:
    """Poll until `expected_raw` records are written and everything downstream is stored.

    Caught-up must hold on two polls in a row: offsets are read one topic at a time, so a
    single poll can see a worker commit before the outputs that commit flushed.
    `check` runs on every poll (e.g. to fail fast when a child process died).
    """
    security = resolve(security)
    deadline = time.monotonic() + timeout_s
    stable = 0
    while True:
        check()
        status = pipeline_status(bootstrap, topics, security=security)
        on_status(status)
        done = status.caught_up and status.raw_written >= expected_raw
        stable = stable + 1 if done else 0
        if stable >= 2:
            return status
        if time.monotonic() > deadline:
            msg = f"pipeline not caught up after {timeout_s:.0f} s: {status}"
            raise TimeoutError(msg)
        time.sleep(poll_s)


@dataclass(frozen=True)
class IncidentStatus:
    """How far the incident path of one namespace has got."""

    raw_written: int
    raw_processed: int
    published_written: int
    stats_written: int
    sink_committed: int

    @property
    def caught_up(self) -> bool:
        """The worker has processed every raw incident row and the sink stored its outputs."""
        return (
            self.raw_processed >= self.raw_written
            and self.sink_committed >= self.published_written + self.stats_written
        )


def incident_status(
    bootstrap: str, topics: Topics, *, security: KafkaSecurity | None = None
) -> IncidentStatus:
    security = resolve(security)
    ends = end_offsets(
        bootstrap,
        [topics.raw_incidents, topics.incidents_published, topics.incidents_stats],
        security=security,
    )
    worker = committed_offsets(bootstrap, topics.worker_group, security=security)
    sink = committed_offsets(bootstrap, topics.sink_group, security=security)
    return IncidentStatus(
        raw_written=ends[topics.raw_incidents],
        raw_processed=worker.get(topics.raw_incidents, 0),
        published_written=ends[topics.incidents_published],
        stats_written=ends[topics.incidents_stats],
        sink_committed=sink.get(topics.incidents_published, 0)
        + sink.get(topics.incidents_stats, 0),
    )


def wait_until_incidents_caught_up(
    bootstrap: str,
    topics: Topics,
    *,
    expected_raw: int,
    timeout_s: float,
    check: Callable[[], None] = lambda: None,
    on_status: Callable[[IncidentStatus], None] = lambda status: None,
    poll_s: float = 0.5,
    security: KafkaSecurity | None = None,
) -> IncidentStatus:
    """Like `wait_until_caught_up`, for the incident path (two stable polls in a row)."""
    security = resolve(security)
    deadline = time.monotonic() + timeout_s
    stable = 0
    while True:
        check()
        status = incident_status(bootstrap, topics, security=security)
        on_status(status)
        done = status.caught_up and status.raw_written >= expected_raw
        stable = stable + 1 if done else 0
        if stable >= 2:
            return status
        if time.monotonic() > deadline:
            msg = f"incident path not caught up after {timeout_s:.0f} s: {status}"
            raise TimeoutError(msg)
        time.sleep(poll_s)
