"""`civicstream replay`: raw events from the archive or from Kafka, through the pipeline again.

The events go into a namespace of their own (`civicstream.namespaces`: own topics,
consumer groups, state and store) or, with ``--into-live``, through a namespace of their
own into the live datasets, where upserts by natural key make a second run change nothing.
The command starts the namespace's stream worker and sink (unless ``--no-start``), sends
the events, waits until everything is stored, stops what it started and sums up.

Order: each source partition's records are sent in their source order (offset order), so
every key — a station, an incident — sees its events in the order live processing saw
them, whatever the target's partition count. Partitions are interleaved by event time.
"""

from __future__ import annotations

import argparse
import heapq
import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from civicstream.namespaces import LIVE, check_name, namespace_prefix, namespace_store_url
from civicstream.produce import ProduceError
from civicstream.progress import Progress
from civicstream.settings import ConfigError, Settings
from kafkaconf import KafkaSecurity, resolve
from schemas import Topics

__all__ = ["register", "replay"]

# The raw topics by the name --topics uses, as `Topics` properties.
RAW_TOPICS = {"air-quality": "raw_air_quality", "incidents": "raw_incidents"}
# Pacing: a jump of more event time than this between consecutive events is not waited for
# (a gap in the data, or a clock far off), so that one bad timestamp cannot stall a replay.
MAX_PACED_GAP_MS = 24 * 3_600_000


def _timestamp(text: str) -> int:
    from civicstream.cli import _timestamp as parse

    return parse(text)


def register(commands: Any) -> None:
    """Add `replay`, `diff-datasets` and `archive` to the CLI's subcommands."""
    from civicstream.diff import register as register_diff

    parser = commands.add_parser(
        "replay",
        help="replay raw events (archive or Kafka) into a namespace or the live datasets",
        description=(
            "Send raw events from the archive (CIVIC_ARCHIVE_DIR) or from Kafka through the "
            "pipeline again: into a namespace of their own (topics replay-NAME.*, own "
            "consumer groups and store), or with --into-live into the live datasets. "
            "Starts the namespace's worker and sink, waits until everything is stored, "
            "stops them and prints a summary."
        ),
        epilog=(
            "From the archive, --since/--until select by event time; from Kafka by the "
            "records' Kafka timestamps (offsets for times). Results depend on event time "
            "only: a replay equals live whatever --speed, --partitions or --batch-max."
        ),
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--namespace", metavar="NAME", help="replay into namespace NAME")
    target.add_argument(
        "--into-live",
        action="store_true",
        help="replay into the live datasets (through namespace 'into-live')",
    )
    parser.add_argument(
        "--from-kafka", action="store_true", help="read the live raw topics, not the archive"
    )
    parser.add_argument("--since", type=_timestamp, help="first time to replay (ISO 8601)")
    parser.add_argument("--until", type=_timestamp, help="replay times before this only")
    parser.add_argument(
        "--topics",
        default=",".join(RAW_TOPICS),
        help="raw topics to replay, comma-separated [%(default)s]",
    )
    parser.add_argument(
        "--stations", help="only these station ids (comma-separated; air quality only)"
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=0.0,
        help="event-time speed-up (60 = an hour per minute); 0 = as fast as possible",
    )
    parser.add_argument(
        "--partitions",
        type=int,
        help="partitions of every topic of the namespace [as for `civicstream topics`]",
    )
    parser.add_argument(
        "--batch-max", type=int, help="the namespace worker's batch size [CIVIC_BATCH_MAX]"
    )
    parser.add_argument("--store", help="the namespace's store URL [derived from the live one]")
    parser.add_argument(
        "--archive-dir", type=Path, help="the archive [CIVIC_ARCHIVE_DIR or data/archive]"
    )
    parser.add_argument(
        "--no-start",
        action="store_true",
        help="the namespace's worker and sink already run: only send, then wait",
    )
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="with --no-start: return once the events are sent, without waiting for them",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="add to the namespace instead of starting it afresh (topics, groups, store)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=24 * 3600.0,
        help="seconds to wait for the pipeline to finish [%(default)s]",
    )
    parser.set_defaults(handler=replay)
    register_diff(commands)
    commands.add_parser(
        "archive",
        help="the archive sink: raw topics → Avro files by topic and event hour",
        add_help=False,
    )


