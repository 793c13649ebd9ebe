"""The open-data store: datasets upserted by natural key, one transaction per batch.

`open_store(url)` picks the backend from the URL scheme:

- ``sqlite:///relative/path.db`` (relative to the working directory),
  ``sqlite:////absolute/path.db``, ``sqlite:///:memory:`` (tests);
- ``postgresql://...`` is reserved for the PostgreSQL backend (not written yet).

Every backend implements `Store`; rows are made by `sinks._datasets`, so all backends store
the same text for the same record. Upserts by natural key make every write idempotent:
writing a batch twice leaves the same rows as writing it once.
"""

from __future__ import annotations

import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from sinks._datasets import DATASETS, Dataset, get_dataset
from sinks.exceptions import StoreError, UnsupportedStoreURL

__all__ = ["SQLiteStore", "Store", "default_store_url", "open_store"]

Record = Mapping[str, Any]


def default_store_url() -> str:
    """The store used when neither ``--store`` nor ``CIVIC_STORE_URL`` names one."""
    return "sqlite:///data/civicstream.db"


class Store(ABC):
    """An open-data store backend: a few datasets, written in batches, read simply."""

    @property
    def datasets(self) -> tuple[str, ...]:
        """The names of the datasets this store holds."""
        return tuple(DATASETS)

    @abstractmethod
    def write_batch(self, batches: Mapping[str, Sequence[Record]]) -> None:
        """Upsert decoded records into their datasets (by name), all in ONE transaction.

        Within the batch, a later record for a natural key replaces an earlier one (for a
        dataset with a revision column, the one with the highest revision wins, and a
        stored row is only replaced by an equal or higher revision). When this returns,
        the transaction is durable; when it raises, nothing was written.
        Raises `sinks.exceptions.InvalidRecord` (before any write) or `StoreError`.
        """

    @abstractmethod
    def count(self, dataset: str) -> int:
        """The number of rows in `dataset`."""

    @abstractmethod
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

    @abstractmethod
    def close(self) -> None:
        """Release the store's resources; closing twice is harmless."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _batches(batches: Mapping[str, Sequence[Record]]) -> list[tuple[Dataset, list[Any]]]:
    """(dataset, rows) for every non-empty batch, in `DATASETS` order; converts first, so
    an invalid record fails the whole batch before anything is written."""
    for name in batches:
        get_dataset(name)
    converted = [(ds, ds.rows(batches.get(name, ()))) for name, ds in DATASETS.items()]
    return [(ds, rows) for ds, rows in converted if rows]


def _order_term(ds: Dataset, term: str) -> str:
    """A checked ``column`` or ``column ASC|DESC`` term for ORDER BY."""
    name, _, direction = term.strip().partition(" ")
    ds.column(name)
    direction = direction.strip().upper()
    if direction not in ("", "ASC", "DESC"):
        msg = f"order term {term!r} is not 'column', 'column ASC' or 'column DESC'"
        raise StoreError(msg)
    return f"{name} {direction}".strip()


# --- SQLite -------------------------------------------------------------------------------

# Applied in order, each once, recorded in schema_version. Never edit a released step: add one.
_SQLITE_MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            """
            CREATE TABLE aqi_hourly (
                station_id     TEXT    NOT NULL,
                hour_start     TEXT    NOT NULL,
                aqi            INTEGER,
                category       TEXT,
                main_pollutant TEXT,
                sub_indices    TEXT    NOT NULL,
                concentrations TEXT    NOT NULL,
                hourly_means   TEXT    NOT NULL,
                reading_count  INTEGER NOT NULL,
                reason         TEXT,
                aqi_version    TEXT    NOT NULL,
                PRIMARY KEY (station_id, hour_start)
            )
            """,
            """
            CREATE TABLE readings (
                station_id    TEXT NOT NULL,
                pollutant     TEXT NOT NULL,
                ts            TEXT NOT NULL,
                hour_start    TEXT NOT NULL,
                sensor_id     TEXT,
                value         REAL NOT NULL,
                unit          TEXT NOT NULL,
                value_epa     REAL NOT NULL,
                unit_epa      TEXT NOT NULL,
                mean_1h       REAL,
                mean_8h       REAL,
                mean_24h      REAL,
                lat           REAL,
                lon           REAL,
                flags         TEXT NOT NULL,
                anomaly_score REAL,
                PRIMARY KEY (station_id, pollutant, ts)
            )
            """,
            "CREATE INDEX readings_hour ON readings (hour_start, station_id)",
        ),
    ),
)

SQLITE_SCHEMA_VERSION = _SQLITE_MIGRATIONS[-1][0]


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


def _upsert_sql(ds: Dataset) -> str:
    names = ds.column_names
    updates = ", ".join(f"{name} = excluded.{name}" for name in names if name not in ds.key)
    sql = (
        f"INSERT INTO {ds.name} ({', '.join(names)}) "
        f"VALUES ({', '.join('?' for _ in names)}) "
        f"ON CONFLICT ({', '.join(ds.key)}) DO UPDATE SET {updates}"
    )
    if ds.revision:
        sql += f" WHERE excluded.{ds.revision} >= {ds.name}.{ds.revision}"
    return sql


class SQLiteStore(Store):
    """The SQLite backend: WAL journal, ``synchronous=FULL`` (a commit survives power loss).

    One connection, guarded by a lock, so the store may be created in one thread and used
    in another. Readers in other processes see only committed batches.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db: sqlite3.Connection | None = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=30.0
            )
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = FULL")
            self._migrate()
        except sqlite3.Error as error:
            self.close()
            msg = f"cannot open SQLite store {path!r}: {error}"
            raise StoreError(msg) from error
        self._upserts = {ds.name: _upsert_sql(ds) for ds in DATASETS.values()}

    @property
    def path(self) -> str:
        return self._path

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            msg = f"SQLite store {self._path!r} is closed"
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
            if current > SQLITE_SCHEMA_VERSION:
                msg = (
                    f"store {self._path!r} has schema version {current}, newer than this "
                    f"code knows ({SQLITE_SCHEMA_VERSION}); upgrade civicstream"
                )
                raise StoreError(msg)
            for version, statements in _SQLITE_MIGRATIONS:
                if version <= current:
                    continue
                for statement in statements:
                    db.execute(statement)
                db.execute(
                    "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                    (version, datetime.now(UTC).isoformat(timespec="seconds")),
                )

    def write_batch(self, batches: Mapping[str, Sequence[Record]]) -> None:
        converted = _batches(batches)
        if not converted:
            return
        with self._lock:
            db = self._conn()
            try:
                with _transaction(db):
                    for ds, rows in converted:
                        db.executemany(self._upserts[ds.name], rows)
            except sqlite3.Error as error:
                msg = f"batch not written to {self._path!r} (rolled back): {error}"
                raise StoreError(msg) from error

    def count(self, dataset: str) -> int:
        ds = get_dataset(dataset)
        with self._lock:
            (result,) = self._conn().execute(f"SELECT COUNT(*) FROM {ds.name}").fetchone()
        return int(result)

    def fetch(
        self,
        dataset: str,
        where: Mapping[str, Any] | None = None,
        order_by: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
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
        with self._lock:
            cursor = self._conn().execute(sql, params)
            names = [description[0] for description in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


# --- opening ------------------------------------------------------------------------------


def _open_sqlite(rest: str) -> Store:
    if not rest:
        msg = "sqlite URL without a path; use sqlite:///path/to/file.db or sqlite:///:memory:"
        raise UnsupportedStoreURL(msg)
    if "?" in rest:
        msg = f"sqlite URL options are not supported: {rest!r}"
        raise UnsupportedStoreURL(msg)
    return SQLiteStore(rest)


def _open_postgresql(rest: str) -> Store:
    msg = "the PostgreSQL store is not implemented yet; use a sqlite:/// URL"
    raise UnsupportedStoreURL(msg)


# scheme -> opener of the part after "scheme:///" (sqlite) or "scheme://" (others)
_BACKENDS: dict[str, tuple[str, Callable[[str], Store]]] = {
    "sqlite": ("sqlite:///", _open_sqlite),
    "postgresql": ("postgresql://", _open_postgresql),
    "postgres": ("postgres://", _open_postgresql),
}


def open_store(url: str) -> Store:
    """Open (creating and migrating as needed) the store at `url`.

    ``sqlite:///data/civicstream.db`` is relative to the working directory;
    ``sqlite:////var/lib/civicstream.db`` is absolute; ``sqlite:///:memory:`` is private
    to the returned object. Raises `UnsupportedStoreURL` for other forms.
    """
    scheme, separator, _ = url.partition("://")
    backend = _BACKENDS.get(scheme.lower()) if separator else None
    if backend is None:
        msg = (
            f"unsupported store URL {url!r}; expected one of "
            "sqlite:///relative/path.db, sqlite:////absolute/path.db, sqlite:///:memory:"
        )
        raise UnsupportedStoreURL(msg)
    prefix, opener = backend
    if not url.lower().startswith(prefix):
        msg = f"malformed {scheme} store URL {url!r}; expected {prefix}..."
        raise UnsupportedStoreURL(msg)
    return opener(url[len(prefix) :])
