"""Event-to-store latency of civicstream at fixed offered rates.

A producer thread paces simulated readings (S stations × 6 pollutants, one event hour per
round, like Beijing's hourly data) at a fixed rate through the worker and the sink into
SQLite, phase after phase (a warm-up, then each rate); a second thread polls the store
every `poll_s` for new rows of the readings dataset.

What is measured, per row of the readings dataset (an enriched reading):

    latency = t_stored − t_closing

* t_stored — the wall time the benchmark first sees the row in the store (a committed
  SQLite transaction: the row is durable); the poll interval bounds the error.
* t_closing — the wall time the producer sent the record that made the row's hour final:
  the station's first reading at or after hour end + allowed lateness. An hour's rows
  (and its hourly AQI row) can only be written once event time has passed it, so the
  wait for that reading is the workload's event-time spacing, not the pipeline's delay.
  The rows' latency from their own reading's send time is reported too ("own").

The latency is split at the enriched record on its topic (its Kafka timestamp, set by the
worker's producer when it sent it): the worker stage (closing record sent → enriched
record sent) and the sink stage (→ row durable in the store).

Hourly AQI rows are written in the same sink transaction as their hour's readings, so
their latency is the same; the readings dataset has one row per reading and is the one
measured. A row counts in the phase its closing record was sent in.
"""

from __future__ import annotations

import bisect
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kafka import KafkaProducer

from bench.harness import (
    SCRAPE_INTERVAL_S,
    SECURITY,
    Civicstream,
    Offsets,
    caught_up,
    read_topic,
)
from bench.report import percentiles
from civicstream.simulate import simulate_readings
from schemas import Topics, decode
from schemas.raw import parse_timestamp_ms
from streams.admin import ensure_topics

HOUR_MS = 3_600_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
START_MS = 1_767_225_600_000  # 2026-01-01 00:00Z


@dataclass(frozen=True)
class Phase:
    name: str
    rate: float
    seconds: float


@dataclass
class Sent:
    """Send times by station: event times in send order and the wall times they left."""

    ts: dict[str, list[int]] = field(default_factory=dict)
    at: dict[str, list[float]] = field(default_factory=dict)
    own: dict[tuple[str, str, int], float] = field(default_factory=dict)

    def add(self, station: str, pollutant: str, ts_ms: int, at: float) -> None:
        self.ts.setdefault(station, []).append(ts_ms)
        self.at.setdefault(station, []).append(at)
        self.own[(station, pollutant, ts_ms)] = at


def closing_time(sent: Sent, station: str, hour_start_ms: int, lateness_ms: int) -> float | None:
    """When the reading that made the station's hour final was sent: the station's first
    reading with event time ≥ hour end + lateness (None: not sent yet).

    Stream time is the newest event time seen; the simulated stations' readings are in
    event-time order, so the first such reading is the one that moved stream time there.
    """
    times = sent.ts.get(station, [])
    index = bisect.bisect_left(times, hour_start_ms + HOUR_MS + lateness_ms)
    return sent.at[station][index] if index < len(times) else None


def latencies(
    sent: Sent,
    stored: Iterable[tuple[str, str, int, float]],
    phases: Sequence[tuple[str, float, float]],
    lateness_ms: int,
    produced: Mapping[tuple[str, str, int], float] | None = None,
) -> dict[str, dict[str, list[float]]]:
    """Per phase (name, start, end wall times): event-to-store latencies (s) of the stored
    rows (station, pollutant, ts, seen at), from the closing record and from their own;
    with `produced` (when the worker sent each row's enriched record), the worker stage
    (closing record → enriched record) and the sink stage (enriched record → store)."""
    kinds = ("closing", "own", "worker", "sink")
    out: dict[str, dict[str, list[float]]] = {n: {k: [] for k in kinds} for n, _, _ in phases}
    for station, pollutant, ts_ms, seen in stored:
        closing = closing_time(sent, station, ts_ms - ts_ms % HOUR_MS, lateness_ms)
        if closing is None:
            continue
        for name, start, end in phases:
            if start <= closing < end:
                values = out[name]
                values["closing"].append(seen - closing)
                own = sent.own.get((station, pollutant, ts_ms))
                if own is not None:
                    values["own"].append(seen - own)
                at = (produced or {}).get((station, pollutant, ts_ms))
                if at is not None:
                    values["worker"].append(at - closing)
                    values["sink"].append(seen - at)
                break
    return out


def produced_times(bootstrap: str, topic: str) -> dict[tuple[str, str, int], float]:
    """When the worker sent each enriched reading: its Kafka record timestamp (the
    producer's clock at send, CreateTime), by (station, pollutant, ts)."""
    out: dict[tuple[str, str, int], float] = {}
    for record in read_topic(bootstrap, topic):
        row = decode(record.value)
        ts_ms = (row["ts"] - _EPOCH) // timedelta(milliseconds=1)
        out[(row["station_id"], row["pollutant"], ts_ms)] = record.timestamp / 1000
    return out


