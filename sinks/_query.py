"""Read requests on the open-data store, shared by every backend.

`parse_records_query` turns the parameters of ``GET /api/datasets/{name}/records`` into a
`RecordQuery`; `select_sql` renders it as one parameterised SELECT for a backend. Column
names come only from the `Dataset` definitions, values only travel as parameters, and
anything a requester got wrong raises `InvalidQuery` with a message meant for them.

Parameters (all optional; a field name is a column of the dataset):

- ``field=value`` equality (repeat the parameter for any of several values);
  ``field__ne``, ``field__gt``, ``field__gte``, ``field__lt``, ``field__lte`` comparisons;
  ``field__null=true|false``. Values are parsed by the column's kind: integers, finite
  numbers, text, or times (ISO 8601 with a zone, or a date meaning 00:00 UTC). JSON
  columns are not filterable.
- ``since`` (inclusive) and ``until`` (exclusive) on the dataset's time column.
- ``bbox=min_lon,min_lat,max_lon,max_lat`` (WGS 84) for datasets with coordinates, or
  placed at stations (the station's coordinates decide).
- ``sort=field,-other`` (``-`` = descending); the natural key always ends the order, so
  the order is total and paging is stable. NULL sorts first ascending, last descending,
  on every backend.
- ``limit`` (default 100, at most 10,000 per page; unlimited for downloads), and either
  ``offset`` or ``cursor`` (the opaque ``next_cursor`` of the previous page: keyset
  paging, which stays fast and consistent however deep it goes).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any

from sinks._datasets import Column, Dataset
from sinks._migrations import Backend
from sinks.exceptions import InvalidQuery

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "Condition",
    "Order",
    "RecordQuery",
    "latest_sql",
    "parse_records_query",
    "parse_time",
    "select_sql",
]

DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
RESERVED = ("since", "until", "bbox", "sort", "limit", "offset", "cursor")
_OPERATORS = {"ne": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_INT = re.compile(r"^[+-]?\d{1,19}$")
_INT64 = (-(2**63), 2**63 - 1)


@dataclass(frozen=True)
class Condition:
    """One WHERE term with ``?`` placeholders, and its parameters."""

    sql: str
    params: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Order:
    column: str
    descending: bool = False


@dataclass(frozen=True)
class RecordQuery:
    """A checked read of one dataset: conditions, a total order, a page.

    `after` holds the values of the `order` columns of the last row already seen (keyset
    paging); `limit` None means every matching row (downloads).
    """

    dataset: Dataset
    conditions: tuple[Condition, ...] = ()
    order: tuple[Order, ...] = ()
    limit: int | None = DEFAULT_LIMIT
    offset: int = 0
    after: tuple[Any, ...] | None = None

    def cursor_after(self, row: Sequence[Any]) -> str:
        """The cursor of the page that follows `row` (a row in column order)."""
        names = self.dataset.column_names
        values = [row[names.index(term.column)] for term in self.order]
        payload = json.dumps([_signature(self.order), values], separators=(",", ":"))
        return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")

    def next_page(self, row: Sequence[Any]) -> RecordQuery:
        """The same query for the page after `row`."""
        names = self.dataset.column_names
        after = tuple(row[names.index(term.column)] for term in self.order)
        return replace(self, offset=0, after=after)


# --- values --------------------------------------------------------------------------------


def parse_time(text: str, what: str) -> datetime:
    """An aware UTC datetime from ISO 8601 with a zone, or from a date (00:00 UTC)."""
    raw = text.strip()
    try:
        if len(raw) == 10:
            return datetime.combine(date.fromisoformat(raw), datetime.min.time(), UTC)
        moment = datetime.fromisoformat(raw)
    except ValueError:
        msg = (
            f"{what}: {text!r} is not an ISO 8601 time or date "
            "(e.g. 2013-03-01T08:00:00Z, 2013-03-01T16:00+08:00 or 2013-03-01)"
        )
        raise InvalidQuery(msg) from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        msg = f"{what}: {text!r} has no zone; add Z or an offset such as +08:00"
        raise InvalidQuery(msg)
    return moment.astimezone(UTC)


def _stored_time(column: Column, text: str, what: str) -> str:
    moment = parse_time(text, what).replace(tzinfo=None)
    if column.kind == "hour":
        if moment.microsecond:
            msg = f"{what}: {column.name} holds whole seconds; {text!r} is finer"
            raise InvalidQuery(msg)
        return moment.isoformat(timespec="seconds") + "Z"
    if moment.microsecond % 1000:
        msg = f"{what}: {column.name} holds milliseconds; {text!r} is finer"
        raise InvalidQuery(msg)
    return moment.isoformat(timespec="milliseconds") + "Z"


def _value(column: Column, text: str, what: str) -> Any:
    """`text` as the stored form of a value of `column`."""
    if column.kind == "text":
        return text
    if column.kind == "int":
        if not _INT.match(text.strip()) or not _INT64[0] <= int(text) <= _INT64[1]:
            msg = f"{what}: {column.name} is an integer; {text!r} is not"
            raise InvalidQuery(msg)
        return int(text)
    if column.kind == "real":
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            msg = f"{what}: {column.name} is a number; {text!r} is not a finite number"
            raise InvalidQuery(msg)
        return number
    if column.kind in ("hour", "millis"):
        return _stored_time(column, text, what)
    if column.kind == "json":
        msg = f"{what}: {column.name} is a JSON column and cannot be filtered on"
        raise InvalidQuery(msg)
    return text  # a kind added later compares as its stored text until it gets a rule here


def _column(ds: Dataset, name: str, what: str) -> Column:
    for column in ds.columns:
        if column.name == name:
            return column
    known = ", ".join(ds.column_names)
    msg = f"{what}: {ds.name} has no field {name!r}; its fields are {known}"
    raise InvalidQuery(msg)


def _integer(text: str, what: str, low: int, high: int | None) -> int:
    if not _INT.match(text.strip()):
        msg = f"{what}: {text!r} is not an integer"
        raise InvalidQuery(msg)
    number = int(text)
    if number < low or (high is not None and number > high):
        bound = f"between {low} and {high:,}" if high is not None else f"at least {low}"
        msg = f"{what}: must be {bound}, got {number}"
        raise InvalidQuery(msg)
    return number


# --- parameters ----------------------------------------------------------------------------


def _filters(ds: Dataset, params: Sequence[tuple[str, str]]) -> list[Condition]:
    equal: dict[str, list[Any]] = {}
    conditions: list[Condition] = []
    for name, text in params:
        field_name, _, operator = name.partition("__")
        column = _column(ds, field_name, f"parameter {name!r}")
        if not operator:
            equal.setdefault(column.name, []).append(_value(column, text, name))
        elif operator == "null":
            flag = text.strip().lower()
            if flag not in ("true", "false"):
                msg = f"{name}: expected true or false, got {text!r}"
                raise InvalidQuery(msg)
            conditions.append(Condition(f"{column.name} IS {'' if flag == 'true' else 'NOT '}NULL"))
        elif operator in _OPERATORS:
            conditions.append(
                Condition(f"{column.name} {_OPERATORS[operator]} ?", (_value(column, text, name),))
            )
        else:
            msg = (
                f"parameter {name!r}: unknown operator {operator!r}; use one of "
                f"{', '.join(['(none)', *sorted(_OPERATORS), 'null'])}"
            )
            raise InvalidQuery(msg)
    for name, values in equal.items():
        if len(values) == 1:
            conditions.insert(0, Condition(f"{name} = ?", (values[0],)))
        else:
            marks = ", ".join("?" for _ in values)
            conditions.insert(0, Condition(f"{name} IN ({marks})", tuple(values)))
    return conditions


def _time_range(ds: Dataset, since: str | None, until: str | None) -> list[Condition]:
    if since is None and until is None:
        return []
    if ds.time_column is None:
        msg = f"since/until: {ds.name} has no time column"
        raise InvalidQuery(msg)
    column = ds.column(ds.time_column)
    conditions = []
    if since is not None:
        conditions.append(Condition(f"{column.name} >= ?", (_value(column, since, "since"),)))
    if until is not None:
        conditions.append(Condition(f"{column.name} < ?", (_value(column, until, "until"),)))
    return conditions


def _bbox(ds: Dataset, text: str, stations: Mapping[str, tuple[float, float]]) -> list[Condition]:
    parts = text.split(",")
    try:
        min_lon, min_lat, max_lon, max_lat = (float(part) for part in parts)
    except ValueError:
        msg = f"bbox: expected min_lon,min_lat,max_lon,max_lat (four numbers), got {text!r}"
        raise InvalidQuery(msg) from None
    if not (
        -180 <= min_lon <= max_lon <= 180
        and -90 <= min_lat <= max_lat <= 90
        and all(math.isfinite(v) for v in (min_lon, min_lat, max_lon, max_lat))
    ):
        msg = (
            f"bbox: {text!r} is not min_lon,min_lat,max_lon,max_lat with "
            "-180 ≤ min_lon ≤ max_lon ≤ 180 and -90 ≤ min_lat ≤ max_lat ≤ 90"
        )
        raise InvalidQuery(msg)
    if ds.coordinates is not None:
        lat, lon = ds.coordinates
        return [
            Condition(f"{lat} >= ?", (min_lat,)),
            Condition(f"{lat} <= ?", (max_lat,)),
            Condition(f"{lon} >= ?", (min_lon,)),
            Condition(f"{lon} <= ?", (max_lon,)),
        ]
    if ds.station_column is not None:
        inside = sorted(
            station
            for station, (lat_value, lon_value) in stations.items()
            if min_lat <= lat_value <= max_lat and min_lon <= lon_value <= max_lon
        )
        if not inside:
            return [Condition("1 = 0")]
        marks = ", ".join("?" for _ in inside)
        return [Condition(f"{ds.station_column} IN ({marks})", tuple(inside))]
    msg = f"bbox: {ds.name} has no coordinates"
    raise InvalidQuery(msg)


def _order(ds: Dataset, text: str | None) -> tuple[Order, ...]:
    terms: list[Order] = []
    for raw in (text or "").split(","):
        term = raw.strip()
        if not term:
            continue
        descending = term.startswith("-")
        column = _column(ds, term.lstrip("+-"), "sort")
        if column.kind == "json":
            msg = f"sort: {column.name} is a JSON column and cannot be sorted on"
            raise InvalidQuery(msg)
        if any(existing.column == column.name for existing in terms):
            msg = f"sort: {column.name} is named twice"
            raise InvalidQuery(msg)
        terms.append(Order(column.name, descending))
    named = {term.column for term in terms}
    terms.extend(Order(key) for key in ds.key if key not in named)
    return tuple(terms)


def _signature(order: Sequence[Order]) -> str:
    return ",".join(("-" if term.descending else "") + term.column for term in order)


def _decode_cursor(ds: Dataset, order: tuple[Order, ...], text: str) -> tuple[Any, ...]:
    try:
        padded = text + "=" * (-len(text) % 4)
        signature, values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        msg = "cursor: not a cursor of this API (use next_cursor of the previous page)"
        raise InvalidQuery(msg) from None
    if signature != _signature(order) or not isinstance(values, list):
        msg = "cursor: it belongs to another sort order; keep sort as it was for the first page"
        raise InvalidQuery(msg)
    if len(values) != len(order):
        msg = "cursor: not a cursor of this API (use next_cursor of the previous page)"
        raise InvalidQuery(msg)
    for term, value in zip(order, values, strict=True):
        column = ds.column(term.column)
        ok = (
            (value is None and column.nullable)
            or (column.kind == "int" and type(value) is int)
            or (column.kind == "real" and type(value) in (int, float))
            or (column.kind in ("text", "hour", "millis") and isinstance(value, str))
        )
        if not ok:
            msg = "cursor: not a cursor of this API (use next_cursor of the previous page)"
            raise InvalidQuery(msg)
    return tuple(values)


def parse_records_query(
    ds: Dataset,
    params: Iterable[tuple[str, str]],
    *,
    stations: Mapping[str, tuple[float, float]] | None = None,
    paged: bool = True,
    ignore: Iterable[str] = (),
) -> RecordQuery:
    """The `RecordQuery` of request parameters (name, value pairs; names may repeat).

    `paged` False is a download: no default limit and no cap. Parameters in `ignore` are
    the caller's own (e.g. ``format``). Raises `InvalidQuery`.
    """
    skip = set(ignore)
    reserved: dict[str, str] = {}
    filters: list[tuple[str, str]] = []
    for name, value in params:
        if name in skip:
            continue
        if name in RESERVED:
            if name in reserved:
                msg = f"parameter {name!r} is given more than once"
                raise InvalidQuery(msg)
            reserved[name] = value
        else:
            filters.append((name, value))
    conditions = _filters(ds, filters)
    conditions += _time_range(ds, reserved.get("since"), reserved.get("until"))
    if "bbox" in reserved:
        conditions += _bbox(ds, reserved["bbox"], stations or {})
    order = _order(ds, reserved.get("sort"))
    limit: int | None = DEFAULT_LIMIT if paged else None
    if "limit" in reserved:
        limit = _integer(reserved["limit"], "limit", 1, MAX_LIMIT if paged else None)
    offset = _integer(reserved["offset"], "offset", 0, None) if "offset" in reserved else 0
    after = None
    if "cursor" in reserved:
        if "offset" in reserved:
            msg = "give either cursor or offset, not both"
            raise InvalidQuery(msg)
        after = _decode_cursor(ds, order, reserved["cursor"])
    return RecordQuery(ds, tuple(conditions), order, limit, offset, after)


# --- SQL -----------------------------------------------------------------------------------


def _nullable(ds: Dataset, name: str) -> bool:
    return ds.column(name).nullable


def _order_sql(ds: Dataset, order: Sequence[Order]) -> str:
    """ORDER BY terms; NULL is the smallest value on every backend (SQLite's own rule)."""
    terms = []
    for term in order:
        sql = term.column + (" DESC" if term.descending else "")
        if _nullable(ds, term.column):  # PostgreSQL's default puts NULL last ascending
            sql += " NULLS LAST" if term.descending else " NULLS FIRST"
        terms.append(sql)
    return ", ".join(terms)


def _keyset(ds: Dataset, order: Sequence[Order], after: Sequence[Any]) -> Condition:
    """Rows strictly after `after` in `order` (NULL smallest)."""
    directions = {term.descending for term in order}
    if len(directions) == 1 and not any(_nullable(ds, term.column) for term in order):
        # A row-value comparison: one index range scan on both backends.
        columns = ", ".join(term.column for term in order)
        marks = ", ".join("?" for _ in order)
        operator = "<" if order[0].descending else ">"
        if len(order) == 1:
            return Condition(f"{columns} {operator} ?", (after[0],))
        return Condition(f"({columns}) {operator} ({marks})", tuple(after))
    alternatives: list[str] = []
    params: list[Any] = []
    for index, term in enumerate(order):
        parts: list[str] = []
        for earlier, value in zip(order[:index], after[:index], strict=True):
            if value is None:
                parts.append(f"{earlier.column} IS NULL")
            else:
                parts.append(f"{earlier.column} = ?")
                params.append(value)
        value = after[index]
        name = term.column
        if not term.descending:
            parts.append(f"{name} IS NOT NULL" if value is None else f"{name} > ?")
        elif value is None:
            continue  # nothing follows NULL in descending order
        else:
            below = f"{name} < ?"
            parts.append(f"({below} OR {name} IS NULL)" if _nullable(ds, name) else below)
        if value is not None:
            params.append(value)
        alternatives.append("(" + " AND ".join(parts) + ")")
    if not alternatives:
        return Condition("1 = 0")
    return Condition("(" + " OR ".join(alternatives) + ")", tuple(params))


def select_sql(query: RecordQuery, backend: Backend) -> tuple[str, list[Any]]:
    """``SELECT`` of the query's rows, in column order, with ``?`` placeholders."""
    ds = query.dataset
    conditions = list(query.conditions)
    if query.after is not None:
        conditions.append(_keyset(ds, query.order, query.after))
    sql = f"SELECT {', '.join(ds.column_names)} FROM {ds.name}"
    params: list[Any] = []
    if conditions:
        sql += " WHERE " + " AND ".join(condition.sql for condition in conditions)
        for condition in conditions:
            params.extend(condition.params)
    if query.order:
        sql += " ORDER BY " + _order_sql(ds, query.order)
    if query.limit is not None:
        sql += " LIMIT ?"
        params.append(query.limit)
    elif query.offset and backend == "sqlite":
        sql += " LIMIT -1"  # SQLite has no OFFSET without LIMIT
    if query.offset:
        sql += " OFFSET ?"
        params.append(query.offset)
    return sql, params


def latest_sql(ds: Dataset, group: str, time: str) -> str:
    """The newest row (by `time`) of every value of `group`, ordered by `group`.

    A loose index scan: a recursive walk over the distinct `group` values, then one
    lookup each, so it costs a few index seeks per group whatever the table's size. It
    needs an index that starts with (group, time): the natural key of station datasets.
    """
    ds.column(group)
    ds.column(time)
    columns = ", ".join(f"t.{name}" for name in ds.column_names)
    return (
        f"WITH RECURSIVE g(v) AS ("
        f"SELECT MIN({group}) FROM {ds.name} "
        f"UNION ALL SELECT (SELECT MIN({group}) FROM {ds.name} WHERE {group} > g.v) "
        f"FROM g WHERE g.v IS NOT NULL) "
        f"SELECT {columns} FROM g JOIN {ds.name} t ON t.{group} = g.v "
        f"AND t.{time} = (SELECT MAX({time}) FROM {ds.name} WHERE {group} = g.v) "
        f"ORDER BY t.{group}"
    )
