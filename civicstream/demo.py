"""`civicstream run`: the whole pipeline on the bundled Beijing data, with progress.

Starts (or reuses) the local broker, resets the demo namespace, starts the stream worker,
the sink worker and the open-data API (``civicstream serve``: the residents' page, the
catalog and the API, unless ``--no-serve`` or its port is taken) as child processes,
replays the station files and one incident export (SFPD, December 2018), and reports
until every result is in the open-data store. Ctrl-C stops everything this command
started.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import IO

from civicstream.localbroker import load_local_kafka
from civicstream.monitoring import PrometheusServer, find_prometheus, prometheus_config
from civicstream.produce import produce
from civicstream.progress import Progress
from civicstream.settings import ConfigError, Settings, bundled_city_file
from civicstream.sources import SourceRecord, open_sources
from civicstream.sources.incidents import read_incidents
from civicstream.status import (
    IncidentStatus,
    PipelineStatus,
    wait_until_caught_up,
    wait_until_incidents_caught_up,
)
from kafkaconf import KafkaLoginError
from schemas import Topics
from schemas.raw_incident import heartbeat_to_json
from sinks.store import redacted_url
from streams.admin import delete_groups, delete_topics, end_offsets, ensure_topics, wait_for_broker

__all__ = ["run_demo"]

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# The first hour of the Beijing files: 2013-03-01 00:00 Beijing time (UTC+8).
DEMO_START = datetime(2013, 3, 1, tzinfo=timezone(timedelta(hours=8)))
# /metrics of the worker and the sink, and Prometheus: deploy/prometheus/prometheus.yml's.
DEMO_PORTS = {"worker": 9191, "sink": 9192, "prometheus": 9090}
INCIDENT_FILES = {
    "sfpd": "SFPD_Incident_Reports_2018-12.csv",
    "pittsburgh-fire": "Pittsburgh_Fire_Incidents.csv",
}
# The incident replay ends with a heartbeat this long after the last report: as if four
# days passed without news, so the 72-hour publication delay of every incident is over.
INCIDENT_ADVANCE_MS = 4 * 86_400_000


def _month_after(start: datetime, months: int) -> datetime:
    month = start.month - 1 + months
    return start.replace(year=start.year + month // 12, month=month % 12 + 1)


class Children:
    """Child processes with their logs; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.processes: dict[str, tuple[subprocess.Popen[bytes], IO[bytes]]] = {}
        self.optional: set[str] = set()  # children whose exit is reported, not fatal

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Path:
        """Start `argv` as `name`; `env` replaces the environment when given."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        log = log_path.open("wb")
        process = subprocess.Popen(
            argv,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.processes[name] = (process, log)
        return log_path

    def check(self) -> None:
        for name, (process, log) in list(self.processes.items()):
            if process.poll() is not None:
                tail = (self.log_dir / f"{name}.log").read_text(errors="replace")[-3000:]
                if name in self.optional:
                    _say(f"  (the {name} exited with code {process.returncode}: {tail.strip()})")
                    log.close()
                    del self.processes[name]
                    continue
                msg = f"the {name} exited with code {process.returncode}; its log ends:\n{tail}"
                raise RuntimeError(msg)

    def stop(self) -> None:
        for process, _ in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for process, log in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()
        self.processes.clear()


def _store_counts(store_url: str) -> tuple[int, int, int]:
    """Rows of aqi_hourly, readings and aqi_daily in the store."""
    from sinks.store import open_store

    try:
        with open_store(store_url) as store:
            return store.count("aqi_hourly"), store.count("readings"), store.count("aqi_daily")
    except Exception:  # the sink may be creating the file right now
        return 0, 0, 0


def _incident_counts(store_url: str) -> dict[str, int]:
    from sinks.store import open_store

    try:
        with open_store(store_url) as store:
            incidents = store.fetch("incidents")
            rows = store.fetch("incident_counts")
    except Exception:  # the sink may be creating the file right now
        return {}
    return {
        "incidents": len(incidents),
        "withheld": sum(r["location_withheld"] for r in incidents),
        "rows": len(rows),
        "suppressed": sum(r["suppressed"] for r in rows),
        "spikes": sum(r["spike"] for r in rows),
        "revised": sum(r["revision"] > 1 for r in rows if r["category"] == "all"),
        "days": sum(r["category"] == "all" for r in rows),
    }


def _incident_config(settings: Settings, source: str) -> str | None:
    """CIVIC_CONFIG for the children: the configured cities, plus the bundled city of
    `source` when none of them declares it (the demo city, Beijing, has no incidents)."""
    if source in settings.incident_sources():
        return None
    path = bundled_city_file(source)
    if path is None:
        msg = f"no bundled city declares the incident source {source!r}"
        raise ConfigError(msg)
    return os.pathsep.join(str(p) for p in (*settings.config_paths, path))


def _reset(settings: Settings, topics: Topics) -> None:
    delete_topics(settings.kafka_bootstrap, [*topics.all(), *topics.internal])
    delete_groups(settings.kafka_bootstrap, [topics.worker_group, topics.sink_group])
    # The worker's local tables (CIVIC_STATE_STORE=rocksdb) belong to the deleted changelogs.
    shutil.rmtree(settings.state_path(topics), ignore_errors=True)
    if settings.store_url.startswith("sqlite:///") and ":memory:" not in settings.store_url:
        path = Path(settings.store_url.removeprefix("sqlite:///"))
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _port(preferred: int) -> int:
    """`preferred` when nothing listens on it, else a free port."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
        except OSError:
            probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _metrics_ports(settings: Settings) -> dict[str, int]:
    """The worker's and the sink's /metrics ports: the user's settings, else the demo's."""
    sink = int(os.environ.get("CIVIC_SINK_METRICS_PORT") or 0)
    return {
        "worker": settings.metrics_port or _port(DEMO_PORTS["worker"]),
        "sink": sink or _port(DEMO_PORTS["sink"]),
    }


