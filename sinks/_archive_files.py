"""The archive on disk: layout, crash-safe writing, and reading back in source order.

Layout (Hive-style partitions, read directly by DuckDB, Spark, pandas + fastavro)::

    <root>/topic=<topic>/date=<YYYY-MM-DD>/hour=<HH>/part-<PPPPP>-<first>-<last>.avro
    <root>/_progress/<topic>/<partition>.json      {"next_offset": N}
    <root>/_archive.lock                            held by the one writing process

`date` and `hour` are the UTC event hour of the records (the value's event time), or of
the Kafka timestamp for records whose event time cannot be read (their `event_ts` is
null). `<first>` and `<last>` (20 digits, so names sort by offset) are the offsets of the
*batch* that wrote the file: one batch of a source partition writes one file into every
hour it touches, all with the same name. Each file is an Avro object container file of
`ArchivedRecord` (schemas/archived_record.avsc), deflate-compressed, records in offset
order, with metadata ``civicstream.count`` and ``civicstream.key_counts`` (JSON).

Writing one batch (`ArchiveWriter.write`), in this order:

1. every file is written under a hidden temporary name (``.part-….avro.tmp``), flushed
   and fsynced;
2. each is renamed to its final name, then every directory that gained an entry is fsynced;
3. the source partition's progress file (next offset to archive) is replaced atomically
   (temporary file, fsync, rename, fsync of its directory);
4. only then may the caller commit the Kafka offsets (they serve lag monitoring).

Recovery (`ArchiveWriter.recover`, when a partition is assigned): the progress file is the
truth. A file whose batch starts at or after the recorded next offset belongs to a batch
that never completed step 3 (a crash between rename and progress): it is deleted, and the
re-delivered records are written again, perhaps in other batches. Records below the next
offset are skipped as re-deliveries. So every source record is in the archive exactly once,
whatever moment a crash hits. One process writes an archive directory at a time (a lock
file), so no zombie writer can race a restarted one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import fastavro

from schemas.codec import decode_as, is_avro, schema
from schemas.exceptions import InvalidInput, SchemaError
from schemas.raw import parse_timestamp_ms
from sinks.exceptions import SinkError

__all__ = [
    "ArchiveBusy",
    "ArchiveFile",
    "ArchiveWriter",
    "ArchivedRecord",
    "WriteStats",
    "archive_files",
    "event_time_ms",
    "hour_dir",
    "read_archive",
]

log = logging.getLogger(__name__)

_HOUR_MS = 3_600_000
_NAME = re.compile(r"^part-(\d{5})-(\d{20})-(\d{20})\.avro$")
_TMP = re.compile(r"^\.part-.*\.avro\.tmp$")
_CODEC = "deflate"

# Where the event time of a raw topic's values is: the field of the JSON object or Avro
# record. Topics are matched by their name without the namespace prefix.
EVENT_TIME_FIELDS: dict[str, str] = {
    "civic.raw.air-quality": "ts",  # schemas/raw_reading.avsc
    "civic.raw.incidents": "occurred_at",  # the common incident record (issue 5)
}


class ArchiveBusy(SinkError):
    """Another process holds the archive directory's lock."""


