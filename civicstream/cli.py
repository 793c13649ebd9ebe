"""`civicstream`: one command for every part of the pipeline.

Run `civicstream --help`, or `civicstream COMMAND --help`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from civicstream.compiled import StaleBuild, ensure_fresh
from civicstream.produce import ProduceError
from civicstream.settings import ConfigError, Settings

__all__ = ["main"]

_EPILOG = """\
environment (defaults in brackets):
  CIVIC_KAFKA_BOOTSTRAP   Kafka bootstrap servers [127.0.0.1:9092]
  CIVIC_STORE_URL         open-data store [sqlite:///data/civicstream.db]
  CIVIC_CONFIG            city configuration file(s), separated by ':' [bundled Beijing]
  CIVIC_ALLOWED_LATENESS  lateness of hourly windows, e.g. 600, 10m, PT10M [10m]
  CIVIC_TOPIC_PREFIX      namespace prefixed to every topic and group [none]
  CIVIC_PARTITIONS        partitions for topics this command creates [4]
  CIVIC_METRICS_PORT      the worker's Prometheus /metrics port, 0 = no metrics [0]
  CIVIC_SINK_METRICS_PORT the sink's Prometheus /metrics port, 0 = no metrics [0]
  CIVIC_STALE_AFTER       stream-time silence before a sensor counts as stale [2h]
  CIVIC_SPIKE_WAIT        how long a final hour waits to confirm a possible spike [1h]
  CIVIC_BATCH_MAX         most raw records per stream-worker batch [2000]
  CIVIC_ARCHIVE_DIR       archive of raw events [data/archive]
  CIVIC_API_HOST          address `serve` listens on [127.0.0.1]
  CIVIC_API_PORT          port `serve` listens on [8080]
  CIVIC_PUBLIC_URL        public address of the API, for links in data.json [the request's]
  CIVIC_API_RATE_LIMIT    requests per client address `serve` answers, or off [20/s burst 40]
  CIVIC_API_TRUSTED_PROXIES reverse proxies whose X-Forwarded-For names the client [none]
  CIVIC_KAFKA_SECURITY_PROTOCOL  PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL [PLAINTEXT]
  CIVIC_KAFKA_SASL_MECHANISM     SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN [SCRAM-SHA-512]
  CIVIC_KAFKA_SASL_USERNAME, CIVIC_KAFKA_SASL_PASSWORD or CIVIC_KAFKA_SASL_PASSWORD_FILE
  CIVIC_KAFKA_SSL_CAFILE         CA of the brokers' certificates [the system's]
  CIVIC_KAFKA_SSL_CERTFILE, CIVIC_KAFKA_SSL_KEYFILE (and _KEY_PASSWORD[_FILE]): client cert
  CIVIC_STATE_STORE       the worker's table store: memory or rocksdb [memory]
  CIVIC_STATE_DIR         the worker's data directory (rocksdb files) [data/state]
  CIVIC_STANDBY_REPLICAS  warm standby copies of each table partition on other workers [1]
"""


def _timestamp(text: str) -> int:
    """Epoch ms from an ISO date/time; a date or a time without zone is taken as UTC."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        msg = (
            f"{text!r} is not an ISO 8601 date or time (e.g. 2013-03-01 or 2013-03-01T08:00+08:00)"
        )
        raise argparse.ArgumentTypeError(msg) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def _duration(text: str) -> int:
    from civicstream.settings import parse_duration_ms

    try:
        return parse_duration_ms(text, name="--advance")
    except ConfigError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="civicstream",
        description=(
            "Turns a city's raw air-quality feeds into open data in real time: "
            "Kafka topics in, EPA AQI and enriched readings out, published to the "
            "open-data store."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser(
        "run",
        help="the whole demo: broker, topics, worker, sink, Beijing and SFPD replays, progress",
        description=(
            "Start everything (reusing a running broker), replay the bundled Beijing data "
            "of 12 stations and one incident export (SFPD, December 2018) and show "
            "progress until every result is in the store. "
            "The demo namespace starts from a clean slate each time. Ctrl-C stops "
            "everything this command started."
        ),
    )
    run.add_argument(
        "--data-dir",
        type=Path,
        default=Path("../shared/data/airquality"),
        help="folder with the PRSA_Data_*.csv files [%(default)s]",
    )
    span = run.add_mutually_exclusive_group()
    span.add_argument("--all", action="store_true", help="all four years (2.5 M readings)")
    span.add_argument(
        "--months", type=int, default=1, help="months to replay from 2013-03-01 [%(default)s]"
    )
    run.add_argument(
        "--until",
        type=_timestamp,
        help="replay up to this event time instead (ISO 8601, e.g. 2013-03-08)",
    )
    run.add_argument(
        "--speed",
        type=float,
        default=0.0,
        help="event-time speed-up (3600 = an hour per second); 0 = as fast as possible",
    )
    run.add_argument(
        "--incidents",
        choices=("sfpd", "pittsburgh-fire", "none"),
        default="sfpd",
        help="incident export to replay as well (sfpd: San Francisco, December 2018) [%(default)s]",
    )
    run.add_argument(
        "--incident-dir",
        type=Path,
        default=Path("../shared/data/incidents"),
        help="folder with the incident exports [%(default)s]",
    )
    run.add_argument(
        "--exit-when-done",
        action="store_true",
        help="stop everything once the data is processed instead of staying live",
    )
    run.add_argument(
        "--no-serve",
        action="store_true",
        help="do not start the API and residents' page (civicstream serve) alongside",
    )

    worker = commands.add_parser(
        "worker",
        help="the stream worker (Faust): raw readings → enriched, hourly AQI, dead letters",
        description="Run the Faust stream worker. Creates missing topics first.",
    )
    worker.add_argument("--loglevel", default="warning", help="Faust log level [%(default)s]")

    commands.add_parser(
        "sink",
        help="the sink worker: enriched readings and hourly AQI → open-data store",
        add_help=False,
    )

    topics = commands.add_parser(
        "topics",
        help="create the pipeline's topics",
        description="Create missing topics and list all of them.",
    )
    topics.add_argument(
        "--partitions",
        type=int,
        help="partitions of every topic [city file [topics] partitions, CIVIC_PARTITIONS, 4]",
    )
    topics.add_argument("--replication-factor", type=int, default=1, help="[%(default)s]")

    replay = commands.add_parser(
        "replay-file",
        help="send data files (Beijing station CSVs, JSON lines, incident exports) to Kafka",
        description=(
            "Send readings from files to the raw topic. Beijing station CSVs "
            "(PRSA_Data_*.csv) become one gateway-JSON reading per pollutant and hour, "
            "merged across files by event time; .jsonl files are sent line by line. "
            "With --format sfpd or pittsburgh-fire the files are incident exports: each row "
            "becomes a common incident row (JSON, local times in the source city's zone) on "
            "the raw incidents topic, sorted by report time so late reports come late."
        ),
    )
    replay.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    replay.add_argument("--since", type=_timestamp, help="first event time to send (ISO 8601)")
    replay.add_argument("--until", type=_timestamp, help="send events before this time only")
    replay.add_argument(
        "--speed",
        type=float,
        default=0.0,
        help="event-time speed-up (60 = an hour per minute); 0 = as fast as possible",
    )
    replay.add_argument(
        "--format",
        choices=("json", "avro", "sfpd", "pittsburgh-fire"),
        default="json",
        help=(
            "json, avro: wire format of the readings [%(default)s]; sfpd, pittsburgh-fire: "
            "the files are that source's incident export, sent to the raw incidents topic "
            "in the order the incidents were reported"
        ),
    )
    replay.add_argument(
        "--advance",
        type=_duration,
        metavar="DURATION",
        help=(
            "incident formats: after the last row, send the source's heartbeat this much "
            "later (e.g. 4d), as if that time had passed: what the publication delay held "
            "back is published"
        ),
    )

    export = commands.add_parser(
        "export",
        help="the latest hourly observations in a standard data model (FIWARE), as JSON",
        description=(
            "Write the latest hourly observation of every station of the city file from the "
            "open-data store as FIWARE Smart Data Models AirQualityObserved entities "
            "(NGSI-LD JSON-LD): dateObserved, location (GeoJSON), pollutants with UN/CEFACT "
            "unit codes, airQualityIndex, airQualityLevel."
        ),
    )
    export.add_argument(
        "--model", choices=("fiware",), default="fiware", help="data model [%(default)s]"
    )
    export.add_argument(
        "--representation",
        choices=("normalized", "keyValues"),
        default="normalized",
        help="NGSI-LD representation [%(default)s]",
    )
    export.add_argument(
        "-o", "--output", type=Path, help="file to write (default: standard output)"
    )

    tail = commands.add_parser(
        "tail",
        help="print a topic's records as JSON lines (decodes Avro and JSON)",
        description=(
            "Print the newest records of a topic as JSON lines. TOPIC is a full name or one "
            "of raw, enriched, aqi, daily, deadletter, raw-incidents, incidents, counts (in the "
            "CIVIC_TOPIC_PREFIX namespace)."
        ),
    )
    tail.add_argument("topic", metavar="TOPIC")
    tail.add_argument(
        "-n",
        "--last",
        type=int,
        default=10,
        help="records per partition to start from [%(default)s]",
    )
    tail.add_argument("-f", "--follow", action="store_true", help="keep printing new records")

    serve = commands.add_parser(
        "serve",
        help="the open-data API, the DCAT-US catalog and the residents' page (HTTP)",
        description=(
            "Serve the open-data store read-only over HTTP: the residents' page at /, the "
            "DCAT-US catalog at /data.json, the API at /api/ (OpenAPI description at "
            "/api/openapi.json). Stops on Ctrl-C."
        ),
    )
    serve.add_argument("--host", help="address to listen on [CIVIC_API_HOST or 127.0.0.1]")
    serve.add_argument("--port", type=int, help="port to listen on [CIVIC_API_PORT or 8080]")
    serve.add_argument(
        "--poll-seconds",
        type=int,
        default=60,
        help="how often the page refreshes the air quality [%(default)s]",
    )
    serve.add_argument("--access-log", action="store_true", help="log every request")

    config = commands.add_parser(
        "config",
        help="check city configuration files",
        description="Work with city configuration files (CIVIC_CONFIG).",
    )
    config_commands = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = config_commands.add_parser(
        "check",
        help="validate city files: every problem, with the path of the value",
        description=(
            "Validate city configuration files (TOML) without starting anything: report "
            "every problem of every file, each with its file and the path of the value "
            '(e.g. stations[2].lat, incidents.sources.sfpd.categories."Larceny Theft"), '
            "and a summary of each valid file. The files are checked together, as "
            "CIVIC_CONFIG would list them (an incident source may be declared once). "
            "Exit status 0: all valid; 1: problems found."
        ),
    )
    check.add_argument("files", nargs="+", type=Path, metavar="FILE")

    sim = commands.add_parser(
        "simulate",
        help="synthetic stations for load tests",
        description="Send deterministic synthetic readings (seeded random walk) to the raw topic.",
    )
    sim.add_argument("--stations", type=int, default=100, help="[%(default)s]")
    sim.add_argument("--count", type=int, default=100_000, help="readings to send [%(default)s]")
    sim.add_argument(
        "--rate", type=float, default=0.0, help="readings per second, 0 = max [%(default)s]"
    )
    sim.add_argument(
        "--start",
        type=_timestamp,
        default=_timestamp("2026-01-01T00:00:00+00:00"),
        help="event time of the first reading [2026-01-01T00:00Z]",
    )
    sim.add_argument(
        "--step-seconds",
        type=int,
        default=60,
        help="event time between a station's readings [%(default)s]",
    )
    sim.add_argument("--seed", type=int, default=0, help="[%(default)s]")
    from civicstream import replay as replay_commands  # replay, diff-datasets, archive

    replay_commands.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        ensure_fresh()
    except StaleBuild as error:
        print(f"civicstream: {error}", file=sys.stderr)
        return 2
    if args_list[:1] == ["sink"]:
        from sinks.worker import main as sink_main

        return sink_main(args_list[1:])
    if args_list[:1] == ["archive"]:
        from sinks.archive import main as archive_main

        return archive_main(args_list[1:])
    args = _build_parser().parse_args(args_list)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.ERROR)  # its warnings are about our own choices
    try:
        settings = Settings.from_env()
        return _dispatch(args, settings)
    except ConfigError as error:
        print(f"civicstream: configuration error: {error}", file=sys.stderr)
        return 2
    except ConnectionError as error:
        print(f"civicstream: {error}", file=sys.stderr)
        return 3
    except ProduceError as error:
        print(f"civicstream: {error}", file=sys.stderr)
        return 4
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    from civicstream import commands

    handler: Callable[[Settings, argparse.Namespace], int] = getattr(
        args, "handler", None
    ) or getattr(commands, args.command.replace("-", "_"))
    return handler(settings, args)


if __name__ == "__main__":
    sys.exit(main())