def _start_prometheus(ports: dict[str, int], cleanup: ExitStack) -> str | None:
    """A real Prometheus scraping the worker, the sink and the API, when Debian's is
    installed."""
    binary = find_prometheus()
    if binary is None:
        return None
    targets = {name: [f"127.0.0.1:{port}"] for name, port in ports.items()}
    server = PrometheusServer(
        Path("data") / "prometheus",
        _port(DEMO_PORTS["prometheus"]),
        prometheus_config(targets, interval_s=5),
        binary=binary,
    )
    try:
        server.start()
    except (OSError, RuntimeError, TimeoutError) as error:
        _say(f"  Prometheus did not start ({error}); going on without it")
        return None
    cleanup.callback(server.stop)
    return server.url


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _start_api(
    settings: Settings, children: Children, env_python: list[str], env: dict[str, str]
) -> str | None:
    """`civicstream serve` as a child; its page URL, or None when its port is taken."""
    if not _port_free(settings.api_host, settings.api_port):
        _say(
            f"• API: port {settings.api_port} is in use, so no `civicstream serve` this time "
            "(CIVIC_API_PORT picks another)"
        )
        return None
    children.optional.add("api")
    log = children.start("api", [*env_python, "serve"], env)
    shown = "localhost" if settings.api_host in ("127.0.0.1", "0.0.0.0") else settings.api_host
    url = f"http://{shown}:{settings.api_port}/"
    _say(f"• API and residents' page at {url} (log: {log})")
    return url


