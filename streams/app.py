"""The Faust app: topics, the station-state table and the air-quality task.

Faust stays at this edge: it keeps the consumer group, the changelog-backed tables and the
commits. Each source topic's records come straight from Faust's fetches in batches
(streams.intake); a task hands them to `AirQualityPipeline` (pure), sends what it returns
and writes the touched station states to a changelog-backed table. The air-quality task
computes its next batches while the last go through the commit order below
(streams.batches: one thread, the step pausing every slice of 250 records for the event
loop); commits go one at a time, in order, each taking the batches computed meanwhile.

Commit order, per batch (at-least-once, idempotent by construction):
  1. outputs (enriched readings, hourly and daily AQI, dead letters) are produced and flushed:
     durable (acks=all) before anything else happens;
  2. the touched station states are written to the table's changelog and flushed;
  3. the batch's records are acked, except those skipped above a gap (below), which are
     kept from Faust's acking so no commit passes them;
  4. Faust commits the consumer offsets of acked records (every 1 s).
Which raw records are applied is decided by the state, not by those commits: each raw
partition's next offset is kept in the same table (written last, in step 2). A record
below it is a re-delivery and is skipped; a record above it means the consumer skipped
some (Faust can ack and commit unprocessed records around rebalances), so nothing more
of that partition is applied until the consumer is rewound to the first missing one
(or, if the broker shows that offset holds no record, progress moves on: streams.gaps).
A watchdog also rewinds a partition whose committed offset is ahead of the records applied
with no progress for a few seconds: the case where no later record arrives to show a gap.
A crash anywhere re-delivers the records after the last committed offset. A state that
became durable in step 2 remembers the source offsets it applied, so those records are
skipped; its outputs were already durable (step 1 precedes step 2). A state that did not
become durable is recomputed from the re-delivered records and produces the same outputs
again, identical in content and key, which the sinks' upserts by natural key absorb.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from functools import partial
from operator import attrgetter
from pathlib import Path
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.stores.rocksdb import Store as RocksDBStore
from faust.types import TP
from faust.types.auth import CredentialsT
from faust.types.tuples import ack_lock

from kafkaconf import KafkaSecurity, resolve
from schemas import Topics
from schemas.topics import DEADLETTER_MAX_MESSAGE_BYTES
from streams.air_quality import (
    DEFAULT_STALE_AFTER_MS,
    AirQualityPipeline,
    BatchResult,
    Gap,
    Output,
    SensorTypes,
    SourceRecord,
    StateStore,
    StateUpdate,
    load_progress,
    progress_update,
)
from streams.batches import Done, Step, run_batches
from streams.gaps import CommitWatch, GapPolicy, StallWatch
from streams.incidents import (
    IncidentBatchResult,
    IncidentPipeline,
    IncidentSource,
    IncidentStateUpdate,
    incident_progress_update,
)
from streams.intake import Intake, ack_durable, divert_fetches
from streams.metrics import IncidentMetrics, WorkerMetrics
from streams.neighbourhood import AreaPlan, NeighbourConfig, NeighbourPipeline, NeighbourResult
from streams.time import HourlyWindows, LocalDays
from telemetry import serve

__all__ = ["create_app"]

BATCH_MAX = 2000  # the default of CIVIC_BATCH_MAX: most raw records per batch
STEP_SLICE = 250
"""Records the air-quality step applies between two turns of the event loop (about 15 ms)."""
_PROGRESS_EVERY_SECONDS = 10.0
_WATCHDOG_EVERY_SECONDS = 2.0
_LAG_EVERY_SECONDS = 5.0
SESSION_TIMEOUT_SECONDS = 10.0
"""A worker that dies without leaving the group keeps its partitions this long."""
HEARTBEAT_SECONDS = 1.0
FETCH_MAX_WAIT_MS = 100
"""How long the worker's fetches wait for data on idle partitions (see `fetch_promptly`)."""
COMMIT_WAIT_SECONDS = 5.0
"""The longest the watchdog waits to commit for a partition (streams.gaps.CommitWatch)."""


