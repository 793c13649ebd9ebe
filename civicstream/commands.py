"""The CLI commands' bodies (argument parsing lives in civicstream.cli)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from civicstream.settings import City, ConfigError, Settings
from civicstream.sources.base import SourceRecord
from schemas import Topics

if TYPE_CHECKING:
    from streams.incident_state import IncidentSource

__all__ = [
    "export",
    "incident_source",
    "replay_file",
    "run",
    "serve",
    "simulate",
    "tail",
    "topics",
    "worker",
]


def _coordinates(settings: Settings) -> dict[str, tuple[float, float]]:
    return {s.station_id: (s.lat, s.lon) for s in settings.city().stations.values()}


def _neighbour_summary(city: City, names: Topics) -> str:
    """One line on the neighbour check: its areas and how many stations can be judged."""
    from streams.neighbourhood import AreaPlan, NeighbourConfig

    config = city.neighbours or NeighbourConfig()
    if not config.enabled:
        return "neighbour check off ([neighbours] enabled = false)"
    coordinates = {s.station_id: (s.lat, s.lon) for s in city.stations.values()}
    plan = AreaPlan.of(coordinates, config)
    judged = sum(1 for around in plan.neighbours.values() if len(around) >= config.min_neighbours)
    return (
        f"neighbour check: {judged} of {len(coordinates)} stations have at least "
        f"{config.min_neighbours} neighbours within {config.radius_km:g} km; "
        f"{len(plan.members)} area(s), re-keyed on {names.hourly_by_area}"
    )


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
    from streams.air_quality import SensorTypes
    from streams.app import create_app
    from streams.time import HourlyWindows, LocalDays

    city = settings.city()
    wait_for_broker(settings.kafka_bootstrap)
    names = Topics(settings.topic_prefix)
    incident_sources = settings.incident_sources()
    first = [name for name in names.all() if name != names.hourly_by_area]
    counts = ensure_topics(settings.kafka_bootstrap, first, settings.partitions)
    # The area topic follows the raw topic's partition count (an older namespace's too).
    counts |= ensure_topics(
        settings.kafka_bootstrap, [names.hourly_by_area], counts[names.raw_air_quality]
    )
    days = LocalDays(city.standard_offset_ms)
    if counts.get(names.raw_incidents, 1) != 1:
        msg = (
            f"{names.raw_incidents} has {counts[names.raw_incidents]} partitions; incident "
            "statistics need exactly one: delete the topic (the worker recreates it) or use "
            "another CIVIC_TOPIC_PREFIX"
        )
        raise ConfigError(msg)
    if counts.get(names.hourly_by_area) != counts[names.raw_air_quality]:
        msg = (
            f"{names.hourly_by_area} has {counts.get(names.hourly_by_area)} partitions and "
            f"{names.raw_air_quality} {counts[names.raw_air_quality]}; the neighbour check "
            "needs as many: delete the area topic (the worker recreates it)"
        )
        raise ConfigError(msg)
    app = create_app(
        bootstrap=settings.kafka_bootstrap,
        topics=names,
        windows=HourlyWindows(settings.allowed_lateness_ms),
        partitions=counts[names.raw_air_quality],
        coordinates=_coordinates(settings),
        metrics_port=settings.metrics_port,
        days=days,
        sensors=SensorTypes(city.purpleair_stations(), city.purpleair_sensors()),
        batch_max=settings.batch_max,
        stale_after_ms=settings.stale_after_ms,
        incident_sources=incident_sources,
        neighbours=city.neighbours,
    )
    print(
        f"civicstream worker: {names.raw_air_quality} ({counts[names.raw_air_quality]} partitions)"
        f" → {names.enriched_air_quality}, {names.aqi_hourly}, {names.aqi_daily},"
        f" {names.deadletter}; allowed lateness {settings.allowed_lateness_ms / 1000:.0f} s;"
        f" days in {city.timezone} standard time (UTC{days.offset_minutes / 60:+g} h)",
        file=sys.stderr,
        flush=True,
    )
    print(
        f"civicstream worker: {names.raw_incidents} → {names.incidents_published}, "
        f"{names.incidents_stats}; incident sources: "
        + (", ".join(f"{s.name} ({s.timezone})" for s in incident_sources.values()) or "none"),
        file=sys.stderr,
        flush=True,
    )
    print(f"civicstream worker: {_neighbour_summary(city, names)}", file=sys.stderr, flush=True)
    worker = faust.Worker(app, loglevel=args.loglevel.upper(), quiet=True, redirect_stdouts=False)
    # aiokafka logs a debug record per produced message; that alone costs ~4 % of a core.
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    worker.execute_from_commandline()
    return 0  # pragma: no cover - execute_from_commandline exits


def replay_file(settings: Settings, args: argparse.Namespace) -> int:
    from civicstream.produce import produce
    from civicstream.progress import Progress
    from civicstream.sources import SourceError, open_sources
    from civicstream.sources.incidents import INCIDENT_FORMATS
    from streams.admin import ensure_topics, wait_for_broker

    if args.format in INCIDENT_FORMATS:
        return _replay_incidents(settings, args)
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


def incident_source(settings: Settings, name: str) -> IncidentSource:
    """The configured source `name`, else the bundled city's (whose zone its files use)."""
    from civicstream.settings import bundled_incident_source

    source = settings.incident_sources().get(name) or bundled_incident_source(name)
    if source is None:
        msg = f"no city configuration declares the incident source {name!r}"
        raise ConfigError(msg)
    return source


