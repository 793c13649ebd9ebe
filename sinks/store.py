"""The open-data store: datasets upserted by natural key, one transaction per batch.

`open_store(url)` picks the backend from the URL scheme:

- ``sqlite:///relative/path.db`` (relative to the working directory),
  ``sqlite:////absolute/path.db``, ``sqlite:///:memory:`` (tests): `SQLiteStore`;
- ``postgresql://user@host:port/dbname`` (any libpq URI, also ``postgres://``):
  `sinks._postgres.PostgreSQLStore`.

Every backend implements `Store` with the same schema (`sinks._migrations`, one list of
versioned steps for all backends), the same rows (made by `sinks._datasets`, so every
backend stores the same text for the same record) and the same reads (`sinks._query`
renders one parameterised SELECT for both). Upserts by natural key make every write
idempotent: writing a batch twice leaves the same rows as writing it once.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, Self
from urllib.parse import quote

from sinks import _migrations
from sinks._datasets import DATASETS, Dataset, get_dataset
from sinks._migrations import Backend, render
from sinks._query import RecordQuery, latest_sql, select_sql
from sinks.exceptions import StoreError, UnsupportedStoreURL

__all__ = [
    "DatasetStatus",
    "SQLiteStore",
    "Store",
    "default_store_url",
    "open_store",
    "redacted_url",
]

Record = Mapping[str, Any]
Row = tuple[Any, ...]


_URL_PASSWORD = re.compile(r"(://[^:/@?#]*:)[^@]*@")
_QUERY_PASSWORD = re.compile(r"([?&](?:password|sslpassword)=)[^&#]*", re.IGNORECASE)


def redacted_url(url: str) -> str:
    """`url` with any password masked (``user:***@``, ``password=***``): what logs and
    messages may show of a store URL."""
    return _QUERY_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***@", url))


def default_store_url() -> str:
    """The store used when neither ``--store`` nor ``CIVIC_STORE_URL`` names one."""
    return "sqlite:///data/civicstream.db"


class DatasetStatus(NamedTuple):
    """What the store knows about a dataset without scanning it.

    `modified`: when a batch last wrote to it (UTC, ISO 8601), None before the first
    batch; `first_time`/`last_time`: the span of its time column, as stored.
    """

    modified: str | None
    first_time: str | None
    last_time: str | None


class Store(ABC):
    """An open-data store backend: a few datasets, written in batches, read by queries."""

    backend: Backend

    @property
    def datasets(self) -> tuple[str, ...]:
        """The names of the datasets this store holds."""
        return tuple(DATASETS)

    def write_batch(self, batches: Mapping[str, Sequence[Record]]) -> None:
        """Upsert decoded records into their datasets (by name), all in ONE transaction.

        Within the batch, a later record for a natural key replaces an earlier one (for a
        dataset with a revision column, the one with the highest revision wins, and a
        stored row is only replaced by an equal or higher revision). When this returns,
        the transaction is durable; when it raises, nothing was written.
        Raises `sinks.exceptions.InvalidRecord` (before any write) or `StoreError`.
        """
        self.write_rows(rows_of(batches))

    @abstractmethod
    def write_rows(self, rows: Mapping[str, Sequence[Row]]) -> None:
        """`write_batch` for records already converted by their dataset's `to_row` (the
        sink worker converts each record once, to dead-letter the ones that do not fit)."""

    @abstractmethod
    def _read(self, sql: str, params: Sequence[Any]) -> list[Row]:
        """All rows of a SELECT written with ``?`` placeholders."""

    @abstractmethod
    def _iterate(self, sql: str, params: Sequence[Any], chunk_rows: int) -> Iterator[list[Row]]:
        """The rows of a SELECT in chunks, from a cursor of its own (never all in memory)."""

    @abstractmethod
    def close(self) -> None:
        """Release the store's resources; closing twice is harmless."""

    # --- reads shared by every backend ----------------------------------------------------

    def count(self, dataset: str) -> int:
        """The number of rows in `dataset`."""
        ds = get_dataset(dataset)
        ((result,),) = self._read(f"SELECT COUNT(*) FROM {ds.name}", ())
        return int(result)

    def fetch(
        self,
        dataset: str,
        where: Mapping[str, Any] | None = None,
        order_by: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Rows of `dataset` as stored, filtered by column equality (None: IS NULL).

        `order_by` lists columns, each optionally followed by ASC or DESC; the default is
        the natural key. `where` values may be given as in records (datetimes, maps) and
        are converted like them.
        """
        ds = get_dataset(dataset)
        clauses: list[str] = []
        params: list[Any] = []
        for name, value in (where or {}).items():
            column = ds.column(name)
            if value is None:
                clauses.append(f"{name} IS NULL")
            else:
                clauses.append(f"{name} = ?")
                params.append(column.convert(value))
        order = [_order_term(ds, term) for term in (order_by if order_by is not None else ds.key)]
        sql = f"SELECT {', '.join(ds.column_names)} FROM {ds.name}"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        if order:
            sql += " ORDER BY " + ", ".join(order)
        names = ds.column_names
        return [dict(zip(names, row, strict=True)) for row in self._read(sql, params)]

    def records(self, query: RecordQuery) -> list[Row]:
        """The rows of one page of `query`, in column order."""
        sql, params = select_sql(query, self.backend)
        return self._read(sql, params)

    def stream(self, query: RecordQuery, chunk_rows: int = 2000) -> Iterator[list[Row]]:
        """Every row of `query` in chunks of at most `chunk_rows`, read from a server-side
        cursor (PostgreSQL) or a cursor of its own connection (SQLite): memory stays flat
        however large the result. Close the iterator when you stop early."""
        sql, params = select_sql(query, self.backend)
        return self._iterate(sql, params, chunk_rows)

    def latest(self, dataset: str, group: str, time: str) -> list[Row]:
        """The newest row (by `time`) of each value of `group`, e.g. each station's latest
        hour; ordered by `group`."""
        return self._read(latest_sql(get_dataset(dataset), group, time), ())

    def statuses(self) -> dict[str, DatasetStatus]:
        """`DatasetStatus` of every dataset (all None for one never written)."""
        known = {
            row[0]: DatasetStatus(*row[1:])
            for row in self._read(
                "SELECT dataset, modified, first_time, last_time FROM dataset_status", ()
            )
        }
        empty = DatasetStatus(None, None, None)
        return {name: known.get(name, empty) for name in DATASETS}

    def migrated_at(self) -> str:
        """When the newest schema step was applied (UTC ISO 8601)."""
        ((applied,),) = self._read("SELECT MAX(applied_at) FROM schema_version", ())
        return str(applied)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


# --- shared pieces of every backend -------------------------------------------------------


def rows_of(batches: Mapping[str, Sequence[Record]]) -> dict[str, list[Row]]:
    """Each dataset's records as rows; converts them all first, so an invalid record
    fails the whole batch before anything is written."""
    rows: dict[str, list[Row]] = {}
    for name, records in batches.items():
        to_row = get_dataset(name).to_row
        rows[name] = [to_row(record) for record in records]
    return rows


def _batches(rows: Mapping[str, Sequence[Row]]) -> list[tuple[Dataset, list[Row]]]:
    """(dataset, rows, one per natural key) for every non-empty batch, in `DATASETS`
    order."""
    for name in rows:
        get_dataset(name)
    latest = [(ds, ds.latest(rows.get(name, ()))) for name, ds in DATASETS.items()]
    return [(ds, kept) for ds, kept in latest if kept]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _status_rows(converted: Sequence[tuple[Dataset, list[Row]]]) -> list[Row]:
    """(dataset, modified, first_time, last_time) of each dataset a batch writes."""
    now = _now()
    result = []
    for ds, rows in converted:
        first = last = None
        if ds.time_column is not None:
            at = ds.column_names.index(ds.time_column)
            times = [row[at] for row in rows if row[at] is not None]
            if times:
                first, last = min(times), max(times)
        result.append((ds.name, now, first, last))
    return result


STATUS_UPSERT = (
    "INSERT INTO dataset_status (dataset, modified, first_time, last_time) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (dataset) DO UPDATE SET modified = excluded.modified, "
    "first_time = CASE WHEN dataset_status.first_time IS NULL "
    "OR excluded.first_time < dataset_status.first_time "
    "THEN excluded.first_time ELSE dataset_status.first_time END, "
    "last_time = CASE WHEN dataset_status.last_time IS NULL "
    "OR excluded.last_time > dataset_status.last_time "
    "THEN excluded.last_time ELSE dataset_status.last_time END"
)


def upsert_sql(ds: Dataset, source: str | None = None) -> str:
    """INSERT ... ON CONFLICT DO UPDATE of `ds`, from ``?`` values or from a `source`
    SELECT; with a revision column, a stored row is replaced only by one as new."""
    names = ds.column_names
    updates = ", ".join(f"{name} = excluded.{name}" for name in names if name not in ds.key)
    values = source if source is not None else f"VALUES ({', '.join('?' for _ in names)})"
    sql = (
        f"INSERT INTO {ds.name} ({', '.join(names)}) {values} "
        f"ON CONFLICT ({', '.join(ds.key)}) DO UPDATE SET {updates}"
    )
    if ds.revision:
        sql += f" WHERE excluded.{ds.revision} >= {ds.name}.{ds.revision}"
    return sql


def _order_term(ds: Dataset, term: str) -> str:
    """A checked ``column`` or ``column ASC|DESC`` term for ORDER BY."""
    name, _, direction = term.strip().partition(" ")
    ds.column(name)
    direction = direction.strip().upper()
    if direction not in ("", "ASC", "DESC"):
        msg = f"order term {term!r} is not 'column', 'column ASC' or 'column DESC'"
        raise StoreError(msg)
    return f"{name} {direction}".strip()


def newer_schema_error(where: str, current: int) -> StoreError:
    msg = (
        f"store {where} has schema version {current}, newer than this code knows "
        f"({_migrations.schema_version()}); upgrade civicstream"
    )
    return StoreError(msg)


# --- SQLite -------------------------------------------------------------------------------


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT; ROLLBACK when the body or the COMMIT itself fails."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


BUSY_TIMEOUT_SECONDS = 30.0
"""How long a SQLite connection waits for another one's lock before it gives up."""


def _enable_wal(db: sqlite3.Connection, timeout_s: float) -> None:
    """Switch the file to the WAL journal, waiting for other connections like a write does.

    SQLite does not call the busy handler for this switch: a process opening a fresh
    store while another one creates it got "database is locked" at once (one run in 40 of
    four opens at a time). So the switch is retried until `timeout_s` has passed.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


class SQLiteStore(Store):
    """The SQLite backend: WAL journal, ``synchronous=FULL`` (a commit survives power loss).

    One writing connection, guarded by a lock, so the store may be created in one thread
    and used in another. Reads of a file store use one read-only connection per thread
    (WAL lets them run beside the writer and each other); an export has a connection of
    its own. Readers in other processes see only committed batches.

    `read_only` (the API): no writing connection at all, the file opened read-only
    (``mode=ro``), nothing created or migrated; until a writer has created the store,
    reads raise StoreError.
    """

    backend: Backend = "sqlite"

    def __init__(self, path: str, *, read_only: bool = False) -> None:
        self._path = path
        self.read_only = read_only and path != ":memory:"
        self._closed = False
        self._lock = threading.Lock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._db: sqlite3.Connection | None = None
        self._upserts = {ds.name: upsert_sql(ds) for ds in DATASETS.values()}
        if self.read_only:
            self._refuse_newer_schema()
            return
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_SECONDS
            )
            _enable_wal(self._db, BUSY_TIMEOUT_SECONDS)
            self._db.execute("PRAGMA synchronous = FULL")
            self._migrate()
        except sqlite3.Error as error:
            self.close()
            msg = f"cannot open SQLite store {path!r}: {error}"
            raise StoreError(msg) from error

    @property
    def path(self) -> str:
        return self._path

    def _refuse_newer_schema(self) -> None:
        """A read-only store migrates nothing, but must not misread a newer schema."""
        try:
            rows = self._read("SELECT COALESCE(MAX(version), 0) FROM schema_version", ())
        except StoreError:
            return  # no store or no schema yet: a writer creates it, reads fail until then
        if rows[0][0] > _migrations.schema_version():
            self.close()
            raise newer_schema_error(repr(self._path), rows[0][0])

    def _check_open(self) -> None:
        if self._closed:
            msg = f"SQLite store {self._path!r} is closed"
            raise StoreError(msg)

    def _conn(self) -> sqlite3.Connection:
        self._check_open()
        if self._db is None:
            msg = f"SQLite store {self._path!r} is opened read-only"
            raise StoreError(msg)
        return self._db

    def _migrate(self) -> None:
        db = self._conn()
        with _transaction(db):
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                "version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
            )
            (current,) = db.execute(
                "SELECT COALESCE(MAX(version), 0) FROM schema_version"
            ).fetchone()
            if current > _migrations.schema_version():
                raise newer_schema_error(repr(self._path), current)
            for version, operations in _migrations.MIGRATIONS:
                if version <= current:
                    continue
                for operation in operations:
                    for statement in render(operation, "sqlite"):
                        db.execute(statement)
                db.execute(
                    "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                    (version, _now()),
                )

    def write_rows(self, rows: Mapping[str, Sequence[Row]]) -> None:
        converted = _batches(rows)
        if not converted:
            return
        statuses = _status_rows(converted)
        with self._lock:
            db = self._conn()
            try:
                with _transaction(db):
                    for ds, values in converted:
                        db.executemany(self._upserts[ds.name], values)
                    db.executemany(STATUS_UPSERT, statuses)
            except sqlite3.Error as error:
                msg = f"batch not written to {self._path!r} (rolled back): {error}"
                raise StoreError(msg) from error

    # --- reads ----------------------------------------------------------------------------

    def _connect_reader(self) -> sqlite3.Connection:
        if self.read_only:  # never creates the file: a writer does
            uri = f"file:{quote(self._path)}?mode=ro"
            reader = sqlite3.connect(
                uri, uri=True, isolation_level=None, check_same_thread=False, timeout=30.0
            )
        else:
            reader = sqlite3.connect(
                self._path, isolation_level=None, check_same_thread=False, timeout=30.0
            )
        reader.execute("PRAGMA query_only = ON")
        return reader

    def _reader(self) -> sqlite3.Connection:
        """This thread's read connection (the writer's for an in-memory store)."""
        self._check_open()
        reader: sqlite3.Connection | None = getattr(self._local, "reader", None)
        if reader is None:
            reader = self._connect_reader()
            with self._lock:
                self._readers.append(reader)
            self._local.reader = reader
        return reader

    def _read(self, sql: str, params: Sequence[Any]) -> list[Row]:
        try:
            if self._path == ":memory:":
                with self._lock:
                    return self._conn().execute(sql, params).fetchall()
            return self._reader().execute(sql, params).fetchall()
        except sqlite3.Error as error:
            msg = f"read from {self._path!r} failed: {error}"
            raise StoreError(msg) from error

    def _iterate(self, sql: str, params: Sequence[Any], chunk_rows: int) -> Iterator[list[Row]]:
        if self._path == ":memory:":  # one connection: take a snapshot under the lock
            rows = self._read(sql, params)
            for start in range(0, len(rows), chunk_rows):
                yield rows[start : start + chunk_rows]
            return
        self._check_open()
        try:
            reader = self._connect_reader()
        except sqlite3.Error as error:
            msg = f"read from {self._path!r} failed: {error}"
            raise StoreError(msg) from error
        try:
            # One read transaction: the export is a consistent snapshot.
            reader.execute("BEGIN")
            cursor = reader.execute(sql, params)
            while chunk := cursor.fetchmany(chunk_rows):
                yield chunk
        except sqlite3.Error as error:
            msg = f"read from {self._path!r} failed: {error}"
            raise StoreError(msg) from error
        finally:
            reader.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for reader in self._readers:
                reader.close()
            self._readers.clear()
            if self._db is not None:
                self._db.close()
                self._db = None


# --- opening ------------------------------------------------------------------------------


def _open_sqlite(rest: str, read_only: bool) -> Store:
    if not rest:
        msg = "sqlite URL without a path; use sqlite:///path/to/file.db or sqlite:///:memory:"
        raise UnsupportedStoreURL(msg)
    if "?" in rest:
        msg = f"sqlite URL options are not supported: {rest!r}"
        raise UnsupportedStoreURL(msg)
    return SQLiteStore(rest, read_only=read_only)


def _open_postgresql(rest: str, read_only: bool) -> Store:
    from sinks._postgres import PostgreSQLStore

    return PostgreSQLStore("postgresql://" + rest, read_only=read_only)


# scheme -> opener of the part after "scheme:///" (sqlite) or "scheme://" (others)
_BACKENDS: dict[str, tuple[str, Callable[[str, bool], Store]]] = {
    "sqlite": ("sqlite:///", _open_sqlite),
    "postgresql": ("postgresql://", _open_postgresql),
    "postgres": ("postgres://", _open_postgresql),
}


def open_store(url: str, *, read_only: bool = False) -> Store:
    """Open (creating and migrating as needed) the store at `url`.

    `read_only` (the API, which may log in as a database user that can only read):
    nothing is created or migrated and every connection is read-only; a store that no
    writer has created yet answers reads with StoreError until one has. A schema newer
    than this code is refused either way.

    ``sqlite:///data/civicstream.db`` is relative to the working directory;
    ``sqlite:////var/lib/civicstream.db`` is absolute; ``sqlite:///:memory:`` is private
    to the returned object; ``postgresql://user:password@host:5432/dbname`` is a
    PostgreSQL database (the schema is created in it on first use). Raises
    `UnsupportedStoreURL` for other forms.
    """
    scheme, separator, _ = url.partition("://")
    backend = _BACKENDS.get(scheme.lower()) if separator else None
    if backend is None:
        msg = (
            f"unsupported store URL {url!r}; expected one of "
            "sqlite:///relative/path.db, sqlite:////absolute/path.db, sqlite:///:memory:, "
            "postgresql://user@host:port/dbname"
        )
        raise UnsupportedStoreURL(msg)
    prefix, opener = backend
    if not url.lower().startswith(prefix):
        msg = f"malformed {scheme} store URL {url!r}; expected {prefix}..."
        raise UnsupportedStoreURL(msg)
    return opener(url[len(prefix) :], read_only)
