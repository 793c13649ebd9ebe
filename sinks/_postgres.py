"""The PostgreSQL backend of the open-data store (psycopg 3).

Same schema (`sinks._migrations`, rendered for PostgreSQL), same rows, same queries as
SQLite; see `sinks.store`. Writes: one transaction per batch on one connection; a
dataset's rows go in with a pipelined ``executemany`` of INSERT ... ON CONFLICT, or, from
`copy_threshold` rows on, with ``COPY`` into a temporary staging table and one
INSERT ... SELECT ... ON CONFLICT (``bench/store.py`` measures both). Reads: one
autocommit connection per thread; an export runs on a connection of its own inside a
REPEATABLE READ, READ ONLY transaction with a server-side cursor, fetched in chunks.

Migrations take a transaction-scoped advisory lock, so processes that open the same
database at once (a sink and the API) apply each step exactly once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import psycopg

from sinks import _migrations
from sinks._datasets import DATASETS, Dataset
from sinks._migrations import Backend, render
from sinks.exceptions import StoreError
from sinks.store import (
    STATUS_UPSERT,
    Row,
    Store,
    _batches,
    _now,
    _status_rows,
    newer_schema_error,
    redacted_url,
    upsert_sql,
)

__all__ = ["DEFAULT_COPY_THRESHOLD", "PostgreSQLStore"]

DEFAULT_COPY_THRESHOLD = 1000
"""Rows of one dataset in one batch from which COPY beats executemany (bench/store.py)."""

_MIGRATION_LOCK = 0x63697669  # "civi": pg_advisory_xact_lock key of schema migrations


def _pg(sql: str) -> str:
    """``?`` placeholders (the shared SQL) as psycopg's ``%s``."""
    return sql.replace("%", "%%").replace("?", "%s")


def _redacted(url: str) -> str:
    return redacted_url(url)