# --- sources ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """Per source partition, its records in source order; `total` when known."""

    streams: dict[tuple[str, int], Iterator[Any]]
    total: int | None
    description: str


def archive_source(
    root: Path,
    topics: Iterable[str],
    since_ms: int | None,
    until_ms: int | None,
    stations: list[str] | None,
) -> Source:
    from sinks.archive import archive_files, read_archive

    files = [f for topic in topics for f in archive_files(root, topic, since_ms, until_ms)]
    total = sum(f.count(stations) for f in files)
    streams = read_archive(
        files,
        since_ms=since_ms,
        until_ms=until_ms,
        keys=None if stations is None else {s.encode() for s in stations},
    )
    return Source(streams, total, f"the archive {root} ({len(files):,} files)")


def kafka_source(
    bootstrap: str,
    topics: Iterable[str],
    since_ms: int | None,
    until_ms: int | None,
    stations: list[str] | None,
    security: KafkaSecurity | None = None,
) -> Source:
    """Each partition from the first record at or after `since` (Kafka timestamps, found with
    offsets_for_times) to the first at or after `until`, or to the end it has now."""
    from kafka import KafkaConsumer
    from kafka.structs import TopicPartition

    security = resolve(security)
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, **security.kafka_python()
    )
    ranges: dict[tuple[str, int], tuple[int, int]] = {}
    try:
        tps = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        if tps:
            begin = consumer.beginning_offsets(tps)
            end = consumer.end_offsets(tps)
            starts = consumer.offsets_for_times({tp: since_ms for tp in tps}) if since_ms else {}
            stops = consumer.offsets_for_times({tp: until_ms for tp in tps}) if until_ms else {}
            for tp in tps:
                start = begin[tp]
                if since_ms is not None:
                    found = starts.get(tp)
                    start = found.offset if found is not None else end[tp]
                stop = end[tp]
                if until_ms is not None and stops.get(tp) is not None:
                    stop = stops[tp].offset
                if stop > start:
                    ranges[(tp.topic, tp.partition)] = (start, stop)
    finally:
        consumer.close()
    keys = None if stations is None else {s.encode() for s in stations}
    streams = {
        tp: _kafka_partition(bootstrap, tp, start, stop, keys, security)
        for tp, (start, stop) in sorted(ranges.items())
    }
    total = sum(stop - start for start, stop in ranges.values())
    return Source(
        streams,
        total if keys is None else None,
        f"Kafka ({len(ranges)} partitions, offsets by Kafka timestamp)",
    )


def _kafka_partition(
    bootstrap: str,
    tp: tuple[str, int],
    start: int,
    stop: int,
    keys: set[bytes] | None,
    security: KafkaSecurity,
) -> Iterator[Any]:
    from kafka import KafkaConsumer
    from kafka.structs import TopicPartition

    from sinks.archive import archived_record

    partition = TopicPartition(*tp)
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=5000,
        **security.kafka_python(),
    )
    try:
        consumer.assign([partition])
        consumer.seek(partition, start)
        while consumer.position(partition) < stop:
            for message in consumer.poll(timeout_ms=1000).get(partition, []):
                if message.offset >= stop:
                    return
                if keys is None or message.key in keys:
                    yield archived_record(message)
    finally:
        consumer.close()


def merged(streams: Mapping[tuple[str, int], Iterator[Any]]) -> Iterator[tuple[int, Any]]:
    """(time, record) from every stream, each stream in its own order, interleaved by time.

    A record's time is its event time, or — when it has none — the time of the record
    before it in the same stream, so that an unreadable record keeps its place.
    """

    def timed(stream: Iterator[Any]) -> Iterator[tuple[int, Any]]:
        last: int | None = None
        for record in stream:
            if record.event_ts_ms is not None:
                last = record.event_ts_ms
            yield (last if last is not None else record.time_ms), record

    return heapq.merge(*(timed(s) for s in streams.values()), key=lambda item: item[0])


