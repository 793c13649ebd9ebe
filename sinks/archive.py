"""The archive sink: every raw record, kept for good in Avro files by topic and event hour.

Kafka keeps raw topics for days; the data team replays years. This worker copies every
record of the raw topics (`Topics.raw`) into ``CIVIC_ARCHIVE_DIR`` (default
``./data/archive``), byte for byte, with its source topic, partition and offset, its event
time and its Kafka timestamp. Layout, write order and crash recovery: `sinks._archive_files`.

Commit order, per batch (records gathered until ``--flush-records`` or ``--flush-seconds``):

    files written + fsynced → renamed + directories fsynced → progress file replaced
    atomically → Kafka offsets committed

The progress files, not the consumer group, decide where a partition resumes: the group's
offsets exist so that lag can be watched like any consumer's. Run it as
``civicstream archive`` or ``python -m sinks.archive --help``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from kafka import KafkaConsumer  # type: ignore[import-untyped]
from kafka.errors import CommitFailedError, KafkaError  # type: ignore[import-untyped]
from kafka.structs import OffsetAndMetadata, TopicPartition  # type: ignore[import-untyped]
from prometheus_client import CollectorRegistry, Counter, Histogram

from kafkaconf import KafkaLoginError, KafkaSecurity, KafkaSecurityError, check_login, resolve
from schemas import Topics
from sinks._archive_files import (
    ArchiveBusy,
    ArchivedRecord,
    ArchiveFile,
    ArchiveWriter,
    WriteStats,
    archive_files,
    event_time_ms,
    read_archive,
)
from sinks.exceptions import SinkError
from telemetry import ConsumerMetrics, MetricSet, serve

__all__ = [
    "ArchiveBusy",
    "ArchiveFile",
    "ArchiveMetrics",
    "ArchiveRewound",
    "ArchiveSink",
    "ArchiveWriter",
    "ArchivedRecord",
    "archive_files",
    "archived_record",
    "default_archive_dir",
    "event_time_ms",
    "main",
    "read_archive",
]

log = logging.getLogger(__name__)

_COMMIT_TIMEOUT_MS = 30_000


class ArchiveRewound(SinkError):
    """A source partition's offsets went back below what the archive holds."""


def default_archive_dir() -> Path:
    """``CIVIC_ARCHIVE_DIR``, else ``./data/archive``."""
    return Path(os.environ.get("CIVIC_ARCHIVE_DIR") or "data/archive")