def _stop_on_signals() -> None:
    """Ctrl-C (SIGINT) and SIGTERM both stop everything this command started.

    A process started in the background by a non-interactive shell (`cmd &` in a script,
    CI) inherits SIGINT ignored, and Python then leaves it ignored: `run` would outlive a
    Ctrl-C sent to it, and SIGTERM's default would kill it without stopping its children.
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def run_demo(settings: Settings, args: argparse.Namespace) -> int:
    started = time.monotonic()
    _stop_on_signals()
    topics = Topics(settings.topic_prefix)
    files = sorted(args.data_dir.glob("PRSA_Data_*.csv"))
    if not files:
        _say(f"civicstream run: no PRSA_Data_*.csv files in {args.data_dir} (use --data-dir)")
        return 2
    incidents = None if args.incidents == "none" else args.incidents
    incident_file = args.incident_dir / INCIDENT_FILES[incidents] if incidents else None
    if incident_file is not None and not incident_file.is_file():
        _say(f"civicstream run: no {incident_file} (use --incident-dir, or --incidents none)")
        return 2
    child_env = dict(os.environ)
    if incidents:
        config = _incident_config(settings, incidents)
        if config is not None:
            child_env["CIVIC_CONFIG"] = config
            settings = Settings.from_env(child_env)
    broker_started = False
    with ExitStack() as cleanup:
        # 1. The broker: reuse one that answers, else start the project's own.
        try:
            wait_for_broker(settings.kafka_bootstrap, timeout_s=2)
            _say(f"• Kafka: using the broker at {settings.kafka_bootstrap}")
        except ConnectionError as error:
            if settings.kafka_bootstrap != "127.0.0.1:9092" or isinstance(error, KafkaLoginError):
                raise
            _say("• Kafka: starting the local broker (deploy/local-kafka) ...")
            local = load_local_kafka()
            broker = local.start(PROJECT_ROOT / ".kafka", 9092, 9093)
            cleanup.callback(broker.stop)
            broker_started = True
            _say(f"  ready at {broker.bootstrap} after {time.monotonic() - started:.1f}s")
        # 2. A clean demo namespace, so a second run gives the same results as the first.
        _say("• resetting the demo topics, consumer groups and store")
        _reset(settings, topics)
        ensure_topics(settings.kafka_bootstrap, topics.all(), settings.topic_partitions(topics))
        # 3. Worker and sink.
        children = Children(Path("data") / "logs")
        cleanup.callback(children.stop)
        env_python = [sys.executable, "-m", "civicstream"]
        ports = _metrics_ports(settings)
        env = dict(
            child_env,
            CIVIC_METRICS_PORT=str(ports["worker"]),
            CIVIC_SINK_METRICS_PORT=str(ports["sink"]),
        )
        workers_started = time.monotonic()
        worker_log = children.start("worker", [*env_python, "worker"], env)
        sink_log = children.start("sink", [*env_python, "sink"], env)
        _say(f"• worker and sink started (logs: {worker_log}, {sink_log})")
        api_url = None if args.no_serve else _start_api(settings, children, env_python, child_env)
        scraped = {**ports, **({"api": settings.api_port} if api_url else {})}
        prometheus = _start_prometheus(scraped, cleanup)
        metrics = ", ".join(f"http://127.0.0.1:{port}/metrics" for port in scraped.values())
        if prometheus:
            _say(f"• Prometheus at {prometheus} (alerts: {prometheus}/alerts), scraping {metrics}")
        else:
            _say(f"• metrics at {metrics} (install Debian's prometheus to have them scraped)")
        # 4. Replay.
        since = DEMO_START
        if args.until is not None:
            until = datetime.fromtimestamp(args.until / 1000, tz=UTC)
        else:
            until = None if args.all else _month_after(DEMO_START, args.months)
        span = "all four years" if until is None else f"{since:%Y-%m-%d} .. {until:%Y-%m-%d}"
        coordinates = {s.station_id: (s.lat, s.lon) for s in settings.city().stations.values()}
        records = open_sources(
            files,
            coordinates,
            int(since.timestamp() * 1000),
            int(until.timestamp() * 1000) if until else None,
        )
        _say(f"• replaying {len(files)} Beijing stations, {span}, into {topics.raw_air_quality}")
        progress = Progress("  readings sent")
        sent = produce(
            records,
            bootstrap=settings.kafka_bootstrap,
            topic=topics.raw_air_quality,
            speed=args.speed,
            progress=progress,
        )
        progress.close()
        incident_rows = _replay_incidents(settings, topics, incidents, incident_file)
        # 5. Wait until the worker and the sink have caught up.
        _say("• processing (stream worker → topics → sink → store)")
        _wait_until_drained(settings, topics, children, sent.records, workers_started)
        if incident_rows:
            _wait_for_incidents(settings, topics, children, incident_rows)
        elapsed = time.monotonic() - started
        _summary(settings, topics, sent.records, elapsed, api_url)
        if incident_rows:
            _incident_summary(settings, topics, incidents or "", incident_rows)
        _say(f"  metrics    {metrics}")
        if prometheus:
            _say(f"  Prometheus {prometheus}  (graph, alerts; dashboards: deploy/grafana)")
        if args.exit_when_done:
            return 0
        try:  # from the moment the user is told, Ctrl-C is the normal way out (exit 0)
            _say(
                "\nThe pipeline stays live: send readings to "
                f"{topics.raw_air_quality} (key = station_id). Ctrl-C stops everything."
            )
            while True:
                children.check()
                time.sleep(1)
        except KeyboardInterrupt:
            _say("\nstopping worker, sink" + (" and broker" if broker_started else ""))
    return 0


def _replay_incidents(
    settings: Settings, topics: Topics, source: str | None, path: Path | None
) -> int:
    """Send one incident export in report order, then the source's heartbeat."""
    if source is None or path is None:
        return 0
    profile = settings.incident_sources()[source]
    records = list(read_incidents([path], source, profile.timezone))
    last = max(record.ts_ms for record in records)
    heartbeat = last + INCIDENT_ADVANCE_MS
    records.append(SourceRecord(heartbeat, None, heartbeat_to_json(source, heartbeat)))
    _say(
        f"• replaying {path.name} ({len(records) - 1:,} rows, {profile.title}) into "
        f"{topics.raw_incidents}, in report order, then a heartbeat 4 days after the last"
    )
    progress = Progress("  incident rows sent")
    sent = produce(
        records, bootstrap=settings.kafka_bootstrap, topic=topics.raw_incidents, progress=progress
    )
    progress.close()
    return sent.records