class PostgreSQLStore(Store):
    """The PostgreSQL backend; `url` is a libpq URI (``postgresql://user@host:port/db``).

    `read_only` (the API): nothing is created or migrated, and every session runs with
    ``default_transaction_read_only``, so the API works as a database user that may only
    SELECT and could not write even with a writer's password.
    """

    backend: Backend = "postgresql"

    def __init__(
        self, url: str, *, copy_threshold: int = DEFAULT_COPY_THRESHOLD, read_only: bool = False
    ) -> None:
        self._url = url
        self.read_only = read_only
        self._name = _redacted(url)
        self.copy_threshold = copy_threshold
        self._lock = threading.Lock()
        self._local = threading.local()
        self._readers: list[psycopg.Connection[Any]] = []
        self._staged: set[str] = set()
        self._closed = False
        self._db: psycopg.Connection[Any] | None = None
        try:
            self._db = self._connect()
            if read_only:
                self._refuse_newer_schema(self._db)
            else:
                self._migrate(self._db)
        except psycopg.Error as error:
            self.close()
            msg = f"cannot open PostgreSQL store {self._name}: {error}"
            raise StoreError(msg) from error
        except StoreError:
            self.close()
            raise
        self._upserts = {ds.name: _pg(upsert_sql(ds)) for ds in DATASETS.values()}
        self._status_upsert = _pg(STATUS_UPSERT)

    @property
    def url(self) -> str:
        """The store's URL with any password masked."""
        return self._name

    def _connect(self) -> psycopg.Connection[Any]:
        if self.read_only:  # every transaction of the session read-only, whatever the user
            return psycopg.connect(
                self._url,
                autocommit=True,
                connect_timeout=10,
                options="-c default_transaction_read_only=on",
            )
        return psycopg.connect(self._url, autocommit=True, connect_timeout=10)

    def _refuse_newer_schema(self, db: psycopg.Connection[Any]) -> None:
        """A read-only store migrates nothing, but must not misread a newer schema."""
        exists = db.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
        if not exists or not exists[0]:
            return  # no schema yet: a writer creates it, reads fail until then
        row = db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
        if row and int(row[0]) > _migrations.schema_version():
            raise newer_schema_error(self._name, int(row[0]))

    def _writer(self) -> psycopg.Connection[Any]:
        """The writing connection, reconnected when the old one broke (server restart)."""
        if self._closed:
            msg = f"PostgreSQL store {self._name} is closed"
            raise StoreError(msg)
        if self._db is None or self._db.broken or self._db.closed:
            if self._db is not None:
                self._db.close()
            self._db = self._connect()
            self._staged.clear()
        return self._db

    def _migrate(self, db: psycopg.Connection[Any]) -> None:
        with db.transaction():
            db.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                "version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
            )
            row = db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
            current = int(row[0]) if row else 0
            if current > _migrations.schema_version():
                raise newer_schema_error(self._name, current)
            for version, operations in _migrations.MIGRATIONS:
                if version <= current:
                    continue
                for operation in operations:
                    for statement in render(operation, "postgresql"):
                        db.execute(statement)
                db.execute(
                    "INSERT INTO schema_version (version, applied_at) VALUES (%s, %s)",
                    (version, _now()),
                )

    # --- writes ---------------------------------------------------------------------------

    def write_rows(self, rows: Mapping[str, Sequence[Row]]) -> None:
        if self.read_only:
            msg = f"PostgreSQL store {self._name} is opened read-only"
            raise StoreError(msg)
        converted = _batches(rows)
        if not converted:
            return
        statuses = _status_rows(converted)
        with self._lock:
            try:
                db = self._writer()
                with db.transaction(), db.cursor() as cursor:
                    for ds, values in converted:
                        if len(values) >= self.copy_threshold:
                            self._copy_upsert(cursor, ds, values)
                        else:
                            cursor.executemany(self._upserts[ds.name], values)
                    cursor.executemany(self._status_upsert, statuses)
            except psycopg.Error as error:
                msg = f"batch not written to {self._name} (rolled back): {error}"
                raise StoreError(msg) from error

    def _copy_upsert(self, cursor: psycopg.Cursor[Any], ds: Dataset, rows: list[Row]) -> None:
        """COPY the rows into a temporary staging table, then upsert them in one statement."""
        stage = f"stage_{ds.name}"
        columns = ", ".join(ds.column_names)
        if stage not in self._staged:
            cursor.execute(
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {stage} (LIKE {ds.name}) "
                "ON COMMIT DELETE ROWS"
            )
            self._staged.add(stage)
        with cursor.copy(f"COPY {stage} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cursor.execute(upsert_sql(ds, source=f"SELECT {columns} FROM {stage}"))

    # --- reads ----------------------------------------------------------------------------

    def _reader(self) -> psycopg.Connection[Any]:
        if self._closed:
            msg = f"PostgreSQL store {self._name} is closed"
            raise StoreError(msg)
        reader: psycopg.Connection[Any] | None = getattr(self._local, "reader", None)
        if reader is None or reader.broken or reader.closed:
            reader = self._connect()
            with self._lock:
                self._readers.append(reader)
            self._local.reader = reader
        return reader

    def _read(self, sql: str, params: Sequence[Any]) -> list[Row]:
        try:
            return self._reader().execute(_pg(sql), params).fetchall()
        except psycopg.Error as error:
            msg = f"read from {self._name} failed: {error}"
            raise StoreError(msg) from error

    def _iterate(self, sql: str, params: Sequence[Any], chunk_rows: int) -> Iterator[list[Row]]:
        if self._closed:
            msg = f"PostgreSQL store {self._name} is closed"
            raise StoreError(msg)
        try:
            connection = psycopg.connect(self._url, connect_timeout=10)
        except psycopg.Error as error:
            msg = f"read from {self._name} failed: {error}"
            raise StoreError(msg) from error
        try:
            connection.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            connection.read_only = True
            with connection.cursor(name="civicstream_export") as cursor:
                cursor.itersize = chunk_rows
                cursor.execute(_pg(sql), params)
                while chunk := cursor.fetchmany(chunk_rows):
                    yield chunk
        except psycopg.Error as error:
            msg = f"read from {self._name} failed: {error}"
            raise StoreError(msg) from error
        finally:
            connection.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for reader in self._readers:
                reader.close()
            self._readers.clear()
            if self._db is not None:
                self._db.close()
                self._db = None