# --- sending ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendStats:
    per_topic: Mapping[str, int]
    seconds: float
    first_ms: int | None
    last_ms: int | None

    @property
    def records(self) -> int:
        return sum(self.per_topic.values())


def send(
    records: Iterator[tuple[int, Any]],
    *,
    bootstrap: str,
    targets: Mapping[str, str],
    speed: float,
    progress: Progress,
    security: KafkaSecurity | None = None,
) -> SendStats:
    """Send each record to `targets[its source topic]`: key, value and headers as archived,
    the Kafka timestamp now (old timestamps would fall to the target's retention at once).

    The producer is idempotent (kafka-python's default), so a retry never reorders a
    partition. `speed` > 0 paces by event time.
    """
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=20,
        batch_size=512 * 1024,
        max_request_size=4 * 1024 * 1024,
        **resolve(security).kafka_python(),
    )
    counts: Counter[str] = Counter()
    failures: list[BaseException] = []
    started = time.monotonic()
    anchor: tuple[float, int] | None = None  # (wall, event time) the pacing counts from
    paced_ms: int | None = None
    first_ms: int | None = None
    last_ms: int | None = None
    try:
        for at_ms, record in records:
            if speed > 0:
                if anchor is None or (paced_ms is not None and at_ms - paced_ms > MAX_PACED_GAP_MS):
                    anchor = (time.monotonic(), at_ms)
                if paced_ms is None or at_ms > paced_ms:
                    paced_ms = at_ms
                    delay = anchor[0] + (at_ms - anchor[1]) / 1000 / speed - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
            future = producer.send(
                targets[record.topic],
                key=record.key,
                value=record.value,
                headers=list(record.headers) or None,
            )
            future.add_errback(failures.append)
            counts[record.topic] += 1
            first_ms = at_ms if first_ms is None else min(first_ms, at_ms)
            last_ms = at_ms if last_ms is None else max(last_ms, at_ms)
            progress.update(1, at_ms)
        producer.flush()
    finally:
        producer.close()
    if failures:
        msg = f"{len(failures)} records were not accepted by Kafka; first: {failures[0]}"
        raise ProduceError(msg)
    return SendStats(dict(counts), time.monotonic() - started, first_ms, last_ms)


# --- the command --------------------------------------------------------------------------


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _day(ms: int | None) -> str:
    if ms is None:
        return "…"
    return f"{datetime.fromtimestamp(ms / 1000, tz=UTC):%Y-%m-%d %H:%M}Z"


def _selected_topics(spec: str, live: Topics) -> list[str]:
    names = [name.strip() for name in spec.split(",") if name.strip()]
    unknown = [name for name in names if name not in RAW_TOPICS]
    if unknown or not names:
        msg = f"--topics: unknown {unknown}; choose from {', '.join(RAW_TOPICS)}"
        raise ConfigError(msg)
    return [getattr(live, RAW_TOPICS[name]) for name in names]


def _reset(settings: Settings, topics: Topics, store_url: str | None) -> None:
    from streams.admin import delete_groups, delete_topics

    security = settings.kafka_security
    delete_topics(settings.kafka_bootstrap, [*topics.all(), *topics.internal], security=security)
    delete_groups(
        settings.kafka_bootstrap, [topics.worker_group, topics.sink_group], security=security
    )
    # The worker's local tables (CIVIC_STATE_STORE=rocksdb) belong to the deleted changelogs.
    shutil.rmtree(settings.state_path(topics), ignore_errors=True)
    if store_url is not None and store_url.startswith("sqlite:///"):
        path = store_url.removeprefix("sqlite:///")
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