def _wait_for_incidents(settings: Settings, topics: Topics, children: Children, sent: int) -> None:
    tty = sys.stderr.isatty()
    last_line = [0.0]

    def show(status: IncidentStatus, final: bool = False) -> None:
        if not final and time.monotonic() - last_line[0] < (0.5 if tty else 5):
            return
        last_line[0] = time.monotonic()
        line = (
            f"  processed {status.raw_processed:,}/{status.raw_written:,} incident rows"
            f" · {status.published_written:,} incident records"
            f" · {status.stats_written:,} daily count rows"
        )
        end = "\n" if final or not tty else ""
        print(("\r\033[K" if tty else "") + line, end=end, file=sys.stderr, flush=True)

    status = wait_until_incidents_caught_up(
        settings.kafka_bootstrap,
        topics,
        expected_raw=sent,
        timeout_s=24 * 3600,
        check=children.check,
        on_status=show,
    )
    show(status, final=True)


def _wait_until_drained(
    settings: Settings, topics: Topics, children: Children, sent: int, started: float
) -> None:
    """Show progress until everything is stored; rates count from `started` (worker start)."""
    tty = sys.stderr.isatty()
    last_line = [0.0]

    def show(status: PipelineStatus, final: bool = False) -> None:
        if not final and time.monotonic() - last_line[0] < (0.5 if tty else 5):
            return
        last_line[0] = time.monotonic()
        hourly_rows, reading_rows, daily_rows = _store_counts(settings.store_url)
        elapsed = time.monotonic() - started
        line = (
            f"  processed {status.raw_processed:,}/{status.raw_written:,} readings"
            f" · {status.hourly_written:,} hourly, {status.daily_written:,} daily AQI records"
            f" · {status.dead_letters:,} dead letters"
            f" · store: {hourly_rows:,} aqi_hourly, {daily_rows:,} aqi_daily,"
            f" {reading_rows:,} readings"
            f" · {status.raw_processed / elapsed if elapsed else 0:,.0f} readings/s"
        )
        end = "\n" if final or not tty else ""
        print(("\r\033[K" if tty else "") + line, end=end, file=sys.stderr, flush=True)

    status = wait_until_caught_up(
        settings.kafka_bootstrap,
        topics,
        expected_raw=sent,
        timeout_s=24 * 3600,
        check=children.check,
        on_status=show,
    )
    show(status, final=True)


