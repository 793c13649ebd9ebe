"""The CLI commands' bodies (argument parsing lives in civicstream.cli)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterable, Iterator

from civicstream.settings import Settings
from civicstream.sources.base import SourceRecord
from schemas import Topics

__all__ = ["replay_file", "run", "serve", "simulate", "tail", "topics", "worker"]


def _coordinates(settings: Settings) -> dict[str, tuple[float, float]]:
    return {s.station_id: (s.lat, s.lon) for s in settings.city().stations.values()}


def topics(settings: Settings, args: argparse.Namespace) -> int:
    from streams.admin import ensure_topics, wait_for_broker

    wait_for_broker(settings.kafka_bootstrap)
    names = Topics(settings.topic_prefix).all()
    counts = ensure_topics(
        settings.kafka_bootstrap,
        names,
        args.partitions or settings.partitions,
        args.replication_factor,
    )
    for name in names:
        print(f"{name:40s} {counts.get(name, 0)} partitions")
    return 0


def worker(settings: Settings, args: argparse.Namespace) -> int:
    import faust

    from streams.admin import ensure_topics, wait_for_broker
    from streams.app import create_app
    from streams.time import HourlyWindows

    wait_for_broker(settings.kafka_bootstrap)
    names = Topics(settings.topic_prefix)
    counts = ensure_topics(settings.kafka_bootstrap, names.all(), settings.partitions)
    app = create_app(
        bootstrap=settings.kafka_bootstrap,
        topics=names,
        windows=HourlyWindows(settings.allowed_lateness_ms),
        partitions=counts[names.raw_air_quality],
        coordinates=_coordinates(settings),
        metrics_port=settings.metrics_port,
        stale_after_ms=settings.stale_after_ms,
    )
    print(
        f"civicstream worker: {names.raw_air_quality} ({counts[names.raw_air_quality]} partitions)"
        f" → {names.enriched_air_quality}, {names.aqi_hourly}, {names.deadletter};"
        f" allowed lateness {settings.allowed_lateness_ms / 1000:.0f} s",
        file=sys.stderr,
        flush=True,
    )
    worker = faust.Worker(app, loglevel=args.loglevel.upper(), quiet=True, redirect_stdouts=False)
    # aiokafka logs a debug record per produced message; that alone costs ~4 % of a core.
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    worker.execute_from_commandline()
    return 0  # pragma: no cover - execute_from_commandline exits


def replay_file(settings: Settings, args: argparse.Namespace) -> int:
    from civicstream.produce import produce
    from civicstream.progress import Progress
    from civicstream.sources import SourceError, open_sources
    from streams.admin import ensure_topics, wait_for_broker

    wait_for_broker(settings.kafka_bootstrap)
    topic = Topics(settings.topic_prefix).raw_air_quality
    ensure_topics(settings.kafka_bootstrap, [topic], settings.partitions)
    try:
        records = open_sources(args.paths, _coordinates(settings), args.since, args.until)
        if args.format == "avro":
            records = _as_avro(records)
        progress = Progress(f"replay → {topic}")
        stats = produce(
            records,
            bootstrap=settings.kafka_bootstrap,
            topic=topic,
            speed=args.speed,
            progress=progress,
        )
        progress.close()
    except SourceError as error:
        print(f"civicstream replay-file: {error}", file=sys.stderr)
        return 2
    print(f"sent {stats.records:,} readings to {topic} at {stats.per_second:,.0f}/s")
    return 0


def _as_avro(records: Iterable[SourceRecord]) -> Iterator[SourceRecord]:
    """Readings re-encoded as Avro; what is not a reading passes as is, to be dead-lettered."""
    from schemas import InvalidInput
    from schemas.raw import parse_raw_reading, reading_to_avro

    for record in records:
        try:
            value = reading_to_avro(parse_raw_reading(record.value))
        except InvalidInput:
            value = record.value
        yield SourceRecord(record.ts_ms, record.key, value)


def simulate(settings: Settings, args: argparse.Namespace) -> int:
    from civicstream.produce import produce
    from civicstream.progress import Progress
    from civicstream.simulate import simulate_readings
    from streams.admin import ensure_topics, wait_for_broker

    wait_for_broker(settings.kafka_bootstrap)
    topic = Topics(settings.topic_prefix).raw_air_quality
    ensure_topics(settings.kafka_bootstrap, [topic], settings.partitions)
    records = simulate_readings(
        args.stations, args.count, args.start, args.seed, args.step_seconds * 1000
    )
    progress = Progress(f"simulate → {topic}", total=args.count)
    stats = produce(
        records, bootstrap=settings.kafka_bootstrap, topic=topic, rate=args.rate, progress=progress
    )
    progress.close()
    print(
        f"sent {stats.records:,} synthetic readings from {args.stations} stations "
        f"to {topic} at {stats.per_second:,.0f}/s"
    )
    return 0


def run(settings: Settings, args: argparse.Namespace) -> int:
    from civicstream.demo import run_demo

    return run_demo(settings, args)


def tail(settings: Settings, args: argparse.Namespace) -> int:
    from civicstream.tail import tail as tail_topic
    from streams.admin import wait_for_broker

    names = Topics(settings.topic_prefix)
    shortcuts = {
        "raw": names.raw_air_quality,
        "enriched": names.enriched_air_quality,
        "aqi": names.aqi_hourly,
        "deadletter": names.deadletter,
    }
    wait_for_broker(settings.kafka_bootstrap)
    topic = shortcuts.get(args.topic, args.topic)
    return tail_topic(settings.kafka_bootstrap, topic, last=args.last, follow=args.follow)


def serve(settings: Settings, args: argparse.Namespace) -> int:
    from civicstream.site import build_site
    from sinks.api import serve as serve_api
    from sinks.exceptions import StoreError

    host = args.host or settings.api_host
    port = args.port if args.port is not None else settings.api_port
    site = build_site(settings, poll_seconds=args.poll_seconds)
    shown = "localhost" if host in ("127.0.0.1", "0.0.0.0", "::") else host
    print(
        f"civicstream serve: http://{shown}:{port}/ (store {settings.store_url}); "
        f"catalog /data.json, API /api/datasets, OpenAPI /api/openapi.json",
        file=sys.stderr,
        flush=True,
    )
    try:
        serve_api(settings.store_url, site, host, port, access_log=args.access_log)
    except StoreError as error:
        print(f"civicstream serve: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"civicstream serve: cannot listen on {host}:{port}: {error}", file=sys.stderr)
        return 2
    return 0