def _child_env(
    settings: Settings, prefix: str, store_url: str, partitions: int, batch: int
) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        CIVIC_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
        CIVIC_TOPIC_PREFIX=prefix,
        CIVIC_STORE_URL=store_url,
        CIVIC_PARTITIONS=str(partitions),
        CIVIC_BATCH_MAX=str(batch),
        CIVIC_METRICS_PORT="0",
        CIVIC_SINK_METRICS_PORT="0",
    )
    return env


def replay(settings: Settings, args: argparse.Namespace) -> int:
    from civicstream.demo import Children
    from civicstream.status import wait_until_caught_up, wait_until_incidents_caught_up
    from sinks.store import open_store, redacted_url
    from streams.admin import end_offsets, ensure_topics, wait_for_broker

    started = time.monotonic()
    name = "into-live" if args.into_live else check_name(args.namespace)
    live = Topics(settings.topic_prefix)
    prefix = namespace_prefix(settings.topic_prefix, name)
    target = Topics(prefix)
    if args.into_live:
        store_url = args.store or settings.store_url
    else:
        store_url = args.store or namespace_store_url(settings.store_url, name)
    counts = settings.topic_partitions(target, args.partitions)
    partitions = counts[target.raw_air_quality]
    batch_max = args.batch_max or settings.batch_max
    sources = _selected_topics(args.topics, live)
    targets = {
        getattr(live, prop): getattr(target, prop)
        for prop in RAW_TOPICS.values()
        if getattr(live, prop) in sources
    }
    stations = [s.strip() for s in args.stations.split(",")] if args.stations else None
    if args.no_wait and not args.no_start:
        _say("civicstream replay: --no-wait needs --no-start (else it stops what it started)")
        return 2
    if args.since is not None and args.until is not None and args.until <= args.since:
        _say("civicstream replay: --until must be after --since")
        return 2

    security = settings.kafka_security
    wait_for_broker(settings.kafka_bootstrap, security=security)
    where = f"namespace {prefix}" + (
        f" → live store {redacted_url(store_url)}" if args.into_live else ""
    )
    if args.into_live and args.since is not None:
        _say(
            "note: a replay that starts at --since has no state from before it: the first "
            "24 event hours (the longest window) are computed from less history than live had, "
            "and overwrite those live rows."
        )
    with _Stopper() as stopper:
        if not args.no_start and not args.keep:
            _say(f"• starting {where} afresh (topics, consumer groups, store)")
            _reset(settings, target, None if args.into_live else store_url)
        ensure_topics(settings.kafka_bootstrap, target.all(), counts, security=security)
        baseline = end_offsets(
            settings.kafka_bootstrap,
            [target.raw_air_quality, target.raw_incidents],
            security=security,
        )
        if not args.no_start:
            children = Children(Path("data") / "logs" / f"replay-{name}")
            stopper.children = children
            env = _child_env(settings, prefix, store_url, partitions, batch_max)
            command = [sys.executable, "-m", "civicstream"]
            worker_log = children.start("worker", [*command, "worker"], env)
            children.start("sink", [*command, "sink"], env)
            _say(
                f"• worker (batches of ≤ {batch_max}) and sink started for {prefix}, "
                f"{partitions} partitions (logs: {worker_log.parent}/)"
            )
        if args.from_kafka:
            source = kafka_source(
                settings.kafka_bootstrap, sources, args.since, args.until, stations, security
            )
        else:
            from sinks.archive import default_archive_dir

            root = args.archive_dir or default_archive_dir()
            if not root.is_dir():
                _say(f"civicstream replay: no archive at {root} (CIVIC_ARCHIVE_DIR, --archive-dir)")
                return 2
            source = archive_source(root, sources, args.since, args.until, stations)
        pace = f"at {args.speed:g}× event time" if args.speed > 0 else "as fast as possible"
        _say(f"• replaying from {source.description} {pace} into {where}")
        progress = Progress("  events sent", total=source.total or None)
        sent = send(
            merged(source.streams),
            bootstrap=settings.kafka_bootstrap,
            targets=targets,
            speed=args.speed,
            progress=progress,
            security=security,
        )
        progress.close()
        if args.no_wait:
            rate = sent.records / sent.seconds if sent.seconds > 0 else 0.0
            _say(f"\nSent {sent.records:,} events in {sent.seconds:.1f}s ({rate:,.0f} events/s).")
            return 0
        _say("• processing (stream worker → topics → sink → store)")
        check = stopper.children.check if stopper.children else (lambda: None)
        deadline = time.monotonic() + args.timeout
        expected = baseline[target.raw_air_quality] + sent.per_topic.get(live.raw_air_quality, 0)
        status = wait_until_caught_up(
            settings.kafka_bootstrap,
            target,
            expected_raw=expected,
            timeout_s=args.timeout,
            check=check,
            on_status=_StatusLine(expected, _readings_line),
            security=security,
        )
        incidents_sent = sent.per_topic.get(live.raw_incidents, 0)
        if incidents_sent:
            # The incident path has topics, offsets and a sink commit of its own: the
            # readings being stored says nothing about it, and stopping the worker and
            # sink before it is stored would leave the namespace short of incidents.
            expected_rows = baseline[target.raw_incidents] + incidents_sent
            wait_until_incidents_caught_up(
                settings.kafka_bootstrap,
                target,
                expected_raw=expected_rows,
                timeout_s=max(deadline - time.monotonic(), 1.0),
                check=check,
                on_status=_StatusLine(expected_rows, _incidents_line),
                security=security,
            )
    with open_store(store_url) as store:
        rows = {dataset: store.count(dataset) for dataset in store.datasets}
    elapsed = time.monotonic() - started
    per_topic = ", ".join(f"{topic} {count:,}" for topic, count in sent.per_topic.items())
    rate = sent.records / sent.seconds if sent.seconds > 0 else 0.0
    _say(
        f"\nReplayed {sent.records:,} events ({per_topic or 'none'}), event time "
        f"{_day(sent.first_ms)} .. {_day(sent.last_ms)}, in {sent.seconds:.1f}s "
        f"({rate:,.0f} events/s); all processed and stored after {elapsed:.1f}s; "
        f"{status.dead_letters:,} dead letters in {target.deadletter}.\n"
        f"Store {redacted_url(store_url)}: "
        + ", ".join(f"{dataset} {count:,} rows" for dataset, count in rows.items())
    )
    if not args.into_live:
        _say(f"Compare with live: civicstream diff-datasets {LIVE} {name}")
    return 0


