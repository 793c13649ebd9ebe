"""The CLI commands' bodies (argument parsing lives in civicstream.cli)."""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from civicstream.settings import City, ConfigError, Settings
from civicstream.sources.base import SourceRecord
from schemas import Topics

if TYPE_CHECKING:
    from sinks.api import Limits
    from streams.incident_state import IncidentSource
    from streams.neighbourhood import AreaPlan

__all__ = [
    "api_limits",
    "config",
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


def _partitions(settings: Settings) -> dict[str, int]:
    """Partitions for every topic of the namespace (city file, CIVIC_PARTITIONS)."""
    return settings.topic_partitions(Topics(settings.topic_prefix))


def _neighbour_summary(plan: AreaPlan, stations: int, names: Topics) -> str:
    """One line on the neighbour check: its areas and how many stations can be judged."""
    config = plan.config
    if not config.enabled:
        return "neighbour check off ([neighbours] enabled = false)"
    judged = sum(1 for around in plan.neighbours.values() if len(around) >= config.min_neighbours)
    return (
        f"neighbour check: {judged} of {stations} stations have at least "
        f"{config.min_neighbours} neighbours within {config.radius_km:g} km; "
        f"{len(plan.members)} area(s), re-keyed on {names.hourly_by_area}"
    )


def topics(settings: Settings, args: argparse.Namespace) -> int:
    from streams.admin import ensure_topics, wait_for_broker

    security = settings.kafka_security
    wait_for_broker(settings.kafka_bootstrap, security=security)
    names = Topics(settings.topic_prefix).all()
    counts = ensure_topics(
        settings.kafka_bootstrap,
        names,
        settings.topic_partitions(Topics(settings.topic_prefix), args.partitions),
        args.replication_factor,
        security=security,
    )
    for name in names:
        print(f"{name:40s} {counts.get(name, 0)} partitions")
    return 0


def worker(settings: Settings, args: argparse.Namespace) -> int:
    import faust

    from civicstream.compiled import MODULES, compiled_modules
    from streams.admin import ensure_topics, wait_for_broker
    from streams.air_quality import SensorTypes
    from streams.app import create_app
    from streams.neighbourhood import AreaPlan, NeighbourConfig
    from streams.time import HourlyWindows, LocalDays

    compiled = len(compiled_modules())
    step = f"compiled ({compiled} of {len(MODULES)} modules)" if compiled else "Python sources"
    print(f"worker: hot path: {step}", file=sys.stderr, flush=True)
    city = settings.city()
    security = settings.kafka_security
    wait_for_broker(settings.kafka_bootstrap, security=security)
    names = Topics(settings.topic_prefix)
    incident_sources = settings.incident_sources()
    counts = ensure_topics(
        settings.kafka_bootstrap, names.all(), settings.topic_partitions(names), security=security
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
    # The neighbours are planned once (a k-d tree: seconds at 100,000 stations).
    coordinates = {s.station_id: (s.lat, s.lon) for s in city.stations.values()}
    plan = AreaPlan.of(coordinates, city.neighbours or NeighbourConfig())
    app = create_app(
        bootstrap=settings.kafka_bootstrap,
        topics=names,
        windows=HourlyWindows(settings.allowed_lateness_ms, settings.spike_wait_ms),
        partitions=counts[names.raw_air_quality],
        coordinates=coordinates,
        metrics_port=settings.metrics_port,
        days=days,
        sensors=SensorTypes(city.purpleair_stations(), city.purpleair_sensors()),
        batch_max=settings.batch_max,
        stale_after_ms=settings.stale_after_ms,
        incident_sources=incident_sources,
        security=security,
        state_store=settings.state_store,
        state_dir=settings.state_path(names),
        standby_replicas=settings.standby_replicas,
        neighbours=plan,
    )
    where = f" in {settings.state_path(names)}" if settings.state_store != "memory" else ""
    print(
        f"civicstream worker: tables in {settings.state_store}{where}, "
        f"{settings.standby_replicas} standby replica(s)",
        file=sys.stderr,
        flush=True,
    )
    print(f"civicstream worker: Kafka {settings.kafka_bootstrap} ({security})", file=sys.stderr)
    print(
        f"civicstream worker: {names.raw_air_quality} ({counts[names.raw_air_quality]} partitions)"
        f" → {names.enriched_air_quality}, {names.aqi_hourly}, {names.aqi_daily},"
        f" {names.deadletter}; allowed lateness {settings.allowed_lateness_ms / 1000:.0f} s;"
        f" spike wait {settings.spike_wait_ms / 1000:.0f} s;"
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
    summary = _neighbour_summary(plan, len(coordinates), names)
    print(f"civicstream worker: {summary}", file=sys.stderr, flush=True)
    worker = faust.Worker(app, loglevel=args.loglevel.upper(), quiet=True, redirect_stdouts=False)
    # aiokafka logs a debug record per produced message; that alone costs ~4 % of a core.
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    # What exists now (modules, the app, the neighbour plan) lives as long as the worker:
    # out of the cyclic collector's way, its full collections scan only what came later.
    gc.freeze()
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
    security = settings.kafka_security
    wait_for_broker(settings.kafka_bootstrap, security=security)
    topic = Topics(settings.topic_prefix).raw_air_quality
    ensure_topics(settings.kafka_bootstrap, [topic], _partitions(settings), security=security)
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
            security=security,
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
    security = settings.kafka_security
    wait_for_broker(settings.kafka_bootstrap, security=security)
    topic = Topics(settings.topic_prefix).raw_incidents
    ensure_topics(settings.kafka_bootstrap, [topic], _partitions(settings), security=security)
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
        security=security,
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

    security = settings.kafka_security
    wait_for_broker(settings.kafka_bootstrap, security=security)
    topic = Topics(settings.topic_prefix).raw_air_quality
    ensure_topics(settings.kafka_bootstrap, [topic], _partitions(settings), security=security)
    records = simulate_readings(
        args.stations, args.count, args.start, args.seed, args.step_seconds * 1000
    )
    progress = Progress(f"simulate → {topic}", total=args.count)
    stats = produce(
        records,
        bootstrap=settings.kafka_bootstrap,
        topic=topic,
        rate=args.rate,
        progress=progress,
        security=security,
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
    security = settings.kafka_security
    wait_for_broker(settings.kafka_bootstrap, security=security)
    topic = shortcuts.get(args.topic, args.topic)
    return tail_topic(
        settings.kafka_bootstrap, topic, last=args.last, follow=args.follow, security=security
    )


def serve(settings: Settings, args: argparse.Namespace) -> int:
    from civicstream.site import build_site
    from sinks.api import serve as serve_api
    from sinks.exceptions import StoreError
    from sinks.store import redacted_url

    limits = api_limits(settings)
    host = args.host or settings.api_host
    port = args.port if args.port is not None else settings.api_port
    site = build_site(settings, poll_seconds=args.poll_seconds)
    shown = "localhost" if host in ("127.0.0.1", "0.0.0.0", "::") else host
    print(
        f"civicstream serve: http://{shown}:{port}/ (store {redacted_url(settings.store_url)}); "
        f"catalog /data.json, API /api/datasets, OpenAPI /api/openapi.json; "
        f"at most {limits.rate or 'unlimited'} requests per client",
        file=sys.stderr,
        flush=True,
    )
    try:
        serve_api(settings.store_url, site, host, port, access_log=args.access_log, limits=limits)
    except StoreError as error:
        print(f"civicstream serve: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"civicstream serve: cannot listen on {host}:{port}: {error}", file=sys.stderr)
        return 2
    return 0


def api_limits(settings: Settings) -> Limits:
    """The API's request limits: CIVIC_API_RATE_LIMIT and CIVIC_API_TRUSTED_PROXIES."""
    import ipaddress

    from sinks.api import Limits, RateLimit

    try:
        rate = RateLimit.parse(settings.api_rate_limit)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    try:
        proxies = tuple(ipaddress.ip_network(p, strict=False) for p in settings.api_trusted_proxies)
    except ValueError as error:
        msg = f"CIVIC_API_TRUSTED_PROXIES: {error}"
        raise ConfigError(msg) from None
    return Limits(rate=rate, trusted_proxies=proxies)


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


def config(settings: Settings, args: argparse.Namespace) -> int:
    """`civicstream config check FILE...`: every problem of every file, or a summary."""
    from civicstream.city import Problem, read_city

    del settings  # the files are named on the command line
    problems = 0
    declared: dict[str, str] = {}  # incident source → the file that declared it first
    for path in args.files:
        checked = read_city(path)
        messages = checked.messages()
        if checked.city is not None:
            for name in checked.city.incident_sources:
                if name in declared:
                    twice = Problem(
                        f"incidents.sources.{name}",
                        f'incident source "{name}" is also declared in {declared[name]}',
                    )
                    messages.append(twice.describe(path))
                declared.setdefault(name, str(path))
        for message in messages:
            print(message)
        problems += len(messages)
        if checked.city is not None and not messages:
            print(f"{path}: ok: {_summary(checked.city)}")
    sys.stdout.flush()
    if problems:
        files = len(args.files)
        noun = "problem" if problems == 1 else "problems"
        print(f"{problems} {noun} in {files} file{'s' if files > 1 else ''}", file=sys.stderr)
        return 1
    return 0


def _summary(city: City) -> str:
    from streams.time import standard_offset_ms

    hours = standard_offset_ms(city.timezone) / 3_600_000
    purpleair = len(city.purpleair_stations())
    stations = f"{len(city.stations)} station{'s' if len(city.stations) != 1 else ''}"
    if purpleair:
        stations += f" ({purpleair} PurpleAir)"
    sensors = f"{len(city.sensors)} sensor{'s' if len(city.sensors) != 1 else ''}"
    sources = ", ".join(city.incident_sources) or "none"
    text = (
        f"{city.name}, {city.timezone} (standard time UTC{hours:+g}); {stations}, {sensors}; "
        f"incident sources: {sources}"
    )
    if city.topic_partitions or city.default_partitions:
        named = [f"{topic}={count}" for topic, count in city.topic_partitions.items()]
        if city.default_partitions:
            named.append(f"default={city.default_partitions}")
        text += f"; partitions: {', '.join(named)}"
    return text