class LocalTable:
    """A Faust table's local data, read and written by key and partition, for either store.

    The memory store is one dict for every partition. The RocksDB store keeps a database
    per partition and picks it from Faust's "current event": in a batch that is just the
    last event taken, and in a timer there is none, so `table[key]` would read and write
    the wrong partition. Here a write goes to the database of the partition given, and a
    read looks in the databases of the partitions this worker owns (a key lives in one:
    the partition of its records). Once the broker has a changelog record, its offset is
    kept in its partition's database, as Faust does for its own writes: a restart recovers
    only the changelog records after it.
    """

    def __init__(self, table: Any) -> None:
        self.table = table
        self.data = table.data
        self.rocksdb = isinstance(self.data, RocksDBStore)
        self._persisted: dict[int, int] = {}

    def get(self, key: bytes) -> bytes | None:
        if not self.rocksdb:
            value = self.data.get(key)
            return bytes(value) if value is not None else None
        for db in self.data._dbs_for_actives():
            value = db.get(key)
            if value is not None:
                return bytes(value)
        return None

    def put(self, key: bytes, partition: int, value: bytes | None, sent: Any) -> None:
        """Write `value` (None deletes) locally; `sent` is the changelog record's future."""
        if not self.rocksdb:
            if value is None:
                self.data.pop(key, None)
            else:
                self.data[key] = value
            return
        db = self.data._db_for_partition(partition)
        if value is None:
            db.delete(key)
        else:
            db.put(key, value)
        sent.add_done_callback(lambda future: self._persist(partition, future))

    def _persist(self, partition: int, future: Any) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        offset = future.result().offset
        if offset <= self._persisted.get(partition, -1):
            return
        if partition not in self.data._dbs:
            return  # revoked meanwhile: the next owner's recovery starts from its own offset
        self._persisted[partition] = offset
        tp = TP(self.table.changelog_topic.get_topic_name(), partition)
        self.data.set_persisted_offset(tp, offset)


class TableStateStore:
    """States in a Faust table, each written to the partition of the records it follows:
    station states (keyed by `StateUpdate.station_id`), area states, and the incident
    state (`key_of` its `IncidentStateUpdate.key`; a None value deletes the key, a
    tombstone in the changelog).

    Two Faust habits are avoided on purpose. `table[key] = value` picks the changelog
    partition from the "current event", which in a batch is just the last one taken; and
    it queues the changelog record in Faust's own buffer, which a commit may not have
    drained (its flush gives up after 0.1 s of silence), so offsets could be committed
    ahead of the state. Here the record goes straight to the producer, to the partition
    of the records the state follows, and the task flushes before it acks.
    """

    def __init__(
        self,
        table: Any,
        producer: Any,
        key_of: Callable[[Any], str] = attrgetter("station_id"),
    ) -> None:
        self.table = table
        self.local = LocalTable(table)
        self.producer = producer
        self.key_of = key_of

    def load(self, key: str) -> bytes | None:
        return self.local.get(key.encode())

    async def save(self, update: StateUpdate | IncidentStateUpdate) -> Any:
        """Send the update to the changelog and write it locally; returns its delivery."""
        key = self.key_of(update).encode()
        topic = self.table.changelog_topic.get_topic_name()
        sent = await self.producer.send(topic, key, update.data, update.partition, None, None)
        self.local.put(key, update.partition, update.data, sent)
        return sent


