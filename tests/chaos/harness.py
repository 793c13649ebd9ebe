"""Crash consistency: the whole pipeline under SIGKILLs and broker restarts equals a clean run.

One run, on a broker of its own (deploy/local-kafka, started here so that it can be
restarted):

1. the same known input (Dongsi readings + SFPD incident rows, read by the project's own
   sources, as `civicstream replay-file` reads them) goes to two namespaces:
   - ``clean``: a worker, a sink and an archive sink that nobody touches; it gets all of
     its input at once and runs to the end before the broker is first restarted;
   - ``chaos``: the same processes, its input sent in slices over the chaos window while
     a seeded schedule SIGKILLs the worker, the sink and the archive sink at random moments
     and restarts them (after a random pause), and restarts the broker twice: once with
     SIGTERM (a controlled shutdown) and once with SIGKILL (a crash);
2. once the chaos namespace has caught up, every dataset (`sinks._datasets.DATASETS`) of
   the two stores is compared row by row (civicstream.diff.compare_stores), the dead letters
   are compared by source position and reason, and the chaos archive must hold every raw
   record of Kafka exactly once with its bytes as sent.

The schedule depends only on the seed and the profile, so a failing seed can be re-run.
While the chaos window runs, a monitor samples every group's committed offsets against its
input topics' end offsets; from those samples each restart's recovery time is taken: from
the restart until the restarted process has committed everything its input held at the
restart (measured for restarts that found a backlog and were not interrupted by the next
kill of the same process or a broker restart).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastavro
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.structs import TopicPartition

from civicstream.diff import compare_stores
from civicstream.localbroker import load_local_kafka
from civicstream.settings import BUNDLED_CITIES, bundled_incident_source
from civicstream.sources import open_sources
from civicstream.sources.incidents import read_incidents
from civicstream.status import wait_until_caught_up, wait_until_incidents_caught_up
from schemas import Topics
from schemas.raw_incident import heartbeat_to_json
from tests.integration.harness import PROJECT_ROOT, PipelineUnderTest

__all__ = ["LONG", "SHORT", "ChaosReport", "Profile", "plan", "run_chaos"]

DATA = PROJECT_ROOT.parent / "shared" / "data"
DONGSI = DATA / "airquality" / "PRSA_Data_Dongsi_20130301-20170228.csv"
SFPD = DATA / "incidents" / "SFPD_Incident_Reports_2018-12.csv"
CITIES = os.pathsep.join(
    str(BUNDLED_CITIES / name) for name in ("beijing.toml", "san_francisco.toml")
)
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
DONGSI_START_MS = 1_362_067_200_000  # 2013-03-01 00:00 Beijing time
SFPD_START_MS = 1_543_651_200_000  # 2018-12-01 00:00 San Francisco time (UTC-8)
ADVANCE_MS = 4 * DAY_MS  # the heartbeat after the last incident row (replay-file --advance 4d)
COMPONENTS = ("worker", "sink", "archive")
ARCHIVE_FLAGS = ("--flush-records", "500", "--flush-seconds", "0.5")
# A killed sink's group waits this long before its partitions go to the restarted one.
WORKER_FLAGS = ("--loglevel", "info")  # Faust's own account of rebalances and recovery
SINK_FLAGS = ("--session-timeout-ms", "6000", "--log-every", "5")


@dataclass(frozen=True)
class Profile:
    """How much input and how many kills, over how long a chaos window."""

    name: str
    air_days: int  # Dongsi days from 2013-03-01
    incident_days: int  # SFPD days from 2018-12-01 (31: the whole month)
    kills: int
    window_s: float  # kills and input slices are spread over this many seconds
    slices: int  # the chaos namespace's input arrives in this many slices
    finish_s: float  # the pipeline must have caught up this long after the window


SHORT = Profile(
    "short", air_days=21, incident_days=6, kills=12, window_s=26.0, slices=40, finish_s=120.0
)
LONG = Profile(
    "long", air_days=180, incident_days=31, kills=40, window_s=480.0, slices=800, finish_s=600.0
)
PROFILES = {profile.name: profile for profile in (SHORT, LONG)}


@dataclass(frozen=True)
class Action:
    """One step of the schedule, `at` seconds into the chaos window."""

    at: float
    kind: str  # "send" (slice number in target), "kill" (a component), "broker" (signal)
    target: str
    pause: float = 0.0  # kill: seconds the component stays down before its restart

    def __str__(self) -> str:
        if self.kind == "kill":
            return f"{self.at:6.1f}s  SIGKILL {self.target}, restart after {self.pause:.1f}s"
        if self.kind == "broker":
            return f"{self.at:6.1f}s  broker {self.target}, restart"
        return f"{self.at:6.1f}s  send slice {self.target}"


def plan(seed: int, profile: Profile) -> list[Action]:
    """The chaos schedule: a function of the seed and the profile only.

    Kills are spread uniformly over the window, each component killed about equally often
    (a shuffled round robin); the broker restarts with SIGTERM at 45-60 % of the window
    and with SIGKILL at 70-85 %. Input slices are evenly spaced over the first 80 %, a
    fraction of a second apart, so that a restarted process always finds new input.
    """
    rng = random.Random(seed)
    window = profile.window_s
    actions = [
        Action(round(i * 0.8 * window / profile.slices, 2), "send", str(i))
        for i in range(profile.slices)
    ]
    targets = [COMPONENTS[i % len(COMPONENTS)] for i in range(profile.kills)]
    rng.shuffle(targets)
    times = sorted(rng.uniform(1.0, window) for _ in targets)
    actions += [
        Action(round(at, 2), "kill", target, round(rng.uniform(0.0, 1.5), 2))
        for at, target in zip(times, targets, strict=True)
    ]
    actions.append(Action(round(rng.uniform(0.45, 0.6) * window, 2), "broker", "SIGTERM"))
    actions.append(Action(round(rng.uniform(0.7, 0.85) * window, 2), "broker", "SIGKILL"))
    return sorted(actions, key=lambda action: (action.at, action.kind != "send"))


# -- input ------------------------------------------------------------------------------------


@dataclass
class Input:
    readings: list[tuple[bytes | None, bytes]]
    incidents: list[tuple[bytes | None, bytes]]

    @property
    def total(self) -> int:
        return len(self.readings) + len(self.incidents)

    def slices(self, count: int) -> list[Input]:
        def cut(items: list[Any], i: int) -> list[Any]:
            return items[len(items) * i // count : len(items) * (i + 1) // count]

        return [Input(cut(self.readings, i), cut(self.incidents, i)) for i in range(count)]


def known_input(profile: Profile) -> Input:
    """Dongsi's readings and SFPD's incident rows (then its heartbeat 4 days after the last
    row), in the order `civicstream replay-file` sends them."""
    until = DONGSI_START_MS + profile.air_days * DAY_MS
    readings = [(r.key, r.value) for r in open_sources([DONGSI], None, DONGSI_START_MS, until)]
    source = bundled_incident_source("sfpd")
    assert source is not None
    rows = list(
        read_incidents(
            [SFPD],
            source.name,
            source.timezone,
            SFPD_START_MS,
            SFPD_START_MS + profile.incident_days * DAY_MS,
        )
    )
    incidents = [(r.key, r.value) for r in rows]
    heartbeat = max(r.ts_ms for r in rows) + ADVANCE_MS
    incidents.append((None, heartbeat_to_json(source.name, heartbeat)))
    return Input(readings, incidents)


def send(pipeline: PipelineUnderTest, data: Input) -> None:
    if data.readings:
        pipeline.send(data.readings)
    if data.incidents:
        pipeline.send_incidents(data.incidents)


class Sender:
    """One producer for the chaos namespace's slices, in order: one request in flight, acks
    from every replica, each slice flushed before the next step of the schedule. It is
    closed before a broker restart, so no send straddles one (a retried send could then
    store a record twice, and the input would no longer be the clean run's)."""

    def __init__(self, topics: Topics, bootstrap: str) -> None:
        self.topics = topics
        self.bootstrap = bootstrap
        self._producer: Any = None

    def send(self, data: Input) -> None:
        if self._producer is None:
            self._producer = KafkaProducer(
                bootstrap_servers=self.bootstrap,
                acks="all",
                linger_ms=5,
                max_in_flight_requests_per_connection=1,
            )
        futures = [
            self._producer.send(topic, key=key, value=value)
            for topic, items in (
                (self.topics.raw_air_quality, data.readings),
                (self.topics.raw_incidents, data.incidents),
            )
            for key, value in items
        ]
        self._producer.flush()
        for future in futures:
            future.get(timeout=0)  # raises if Kafka refused it

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close()
            self._producer = None


# -- offsets over time --------------------------------------------------------------------------


class OffsetMonitor:
    """Samples, per component, (committed, end) offsets summed over its input topics."""

    def __init__(self, bootstrap: str, topics: Topics, interval_s: float = 0.25) -> None:
        self.bootstrap = bootstrap
        self.interval_s = interval_s
        stored = (
            topics.enriched_air_quality,
            topics.aqi_hourly,
            topics.aqi_daily,
            topics.incidents_published,
            topics.incidents_stats,
        )
        self.inputs = {
            "worker": (topics.worker_group, topics.raw),
            "sink": (topics.sink_group, stored),
            "archive": (topics.archive_group, topics.raw),
        }
        self.samples: list[tuple[float, dict[str, tuple[int, int]]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="offset-monitor", daemon=True)
        self._admin: Any = None
        self._consumer: Any = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self._close()

    def _close(self) -> None:
        for client in (self._admin, self._consumer):
            if client is not None:
                with contextlib.suppress(Exception):  # a dead broker's client may not close
                    client.close()
        self._admin = self._consumer = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                sample = self._sample()
            except Exception:  # the broker is down or restarting: try again with new clients
                self._close()
                continue
            self.samples.append((time.monotonic(), sample))

    def _sample(self) -> dict[str, tuple[int, int]]:
        if self._admin is None:
            self._admin = KafkaAdminClient(
                bootstrap_servers=self.bootstrap, request_timeout_ms=3000
            )
            self._consumer = KafkaConsumer(
                bootstrap_servers=self.bootstrap, request_timeout_ms=3000
            )
        topics = {topic for _, names in self.inputs.values() for topic in names}
        tps = [
            TopicPartition(topic, p)
            for topic in sorted(topics)
            for p in self._consumer.partitions_for_topic(topic) or ()
        ]
        ends = self._consumer.end_offsets(tps)
        sample = {}
        for name, (group, names) in self.inputs.items():
            committed = self._admin.list_group_offsets(group).get(group, {})
            sample[name] = (
                sum(m.offset for tp, m in committed.items() if tp.topic in names and m.offset > 0),
                sum(end for tp, end in ends.items() if tp.topic in names),
            )
        return sample

    def save(self, path: Path, since: float) -> None:
        """The samples as JSON lines: seconds since `since`, then per component
        [committed, end] (for looking into a slow recovery)."""
        with path.open("w") as out:
            for t, sample in self.samples:
                out.write(json.dumps({"t": round(t - since, 2), **sample}) + "\n")

    def recovery(self, name: str, restarted: float, until: float) -> float | None:
        """Seconds from `restarted` until `name` has resumed: committed all the input its
        topics held at the restart, and committed something new since the restart (input
        arrives every fraction of a second during the window). None if that did not happen
        before `until` (the next kill of it, or a broker restart)."""
        after = [(t, s[name]) for t, s in self.samples if t >= restarted]
        if not after:
            return None
        committed_at_restart, end_at_restart = after[0][1]
        for t, (committed, _) in after:
            if t > until:
                return None
            if committed >= end_at_restart and committed > committed_at_restart:
                return t - restarted
        return None


# -- the run ----------------------------------------------------------------------------------


@dataclass
class ChaosReport:
    seed: int
    profile: str
    kills: Counter[str] = field(default_factory=Counter)
    broker_restarts: list[str] = field(default_factory=list)
    supervisor_restarts: list[str] = field(default_factory=list)
    differences: int = 0
    differing: dict[str, str] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    dead_letters: int = 0
    dead_letter_differences: int = 0
    raw_records: int = 0
    archived: int = 0
    archive_duplicates: int = 0
    archive_lost: int = 0
    archive_altered: int = 0
    recovery_s: dict[str, list[float]] = field(default_factory=dict)
    elapsed_s: float = 0.0

    @property
    def total_kills(self) -> int:
        return sum(self.kills.values())

    @property
    def passed(self) -> bool:
        return (
            self.differences == 0
            and self.dead_letter_differences == 0
            and self.archive_duplicates == 0
            and self.archive_lost == 0
            and self.archive_altered == 0
            and self.raw_records > 0
        )

    def all_recoveries(self) -> list[float]:
        return sorted(t for times in self.recovery_s.values() for t in times)

    def summary(self) -> str:
        def pct(values: list[float], q: float) -> str:
            if not values:
                return "n/a"
            values = sorted(values)
            return f"{values[min(len(values) - 1, int(q * len(values)))]:.1f}s"

        lines = [
            f"seed {self.seed}, profile {self.profile}, {self.elapsed_s:.0f}s",
            "killed (SIGKILL): "
            + ", ".join(f"{name} {self.kills[name]}" for name in COMPONENTS)
            + f"; broker restarts: {', '.join(self.broker_restarts) or 'none'}",
            f"exits restarted as a supervisor would: {len(self.supervisor_restarts)}"
            + (f" ({'; '.join(self.supervisor_restarts)})" if self.supervisor_restarts else ""),
            "datasets: "
            + ", ".join(f"{name} {count:,} rows" for name, count in self.rows.items())
            + (f"; DIFFERENT: {self.differing}" if self.differing else "; all equal"),
            f"dead letters: {self.dead_letters:,}, differing from the clean run: "
            f"{self.dead_letter_differences}",
            f"archive: {self.archived:,} of {self.raw_records:,} raw records, "
            f"{self.archive_duplicates} duplicates, {self.archive_lost} lost, "
            f"{self.archive_altered} altered",
        ]
        for name in (*COMPONENTS, "broker"):
            times = self.recovery_s.get(name, [])
            lines.append(
                f"recovery after a {name} restart: p50 {pct(times, 0.5)}, "
                f"p95 {pct(times, 0.95)}, max {pct(times, 1.0)} ({len(times)} measured)"
            )
        every = [t for name in COMPONENTS for t in self.recovery_s.get(name, [])]
        lines.append(
            f"recovery after a kill (all components): p50 {pct(every, 0.5)}, "
            f"p95 {pct(every, 0.95)} ({len(every)} measured)"
        )
        lines.append(f"kills: {self.total_kills}, differences: {self.differences}")
        return "\n".join(lines)


class Chaos:
    """The broker, the two namespaces and the schedule of one run."""

    def __init__(self, seed: int, profile: Profile, workdir: Path, say: Callable[[str], None]):
        self.seed = seed
        self.profile = profile
        self.workdir = workdir
        self.say = say
        self.localkafka = load_local_kafka()
        self.broker: Any = None
        self.report = ChaosReport(seed, profile.name)
        self.started = time.monotonic()

    # -- broker ---------------------------------------------------------------------------
    def start_broker(self) -> None:
        self.data_dir = self.workdir / "kafka"
        self.port, self.controller_port = self.localkafka.free_ports(2)
        self.broker = self.localkafka.start(self.data_dir, self.port, self.controller_port)

    def restart_broker(self, how: str) -> float:
        """SIGTERM (controlled shutdown) or SIGKILL, then start it again on the same ports
        and data; returns when it serves requests (monotonic time)."""
        began = time.monotonic()
        if how == "SIGTERM":
            self.broker.stop()
        else:
            self.broker.kill()
        stopped = time.monotonic()
        self.broker = self.localkafka.start(self.data_dir, self.port, self.controller_port)
        ready = time.monotonic()
        self.report.broker_restarts.append(
            f"{how} (stopped in {stopped - began:.1f}s, ready {ready - stopped:.1f}s later)"
        )
        return ready

    # -- processes --------------------------------------------------------------------------
    @staticmethod
    def start_component(pipeline: PipelineUnderTest, name: str) -> None:
        options = {"sink": SINK_FLAGS, "archive": ARCHIVE_FLAGS, "worker": WORKER_FLAGS}[name]
        pipeline.start(name, *options)

    def supervise(self, pipeline: PipelineUnderTest) -> None:
        """Restart a component that exited by itself, as a supervisor (Compose's restart
        policy, Kubernetes) would; every such exit is reported."""
        for name, process in list(pipeline.processes.items()):
            code = process.poll()
            if code is not None:
                del pipeline.processes[name]
                note = f"{name} exited with {code} at {self.clock():.0f}s"
                self.say(f"  ! {note}; restarting it")
                self.report.supervisor_restarts.append(note)
                self.start_component(pipeline, name)

    def clock(self) -> float:
        return time.monotonic() - self.started

    # -- the run ----------------------------------------------------------------------------
    def run(self) -> ChaosReport:
        profile = self.profile
        schedule = plan(self.seed, profile)
        self.say(f"chaos: seed {self.seed}, profile {profile.name}; schedule:")
        for action in schedule:
            if action.kind != "send":
                self.say(f"  {action}")
        self.say(f"  (input in {profile.slices} slices over {0.8 * profile.window_s:.0f}s)")
        data = known_input(profile)
        self.say(
            f"input: {len(data.readings):,} Dongsi readings ({profile.air_days} days), "
            f"{len(data.incidents):,} SFPD rows ({profile.incident_days} days + heartbeat)"
        )
        self.start_broker()
        self.say(f"broker on {self.broker.bootstrap} ({self.clock():.0f}s)")
        bootstrap = self.broker.bootstrap
        clean = self.pipeline(bootstrap, "clean")
        chaos = self.pipeline(bootstrap, "chaos")
        for name in COMPONENTS:
            self.start_component(clean, name)
            self.start_component(chaos, name)
        send(clean, data)
        sender = Sender(chaos.topics, bootstrap)
        monitor = OffsetMonitor(bootstrap, chaos.topics)
        monitor.start()
        restarts: list[tuple[str, float]] = []
        interruptions: list[tuple[str, float]] = []  # kills and broker restarts
        try:
            clean_done = False
            window_start = time.monotonic()
            for action, part in self._timeline(schedule, data, window_start):
                self.supervise(chaos)
                if action.kind == "send":
                    sender.send(part)
                elif action.kind == "kill":
                    chaos.kill(action.target)
                    self.report.kills[action.target] += 1
                    interruptions.append((action.target, time.monotonic()))
                    time.sleep(action.pause)
                    self.start_component(chaos, action.target)
                    restarts.append((action.target, time.monotonic()))
                else:
                    if not clean_done:  # the clean run must not see a broker restart
                        self.finish(clean, data, timeout_s=300, supervise=False)
                        clean.stop()
                        clean_done = True
                        self.say(f"clean run done ({self.clock():.0f}s)")
                    sender.close()
                    began = time.monotonic()
                    interruptions.append(("broker", began))
                    ready = self.restart_broker(action.target)
                    restarts.append(("broker", ready))
                if action.kind != "send":
                    self.say(f"  {self.clock():6.1f}s {time.strftime('%H:%M:%S')} did: {action}")
            sender.close()
            self.say(f"chaos window over ({self.clock():.0f}s); waiting for the pipeline")
            self.finish(chaos, data, timeout_s=profile.finish_s, supervise=True)
            chaos.stop()
        finally:
            monitor.stop()
            clean.stop()
            chaos.stop()
            monitor.save(self.workdir / "offsets.jsonl", self.started)
        self.recoveries(monitor, restarts, interruptions)
        self.verify(clean, chaos, data)
        self.report.elapsed_s = self.clock()
        self.broker.stop()
        return self.report

    def _timeline(
        self, schedule: list[Action], data: Input, start: float
    ) -> Iterator[tuple[Action, Input]]:
        parts = data.slices(self.profile.slices)
        for action in schedule:
            wait = start + action.at - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            part = parts[int(action.target)] if action.kind == "send" else Input([], [])
            yield action, part

    def pipeline(self, bootstrap: str, name: str) -> PipelineUnderTest:
        workdir = self.workdir / name
        workdir.mkdir(parents=True, exist_ok=True)
        return PipelineUnderTest(bootstrap, f"{name}.", workdir, partitions=3, config=CITIES)

    def finish(
        self, pipeline: PipelineUnderTest, data: Input, timeout_s: float, *, supervise: bool
    ) -> None:
        """Wait until the worker, the sink and the archive sink have done everything; a
        process that exits is restarted (`supervise`) or fails the run."""

        def check() -> None:
            if supervise:
                self.supervise(pipeline)
            else:
                pipeline.check_alive()

        wait_until_caught_up(
            pipeline.bootstrap,
            pipeline.topics,
            expected_raw=len(data.readings),
            timeout_s=timeout_s,
            check=check,
        )
        wait_until_incidents_caught_up(
            pipeline.bootstrap,
            pipeline.topics,
            expected_raw=len(data.incidents),
            timeout_s=timeout_s,
            check=check,
        )
        # The air path may have been caught up before the incident wait; check both again.
        wait_until_caught_up(
            pipeline.bootstrap,
            pipeline.topics,
            expected_raw=len(data.readings),
            timeout_s=timeout_s,
            check=check,
        )
        deadline = time.monotonic() + timeout_s
        while True:
            check()
            try:
                pipeline.wait_until_archived(timeout_s=1)
                return
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise

    def recoveries(
        self,
        monitor: OffsetMonitor,
        restarts: list[tuple[str, float]],
        interruptions: list[tuple[str, float]],
    ) -> None:
        end = time.monotonic()
        for name, restarted in restarts:
            # the next kill of this component, or any broker restart, ends the measurement
            later = [
                t for who, t in interruptions if t > restarted and (who == name or who == "broker")
            ]
            until = min(later, default=end)
            names = COMPONENTS if name == "broker" else (name,)
            times = [monitor.recovery(n, restarted, until) for n in names]
            if name == "broker":
                measured = [t for t in times if t is not None]
                if measured:  # the pipeline is back once its slowest component is
                    self.report.recovery_s.setdefault(name, []).append(max(measured))
            elif times[0] is not None:
                self.report.recovery_s.setdefault(name, []).append(times[0])

    # -- checks -----------------------------------------------------------------------------
    def verify(self, clean: PipelineUnderTest, chaos: PipelineUnderTest, data: Input) -> None:
        report = self.report
        for diff in compare_stores(clean.store_url, chaos.store_url):
            count = len(diff.only_a) + len(diff.only_b) + len(diff.changed)
            report.rows[diff.name] = diff.rows_a
            report.differences += count
            if count:
                report.differing[diff.name] = (
                    f"{len(diff.only_a)} only in clean, {len(diff.only_b)} only in chaos, "
                    f"{len(diff.changed)} changed"
                )
        letters = {name: dead_letters(p) for name, p in (("clean", clean), ("chaos", chaos))}
        report.dead_letters = len(letters["chaos"])
        report.dead_letter_differences = len(letters["clean"] ^ letters["chaos"])
        in_kafka = raw_records(chaos)
        archived = archived_records(chaos.archive_dir)
        positions = Counter((t, p, o) for t, p, o, _ in archived)
        report.raw_records = len(in_kafka)
        report.archived = len(positions)
        report.archive_duplicates = sum(n - 1 for n in positions.values())
        report.archive_lost = len(in_kafka.keys() - positions.keys())
        report.archive_altered = sum(
            1 for t, p, o, value in archived if in_kafka.get((t, p, o), value) != value
        )
        assert report.raw_records == data.total, (report.raw_records, data.total)


def dead_letters(pipeline: PipelineUnderTest) -> set[tuple[str, int, int, str]]:
    """Each dead letter's source (topic without the namespace, partition, offset) and reason;
    a re-delivered record that was dead-lettered twice counts once."""
    prefix = pipeline.prefix
    return {
        (
            letter["source_topic"].removeprefix(prefix),
            letter["source_partition"],
            letter["source_offset"],
            letter["reason"],
        )
        for _, letter, *_ in pipeline.read_topic(pipeline.topics.deadletter)
    }


def raw_records(pipeline: PipelineUnderTest) -> dict[tuple[str, int, int], bytes | None]:
    records: dict[tuple[str, int, int], bytes | None] = {}
    for topic in pipeline.topics.raw:
        for (partition, offset), value in pipeline.read_topic_raw(topic).items():
            records[(topic, partition, offset)] = value
    return records


def archived_records(root: Path) -> list[tuple[str, int, int, bytes | None]]:
    rows = []
    for path in sorted(root.glob("topic=*/date=*/hour=*/*.avro")):
        with path.open("rb") as handle:
            rows.extend(
                (r["topic"], r["partition"], r["offset"], r["value"])
                for r in fastavro.reader(handle)
            )
    return rows


def run_chaos(
    seed: int, profile: Profile, workdir: Path, say: Callable[[str], None] | None = None
) -> ChaosReport:
    """One chaos run in `workdir` (broker data, logs, stores, archives stay there)."""
    workdir.mkdir(parents=True, exist_ok=True)

    def echo(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    chaos = Chaos(seed, profile, workdir, say or echo)
    try:
        report = chaos.run()
    finally:
        if chaos.broker is not None:
            chaos.broker.kill()
    (workdir / "report.json").write_text(
        json.dumps(
            {
                "seed": report.seed,
                "profile": report.profile,
                "kills": dict(report.kills),
                "total_kills": report.total_kills,
                "broker_restarts": report.broker_restarts,
                "supervisor_restarts": report.supervisor_restarts,
                "differences": report.differences,
                "differing": report.differing,
                "rows": report.rows,
                "dead_letters": report.dead_letters,
                "dead_letter_differences": report.dead_letter_differences,
                "raw_records": report.raw_records,
                "archived": report.archived,
                "archive_duplicates": report.archive_duplicates,
                "archive_lost": report.archive_lost,
                "archive_altered": report.archive_altered,
                "recovery_s": report.recovery_s,
                "elapsed_s": round(report.elapsed_s, 1),
            },
            indent=1,
        )
        + "\n"
    )
    return report
