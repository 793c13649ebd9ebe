"""Versioned schema migrations, written once for every backend.

A step is a version number and a tuple of operations. The operations are data
(`CreateTable`, `AddColumn`, `CreateIndex`), rendered into each backend's SQL by `render`,
so adding a dataset is ONE step that both SQLite and PostgreSQL apply; `Sql` carries
backend-specific text for what the operations cannot say. Every backend applies the steps
above its recorded version, in order, each in the same transaction as its
``schema_version`` row.

Rules:

- Never edit a released step: add one. A step's column list is a frozen copy, written out,
  not taken from the live `Dataset` (a later column added to the dataset is a later
  `AddColumn` step; a test checks that the steps together give every dataset's columns).
- Column kinds map to types that read back exactly what `Dataset.to_row` wrote, on every
  backend: times and JSON are text (PostgreSQL: ``COLLATE "C"``, so text sorts byte-wise
  as in SQLite), integers 64-bit, reals IEEE doubles. A new `Kind` needs an entry in both
  type tables below, and must read back identically (e.g. a boolean kept as 0/1 INTEGER
  in both, since PostgreSQL's BOOLEAN would read back as True/False).

Porting a SQLite-only step (``CREATE TABLE aqi_daily (...)`` written as SQL) to here::

    (3, (
        CreateTable("aqi_daily", columns=AQI_DAILY_COLUMNS_AS_RELEASED,
                    key=("station_id", "day")),
        CreateIndex("aqi_daily_day", "aqi_daily", ("day", "station_id")),
    )),

where the columns are a literal copy of the dataset's `Column(...)` list at that step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from sinks._datasets import Column, Kind

__all__ = [
    "MIGRATIONS",
    "AddColumn",
    "Backend",
    "CreateIndex",
    "CreateTable",
    "Operation",
    "Sql",
    "render",
    "schema_version",
]

Backend = Literal["sqlite", "postgresql"]


@dataclass(frozen=True)
class CreateTable:
    """A table with these columns (NOT NULL unless nullable) and this primary key."""

    table: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]


@dataclass(frozen=True)
class AddColumn:
    """A new column of an existing table; it must be nullable (old rows get NULL)."""

    table: str
    column: Column


@dataclass(frozen=True)
class CreateIndex:
    name: str
    table: str
    columns: tuple[str, ...]


@dataclass(frozen=True)
class Sql:
    """Statements per backend, for what the operations above cannot say."""

    sqlite: tuple[str, ...]
    postgresql: tuple[str, ...]


Operation = CreateTable | AddColumn | CreateIndex | Sql

_TYPES: Mapping[Backend, Mapping[Kind, str]] = {
    "sqlite": {
        "text": "TEXT",
        "int": "INTEGER",
        "real": "REAL",
        "hour": "TEXT",
        "millis": "TEXT",
        "date": "TEXT",
        "json": "TEXT",
        "bool": "INTEGER",
    },
    "postgresql": {
        "text": 'TEXT COLLATE "C"',
        "int": "BIGINT",
        "real": "DOUBLE PRECISION",
        "hour": 'TEXT COLLATE "C"',
        "millis": 'TEXT COLLATE "C"',
        "date": 'TEXT COLLATE "C"',
        "json": 'TEXT COLLATE "C"',
        "bool": "BIGINT",
    },
}


def _column_sql(column: Column, backend: Backend) -> str:
    try:
        sql_type = _TYPES[backend][column.kind]
    except KeyError:
        msg = f"column kind {column.kind!r} has no {backend} type in sinks._migrations"
        raise ValueError(msg) from None
    return f"{column.name} {sql_type}" + ("" if column.nullable else " NOT NULL")


def render(operation: Operation, backend: Backend) -> tuple[str, ...]:
    """The SQL statements of `operation` on `backend`."""
    if isinstance(operation, CreateTable):
        lines = [_column_sql(column, backend) for column in operation.columns]
        lines.append(f"PRIMARY KEY ({', '.join(operation.key)})")
        body = ",\n    ".join(lines)
        return (f"CREATE TABLE {operation.table} (\n    {body}\n)",)
    if isinstance(operation, AddColumn):
        if not operation.column.nullable:
            msg = f"AddColumn {operation.table}.{operation.column.name} must be nullable"
            raise ValueError(msg)
        column = _column_sql(operation.column, backend)
        return (f"ALTER TABLE {operation.table} ADD COLUMN {column}",)
    if isinstance(operation, CreateIndex):
        columns = ", ".join(operation.columns)
        return (f"CREATE INDEX {operation.name} ON {operation.table} ({columns})",)
    return operation.sqlite if backend == "sqlite" else operation.postgresql


def _backfill_status(table: str, time_column: str) -> str:
    """A status row for data stored before the status table existed."""
    return (
        "INSERT INTO dataset_status (dataset, modified, first_time, last_time) "
        f"SELECT '{table}', NULL, (SELECT MIN({time_column}) FROM {table}), "
        f"(SELECT MAX({time_column}) FROM {table}) "
        f"WHERE EXISTS (SELECT 1 FROM {table})"
    )


# Applied in order, each once, recorded in schema_version. Never edit a released step: add one.
MIGRATIONS: tuple[tuple[int, tuple[Operation, ...]], ...] = (
    (
        1,
        (
            CreateTable(
                "aqi_hourly",
                columns=(
                    Column("station_id", "text"),
                    Column("hour_start", "hour"),
                    Column("aqi", "int", nullable=True),
                    Column("category", "text", nullable=True),
                    Column("main_pollutant", "text", nullable=True),
                    Column("sub_indices", "json"),
                    Column("concentrations", "json"),
                    Column("hourly_means", "json"),
                    Column("reading_count", "int"),
                    Column("reason", "text", nullable=True),
                    Column("aqi_version", "text"),
                ),
                key=("station_id", "hour_start"),
            ),
            CreateTable(
                "readings",
                columns=(
                    Column("station_id", "text"),
                    Column("pollutant", "text"),
                    Column("ts", "millis"),
                    Column("hour_start", "hour"),
                    Column("sensor_id", "text", nullable=True),
                    Column("value", "real"),
                    Column("unit", "text"),
                    Column("value_epa", "real"),
                    Column("unit_epa", "text"),
                    Column("mean_1h", "real", nullable=True),
                    Column("mean_8h", "real", nullable=True),
                    Column("mean_24h", "real", nullable=True),
                    Column("lat", "real", nullable=True),
                    Column("lon", "real", nullable=True),
                    Column("flags", "json"),
                    Column("anomaly_score", "real", nullable=True),
                ),
                key=("station_id", "pollutant", "ts"),
            ),
            CreateIndex("readings_hour", "readings", ("hour_start", "station_id")),
        ),
    ),
    (
        2,
        (
            # Per dataset: when a batch last changed it (wall clock, UTC) and the span of its
            # time column, kept by write_batch in the batch's transaction. The catalog's
            # `modified` and `temporal` come from here without scanning the tables.
            CreateTable(
                "dataset_status",
                columns=(
                    Column("dataset", "text"),
                    Column("modified", "text", nullable=True),
                    Column("first_time", "text", nullable=True),
                    Column("last_time", "text", nullable=True),
                ),
                key=("dataset",),
            ),
            Sql(
                sqlite=(
                    _backfill_status("aqi_hourly", "hour_start"),
                    _backfill_status("readings", "ts"),
                ),
                postgresql=(
                    _backfill_status("aqi_hourly", "hour_start"),
                    _backfill_status("readings", "ts"),
                ),
            ),
        ),
    ),
    (
        3,
        (
            # The daily AQI: one row per station and local standard-time day, the highest
            # revision kept; health messages on hourly rows, the correction model
            # (PurpleAir) on readings. Added columns are nullable: old rows stay valid.
            CreateTable(
                "aqi_daily",
                columns=(
                    Column("station_id", "text"),
                    Column("day", "date"),
                    Column("day_start", "hour"),
                    Column("utc_offset_minutes", "int"),
                    Column("revision", "int"),
                    Column("aqi", "int", nullable=True),
                    Column("category", "text", nullable=True),
                    Column("main_pollutant", "text", nullable=True),
                    Column("sub_indices", "json"),
                    Column("concentrations", "json"),
                    Column("completeness", "json"),
                    Column("reasons", "json"),
                    Column("reason", "text", nullable=True),
                    Column("health_message", "text", nullable=True),
                    Column("aqi_version", "text"),
                ),
                key=("station_id", "day"),
            ),
            CreateIndex("aqi_daily_day", "aqi_daily", ("day", "station_id")),
            AddColumn("aqi_hourly", Column("health_message", "text", nullable=True)),
            AddColumn("readings", Column("correction", "text", nullable=True)),
        ),
    ),
    (
        4,
        (
            # Incidents, privacy-safe, one row per incident; daily counts per district,
            # category and local day. Both keep the highest revision. Booleans are 0/1.
            CreateTable(
                "incidents",
                columns=(
                    Column("incident_id", "text"),
                    Column("source", "text"),
                    Column("revision", "int"),
                    Column("category", "text"),
                    Column("source_category", "text", nullable=True),
                    Column("source_subcategory", "text", nullable=True),
                    Column("description", "text", nullable=True),
                    Column("offence_codes", "json"),
                    Column("source_categories", "json"),
                    Column("occurred_at", "millis"),
                    Column("day", "text"),
                    Column("reported_at", "millis", nullable=True),
                    Column("district", "text"),
                    Column("address", "text", nullable=True),
                    Column("lat", "real", nullable=True),
                    Column("lon", "real", nullable=True),
                    Column("location_withheld", "bool"),
                    Column("status", "text", nullable=True),
                ),
                key=("incident_id",),
            ),
            CreateIndex("incidents_day", "incidents", ("day", "district")),
            CreateTable(
                "incident_counts",
                columns=(
                    Column("district", "text"),
                    Column("category", "text"),
                    Column("day", "text"),
                    Column("count", "int", nullable=True),
                    Column("suppressed", "bool"),
                    Column("baseline", "real", nullable=True),
                    Column("baseline_days", "int"),
                    Column("spike", "bool"),
                    Column("tail_probability", "real", nullable=True),
                    Column("revision", "int"),
                    Column("as_of", "millis"),
                ),
                key=("district", "category", "day"),
            ),
            CreateIndex("incident_counts_day", "incident_counts", ("day", "district")),
        ),
    ),
    (
        5,
        (
            # Anomaly events (one row per flag of a reading, or a stale sensor) and, on
            # hourly AQI rows, the readings the detector kept out of the means (nullable:
            # rows published before it was counted stay valid).
            CreateTable(
                "anomalies",
                columns=(
                    Column("station_id", "text"),
                    Column("pollutant", "text"),
                    Column("ts", "millis"),
                    Column("kind", "text"),
                    Column("sensor_id", "text", nullable=True),
                    Column("score", "real", nullable=True),
                    Column("value", "real", nullable=True),
                    Column("unit", "text"),
                    Column("expected_low", "real", nullable=True),
                    Column("expected_high", "real", nullable=True),
                    Column("detail", "text"),
                ),
                key=("station_id", "pollutant", "ts", "kind"),
            ),
            CreateIndex("anomalies_ts", "anomalies", ("ts", "station_id")),
            AddColumn("aqi_hourly", Column("excluded_count", "int", nullable=True)),
        ),
    ),
)


def schema_version() -> int:
    """The version the steps lead to (read at call time, so tests may add steps)."""
    return MIGRATIONS[-1][0]