class PacedProducer(threading.Thread):
    """Sends simulated readings at each phase's rate, recording every send time."""

    def __init__(self, bootstrap: str, topic: str, stations: int, phases: Sequence[Phase]):
        super().__init__(name="paced-producer", daemon=True)
        self.bootstrap, self.topic, self.stations, self.phases = bootstrap, topic, stations, phases
        self.sent = Sent()
        self.windows: list[tuple[str, float, float]] = []
        self.counts: dict[str, int] = {}
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as error:  # reported by the main thread
            self.error = error

    def _run(self) -> None:
        producer = KafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", linger_ms=2, **SECURITY.kafka_python()
        )
        readings = simulate_readings(self.stations, 10**9, START_MS, step_ms=HOUR_MS)
        add = self.sent.add
        try:
            for phase in self.phases:
                began = time.time()
                count = 0
                end = began + phase.seconds
                while True:
                    now = time.time()
                    if now >= end:
                        break
                    due = int((now - began) * phase.rate) + 1  # records due by now
                    if count >= due:
                        time.sleep(min(0.002, (count + 1) / phase.rate - (now - began)))
                        continue
                    for _ in range(due - count):
                        record = next(readings)
                        pollutant = json.loads(record.value)["pollutant"]
                        add(record.key.decode(), pollutant, record.ts_ms, time.time())
                        producer.send(self.topic, key=record.key, value=record.value)
                        count += 1
                self.windows.append((phase.name, began, time.time()))
                self.counts[phase.name] = count
            producer.flush()
        finally:
            producer.close()


class StorePoller(threading.Thread):
    """Polls the SQLite store for new readings rows, stamping each with when it was seen."""

    def __init__(self, path: Path, poll_s: float) -> None:
        super().__init__(name="store-poller", daemon=True)
        self.path, self.poll_s = path, poll_s
        self.rows: list[tuple[str, str, int, float]] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as error:
            self.error = error

    def _run(self) -> None:
        db = None
        last = 0
        while True:
            stopping = self.stop.is_set()
            if db is None and self.path.exists():
                db = sqlite3.connect(self.path, timeout=5)
                db.execute("PRAGMA query_only = 1")
            if db is not None:
                try:
                    found = db.execute(
                        "SELECT rowid, station_id, pollutant, ts FROM readings WHERE rowid > ? "
                        "ORDER BY rowid",
                        (last,),
                    ).fetchall()
                except sqlite3.OperationalError:  # not migrated yet
                    found = []
                seen = time.time()
                for rowid, station, pollutant, ts in found:  # ts: ISO 8601 text (millis)
                    self.rows.append((station, pollutant, parse_timestamp_ms(ts), seen))
                    last = rowid
            if stopping:
                break
            time.sleep(self.poll_s)
        if db is not None:
            db.close()


def run(
    bootstrap: str,
    workdir: Path,
    partitions: int,
    max_rate: float,
    *,
    fractions: Sequence[float] = (0.25, 0.5),
    seconds: float = 30,
    warmup_s: float = 5,
    stations: int = 100,
    lateness_ms: int = 600_000,
    poll_s: float = 0.02,
    metrics: bool = True,
    scrape_interval: float = SCRAPE_INTERVAL_S,
) -> dict[str, Any]:
    """Offer each fraction of `max_rate` for `seconds`, after a warm-up at the first."""
    topics = Topics(f"bench-latency-{int(time.time())}.")
    ensure_topics(bootstrap, topics.all(), partitions, security=SECURITY)
    phases = [Phase("warm-up", max_rate * fractions[0], warmup_s)]
    phases += [Phase(f"{fraction:.0%}", max_rate * fraction, seconds) for fraction in fractions]
    pipeline = Civicstream(
        bootstrap, topics, workdir, partitions, metrics=metrics, scrape_interval=scrape_interval
    )
    offsets = Offsets(bootstrap)
    poller = StorePoller(pipeline.store_path, poll_s)
    producer = PacedProducer(bootstrap, topics.raw_air_quality, stations, phases)
    pipeline.start()
    try:
        # Both processes up (the sink has created the store, the worker has joined), so
        # the warm-up measures the pipeline, not its start.
        deadline = time.monotonic() + 120
        while (
            not pipeline.store_path.exists()
            or offsets.group_state(topics.worker_group)[0] != "Stable"
        ):
            pipeline.watch()
            if time.monotonic() > deadline:
                raise TimeoutError("the worker did not join in 120 s")
            time.sleep(0.2)
        poller.start()
        producer.start()
        lags: list[int] = []
        while producer.is_alive():
            pipeline.watch()
            progress = pipeline.progress(offsets)
            lags.append(progress["raw"] - progress["processed"])
            time.sleep(1)
        if producer.error is not None:
            raise producer.error
        total = sum(producer.counts.values())
        agreed, deadline = 0, time.monotonic() + 300
        while agreed < 2:  # drain: everything processed and stored
            pipeline.watch()
            agreed = agreed + 1 if caught_up(pipeline.progress(offsets), total) else 0
            if time.monotonic() > deadline:
                raise TimeoutError("the pipeline did not drain in 300 s")
            time.sleep(0.25)
        time.sleep(poll_s * 3)
    finally:
        poller.stop.set()
        poller.join(timeout=10)
        processes = pipeline.stop()
        offsets.close()
    if poller.error is not None:
        raise poller.error
    produced = produced_times(bootstrap, topics.enriched_air_quality)
    measured = latencies(producer.sent, poller.rows, producer.windows, lateness_ms, produced)
    result: dict[str, Any] = {
        "stations": stations,
        "max_rate_per_s": round(max_rate),
        "poll_s": poll_s,
        "rows_seen": len(poller.rows),
        "worker_lag_max": max(lags, default=0),
        "processes": processes,
        "phases": [],
    }
    for name, start, end in producer.windows:
        if name == "warm-up":
            continue
        values = measured[name]
        result["phases"].append(
            {
                "name": name,
                "offered_per_s": round(producer.counts[name] / (end - start)),
                "rows": len(values["closing"]),
                "latency_s": _rounded(percentiles(values["closing"])),
                "own_latency_s": _rounded(percentiles(values["own"])),
                "worker_stage_s": _rounded(percentiles(values["worker"])),
                "sink_stage_s": _rounded(percentiles(values["sink"])),
            }
        )
    return result


def _rounded(values: Mapping[str, float | None]) -> dict[str, float | None]:
    return {k: (None if v is None else round(v, 3)) for k, v in values.items()}