class ArchiveMetrics(MetricSet):
    """What the archive sink reports, plus `ConsumerMetrics` (events consumed per topic,
    latency from poll to durable files, consumer lag and event-time lag per partition)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.consumer = ConsumerMetrics.of(registry)
        self.records = Counter(
            "civicstream_archive_records",
            "Raw records written to the archive, per source topic.",
            ["topic"],
            registry=registry,
        )
        self.unparsed = Counter(
            "civicstream_archive_unparsed_records",
            "Archived records whose event time could not be read (filed by Kafka time).",
            ["topic"],
            registry=registry,
        )
        self.redelivered = Counter(
            "civicstream_archive_redelivered_records",
            "Records delivered again after a restart and skipped: already archived.",
            registry=registry,
        )
        self.files = Counter(
            "civicstream_archive_files", "Archive files written.", registry=registry
        )
        self.bytes = Counter(
            "civicstream_archive_written_bytes",
            "Bytes of archive files written.",
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "civicstream_archive_batch_seconds",
            "Time to write, fsync and record one batch, in seconds.",
            registry=registry,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
        )
        self.commits = Counter(
            "civicstream_archive_commits",
            "Kafka offset commits made after a batch was durable.",
            registry=registry,
        )


@dataclass
class ArchiveTotals:
    """What the sink has archived since it started."""

    written: int = 0
    redelivered: int = 0
    files: int = 0
    bytes: int = 0
    batches: int = 0


class ArchiveSink:
    """Consumes the raw topics of one namespace into an archive directory.

    It assigns itself every partition of the raw topics (looking for new ones every
    `topic_check_s`) rather than joining a consumer group's rebalances: one process writes
    an archive (`ArchiveWriter` holds a lock), where each partition resumes is the
    archive's to say, and a restarted sink need not wait for a killed one's session to
    expire. The group (`Topics.archive_group`) only receives commits, for lag monitoring.
    """

    def __init__(
        self,
        bootstrap: str,
        topics: Topics,
        root: Path,
        *,
        group_id: str | None = None,
        flush_records: int = 50_000,
        flush_seconds: float = 60.0,
        poll_timeout_ms: int = 500,
        topic_check_s: float = 30.0,
        registry: CollectorRegistry | None = None,
        metrics: bool = True,
        on_batch: Callable[[WriteStats], None] | None = None,
        security: KafkaSecurity | None = None,
    ) -> None:
        if flush_records < 1 or flush_seconds < 0:
            msg = "flush_records must be at least 1 and flush_seconds not negative"
            raise ValueError(msg)
        self._topics = topics
        self._flush_records = flush_records
        self._flush_seconds = flush_seconds
        self._poll_timeout_ms = poll_timeout_ms
        self._on_batch = on_batch
        self._metrics = ArchiveMetrics.of(registry) if metrics else None
        if self._metrics is not None:
            for topic in topics.raw:
                self._metrics.records.labels(topic=topic)
                self._metrics.unparsed.labels(topic=topic)
        self.totals = ArchiveTotals()
        self._pending: list[ArchivedRecord] = []
        self._arrivals: list[tuple[str, float, int]] = []  # (topic, polled at, records)
        self._pending_since = 0.0
        self._topic_check_s = topic_check_s
        self._checked = 0.0
        self._assigned: set[Any] = set()
        self._closed = False
        self._writer = ArchiveWriter(root)
        try:
            self._consumer: Any = KafkaConsumer(
                bootstrap_servers=bootstrap,
                group_id=group_id or topics.archive_group,
                client_id="civicstream-archive",
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_poll_records=min(flush_records, 5000),
                **resolve(security).kafka_python(),
            )
            self._refresh_assignment()
        except BaseException:
            self._writer.close()
            raise

    # --- assignment ---------------------------------------------------------------------

    def _refresh_assignment(self) -> None:
        """Take every partition of the raw topics; a new one starts where the archive says."""
        self._checked = time.monotonic()
        existing = self._consumer.topics()
        wanted = {
            TopicPartition(topic, partition)
            for topic in self._topics.raw
            if topic in existing
            for partition in self._consumer.partitions_for_topic(topic) or ()
        }
        new = wanted - self._assigned
        if not new:
            return
        self.flush()  # so that every consumed record is written: positions = progress
        recovered = self._writer.recover((tp.topic, tp.partition) for tp in new)
        self._assigned |= new
        self._consumer.assign(sorted(self._assigned))
        for tp in self._assigned:
            next_offset = self._writer.next_offset(tp.topic, tp.partition)
            if next_offset is None:
                self._consumer.seek_to_beginning(tp)
            else:
                self._consumer.seek(tp, next_offset)
        for (topic, partition), next_offset in sorted(recovered.items()):
            log.info("archive: %s[%d] resumes at offset %s", topic, partition, next_offset)

    # --- batches ------------------------------------------------------------------------

    def run_once(self, timeout_ms: int | None = None) -> int:
        """Poll once; write the gathered batch when it is due. Returns records written."""
        if time.monotonic() - self._checked >= self._topic_check_s:
            try:
                self._refresh_assignment()
            except KafkaError as error:
                # The broker is down or restarting: keep archiving the partitions held (the
                # poll below reconnects) and look for new ones at the next check.
                log.warning("archive: topic check failed (%s); trying again later", error)
        polled: dict[Any, list[Any]] = self._consumer.poll(
            timeout_ms=self._poll_timeout_ms if timeout_ms is None else timeout_ms
        )
        for tp, messages in polled.items():
            if not messages:
                continue
            self._check_not_rewound(tp, messages[0].offset)
            now = time.monotonic()
            if not self._pending:
                self._pending_since = now
            for message in messages:
                self._pending.append(archived_record(message))
            self._arrivals.append((tp.topic, now, len(messages)))
            if self._metrics is not None:
                self._metrics.consumer.consumed.labels(tp.topic).inc(len(messages))
        due = len(self._pending) >= self._flush_records or (
            self._pending and time.monotonic() - self._pending_since >= self._flush_seconds
        )
        return self.flush() if due else 0

    def _check_not_rewound(self, tp: Any, offset: int) -> None:
        """Each partition is sought to its next offset to archive, so an earlier offset means
        the topic was deleted and created again (or its log truncated): its new records
        would reuse archived offsets. Stop rather than mix two histories."""
        floor = self._writer.next_offset(tp.topic, tp.partition)
        if floor is not None and offset < floor:
            msg = (
                f"{tp.topic}[{tp.partition}] delivers offset {offset}, but the archive holds "
                f"it up to {floor - 1}: the topic was re-created or truncated. Archive it "
                "into another CIVIC_ARCHIVE_DIR, or move its topic=… directory and its "
                "_progress away"
            )
            raise ArchiveRewound(msg)

    def flush(self) -> int:
        """Write what is pending, durably, then commit its offsets. Returns records written."""
        if not self._pending:
            return 0
        started = time.perf_counter()
        stats = self._writer.write(self._pending)
        newest = _newest_event_times(self._pending)
        arrivals, self._arrivals = self._arrivals, []
        self._pending = []
        offsets = {
            TopicPartition(topic, partition): OffsetAndMetadata(offset, "", -1)
            for (topic, partition), offset in stats.next_offsets.items()
        }
        if offsets:
            try:
                self._consumer.commit(offsets, timeout_ms=_COMMIT_TIMEOUT_MS)
                if self._metrics is not None:
                    self._metrics.commits.inc()
            except (CommitFailedError, KafkaError) as error:  # the archive is durable anyway
                log.warning("offset commit failed (the archive is written): %s", error)
        self._count(stats)
        if self._metrics is not None:
            self._measure(stats, time.perf_counter() - started, arrivals, newest)
        if self._on_batch is not None:
            self._on_batch(stats)
        return stats.written

    def _count(self, stats: WriteStats) -> None:
        self.totals.written += stats.written
        self.totals.redelivered += stats.redelivered
        self.totals.files += stats.files
        self.totals.bytes += stats.bytes
        self.totals.batches += 1

    def _measure(
        self,
        stats: WriteStats,
        seconds: float,
        arrivals: list[tuple[str, float, int]],
        newest: dict[tuple[str, int], int],
    ) -> None:
        assert self._metrics is not None
        self._metrics.batch_seconds.observe(seconds)
        durable = time.monotonic()
        consumer = self._metrics.consumer
        for topic, polled_at, count in arrivals:  # one observation per record
            consumer.observe_latency(topic, durable - polled_at, count)
        for (topic, partition), event_ms in newest.items():
            consumer.event_time_lag.observe(topic, partition, event_ms / 1000)
        lags: dict[tuple[str, int], int] = {}
        for tp in self._assigned:
            end = self._consumer.highwater(tp)
            position = self._writer.next_offset(tp.topic, tp.partition)
            if end is not None and position is not None:
                lags[(tp.topic, tp.partition)] = max(0, end - position)
        consumer.set_consumer_lag(lags)
        for topic, count in stats.per_topic.items():
            self._metrics.records.labels(topic=topic).inc(count)
        for topic, count in stats.unparsed.items():
            self._metrics.unparsed.labels(topic=topic).inc(count)
        self._metrics.redelivered.inc(stats.redelivered)
        self._metrics.files.inc(stats.files)
        self._metrics.bytes.inc(stats.bytes)

    # --- the loop -----------------------------------------------------------------------

    def run(self, stop: threading.Event, *, log_every_s: float = 10.0) -> None:
        """Archive until `stop` is set; write what is pending, then close."""
        last_log = time.monotonic()
        try:
            while not stop.is_set():
                self.run_once()
                if time.monotonic() - last_log >= log_every_s:
                    last_log = time.monotonic()
                    self._log("progress")
            self.flush()
        finally:
            self.close()
            self._log("stopped")

    def _log(self, what: str) -> None:
        t = self.totals
        log.info(
            "%s: %d records archived in %d files (%d bytes), %d re-deliveries skipped, %d batches",
            what,
            t.written,
            t.files,
            t.bytes,
            t.redelivered,
            t.batches,
        )

    def close(self) -> None:
        """Close the consumer (committing nothing more) and release the archive."""
        if self._closed:
            return
        self._closed = True
        try:
            self._consumer.close(autocommit=False)
        finally:
            self._writer.close()


def _newest_event_times(records: list[ArchivedRecord]) -> dict[tuple[str, int], int]:
    newest: dict[tuple[str, int], int] = {}
    for record in records:
        if record.event_ts_ms is not None:
            key = (record.topic, record.partition)
            if record.event_ts_ms > newest.get(key, -1):
                newest[key] = record.event_ts_ms
    return newest


def archived_record(message: Any) -> ArchivedRecord:
    """A consumed kafka-python record as the archive keeps it (event time read here)."""
    timestamp = message.timestamp
    if timestamp is not None and timestamp < 0:
        timestamp = None
    return ArchivedRecord(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
        headers=tuple((k, v) for k, v in (message.headers or ())),
        event_ts_ms=event_time_ms(message.topic, message.value),
        broker_ts_ms=timestamp,
        broker_ts_type="log_append" if message.timestamp_type == 1 else "create",
    )


# --- command line -------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    env = os.environ
    parser = argparse.ArgumentParser(
        prog="civicstream archive",
        description=(
            "Archive every record of the raw topics (air quality, incidents) into Avro files "
            "partitioned by topic and event hour, exactly once, for replays."
        ),
        epilog=(
            "Per batch: files fsynced → renamed → directories fsynced → progress recorded → "
            "Kafka offsets committed. Killed at any moment, a restart leaves every record in "
            "the archive exactly once. SIGINT/SIGTERM write what is pending, then stop. "
            "Layout: topic=<topic>/date=<YYYY-MM-DD>/hour=<HH>/part-<partition>-<first "
            "offset>-<last offset>.avro (UTC event hour)."
        ),
    )
    parser.add_argument(
        "--bootstrap",
        default=env.get("CIVIC_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
        help="Kafka bootstrap servers (env CIVIC_KAFKA_BOOTSTRAP; default %(default)s)",
    )
    parser.add_argument(
        "--prefix",
        default=env.get("CIVIC_TOPIC_PREFIX", ""),
        help="namespace prefixed to every topic (env CIVIC_TOPIC_PREFIX; default none)",
    )
    parser.add_argument(
        "--archive-dir",
        type=Path,
        default=default_archive_dir(),
        help="where the archive lives (env CIVIC_ARCHIVE_DIR; default %(default)s)",
    )
    parser.add_argument(
        "--group",
        default=None,
        help="group its offsets are committed to, for lag (default: PREFIX + civicstream-archive)",
    )
    parser.add_argument(
        "--flush-records",
        type=int,
        default=50_000,
        help="write a batch once this many records are pending (default %(default)s)",
    )
    parser.add_argument(
        "--flush-seconds",
        type=float,
        default=60.0,
        help="... or once the oldest pending record waited this long (default %(default)s)",
    )
    parser.add_argument("--log-every", type=float, default=10.0, metavar="SECONDS")
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=int(env.get("CIVIC_ARCHIVE_METRICS_PORT", "0")),
        help="serve Prometheus /metrics on this port; 0 = off (env CIVIC_ARCHIVE_METRICS_PORT)",
    )
    parser.add_argument(
        "--log-level",
        default=env.get("CIVIC_LOG_LEVEL", "INFO"),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging level (env CIVIC_LOG_LEVEL; default %(default)s)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the archive sink until SIGINT/SIGTERM; 0 on a clean stop, 1 on an error."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("kafka").setLevel(max(logging.WARNING, logging.getLevelName(args.log_level)))
    stop = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("%s: writing what is pending, then stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    if args.metrics_port:
        serve(args.metrics_port)
    topics = Topics(args.prefix)
    try:
        security = KafkaSecurity.from_env()
        if security.protocol != "PLAINTEXT":
            check_login(args.bootstrap, security)
    except (KafkaSecurityError, KafkaLoginError) as error:
        log.error("%s", error)
        return 2
    except OSError as error:  # not reachable yet: the consumer keeps trying
        log.warning("Kafka at %s does not answer yet: %s", args.bootstrap, error)
    log.info(
        "archive: %s (%s) topics %s → %s",
        args.bootstrap,
        security,
        ", ".join(topics.raw),
        args.archive_dir,
    )
    try:
        sink = ArchiveSink(
            args.bootstrap,
            topics,
            args.archive_dir,
            group_id=args.group,
            flush_records=args.flush_records,
            flush_seconds=args.flush_seconds,
            metrics=bool(args.metrics_port),
            security=security,
        )
    except ArchiveBusy as error:
        log.error("%s", error)
        return 1
    try:
        sink.run(stop, log_every_s=args.log_every)
    except ArchiveRewound as error:
        log.error("%s", error)
        return 1
    except Exception:
        log.exception("archive sink failed; unwritten records are archived on restart")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