def _command() -> str:
    """How the user can call civicstream again: the script they ran, relative if close by."""
    script = Path(sys.argv[0])
    if script.name == "civicstream" and script.exists():
        relative = os.path.relpath(script)
        return relative if not relative.startswith("..") else str(script)
    return "civicstream"


def _summary(
    settings: Settings, topics: Topics, sent: int, elapsed: float, api_url: str | None
) -> None:
    hourly_rows, reading_rows, daily_rows = _store_counts(settings.store_url)
    dead = end_offsets(settings.kafka_bootstrap, [topics.deadletter])[topics.deadletter]
    store = settings.store_url
    path = store.removeprefix("sqlite:///") if store.startswith("sqlite:///") else store
    path = redacted_url(path)
    _say(
        f"\nDone in {elapsed:.1f}s: {sent:,} readings → {hourly_rows:,} hourly AQI rows, "
        f"{daily_rows:,} daily AQI rows (station × local day) and {reading_rows:,} enriched "
        f"readings in the store; {dead:,} dead letters.\n"
        "The newest hours of each station stay open until later readings close them (event "
        "time); a day is published once its end + 7 h (the last ozone window) + the "
        "lateness has passed.\n\n"
        "Where the open data is:\n"
        f"  store      {path}  (datasets aqi_hourly, aqi_daily, readings)\n"
        f'             sqlite3 {path} "SELECT station_id, hour_start, aqi, category, '
        'main_pollutant FROM aqi_hourly ORDER BY hour_start DESC LIMIT 10"\n'
        f'             sqlite3 {path} "SELECT station_id, day, aqi, category, '
        'main_pollutant, revision FROM aqi_daily ORDER BY day DESC, station_id LIMIT 12"\n'
        f"  topics     {', '.join(topics.all())} on {settings.kafka_bootstrap}\n"
        f"  read them  {_command()} tail daily -n 3   (also aqi, enriched, deadletter, raw;"
        " -f follows)\n"
        f"  FIWARE     {_command()} export --model fiware   (latest hour per station, NGSI-LD)\n"
        f"  logs       data/logs/worker.log, data/logs/sink.log"
        + (
            f"\n  page       {api_url}  (air quality now, for residents)\n"
            f"  API        {api_url}api/datasets · catalog {api_url}data.json · "
            f"OpenAPI {api_url}api/openapi.json"
            if api_url
            else ""
        )
    )


def _incident_summary(settings: Settings, topics: Topics, source: str, sent: int) -> None:
    counts = _incident_counts(settings.store_url)
    store = settings.store_url
    path = store.removeprefix("sqlite:///") if store.startswith("sqlite:///") else store
    path = redacted_url(path)
    _say(
        f"\nIncidents ({source}): {sent - 1:,} rows → {counts.get('incidents', 0):,} incidents "
        f"({counts.get('withheld', 0):,} sensitive, published without location) and "
        f"{counts.get('rows', 0):,} daily count rows for {counts.get('days', 0):,} "
        f"district-days ({counts.get('suppressed', 0):,} suppressed below 3, "
        f"{counts.get('spikes', 0):,} spikes; {counts.get('revised', 0):,} district-days "
        "corrected by late reports).\n"
        f"  datasets   incidents, incident_counts in {path}\n"
        f'             sqlite3 {path} "SELECT day, district, count, baseline, spike FROM '
        "incident_counts WHERE category = 'all' ORDER BY day DESC LIMIT 10\"\n"
        f"  topics     {topics.raw_incidents}, {topics.incidents_published}, "
        f"{topics.incidents_stats}\n"
        f"  read them  {_command()} tail incidents -n 3   (also counts, raw-incidents)"
    )