@dataclass(frozen=True, slots=True)
class ArchivedRecord:
    """One source record, as archived; `headers` as (key, value) pairs."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()
    event_ts_ms: int | None = None
    broker_ts_ms: int | None = None
    broker_ts_type: str = "create"

    @property
    def time_ms(self) -> int:
        """The time the archive files the record under: event time, else Kafka time."""
        if self.event_ts_ms is not None:
            return self.event_ts_ms
        return self.broker_ts_ms if self.broker_ts_ms is not None else 0


def _field_for(topic: str) -> str | None:
    for suffix, field_name in EVENT_TIME_FIELDS.items():
        if topic.endswith(suffix):
            return field_name
    return None


def event_time_ms(topic: str, value: bytes | None) -> int | None:
    """The event time of a raw record's value, or None when it cannot be read.

    Only the time field is read (JSON object or Avro single-object): a reading with a bad
    unit still has an event time, and is archived in its event hour like any other.
    """
    field_name = _field_for(topic)
    if field_name is None or not value:
        return None
    try:
        if is_avro(value):
            _, record = decode_as(value)
        else:
            record = json.loads(value)
        if not isinstance(record, dict) or record.get(field_name) is None:
            return None
        return parse_timestamp_ms(record[field_name])
    except (SchemaError, InvalidInput, ValueError, RecursionError):
        return None


def hour_dir(topic: str, time_ms: int) -> Path:
    """The directory of `topic`'s records of the UTC hour that contains `time_ms`."""
    moment = datetime.fromtimestamp(max(time_ms, 0) // _HOUR_MS * 3600, tz=UTC)
    return Path(f"topic={topic}") / f"date={moment:%Y-%m-%d}" / f"hour={moment:%H}"


def _file_name(partition: int, first: int, last: int) -> str:
    return f"part-{partition:05d}-{first:020d}-{last:020d}.avro"


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_all(paths: Sequence[Path], fsync: Callable[[Path], None]) -> None:
    """fsync many paths at once: the file system commits concurrent fsyncs together, so a
    batch that touches hundreds of hours (a bulk load) costs a few journal commits, not
    hundreds."""
    if len(paths) <= 2:
        for path in paths:
            fsync(path)
        return
    with ThreadPoolExecutor(max_workers=min(32, len(paths))) as pool:
        list(pool.map(fsync, paths))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _without_docs(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_docs(v) for k, v in node.items() if k != "doc"}
    if isinstance(node, list):
        return [_without_docs(item) for item in node]
    return node


_WRITE_SCHEMA: Any = None


def _write_schema() -> Any:
    """The archive schema without its docs: every file's header carries it."""
    global _WRITE_SCHEMA
    if _WRITE_SCHEMA is None:
        plain = json.loads(json.dumps(schema("archived_record")))
        _WRITE_SCHEMA = fastavro.parse_schema(_without_docs(plain))
    return _WRITE_SCHEMA


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def _millis(value: datetime | int | None) -> int | None:
    """fastavro reads timestamp-millis as aware datetimes; the archive API uses epoch ms."""
    if value is None or isinstance(value, int):
        return value
    return (value - _EPOCH) // _MS


@dataclass(frozen=True)
class WriteStats:
    """What one `ArchiveWriter.write` call did."""

    written: int
    per_topic: Mapping[str, int]
    redelivered: int
    files: int
    bytes: int
    unparsed: Mapping[str, int]
    next_offsets: Mapping[tuple[str, int], int]


class ArchiveWriter:
    """Writes batches of records into an archive directory, exactly once per source offset.

    Holds the directory's lock from construction to `close`. Call `recover` for every
    source partition before writing its records.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._lock: IO[bytes] | None = (root / "_archive.lock").open("ab")
        try:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            self._lock = None
            msg = f"another archive sink is writing to {root} (it holds {root / '_archive.lock'})"
            raise ArchiveBusy(msg) from None
        self._next: dict[tuple[str, int], int | None] = {}

    def _progress_path(self, topic: str, partition: int) -> Path:
        return self.root / "_progress" / topic / f"{partition}.json"

    def progress(self, topic: str, partition: int) -> int | None:
        """The next offset to archive of a source partition (None: nothing archived yet)."""
        try:
            data = json.loads(self._progress_path(topic, partition).read_text())
        except FileNotFoundError:
            return None
        return int(data["next_offset"])

    def next_offset(self, topic: str, partition: int) -> int | None:
        """The next offset to archive of a recovered partition (None: nothing yet)."""
        return self._next.get((topic, partition))

    def recover(self, partitions: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int | None]:
        """Delete what unfinished batches of these source partitions left; return each one's
        next offset to archive (None: nothing archived yet)."""
        wanted: dict[str, dict[int, int | None]] = {}
        for topic, partition in partitions:
            wanted.setdefault(topic, {})[partition] = self.progress(topic, partition)
        for topic, next_offsets in wanted.items():
            removed = 0
            for path in (self.root / f"topic={topic}").glob("date=*/hour=*/*"):
                if _TMP.match(path.name):
                    partition = int(path.name.split("-")[1])
                    if partition in next_offsets:
                        path.unlink()
                        removed += 1
                    continue
                match = _NAME.match(path.name)
                if match is None or int(match.group(1)) not in next_offsets:
                    continue
                next_offset = next_offsets[int(match.group(1))]
                if next_offset is None or int(match.group(2)) >= next_offset:
                    path.unlink()  # a batch that never recorded its progress
                    removed += 1
            if removed:
                log.warning(
                    "%s: removed %d files of unfinished batches; their records follow again",
                    topic,
                    removed,
                )
            for partition, next_offset in next_offsets.items():
                self._next[(topic, partition)] = next_offset
        return {
            (topic, partition): offset
            for topic, offsets in wanted.items()
            for partition, offset in offsets.items()
        }

    def write(self, records: Iterable[ArchivedRecord]) -> WriteStats:
        """Archive `records` (in offset order per partition) durably; see the module doc."""
        by_tp: dict[tuple[str, int], list[ArchivedRecord]] = {}
        redelivered = 0
        for record in records:
            tp = (record.topic, record.partition)
            if tp not in self._next:
                msg = f"{record.topic}[{record.partition}] was not recovered before writing"
                raise SinkError(msg)
            floor = self._next[tp]
            taken = by_tp.setdefault(tp, [])
            if not taken and floor is not None and record.offset > floor:
                log.warning(
                    "%s[%d]: no records at offsets %d..%d (deleted by retention before they "
                    "were archived, or transaction markers)",
                    record.topic,
                    record.partition,
                    floor,
                    record.offset - 1,
                )
            last = taken[-1].offset if taken else None
            if (floor is not None and record.offset < floor) or (
                last is not None and record.offset <= last
            ):
                redelivered += 1
                continue
            taken.append(record)
        files: list[tuple[Path, Path]] = []  # (temporary, final)
        unparsed: Counter[str] = Counter()
        total_bytes = 0
        try:
            for (topic, partition), batch in by_tp.items():
                if not batch:
                    continue
                name = _file_name(partition, batch[0].offset, batch[-1].offset)
                by_hour: dict[int, list[ArchivedRecord]] = {}
                for record in batch:
                    by_hour.setdefault(max(record.time_ms, 0) // _HOUR_MS, []).append(record)
                    if record.event_ts_ms is None:
                        unparsed[topic] += 1
                for hour, hour_records in by_hour.items():
                    directory = self.root / hour_dir(topic, hour * _HOUR_MS)
                    directory.mkdir(parents=True, exist_ok=True)
                    temporary = directory / f".{name}.tmp"
                    total_bytes += _write_file(temporary, hour_records)
                    files.append((temporary, directory / name))
            _fsync_all([temporary for temporary, _ in files], _fsync_file)
            # 2. rename, then make the new names durable
            touched: set[Path] = set()
            for temporary, final in files:
                os.replace(temporary, final)
                touched.add(final.parent)
            _fsync_all(_with_new_parents(touched, self.root), _fsync_dir)
        except BaseException:
            for temporary, _ in files:
                with contextlib.suppress(FileNotFoundError):
                    temporary.unlink()
            raise
        # 3. progress, atomically
        next_offsets: dict[tuple[str, int], int] = {}
        per_topic: Counter[str] = Counter()
        for (topic, partition), batch in by_tp.items():
            per_topic[topic] += len(batch)
            if batch:
                next_offsets[(topic, partition)] = batch[-1].offset + 1
                self._save_progress(topic, partition, batch[-1].offset + 1)
        return WriteStats(
            written=sum(len(batch) for batch in by_tp.values()),
            per_topic=dict(per_topic),
            redelivered=redelivered,
            files=len(files),
            bytes=total_bytes,
            unparsed=dict(unparsed),
            next_offsets=next_offsets,
        )

    def _save_progress(self, topic: str, partition: int, next_offset: int) -> None:
        path = self._progress_path(topic, partition)
        fresh = not path.parent.exists()
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp")
        with temporary.open("w") as handle:
            json.dump({"next_offset": next_offset}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        _fsync_dir(path.parent)
        if fresh:
            _fsync_dir(path.parent.parent)
            _fsync_dir(self.root)
        self._next[(topic, partition)] = next_offset

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None


def _with_new_parents(directories: set[Path], root: Path) -> list[Path]:
    """The directories and their parents up to `root`: a new hour directory's own entry
    lives in its date directory, and so on up."""
    result: set[Path] = set()
    for directory in directories:
        current = directory
        while current != root and root in current.parents:
            result.add(current)
            current = current.parent
        result.add(root)
    return sorted(result, key=lambda p: len(p.parts), reverse=True)


def _write_file(path: Path, records: Sequence[ArchivedRecord]) -> int:
    keys = Counter(_key_text(record.key) for record in records)
    metadata = {
        "civicstream.count": str(len(records)),
        "civicstream.key_counts": json.dumps(dict(sorted(keys.items())), separators=(",", ":")),
    }
    with path.open("wb") as handle:
        fastavro.writer(
            handle,
            _write_schema(),
            (_as_avro(record) for record in records),
            codec=_CODEC,
            metadata=metadata,
            sync_interval=256 * 1024,
        )
        return handle.tell()  # fsynced by the caller, with the batch's other files


def _key_text(key: bytes | None) -> str:
    return "" if key is None else key.decode("utf-8", "backslashreplace")


def _as_avro(record: ArchivedRecord) -> dict[str, Any]:
    return {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "key": record.key,
        "value": record.value,
        "headers": [{"key": k, "value": v} for k, v in record.headers],
        "event_ts": record.event_ts_ms,
        "broker_ts": record.broker_ts_ms,
        "broker_ts_type": record.broker_ts_type,
    }


# --- reading ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ArchiveFile:
    """One archive file, described by its path alone."""

    path: Path
    topic: str
    partition: int
    first: int
    last: int
    hour_ms: int

    def count(self, keys: Collection[str] | None = None) -> int:
        """Records in the file (of `keys` only, when given), from its header."""
        with self.path.open("rb") as handle:
            meta = fastavro.reader(handle).metadata
        if keys is None:
            return int(meta["civicstream.count"])
        counts = json.loads(meta["civicstream.key_counts"])
        return sum(counts.get(key, 0) for key in keys)


def _hour_ms(date_part: str, hour_part: str) -> int | None:
    try:
        moment = datetime.strptime(
            f"{date_part.removeprefix('date=')} {hour_part.removeprefix('hour=')}", "%Y-%m-%d %H"
        ).replace(tzinfo=UTC)
    except ValueError:
        return None
    return int(moment.timestamp()) * 1000


def archive_files(
    root: Path, topic: str, since_ms: int | None = None, until_ms: int | None = None
) -> list[ArchiveFile]:
    """`topic`'s files whose hour overlaps [since, until), by partition and batch."""
    found: list[ArchiveFile] = []
    topic_dir = root / f"topic={topic}"
    if not topic_dir.is_dir():
        return found
    for date_dir in topic_dir.iterdir():
        if not date_dir.name.startswith("date="):
            continue
        for hour_path in date_dir.iterdir():
            hour_ms = _hour_ms(date_dir.name, hour_path.name)
            if hour_ms is None:
                continue
            if since_ms is not None and hour_ms + _HOUR_MS <= since_ms:
                continue
            if until_ms is not None and hour_ms >= until_ms:
                continue
            for path in hour_path.iterdir():
                match = _NAME.match(path.name)
                if match:
                    found.append(
                        ArchiveFile(
                            path,
                            topic,
                            int(match.group(1)),
                            int(match.group(2)),
                            int(match.group(3)),
                            hour_ms,
                        )
                    )
    found.sort(key=lambda f: (f.partition, f.first, f.hour_ms))
    return found


def _read_file(path: Path) -> Iterator[ArchivedRecord]:
    with path.open("rb") as handle:
        for row in fastavro.reader(handle):
            assert isinstance(row, dict)
            yield ArchivedRecord(
                topic=row["topic"],
                partition=row["partition"],
                offset=row["offset"],
                key=row["key"],
                value=row["value"],
                headers=tuple((h["key"], h["value"]) for h in row["headers"]),
                event_ts_ms=_millis(row["event_ts"]),
                broker_ts_ms=_millis(row["broker_ts"]),
                broker_ts_type=row["broker_ts_type"],
            )


def read_archive(
    files: Sequence[ArchiveFile],
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
    keys: Collection[bytes] | None = None,
) -> dict[tuple[str, int], Iterator[ArchivedRecord]]:
    """One iterator per source partition, each in source offset order.

    `files` come from `archive_files`. A batch's files (one per hour it touched) are read
    together and sorted by offset, batches follow each other by offset, and an offset is
    never yielded twice.
    Records are kept when their time (`ArchivedRecord.time_ms`) is in [since, until) and,
    if `keys` is given, their key is one of them.
    """
    by_tp: dict[tuple[str, int], dict[int, list[ArchiveFile]]] = {}
    for file in files:
        by_tp.setdefault((file.topic, file.partition), {}).setdefault(file.first, []).append(file)
    return {
        tp: _partition_records(batches, since_ms, until_ms, keys)
        for tp, batches in sorted(by_tp.items())
    }


def _partition_records(
    batches: Mapping[int, list[ArchiveFile]],
    since_ms: int | None,
    until_ms: int | None,
    keys: Collection[bytes] | None,
) -> Iterator[ArchivedRecord]:
    last = -1
    for first in sorted(batches):
        # One batch at a time, in memory (at most --flush-records records): a bulk load's
        # batch can touch thousands of hours, too many files to hold open for a merge.
        records = [record for f in batches[first] for record in _read_file(f.path)]
        records.sort(key=lambda r: r.offset)
        for record in records:
            if record.offset <= last:
                continue
            last = record.offset
            if since_ms is not None and record.time_ms < since_ms:
                continue
            if until_ms is not None and record.time_ms >= until_ms:
                continue
            if keys is not None and record.key not in keys:
                continue
            yield record