def _replay_incidents(settings: Settings, args: argparse.Namespace) -> int:
    """Send incident export rows in the order they became known (report time)."""
    from civicstream.produce import produce
    from civicstream.progress import Progress
    from civicstream.sources import SourceError
    from civicstream.sources.incidents import read_incidents
    from schemas.raw_incident import heartbeat_to_json
    from streams.admin import ensure_topics, wait_for_broker

    source = incident_source(settings, args.format)
    wait_for_broker(settings.kafka_bootstrap)
    topic = Topics(settings.topic_prefix).raw_incidents
    ensure_topics(settings.kafka_bootstrap, [topic], settings.partitions)
    try:
        records = list(
            read_incidents(args.paths, source.name, source.timezone, args.since, args.until)
        )
    except SourceError as error:
        print(f"civicstream replay-file: {error}", file=sys.stderr)
        return 2
    if args.advance is not None and records:
        last = max(record.ts_ms for record in records)
        heartbeat = last + args.advance
        records.append(SourceRecord(heartbeat, None, heartbeat_to_json(source.name, heartbeat)))
    progress = Progress(f"replay → {topic}", total=len(records))
    stats = produce(
        records,
        bootstrap=settings.kafka_bootstrap,
        topic=topic,
        speed=args.speed,
        progress=progress,
    )
    progress.close()
    print(
        f"sent {stats.records:,} {source.name} rows ({source.timezone}) to {topic}"
        f" at {stats.per_second:,.0f}/s"
        + (f", then a heartbeat {args.advance / 3_600_000:g} h later" if args.advance else "")
    )
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
        "daily": names.aqi_daily,
        "deadletter": names.deadletter,
        "raw-incidents": names.raw_incidents,
        "incidents": names.incidents_published,
        "counts": names.incidents_stats,
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


def export(settings: Settings, args: argparse.Namespace) -> int:
    """The latest hourly observation of each station in a standard model, as JSON."""
    import json

    from sinks.models import fiware_entities, latest_per_station
    from sinks.store import open_store

    city = settings.city()
    with open_store(settings.store_url) as store:
        latest = []
        for station_id in sorted(city.stations):
            rows = store.fetch(
                "aqi_hourly", where={"station_id": station_id}, order_by=["hour_start DESC"]
            )
            latest.extend(rows[:1])
    entities = fiware_entities(latest_per_station(latest), city.stations, args.representation)
    text = json.dumps(entities, indent=2, ensure_ascii=False) + "\n"
    if args.output is None or str(args.output) == "-":
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
        count = len(entities)
        print(f"wrote {count} AirQualityObserved entities to {args.output}", file=sys.stderr)
    return 0
