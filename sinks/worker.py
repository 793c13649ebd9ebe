"""The sink worker: hourly AQI and enriched readings from Kafka into the open-data store.

Run it as ``python -m sinks.worker --help``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Protocol, Self

from kafka import KafkaConsumer, KafkaProducer  # type: ignore[import-untyped]
from kafka.errors import CommitFailedError, KafkaError  # type: ignore[import-untyped]
from kafka.structs import OffsetAndMetadata  # type: ignore[import-untyped]
from prometheus_client import CollectorRegistry

from kafkaconf import KafkaLoginError, KafkaSecurity, KafkaSecurityError, check_login, resolve
from schemas import Reason, Topics, encode
from schemas.codec import decode_as
from schemas.topics import DEADLETTER_MAX_MESSAGE_BYTES
from sinks._datasets import DATASETS, Dataset, get_dataset
from sinks.ckan import CkanClient, CkanTarget
from sinks.exceptions import InvalidRecord, StoreError
from sinks.metrics import SinkMetrics
from sinks.store import default_store_url, open_store, redacted_url
from telemetry import serve

__all__ = ["BatchStats", "SinkWorker", "WriteTarget", "main"]

log = logging.getLogger(__name__)

# Contract name -> the dataset its records go to.
_ROUTES: dict[str, Dataset] = {ds.contract: ds for ds in DATASETS.values()}

_DEADLETTER_TIMEOUT_S = 30.0
_COMMIT_TIMEOUT_MS = 30_000
_RETRY_FIRST_S = 0.5
_RETRY_MAX_S = 30.0


@dataclass(frozen=True)
class BatchStats:
    """What one batch (or, for `SinkWorker.totals`, the worker so far) did."""

    consumed: int = 0
    written: Mapping[str, int] = field(default_factory=dict)
    """Records upserted per dataset (a replayed or superseded record counts again)."""
    deadletters: int = 0
    batches: int = 1
    seconds: float = 0.0

    def __add__(self, other: BatchStats) -> BatchStats:
        written = dict(self.written)
        for name, count in other.written.items():
            written[name] = written.get(name, 0) + count
        return BatchStats(
            consumed=self.consumed + other.consumed,
            written=written,
            deadletters=self.deadletters + other.deadletters,
            batches=self.batches + other.batches,
            seconds=self.seconds + other.seconds,
        )


@dataclass(frozen=True)
class _Rejected:
    reason: Reason
    detail: str


class WriteTarget(Protocol):
    """Where a sink writes: the open-data store (`sinks.store.Store`) or a portal
    (`sinks.ckan.CkanTarget`). `write_rows` (rows made by each dataset's `to_row`) returns
    only once the write is durable."""

    def write_rows(self, rows: Mapping[str, Sequence[tuple[Any, ...]]]) -> None: ...

    def close(self) -> None: ...


class SinkWorker:
    """Consumes the topics of the stored datasets (all, or `datasets`) into a write target.

    Commit order, per batch (one poll of at most `batch_size` records):

        decode → dead-letter flush → store transaction commit → Kafka offset commit

    1. decode every record (`schemas.codec.decode_as`) and route it by contract name:
       ``aqi_hourly`` → dataset ``aqi_hourly``, ``enriched_reading`` → ``readings``;
       a message that cannot be decoded or stored is sent to `topics.deadletter` with its
       original key and value bytes and a reason, and never stops the worker;
    2. flush the dead-letter producer (``acks="all"``) and check every send (a dead letter
       the broker does not take fails the batch: a bad message is never dropped);
    3. upsert both datasets in ONE store transaction (in a batch, the last record of a
       natural key, by offset, wins);
    4. commit exactly the offsets consumed (last offset + 1 per partition).

    A crash anywhere before the last step replays the batch, and upserts by natural key
    make the replay a no-op. (The dead-letter topic is at-least-once: a replayed batch
    sends its dead letters again.) If a step fails, `run_once` seeks back to the start of
    the batch before re-raising, so even a caller that retries never skips a record;
    `run` retries a failed store transaction (with back-off) instead of exiting.

    Metrics (`sinks.metrics.SinkMetrics`, on `registry`; none when `metrics` is False).
    """

    def __init__(
        self,
        bootstrap: str,
        topics: Topics,
        store: str | WriteTarget,
        *,
        group_id: str,
        datasets: Collection[str] | None = None,
        batch_size: int = 2000,
        poll_timeout_ms: int = 500,
        on_batch: Callable[[BatchStats], None] | None = None,
        registry: CollectorRegistry | None = None,
        client_id: str = "civicstream-sink",
        session_timeout_ms: int | None = None,
        metrics: bool = True,
        security: KafkaSecurity | None = None,
    ) -> None:
        if batch_size < 1:
            msg = f"batch_size must be at least 1, got {batch_size}"
            raise ValueError(msg)
        self._bootstrap = bootstrap
        self._security = resolve(security)
        self._topics = topics
        self._batch_size = batch_size
        self._poll_timeout_ms = poll_timeout_ms
        self._on_batch = on_batch
        self._client_id = client_id
        self._metrics = SinkMetrics.of(registry) if metrics else None
        self._positions: dict[Any, int] = {}  # partition -> next offset after the last commit
        self._totals = BatchStats(batches=0)
        self._producer: Any = None
        self._closed = False
        self._store: WriteTarget = open_store(store) if isinstance(store, str) else store
        names = DATASETS if datasets is None else datasets
        subscribed = sorted({getattr(topics, get_dataset(name).topic) for name in names})
        try:
            liveness: dict[str, int] = {}
            if session_timeout_ms is not None:  # else the client's default (45 s)
                liveness = {
                    "session_timeout_ms": session_timeout_ms,
                    "heartbeat_interval_ms": max(1, session_timeout_ms // 3),
                }
            self._consumer: Any = KafkaConsumer(
                bootstrap_servers=bootstrap,
                group_id=group_id,
                client_id=client_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_poll_records=batch_size,
                **liveness,
                **self._security.kafka_python(),
            )
            self._consumer.subscribe(subscribed)
        except BaseException:
            self._store.close()
            raise

    @property
    def totals(self) -> BatchStats:
        """Everything this worker has committed so far."""
        return self._totals

    # --- one batch --------------------------------------------------------------------------

    def run_once(self, timeout_ms: int | None = None) -> int:
        """Poll once and process what came as one batch; return the records written.

        Returns 0 without committing anything when the poll brings no records.
        """
        polled: dict[Any, list[Any]] = self._consumer.poll(
            timeout_ms=self._poll_timeout_ms if timeout_ms is None else timeout_ms,
            max_records=self._batch_size,
        )
        batch = {tp: messages for tp, messages in polled.items() if messages}
        if not batch:
            self._measure_lag()
            return 0
        started = time.perf_counter()
        try:
            stats = self._process(batch)
        except CommitFailedError as error:
            # The group rebalanced after the store commit: the batch is stored, and whoever
            # owns the partitions now replays it as a no-op.
            log.warning("offset commit failed after the store commit (rebalance): %s", error)
            self._rewind(batch)
            return 0
        except BaseException:
            self._rewind(batch)
            raise
        stats = BatchStats(
            consumed=stats.consumed,
            written=stats.written,
            deadletters=stats.deadletters,
            seconds=time.perf_counter() - started,
        )
        for tp, messages in batch.items():
            self._positions[tp] = messages[-1].offset + 1
        if self._metrics is not None:
            self._metrics.batch_seconds.observe(stats.seconds)
            for tp, messages in batch.items():  # received at the poll, durable now
                self._metrics.consumer.observe_latency(tp.topic, stats.seconds, len(messages))
            self._measure_lag()
        self._totals = self._totals + stats
        if self._on_batch is not None:
            self._on_batch(stats)
        return sum(stats.written.values())

    def _process(self, batch: Mapping[Any, Sequence[Any]]) -> BatchStats:
        rows: dict[str, list[tuple[Any, ...]]] = {ds.name: [] for ds in _ROUTES.values()}
        dead: list[tuple[Any, Reason, str]] = []
        offsets: dict[Any, Any] = {}
        consumed = 0
        # 1. decode and route
        for tp, messages in batch.items():
            for message in messages:
                consumed += 1
                routed = self._route(message)
                if isinstance(routed, _Rejected):
                    dead.append((message, routed.reason, routed.detail))
                else:
                    ds, row = routed
                    rows[ds.name].append(row)
            last = messages[-1]
            offsets[tp] = OffsetAndMetadata(last.offset + 1, "", last.leader_epoch)
        metrics = self._metrics
        # 2. dead letters, flushed and acknowledged
        if dead:
            self._send_dead_letters(dead)
        # 3. one store transaction
        written = {name: len(converted) for name, converted in rows.items()}
        write_started = time.perf_counter()
        try:
            self._store.write_rows(rows)
        except Exception:
            if metrics is not None:
                metrics.write_failed(name for name, count in written.items() if count)
            raise
        write_seconds = time.perf_counter() - write_started
        # 4. exactly the offsets consumed
        self._consumer.commit(offsets, timeout_ms=_COMMIT_TIMEOUT_MS)
        if metrics is not None:
            metrics.written(written, write_seconds)
            metrics.commits.inc()
            consumer = metrics.consumer
            for tp, messages in batch.items():
                consumer.consumed.labels(tp.topic).inc(len(messages))
            if dead:
                consumer.produced.labels(self._topics.deadletter).inc(len(dead))
                for _, reason, _ in dead:
                    consumer.dead_letters.labels(str(reason)).inc()
        return BatchStats(consumed=consumed, written=written, deadletters=len(dead))

    @staticmethod
    def _route(message: Any) -> tuple[Dataset, tuple[Any, ...]] | _Rejected:
        """(dataset, row) for a storable message, else why it goes to the dead letters."""
        if message.value is None:
            return _Rejected(Reason.INVALID_AVRO, "null value (tombstone)")
        try:
            contract, record = decode_as(message.value)
        except Exception as error:  # any decoding failure is the message's, never the worker's
            return _Rejected(Reason.INVALID_AVRO, f"{type(error).__name__}: {error}")
        ds = _ROUTES.get(contract)
        if ds is None:
            return _Rejected(
                Reason.INVALID_AVRO, f"contract {contract!r} is not stored by the sink"
            )
        try:
            return ds, ds.to_row(record)
        except InvalidRecord as error:
            return _Rejected(Reason.INVALID_FIELD, f"{contract}: {error}")

    def _send_dead_letters(self, dead: Sequence[tuple[Any, Reason, str]]) -> None:
        if self._producer is None:
            self._producer = KafkaProducer(
                bootstrap_servers=self._bootstrap,
                client_id=f"{self._client_id}-deadletter",
                acks="all",
                max_request_size=DEADLETTER_MAX_MESSAGE_BYTES,
                **self._security.kafka_python(),
            )
        futures = []
        for message, reason, detail in dead:
            log.warning(
                "dead letter %s[%d]@%d: %s: %s",
                message.topic,
                message.partition,
                message.offset,
                reason,
                detail,
            )
            value = encode(
                "deadletter",
                {
                    "source_topic": message.topic,
                    "source_partition": message.partition,
                    "source_offset": message.offset,
                    "key": message.key,
                    "value": message.value,
                    "reason": str(reason),
                    "detail": detail,
                    "event_ts": None,
                },
            )
            futures.append(
                self._producer.send(self._topics.deadletter, key=message.key, value=value)
            )
        self._producer.flush(timeout=_DEADLETTER_TIMEOUT_S)
        for future in futures:
            future.get(timeout=_DEADLETTER_TIMEOUT_S)  # raises if the broker did not take it

    def _measure_lag(self) -> None:
        """Lag of every owned partition: the highwater of the last fetch minus our position."""
        if self._metrics is None:
            return
        owned = self._consumer.assignment() or set()
        lags: dict[tuple[str, int], int] = {}
        for tp in owned:
            end = self._consumer.highwater(tp)
            position = self._positions.get(tp)
            if end is not None and position is not None:
                lags[(tp.topic, tp.partition)] = max(0, end - position)
        self._metrics.consumer.set_consumer_lag(lags)
        for tp in [tp for tp in self._positions if tp not in owned]:
            del self._positions[tp]  # moved to another sink: its position is theirs now

    def _rewind(self, batch: Mapping[Any, Sequence[Any]]) -> None:
        """Seek every partition still assigned back to the batch's first offset."""
        for tp, messages in batch.items():
            with contextlib.suppress(ValueError):  # unassigned in a rebalance: nothing to do
                self._consumer.seek(tp, messages[0].offset)

    # --- the loop ---------------------------------------------------------------------------

    def run(self, stop: threading.Event, *, log_every_s: float = 10.0) -> None:
        """Process batches until `stop` is set, then close. A failing store and a Kafka that
        is unavailable (retriable errors) are retried with back-off; other errors propagate
        (after close)."""
        last_log = time.monotonic()
        logged = self._totals
        try:
            retry_s = _RETRY_FIRST_S
            while not stop.is_set():
                try:
                    self.run_once()
                except StoreError as error:  # rewound by run_once: nothing lost, try again
                    log.error("store write failed, retrying in %.1f s: %s", retry_s, error)
                    stop.wait(retry_s)
                    retry_s = min(retry_s * 2, _RETRY_MAX_S)
                    continue
                except KafkaError as error:
                    # The broker is down or restarting (the offset commit or a dead letter
                    # failed): rewound by run_once; the stored batch replays as a no-op.
                    if not getattr(error, "retriable", False):
                        raise
                    log.error("Kafka unavailable, retrying in %.1f s: %s", retry_s, error)
                    stop.wait(retry_s)
                    retry_s = min(retry_s * 2, _RETRY_MAX_S)
                    continue
                retry_s = _RETRY_FIRST_S
                now = time.monotonic()
                if now - last_log >= log_every_s:
                    self._log_progress(logged, now - last_log)
                    last_log, logged = now, self._totals
        finally:
            self.close()
            self._log_progress(self._totals, 0.0, final=True)

    def _log_progress(self, previous: BatchStats, elapsed: float, *, final: bool = False) -> None:
        totals = self._totals
        written = " ".join(f"{name}={count}" for name, count in sorted(totals.written.items()))
        rate = (totals.consumed - previous.consumed) / elapsed if elapsed > 0 else 0.0
        log.info(
            "%s: %d consumed, written %s, %d dead letters, %d batches%s",
            "stopped" if final else "progress",
            totals.consumed,
            written or "nothing",
            totals.deadletters,
            totals.batches,
            "" if final else f", {rate:.0f} records/s",
        )

    def close(self) -> None:
        """Close the consumer (committing nothing), the producer and the store."""
        if self._closed:
            return
        self._closed = True
        try:
            self._consumer.close(autocommit=False)
        finally:
            try:
                if self._producer is not None:
                    self._producer.close(timeout=_DEADLETTER_TIMEOUT_S)
            finally:
                self._store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


# --- command line -------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        msg = f"must be at least 1, got {value}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _resource(text: str) -> tuple[str, str]:
    dataset, separator, resource_id = text.partition("=")
    if not separator or not dataset.strip() or not resource_id.strip():
        msg = f"expected DATASET=RESOURCE_ID, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    try:
        name = get_dataset(dataset.strip()).name
    except StoreError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return name, resource_id.strip()


def _ckan_target(args: argparse.Namespace, env: Mapping[str, str]) -> CkanTarget:
    """The CKAN target the arguments describe; `ValueError` says what is missing."""
    pairs = args.ckan_resource
    if pairs is None:
        listed = [item for item in env.get("CIVIC_CKAN_RESOURCES", "").split(",") if item]
        try:
            pairs = [_resource(item) for item in listed]
        except argparse.ArgumentTypeError as error:
            msg = f"CIVIC_CKAN_RESOURCES: {error}"
            raise ValueError(msg) from None
    if not pairs:
        msg = "--ckan-url needs at least one --ckan-resource DATASET=RESOURCE_ID"
        raise ValueError(msg)
    if args.ckan_token_file is not None:
        token: str | None = args.ckan_token_file.read_text(encoding="utf-8").strip()
    else:
        token = env.get("CIVIC_CKAN_TOKEN") or None
    client = CkanClient(args.ckan_url, token, retry_for_s=args.ckan_retry_for)
    return CkanTarget(client, dict(pairs), chunk_size=args.ckan_chunk_size)


def _parser() -> argparse.ArgumentParser:
    env = os.environ
    parser = argparse.ArgumentParser(
        prog="python -m sinks.worker",
        description=(
            "Store the hourly AQI and the enriched readings from Kafka in the open-data "
            "store, upserted by natural key. Undecodable messages go to the dead-letter "
            "topic with their original bytes; the worker keeps going."
        ),
        epilog=(
            "Per batch: decode → dead-letter flush → store transaction commit → Kafka "
            "offset commit. A crash before the offset commit replays the batch as a no-op, "
            "so the worker can be killed at any time. SIGINT/SIGTERM stop it after the "
            "current batch."
        ),
    )
    parser.add_argument(
        "--bootstrap",
        default=env.get("CIVIC_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
        help="Kafka bootstrap servers (env CIVIC_KAFKA_BOOTSTRAP; default %(default)s)",
    )
    parser.add_argument(
        "--store",
        default=env.get("CIVIC_STORE_URL", default_store_url()),
        help=(
            "store URL: sqlite:///relative.db, sqlite:////absolute.db or "
            "postgresql://user:password@host:port/dbname "
            "(env CIVIC_STORE_URL; default %(default)s)"
        ),
    )
    parser.add_argument(
        "--prefix",
        default=env.get("CIVIC_TOPIC_PREFIX", ""),
        help="replay namespace prefixed to every topic (env CIVIC_TOPIC_PREFIX; default none)",
    )
    parser.add_argument(
        "--group",
        default=None,
        help="Kafka consumer group (default: PREFIX + civicstream-sink)",
    )
    parser.add_argument(
        "--batch-size",
        type=_positive_int,
        default=2000,
        help="most records per poll, store transaction and offset commit (default %(default)s)",
    )
    parser.add_argument(
        "--session-timeout-ms",
        type=_positive_int,
        default=10_000,
        help=(
            "how long the group waits for a silent (e.g. killed) worker before its "
            "partitions move (default %(default)s)"
        ),
    )
    parser.add_argument(
        "--log-every",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="seconds between progress lines (default %(default)s)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=int(env.get("CIVIC_SINK_METRICS_PORT", "0")),
        help="serve Prometheus /metrics on this port; 0 = off (env CIVIC_SINK_METRICS_PORT)",
    )
    ckan = parser.add_argument_group(
        "publishing to a CKAN portal instead of the store",
        "With --ckan-url the sink upserts the datasets named by --ckan-resource into that "
        "CKAN's DataStore (datastore_create with the natural key as primary key, then "
        "datastore_upsert), in its own consumer group (default PREFIX + civicstream-ckan). "
        "The API token comes from CIVIC_CKAN_TOKEN or --ckan-token-file, never from the "
        "command line.",
    )
    ckan.add_argument(
        "--ckan-url",
        default=env.get("CIVIC_CKAN_URL") or None,
        metavar="URL",
        help="the CKAN site, e.g. https://data.example.org (env CIVIC_CKAN_URL)",
    )
    ckan.add_argument(
        "--ckan-resource",
        action="append",
        type=_resource,
        default=None,
        metavar="DATASET=RESOURCE_ID",
        help=(
            "publish DATASET into the CKAN resource RESOURCE_ID; repeat for more "
            "(env CIVIC_CKAN_RESOURCES, comma-separated)"
        ),
    )
    ckan.add_argument(
        "--ckan-token-file",
        type=Path,
        metavar="PATH",
        help="file holding the CKAN API token (else env CIVIC_CKAN_TOKEN)",
    )
    ckan.add_argument(
        "--ckan-chunk-size",
        type=_positive_int,
        default=500,
        help="most records per datastore_upsert request (default %(default)s)",
    )
    ckan.add_argument(
        "--ckan-retry-for",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help=(
            "keep retrying a CKAN that is down or overloaded this long before the sink "
            "stops with an error (default %(default)s)"
        ),
    )
    parser.add_argument(
        "--log-level",
        default=env.get("CIVIC_LOG_LEVEL", "INFO"),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging level (env CIVIC_LOG_LEVEL; default %(default)s)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the sink worker until SIGINT/SIGTERM; 0 on a clean stop, 1 on an error."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("kafka").setLevel(max(logging.WARNING, logging.getLevelName(args.log_level)))
    topics = Topics(args.prefix)
    target: str | WriteTarget = args.store
    datasets: list[str] | None = None
    default_group = topics.sink_group
    if args.ckan_url:
        try:
            ckan = _ckan_target(args, os.environ)
        except (ValueError, OSError) as error:
            log.error("%s", error)
            return 2
        target, datasets, default_group = ckan, list(ckan.datasets), topics.ckan_group
    group = args.group if args.group is not None else default_group
    stop = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("%s: stopping after the current batch", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    if args.metrics_port:
        serve(args.metrics_port)
    names = DATASETS if datasets is None else datasets
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
        "sink: %s (%s) topics %s → %s, group %s",
        args.bootstrap,
        security,
        ", ".join(sorted({getattr(topics, get_dataset(name).topic) for name in names})),
        args.ckan_url or redacted_url(args.store),
        group,
    )
    try:
        worker = SinkWorker(
            args.bootstrap,
            topics,
            target,
            group_id=group,
            datasets=datasets,
            batch_size=args.batch_size,
            session_timeout_ms=args.session_timeout_ms,
            metrics=bool(args.metrics_port),
            security=security,
        )
        worker.run(stop, log_every_s=args.log_every)
    except Exception:
        log.exception("sink worker failed; uncommitted batches will be replayed on restart")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