class Rewinder:
    """Acts on gaps in raw offsets as streams.gaps decides: seek back, or move on."""

    def __init__(
        self,
        app: faust.App,
        store: Any,
        topic: str,
        bootstrap: str,
        progress: Callable[[int, int], Any] = progress_update,
        *,
        security: KafkaSecurity | None = None,
    ):
        self.app = app
        self.store = store
        self.topic = topic
        self.bootstrap = bootstrap
        self.progress = progress
        self.security = resolve(security)
        self.policy = GapPolicy()

    async def handle(self, partition: int, gap: Gap) -> None:
        if not self.policy.due(partition, gap.expected, time.monotonic()):
            return
        tp = TP(self.topic, partition)
        decision = GapPolicy.resolve(gap.expected, await self._first_offset_from(tp, gap.expected))
        if decision.action == "accept":
            await self.store.save(self.progress(partition, decision.offset))
            await self.app.producer.flush()
            # Faust commits only consecutive acked offsets: tell it these will never come,
            # or the group's committed offset (and so its lag) would stay behind for good.
            await self.app.consumer._add_gap(tp, gap.expected, decision.offset - 1)
            message = f"offsets {gap.expected}..{decision.offset - 1} hold no records; moving on"
        else:
            message = f"skipped records; rewinding to {decision.offset}"
        print(f"worker: {self.topic}[{partition}] {message}", file=sys.stderr, flush=True)
        await seek(self.app.consumer, tp, decision.offset)

    async def _first_offset_from(self, tp: TP, offset: int) -> int | None:
        """Offset of the first record at or after `offset` (the earliest one if `offset`
        was deleted); None when the broker did not answer in time."""
        probe = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **self.security.aiokafka(),
        )
        await probe.start()
        try:
            partition = TopicPartition(tp.topic, tp.partition)
            probe.assign([partition])
            probe.seek(partition, offset)
            batches = await probe.getmany(partition, timeout_ms=5000, max_records=1)
            records = batches.get(partition, [])
            return records[0].offset if records else None
        finally:
            await probe.stop()


def source_records(messages: Sequence[Any]) -> list[SourceRecord]:
    """A batch of Faust's consumer messages as the pipelines' input."""
    return [
        SourceRecord(
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            key=message.key,
            value=message.value,
        )
        for message in messages
    ]


async def make_durable(
    app: faust.App,
    store: Any,
    rewinder: Rewinder,
    messages: Sequence[Any],
    outputs: Sequence[Output],
    result: Any,
) -> float:
    """Steps 1–3 of the commit order (module docstring) for one batch of any source.

    `result` is the batch's pipeline result (its `state_updates` and `gaps`). Returns the
    monotonic time at which the outputs were durable.
    """
    sent = await send_in_batches(app.producer, outputs)
    if outputs:
        await app.producer.flush()
    await asyncio.gather(*sent)  # a record the broker refused stops the batch here
    durable_at = time.monotonic()
    saved = [await store.save(update) for update in result.state_updates]
    await app.producer.flush()
    await asyncio.gather(*saved)
    for partition, gap in result.gaps.items():
        await rewinder.handle(partition, gap)
    ack_durable(app.consumer, messages, result.gaps)
    return durable_at


async def run_durably(
    app: faust.App,
    intake: Intake,
    store: TableStateStore,
    rewinder: Rewinder,
    step: Step,
    done: Done,
    *,
    overlap: bool,
) -> None:
    """A task's batch loop (streams.batches): each batch computed by `step` (with
    `overlap`, while the batches before it are made durable), made durable in this
    module's commit order, then `done`."""
    durable = partial(make_durable, app, store, rewinder)
    await run_batches(intake, store, step, durable, done, key_of=store.key_of, overlap=overlap)


def outputs_step(process: Callable[[list[SourceRecord], Any], Any]) -> Step:
    """The batch step of a pipeline whose result's `outputs` are all it produces, in one
    slice."""

    def step(
        messages: Sequence[Any], states: StateStore
    ) -> Generator[None, None, tuple[Any, Sequence[Output]]]:
        result = process(source_records(messages), states)
        yield from ()  # a generator, as streams.batches drives steps, with no pause
        return result, result.outputs

    return step


class Partitions:
    """The partition the producer's default partitioner picks for a key, remembered.

    The Java client's murmur2 hash, which aiokafka computes in Python (3 µs a key), of
    keys that repeat: station ids. A topic that gains partitions is looked up afresh.
    """

    def __init__(self) -> None:
        self._known: dict[tuple[str, bytes, int], int] = {}

    def of(self, producer: Any, topic: str, key: bytes | None) -> int:
        metadata = producer._metadata
        partitions = metadata.partitions_for_topic(topic)
        if key is None:
            available = list(metadata.available_partitions_for_topic(topic))
            return int(producer._partitioner(None, sorted(partitions), available))
        slot = (topic, key, len(partitions))
        partition = self._known.get(slot)
        if partition is None:
            pick = producer._partitioner(key, sorted(partitions), [])
            partition = self._known[slot] = int(pick)
        return partition


