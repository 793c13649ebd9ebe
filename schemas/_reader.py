"""Avro binary readers compiled from a contract's schema: the sink's hot path.

`fastavro.schemaless_reader` takes about 12 µs for an enriched reading, most of it spent
walking the schema, its unions and logical types again for every record. A reader
generated once per contract reads the same record in a fraction of that. It reads only
bodies written with the contract's current schema, and only what it can read without
doubt: any byte it does not expect (a union index out of range, a length past the end,
a boolean that is neither 0 nor 1, an int beyond 32 bits, bad UTF-8, a timestamp out of
datetime's range) raises `Unread`, and the caller hands the body to fastavro, which reads
it or says what is wrong with it. So the records, and the errors, are fastavro's.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

__all__ = ["Cursor", "Unread", "compile_reader"]


class Unread(Exception):
    """The compiled reader does not read this body: let fastavro read it."""


class Cursor:
    """A body being read, and the position of the next byte."""

    def __init__(self, data: bytes, position: int) -> None:
        self.data = data
        self.position = position


ValueReader = Callable[[Cursor], Any]
Reader = Callable[[Cursor], dict[str, Any]]

_INT_MIN: Final = -(1 << 31)
_INT_MAX: Final = (1 << 31) - 1
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)  # fastavro's: epoch + timedelta
_DAYS_SHIFT: Final = date(1970, 1, 1).toordinal()
_unpack_double = struct.Struct("<d").unpack_from
_unpack_float = struct.Struct("<f").unpack_from


def _long(cursor: Cursor) -> Any:
    """Avro's zig-zag varint of a long (at most 10 bytes)."""
    data = cursor.data
    position = cursor.position
    end = len(data)
    shift = 0
    n = 0
    while True:
        if position >= end or shift > 63:
            raise Unread
        byte = data[position]
        position += 1
        n |= (byte & 0x7F) << shift
        if byte < 0x80:
            break
        shift += 7
    if n >> 64:
        raise Unread
    cursor.position = position
    return (n >> 1) ^ -(n & 1)


def _int(cursor: Cursor) -> Any:
    n = _long(cursor)
    if not _INT_MIN <= n <= _INT_MAX:
        raise Unread
    return n


def _raw(cursor: Cursor) -> bytes:
    size = _long(cursor)
    start = cursor.position
    stop = start + size
    if size < 0 or stop > len(cursor.data):
        raise Unread
    cursor.position = stop
    return cursor.data[start:stop]


def _string(cursor: Cursor) -> Any:
    try:
        return _raw(cursor).decode()
    except UnicodeDecodeError as error:
        raise Unread from error


def _bytes(cursor: Cursor) -> Any:
    return _raw(cursor)


def _double(cursor: Cursor) -> Any:
    position = cursor.position
    if position + 8 > len(cursor.data):
        raise Unread
    cursor.position = position + 8
    return _unpack_double(cursor.data, position)[0]


def _float(cursor: Cursor) -> Any:
    position = cursor.position
    if position + 4 > len(cursor.data):
        raise Unread
    cursor.position = position + 4
    return _unpack_float(cursor.data, position)[0]


def _boolean(cursor: Cursor) -> Any:
    position = cursor.position
    if position >= len(cursor.data):
        raise Unread
    byte = cursor.data[position]
    if byte > 1:
        raise Unread
    cursor.position = position + 1
    return byte == 1


def _timestamp_millis(cursor: Cursor) -> Any:
    millis = _long(cursor)
    try:
        return _EPOCH + timedelta(microseconds=millis * 1000)
    except OverflowError as error:
        raise Unread from error


def _date(cursor: Cursor) -> Any:
    days = _int(cursor)
    try:
        return date.fromordinal(days + _DAYS_SHIFT)
    except (OverflowError, ValueError) as error:
        raise Unread from error


_PRIMITIVES: dict[str, ValueReader] = {
    "string": _string,
    "bytes": _bytes,
    "int": _int,
    "long": _long,
    "double": _double,
    "float": _float,
    "boolean": _boolean,
}
_LOGICAL: dict[tuple[str, str], ValueReader] = {
    ("long", "timestamp-millis"): _timestamp_millis,
    ("int", "date"): _date,
}


def _count(cursor: Cursor) -> int:
    """The item count of an array or map block (a negative count is followed by the
    block's size in bytes, which a reader that reads every item does not need)."""
    count: int = _long(cursor)
    if count < 0:
        count = -count
        _long(cursor)
    return count


def _union_reader(schema: list[Any]) -> ValueReader | None:
    if len(schema) != 2 or schema.count("null") != 1:
        return None
    null_index = schema.index("null")
    inner = _value_reader(schema[1 - null_index])
    if inner is None:
        return None

    def union(cursor: Cursor) -> Any:
        index = _long(cursor)
        if index == null_index:
            return None
        if index != 1 - null_index:
            raise Unread
        return inner(cursor)

    return union


def _array_reader(schema: dict[str, Any]) -> ValueReader | None:
    items = _value_reader(schema["items"])
    if items is None:
        return None

    def array(cursor: Cursor) -> Any:
        values: list[Any] = []
        count = _count(cursor)
        while count:
            for _ in range(count):
                values.append(items(cursor))
            count = _count(cursor)
        return values

    return array


def _map_reader(schema: dict[str, Any]) -> ValueReader | None:
    values_reader = _value_reader(schema["values"])
    if values_reader is None:
        return None

    def map_(cursor: Cursor) -> Any:
        mapping: dict[str, Any] = {}
        count = _count(cursor)
        while count:
            for _ in range(count):
                key = _string(cursor)
                mapping[key] = values_reader(cursor)
            count = _count(cursor)
        return mapping

    return map_


def _value_reader(schema: Any) -> ValueReader | None:
    """A reader of one value of `schema` (fastavro's parsed form); None if not handled."""
    if isinstance(schema, str):
        return _PRIMITIVES.get(schema)
    if isinstance(schema, list):
        return _union_reader(schema)
    if isinstance(schema, dict):
        kind = schema.get("type")
        logical = schema.get("logicalType")
        if isinstance(kind, str) and isinstance(logical, str):
            return _LOGICAL.get((kind, logical))
        if kind == "array":
            return _array_reader(schema)
        if kind == "map":
            return _map_reader(schema)
        if kind == "record":
            return compile_reader(schema)
        if isinstance(kind, str) and logical is None:
            return _PRIMITIVES.get(kind)
    return None


def compile_reader(schema: Any) -> Reader | None:
    """A reader of records of `schema` (a parsed record schema), or None when one of its
    fields has a type this module does not compile (fastavro then reads them all)."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return None
    fields: list[tuple[str, ValueReader]] = []
    for field in schema["fields"]:
        reader = _value_reader(field["type"])
        if reader is None:
            return None
        fields.append((field["name"], reader))

    def read(cursor: Cursor) -> dict[str, Any]:
        record: dict[str, Any] = {}
        for name, reader in fields:
            record[name] = reader(cursor)
        return record

    return read