class _StatusLine:
    """How far one path of the namespace (readings or incidents) has got, every few
    seconds; `describe` words a status."""

    def __init__(self, expected: int, describe: Callable[[Any], str]) -> None:
        self.expected = expected
        self.describe = describe
        self.tty = sys.stderr.isatty()
        self.last = time.monotonic()
        self.finished = False

    def __call__(self, status: Any) -> None:
        now = time.monotonic()
        done = status.caught_up and status.raw_processed >= self.expected
        if self.finished or (not done and now - self.last < (0.5 if self.tty else 5.0)):
            return
        self.finished = done
        self.last = now
        line = f"  processed {status.raw_processed:,}/{self.expected:,} " + self.describe(status)
        end = "\n" if done or not self.tty else ""
        print(("\r\033[K" if self.tty else "") + line, end=end, file=sys.stderr, flush=True)


def _readings_line(status: Any) -> str:
    return (
        f"readings · {status.hourly_written:,} hourly AQI records · "
        f"{status.sink_committed:,} outputs stored · {status.dead_letters:,} dead letters"
    )


def _incidents_line(status: Any) -> str:
    return (
        f"incident rows · {status.published_written:,} incident records · "
        f"{status.stats_written:,} daily count rows · {status.sink_committed:,} stored"
    )


class _Stopper:
    """Stops the children the command started, however it ends."""

    def __init__(self) -> None:
        self.children: Any = None

    def __enter__(self) -> _Stopper:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.children is not None:
            self.children.stop()