_PARTITIONS = Partitions()


async def send_in_batches(producer: Any, outputs: Sequence[Output]) -> list[Any]:
    """Send `outputs` with one record batch per topic partition (in order within each),
    to the partitions `producer.send` would pick; returns the batches' delivery futures.

    Sending record by record costs about 14 µs each in aiokafka (a future, a partition
    hash and a metadata check per record): 8 % of the worker's time in a benchmark profile.
    """
    if not outputs:
        return []
    client = producer._ensure_producer()  # Faust's producer wraps an AIOKafkaProducer
    for topic in {output.topic for output in outputs}:
        await client.client._wait_on_metadata(topic)
    batches: dict[tuple[str, int], Any] = {}
    sent = []
    for output in outputs:
        slot = (output.topic, _PARTITIONS.of(client, output.topic, output.key))
        batch = batches.get(slot)
        if batch is None:
            batch = batches[slot] = client.create_batch()
        if batch.append(key=output.key, value=output.value, timestamp=None) is None:
            sent.append(await client.send_batch(batch, slot[0], partition=slot[1]))
            batch = batches[slot] = client.create_batch()  # a first record always fits
            batch.append(key=output.key, value=output.value, timestamp=None)
    for (topic, partition), batch in batches.items():
        sent.append(await client.send_batch(batch, topic, partition=partition))
    return sent


