"""The datasets of the open-data store, backend-neutral: columns, keys and serialisation.

A dataset row is derived from a decoded Avro record (as `schemas.decode` returns it) by one
deterministic function, so every backend stores the same text for the same record:

- timestamps become ISO 8601 UTC text: ``2026-01-01T02:00:00Z`` for hour starts, and
  ``2026-01-01T02:03:04.567Z`` (milliseconds) for event times; both sort as they read;
- maps and arrays become compact JSON with sorted keys, floats written as Python's ``repr``;
- non-finite floats and naive datetimes are refused (`InvalidRecord`), never stored.

``None`` passes through unchanged: the store's NOT NULL constraints decide about it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sinks.exceptions import InvalidRecord, StoreError

__all__ = ["AQI_HOURLY", "DATASETS", "READINGS", "Column", "Dataset", "get_dataset"]

Kind = Literal["text", "int", "real", "hour", "millis", "json"]


def _text(value: Any) -> str:
    if not isinstance(value, str):
        msg = f"expected a string, got {type(value).__name__}"
        raise InvalidRecord(msg)
    return value


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        msg = f"expected an integer, got {type(value).__name__}"
        raise InvalidRecord(msg)
    return value


def _real(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        msg = f"expected a number, got {type(value).__name__}"
        raise InvalidRecord(msg)
    result = float(value)
    if not math.isfinite(result):
        msg = f"expected a finite number, got {result!r}"
        raise InvalidRecord(msg)
    return result


def _utc(value: Any) -> datetime:
    if not isinstance(value, datetime):
        msg = f"expected a datetime, got {type(value).__name__}"
        raise InvalidRecord(msg)
    if value.tzinfo is None or value.utcoffset() is None:
        msg = f"naive datetime {value.isoformat()}: event time must carry a zone"
        raise InvalidRecord(msg)
    return value.astimezone(UTC).replace(tzinfo=None)


def _hour(value: Any) -> str:
    moment = _utc(value)
    if moment.microsecond:
        msg = f"hour start {moment.isoformat()}Z is not a whole second"
        raise InvalidRecord(msg)
    return moment.isoformat(timespec="seconds") + "Z"


def _millis(value: Any) -> str:
    return _utc(value).isoformat(timespec="milliseconds") + "Z"


def _json(value: Any) -> str:
    if not isinstance(value, Mapping | list | tuple):
        msg = f"expected a map or an array, got {type(value).__name__}"
        raise InvalidRecord(msg)
    try:
        return json.dumps(
            dict(value) if isinstance(value, Mapping) else list(value),
            sort_keys=True,
            separators=(",", ":"),
            allow_nan=False,
            ensure_ascii=False,
        )
    except (TypeError, ValueError) as error:
        msg = f"not serialisable as JSON: {error}"
        raise InvalidRecord(msg) from error


_CONVERTERS: dict[Kind, Callable[[Any], Any]] = {
    "text": _text,
    "int": _int,
    "real": _real,
    "hour": _hour,
    "millis": _millis,
    "json": _json,
}


@dataclass(frozen=True)
class Column:
    """One column: its name (also the Avro field it comes from) and how it is stored."""

    name: str
    kind: Kind
    nullable: bool = False

    def convert(self, value: Any) -> Any:
        """The stored form of `value`; None stays None (constraints are the store's job)."""
        if value is None:
            return None
        try:
            return _CONVERTERS[self.kind](value)
        except InvalidRecord as error:
            msg = f"field {self.name!r}: {error}"
            raise InvalidRecord(msg) from error


@dataclass(frozen=True)
class Dataset:
    """A table of the open-data store, filled from one Avro contract on one topic.

    `topic` names the `schemas.Topics` property of the topic the sink reads it from.
    `revision`, when set, names an integer column: a row is replaced only by a record with
    a revision at least as high, so a late re-delivery of an old revision never wins.
    """

    name: str
    contract: str
    topic: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    revision: str | None = None

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)

    def column(self, name: str) -> Column:
        """The column called `name`; `StoreError` when there is none."""
        for column in self.columns:
            if column.name == name:
                return column
        msg = f"dataset {self.name!r} has no column {name!r}"
        raise StoreError(msg)

    def to_row(self, record: Mapping[str, Any]) -> tuple[Any, ...]:
        """The row for `record`, in column order. Raises `InvalidRecord`."""
        return tuple(column.convert(record.get(column.name)) for column in self.columns)

    def rows(self, records: Iterable[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
        """Rows for `records`, one per natural key: the last record of a key wins, or, for
        a dataset with a revision, the last of those with the highest revision."""
        rows: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        at = self.column_names.index(self.revision) if self.revision else -1
        for record in records:
            row = self.to_row(record)
            key = self.key_of(row)
            earlier = rows.pop(key, None)  # a replaced key moves to its latest position
            if earlier is not None and at >= 0 and earlier[at] > row[at]:
                row = earlier
            rows[key] = row
        return list(rows.values())

    def key_of(self, row: tuple[Any, ...]) -> tuple[Any, ...]:
        """The natural key of a row made by `to_row`."""
        names = self.column_names
        return tuple(row[names.index(name)] for name in self.key)


AQI_HOURLY = Dataset(
    name="aqi_hourly",
    contract="aqi_hourly",
    topic="aqi_hourly",
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
)

READINGS = Dataset(
    name="readings",
    contract="enriched_reading",
    topic="enriched_air_quality",
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
)

DATASETS: dict[str, Dataset] = {ds.name: ds for ds in (AQI_HOURLY, READINGS)}
"""Every dataset of the store, by name. A new dataset is one entry here, one migration in
each backend, and its contract in schemas/."""


def get_dataset(name: str) -> Dataset:
    """The dataset called `name`; `StoreError` lists the known ones."""
    try:
        return DATASETS[name]
    except KeyError:
        msg = f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}"
        raise StoreError(msg) from None