class ProgressLine:
    """A task's running totals, printed to stderr every `_PROGRESS_EVERY_SECONDS`."""

    def __init__(self, template: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.template = template
        self.totals: dict[str, int] = {}
        self.clock = clock
        self.last_report = clock()

    def add(self, **counts: int) -> None:
        for name, count in counts.items():
            self.totals[name] = self.totals.get(name, 0) + count
        now = self.clock()
        if now - self.last_report >= _PROGRESS_EVERY_SECONDS:
            self.last_report = now
            print(self.template.format(**self.totals), file=sys.stderr, flush=True)


def drop_stale_acks(consumer: Any) -> int:
    """Keep each acked offset once in Faust's commit bookkeeping, and none it committed.

    Faust commits the first run of consecutive offsets in its sorted list of acked
    offsets. After a worker restart that list was seen holding offsets twice and offsets
    below the committed one (acked 915..1284, 573 entries, committed 916); each commit then
    took one short run, so a caught-up worker committed its raw offsets minutes late.
    Returns how many entries were dropped.
    """
    dropped = 0
    with ack_lock:
        for tp, acked in list(consumer._acked.items()):
            committed = consumer._committed_offset.get(tp)
            fresh = sorted({o for o in acked if committed is None or o >= committed})
            if len(fresh) != len(acked):
                dropped += len(acked) - len(fresh)
                acked[:] = fresh
                index = consumer._acked_index[tp]
                index.clear()
                index.update(fresh)
    return dropped


async def commit_applied(consumer: Any, tp: TP, offset: int) -> None:
    """Commit `offset` for `tp` outside Faust's acking (see `streams.gaps.CommitWatch`),
    and tell Faust's bookkeeping, so it neither commits below it nor keeps older acks.
    Bounded in time: a worker that is stopping must not wait on its consumer thread."""
    await asyncio.wait_for(consumer.maybe_wait_for_commit_to_finish(), COMMIT_WAIT_SECONDS)
    committed = consumer._committed_offset.get(tp)
    if committed is not None and committed >= offset:
        return
    acked = consumer._acked.get(tp) or []
    held = f"{len(acked)} acked from {min(acked)}" if acked else "none acked"
    if await asyncio.wait_for(consumer._commit({tp: offset}), COMMIT_WAIT_SECONDS):
        consumer._committed_offset[tp] = offset
        print(
            f"worker: {tp.topic}[{tp.partition}] applied up to {offset} but committed "
            f"{committed} ({held}), nothing in flight; committed {offset}",
            file=sys.stderr,
            flush=True,
        )


async def seek(consumer: Any, tp: TP, offset: int) -> None:
    """Move `tp`'s fetch position to `offset`, in the consumer's own thread.

    Faust's `Consumer.seek` calls aiokafka from the caller's thread while the consumer
    thread is reading fetched records: a benchmark run crashed the worker that way
    (KeyError in aiokafka's `fetched_records`). `seek_wait` runs the seek in the consumer
    thread and sets the read offset as `seek` does; its wait for the new position is
    bounded here, as the seek itself is done by then.
    """
    try:
        await asyncio.wait_for(consumer.seek_wait({tp: offset}), COMMIT_WAIT_SECONDS)
    except TimeoutError:
        print(
            f"worker: {tp.topic}[{tp.partition}] position after seek not known yet",
            file=sys.stderr,
            flush=True,
        )


def fetch_promptly(app: faust.App, wait_ms: int = FETCH_MAX_WAIT_MS) -> None:
    """Make the worker's consumer wait at most `wait_ms` in a fetch for data to arrive.

    Faust creates it with `fetch_max_wait_ms=1500`, and aiokafka keeps one fetch in
    flight per broker, for the partitions with nothing buffered. When the busy partitions
    are still buffered, that fetch holds only idle ones (changelogs, the incident and area
    topics) and waits the full 1.5 s, while the busy partitions' new records wait behind
    it: `make bench` measured 1.3 s of the worker stage's 1.5 s median latency at half
    the maximum rate there, against 0.4 s from a record's arrival to its outputs.
    """
    thread = app.consumer._thread
    create = thread._create_worker_consumer

    def create_prompt(transport: Any) -> Any:
        consumer = create(transport)
        consumer._fetch_max_wait_ms = wait_ms  # read when it starts its fetcher
        return consumer

    thread._create_worker_consumer = create_prompt


def subscribe(app: faust.App, topic: str, partitions: int, batch_max: int) -> Intake:
    """Have the app's consumer group read `topic`; returns the intake its records go to
    (streams.intake), in batches of at most `batch_max`. Faust co-partitions it with the
    tables of the same partition count, so a station's records and its state's changelog
    partition stay on one worker."""
    app.topics.add(
        app.topic(
            topic,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=partitions,
        )
    )
    return Intake(topic, batch_max)


def _broker_urls(bootstrap: str) -> list[str]:
    return [f"kafka://{host.strip()}" for host in bootstrap.split(",") if host.strip()]


def broker_credentials(security: KafkaSecurity) -> CredentialsT | None:
    """Faust's form of the security settings: every consumer, producer and admin
    connection of the app (aiokafka underneath) uses them."""
    context = security.ssl_context()
    if security.sasl:
        assert security.password is not None
        return faust.SASLCredentials(
            username=security.username,
            password=security.password.reveal(),
            ssl_context=context,
            mechanism=security.mechanism,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def create_app(
    *,
    bootstrap: str,
    topics: Topics,
    windows: HourlyWindows,
    partitions: int,
    coordinates: dict[str, tuple[float, float]] | None = None,
    replication_factor: int = 1,
    metrics_port: int = 0,
    batch_max: int = BATCH_MAX,
    stale_after_ms: int | None = None,
    days: LocalDays | None = None,
    sensors: SensorTypes | None = None,
    incident_sources: Mapping[str, IncidentSource] | None = None,
    state_store: str = "memory",
    state_dir: Path | None = None,
    standby_replicas: int = 1,
    security: KafkaSecurity | None = None,
    neighbours: AreaPlan | None = None,
) -> faust.App:
    """Build the worker app for one namespace; `partitions` must match the raw topic.

    `batch_max` bounds the records per batch; results do not depend on it (event time).
    With `metrics_port` 0 no metric is kept at all (the benchmark's baseline).
    `days` are the city's local standard-time days (daily AQI); `sensors` says which
    sensors are low-cost PurpleAir sensors (corrected PM2.5).
    The raw incidents topic has one partition (schemas.topics.SINGLE_PARTITION); records
    of sources not in `incident_sources` are dead-lettered ``unknown_source``.
    `security` (default: this process's CIVIC_KAFKA_* settings) reaches every Kafka
    connection the worker makes.
    `state_store` "rocksdb" keeps the tables on disk in `state_dir` (Settings.state_path:
    one directory per worker and namespace, RocksDB locks it); "memory" rebuilds them from
    the changelogs at every start. `standby_replicas` other workers keep a warm copy of
    each table partition.
    `neighbours` is the neighbour check's plan (streams.neighbourhood.AreaPlan; default:
    on, the stations in `coordinates` as one area).
    """
    security = resolve(security)
    if state_store not in ("memory", "rocksdb"):
        msg = f"unknown state store {state_store!r} (memory, rocksdb)"
        raise ValueError(msg)
    # faust-streaming's "rocksdb://" store runs on the rocksdict binding when it is
    # installed (it is a dependency); "rocksdict://" is not a store URL of Faust's. With
    # the memory store Faust still makes its data directory (empty): there too, not in
    # the directory the worker was started from.
    datadir = state_dir or Path("data/state") / topics.worker_group
    datadir.mkdir(parents=True, exist_ok=True)  # Faust makes only the last level
    store = "rocksdb://" if state_store == "rocksdb" else "memory://"
    app = faust.App(
        topics.worker_group,
        broker=_broker_urls(bootstrap),
        broker_credentials=broker_credentials(security),
        store=store,
        datadir=str(datadir),
        table_standby_replicas=standby_replicas,
        topic_partitions=partitions,
        topic_replication_factor=replication_factor,
        producer_acks=-1,
        producer_linger=0.005,
        producer_max_batch_size=512 * 1024,
        # a dead letter carries its source message whole: the largest a raw topic takes
        producer_max_request_size=DEADLETTER_MAX_MESSAGE_BYTES,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        # A killed worker's partitions move to its replacement after this long.
        broker_session_timeout=SESSION_TIMEOUT_SECONDS,
        broker_heartbeat_interval=HEARTBEAT_SECONDS,
        web_enabled=False,
    )
    fetch_promptly(app)
    intake = subscribe(app, topics.raw_air_quality, partitions, batch_max)
    table = app.Table(
        "station-state",
        partitions=partitions,
        # bytes in, bytes out: Faust then uses the raw codec for the changelog as well.
        key_type=bytes,
        value_type=bytes,
    )
    stale_after = DEFAULT_STALE_AFTER_MS if stale_after_ms is None else stale_after_ms
    pipeline = AirQualityPipeline(topics, windows, coordinates, days, sensors, stale_after)
    metrics = WorkerMetrics.of() if metrics_port else None
    if metrics is not None:
        metrics.faust.bind(app.monitor)
        if stale_after_ms is not None:
            metrics.sensors.stale_after_ms = stale_after_ms
    store = TableStateStore(table, app.producer)
    rewinder = Rewinder(app, store, topics.raw_air_quality, bootstrap, security=security)
    plan = neighbours or AreaPlan.of(coordinates or {}, NeighbourConfig())
    area_store, area_intake = _neighbour_task(
        app, topics, bootstrap, plan, partitions, metrics, security=security
    )
    # The air-quality task computes its next batches while the last are made durable
    # (streams.batches). The neighbour and incident tasks (a few percent of the worker's
    # time) take their batches one after the other: with them overlapped in the step
    # thread the worker had before, one CI run of the incident kill test lost incidents,
    # for a cause not found.

    def air_quality_step(
        messages: Sequence[Any], states: StateStore
    ) -> Generator[None, None, tuple[BatchResult, list[Output]]]:
        run = pipeline.start(states)
        records = source_records(messages)
        for start in range(0, len(records), STEP_SLICE):
            if start:
                yield  # the loop's turn: the last batches' commits go on meanwhile
            run.feed(records[start : start + STEP_SLICE])
        result = run.finish()
        # The final hours, re-keyed by area for the neighbour check: durable with the rest.
        return result, [*result.outputs, *plan.rekey(result.hourly, topics)]

    @app.task
    async def air_quality() -> None:
        progress = ProgressLine(
            "worker: {records:,} records, {accepted:,} accepted, {dead_letters:,} "
            "dead letters, {hours:,} station-hours published",
        )

        def done(
            messages: Sequence[Any], result: BatchResult, durable_at: float, took: float
        ) -> None:
            if metrics is not None:
                metrics.record_batch(
                    messages,
                    result,
                    # Faust's monitor stamps each message when it arrives (monotonic clock).
                    [message.time_in for message in messages],
                    durable_at,
                    took,
                )
            progress.add(
                records=len(messages),
                accepted=result.accepted,
                dead_letters=sum(result.dead_letters.values()),
                hours=result.hours_closed,
            )

        await run_durably(app, intake, store, rewinder, air_quality_step, done, overlap=True)

    incident_store, incident_intake = _incident_task(
        app,
        topics,
        bootstrap,
        incident_sources or {},
        metrics_enabled=bool(metrics_port),
        security=security,
    )
    intakes = {
        topics.raw_air_quality: intake,
        topics.raw_incidents: incident_intake,
        topics.hourly_by_area: area_intake,
    }
    divert_fetches(app, intakes)

    watch = StallWatch()
    commits = CommitWatch()

    @app.timer(interval=1.0)
    async def tidy_acks() -> None:
        """Before Faust's next commit (every second): see `drop_stale_acks`."""
        if not (app.rebalancing or app.should_stop):
            drop_stale_acks(app.consumer)

    @app.timer(interval=_WATCHDOG_EVERY_SECONDS)
    async def rewind_stalled_partitions() -> None:
        """Rewind a partition whose consumer is ahead of the records applied, without progress.

        Two Faust habits can leave records undelivered with no later record to reveal the
        gap: a rebalance seeks the next owner to the committed offset, and a seek back is
        undone when records fetched before it are delivered after it (Faust then drops the
        re-fetched ones as already read). Either way the consumer's committed or read offset
        is ahead of the partition's applied progress; seen twice in a row (two ticks) with
        no progress in between, and with no record of it in flight to its task (a busy
        worker's queue is not a stall: streams.gaps.StallWatch), the partition is rewound
        to its first record not applied.
        """
        if app.rebalancing or app.should_stop:
            return
        consumer = app.consumer
        stores = {
            topics.raw_air_quality: store,
            topics.raw_incidents: incident_store,
            topics.hourly_by_area: area_store,
        }
        queued: dict[TP, int] = {}  # newest offset delivered to a task and not acked
        for message in list(consumer._unacked_messages):
            if not message.acked:
                queued[message.tp] = max(queued.get(message.tp, -1), message.offset)
        paused = any(source.full for source in intakes.values())
        now = time.monotonic()
        for tp in consumer.assignment():
            state = stores.get(tp.topic)
            if state is None:
                continue
            applied = load_progress(state, tp.partition)
            committed = consumer._committed_offset.get(tp)
            read = consumer._read_offset.get(tp)
            seen = [offset for offset in (committed, read) if offset is not None]
            ahead = max(seen, default=None)
            # A full intake pauses every fetch: the partitions behind it are waiting, not lost.
            in_flight = paused or (applied is not None and queued.get(tp, -1) >= applied)
            log_end = consumer.highwater(tp)
            if watch.check(tp, applied, ahead, in_flight, now, log_end=log_end):
                print(
                    f"worker: {tp.topic}[{tp.partition}] consumer at {ahead} (log end "
                    f"{log_end}) but applied only up to {applied} with no progress; "
                    f"rewinding to {applied}",
                    file=sys.stderr,
                    flush=True,
                )
                await seek(consumer, tp, applied)
                continue
            offset = commits.check(tp, applied, committed, pending=tp in queued)
            if offset is not None and not (app.rebalancing or app.should_stop):
                try:
                    await commit_applied(consumer, tp, offset)
                except TimeoutError:  # the next ticks try again
                    print(f"worker: {tp.topic}[{tp.partition}] commit timed out", file=sys.stderr)

    if metrics is not None:

        @app.task
        async def serve_metrics() -> None:
            serve(metrics_port)
            print(f"worker: metrics on http://127.0.0.1:{metrics_port}/metrics", file=sys.stderr)

        @app.timer(interval=_LAG_EVERY_SECONDS)
        async def measure_consumer_lag() -> None:
            """End offsets from the broker, not from fetches: a stuck worker's lag grows."""
            owned = [tp for tp in app.consumer.assignment() if tp.topic == topics.raw_air_quality]
            if not owned:
                return  # not assigned (yet), or rebalancing: keep the last values
            try:
                ends = await app.consumer.highwaters(*owned)
            except Exception as error:  # the next tick tries again
                print(f"worker: end offsets not read: {error!r}", file=sys.stderr)
                return
            committed = app.consumer._committed_offset  # read at assignment, then per commit
            metrics.update_consumer_lag(
                {(tp.topic, tp.partition): end for tp, end in ends.items()},
                {(tp.topic, tp.partition): committed.get(tp) for tp in owned},
            )

    return app


def _neighbour_task(
    app: faust.App,
    topics: Topics,
    bootstrap: str,
    plan: AreaPlan,
    partitions: int,
    metrics: WorkerMetrics | None,
    *,
    security: KafkaSecurity,
) -> tuple[TableStateStore, Intake]:
    """The neighbour-check task: hourly records re-keyed by area in, disagreements out
    (streams.neighbourhood), with the air-quality task's commit order. The area topic has
    the raw topic's partition count (created with the other topics); the area states live
    in the changelog-backed table ``area-state``, next to their progress.
    Returns its state store (the watchdog reads its progress) and its intake."""
    intake = subscribe(app, topics.hourly_by_area, partitions, BATCH_MAX)
    table = app.Table("area-state", partitions=partitions, key_type=bytes, value_type=bytes)
    pipeline = NeighbourPipeline(topics, plan)
    store = TableStateStore(table, app.producer)
    rewinder = Rewinder(app, store, topics.hourly_by_area, bootstrap, security=security)

    step = outputs_step(pipeline.process)

    @app.task
    async def neighbours() -> None:
        progress = ProgressLine(
            "worker: {hours:,} area-hours judged, {verdicts:,} neighbour verdicts, "
            "{disagreements:,} disagreements, {late:,} late hourly records",
        )

        def done(messages: Sequence[Any], result: NeighbourResult, *_: float) -> None:
            if metrics is not None:
                for kind, count in result.anomalies.items():
                    metrics.anomalies.labels(kind).inc(count)
            progress.add(
                hours=result.hours_judged,
                verdicts=result.verdicts,
                disagreements=result.disagreements,
                late=result.late,
            )

        await run_durably(app, intake, store, rewinder, step, done, overlap=False)

    return store, intake


def _incident_task(
    app: faust.App,
    topics: Topics,
    bootstrap: str,
    sources: Mapping[str, IncidentSource],
    *,
    metrics_enabled: bool,
    security: KafkaSecurity,
) -> tuple[TableStateStore, Intake]:
    """The incident task: the same commit order as the air-quality task (see above).
    Returns its state store (the watchdog reads its progress) and its intake."""
    intake = subscribe(app, topics.raw_incidents, 1, BATCH_MAX)
    table = app.Table("incident-state", partitions=1, key_type=bytes, value_type=bytes)
    pipeline = IncidentPipeline(topics, sources)
    store = TableStateStore(table, app.producer, key_of=attrgetter("key"))
    rewinder = Rewinder(
        app, store, topics.raw_incidents, bootstrap, incident_progress_update, security=security
    )
    metrics = IncidentMetrics.of() if metrics_enabled else None

    step = outputs_step(pipeline.process)

    @app.task
    async def incidents() -> None:
        progress = ProgressLine(
            "worker: {records:,} incident rows, {published:,} incidents published, "
            "{rows:,} count rows ({corrections:,} late corrections), "
            "{dead_letters:,} dead letters",
        )

        def done(
            messages: Sequence[Any], result: IncidentBatchResult, durable_at: float, took: float
        ) -> None:
            if metrics is not None:
                metrics.observe(messages, result, took)
            progress.add(
                records=len(messages),
                published=result.published,
                rows=result.stats_rows,
                corrections=result.corrections,
                dead_letters=sum(result.dead_letters.values()),
            )

        await run_durably(app, intake, store, rewinder, step, done, overlap=False)

    return store, intake
