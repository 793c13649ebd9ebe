"""Avro binary writers compiled from a contract's schema: the worker's hot path.

`fastavro.schemaless_writer` takes about 11 µs for an enriched reading, most of it
spent resolving the schema, unions and logical types again for every record. A writer
generated once per contract writes the same bytes in about half that. It only handles
the values the project's records hold (plain ints for timestamps, None or one type in a
union); anything else raises `Unfit`, and the caller hands the record to fastavro, which
encodes it or says what is wrong with it. So the bytes, and the errors, are fastavro's.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import Any, Final

__all__ = ["Unfit", "compile_writer"]

Writer = Callable[[Mapping[str, Any]], bytes]


class Unfit(Exception):
    """The compiled writer does not handle this record: let fastavro encode it."""


_INT_MIN: Final = -(1 << 31)
_INT_MAX: Final = (1 << 31) - 1
_LONG_MIN: Final = -(1 << 63)
_LONG_MAX: Final = (1 << 63) - 1
_SMALL: Final = {n: bytes([((n << 1) ^ (n >> 63)) & 0xFF]) for n in range(-64, 64)}
_pack_double: Final = struct.Struct("<d").pack
_pack_float: Final = struct.Struct("<f").pack


def _long(n: int) -> bytes:
    """Avro's zig-zag varint of a long."""
    small = _SMALL.get(n)
    if small is not None and type(n) is int:
        return small
    if type(n) is not int or not _LONG_MIN <= n <= _LONG_MAX:
        raise Unfit
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _int(n: int) -> bytes:
    if type(n) is not int or not _INT_MIN <= n <= _INT_MAX:
        raise Unfit
    return _long(n)


def _string(value: str) -> bytes:
    if type(value) is not str:
        raise Unfit
    data = value.encode()
    return _long(len(data)) + data


def _bytes(value: bytes) -> bytes:
    if type(value) is not bytes:
        raise Unfit
    return _long(len(value)) + value


def _double(value: float) -> bytes:
    if type(value) is not float and type(value) is not int:
        raise Unfit
    return _pack_double(value)


def _float(value: float) -> bytes:
    if type(value) is not float and type(value) is not int:
        raise Unfit
    return _pack_float(value)


def _boolean(value: bool) -> bytes:
    if type(value) is not bool:
        raise Unfit
    return b"\x01" if value else b"\x00"


# The kinds of value a compiled writer writes, dispatched in one compiled function
# (`_put`): a closure per field cost a Python-level call per value and per union.
_STRING: Final = 0
_BYTES: Final = 1
_INT: Final = 2
_LONG: Final = 3
_DOUBLE: Final = 4
_FLOAT: Final = 5
_BOOLEAN: Final = 6
_ARRAY: Final = 7
_MAP: Final = 8
_PRIMITIVES: Final = {
    "string": _STRING,
    "bytes": _BYTES,
    "int": _INT,
    "long": _LONG,
    "double": _DOUBLE,
    "float": _FLOAT,
    "boolean": _BOOLEAN,
}


class _Op:
    """How to write one value: its kind; for a union with null, the branch bytes (empty
    when it is not one); for an array or a map, how to write its items."""

    def __init__(self, kind: int, items: _Op | None = None) -> None:
        self.kind = kind
        self.items = items
        self.null = b""
        self.some = b""

    def or_null(self, null_first: bool) -> _Op:
        """This value as the branch of a union with null."""
        self.null, self.some = (b"\x00", b"\x02") if null_first else (b"\x02", b"\x00")
        return self


def _op(schema: Any) -> _Op | None:
    """How to write a value of `schema` (fastavro's parsed form); None if not handled."""
    if isinstance(schema, str):
        kind = _PRIMITIVES.get(schema)
        return None if kind is None else _Op(kind)
    if isinstance(schema, list):
        branches = [branch for branch in schema if branch != "null"]
        if len(schema) != 2 or len(branches) != 1:
            return None
        inner = _op(branches[0])
        if inner is None or inner.null:
            return None
        return inner.or_null(schema[0] == "null")
    if isinstance(schema, dict):
        kind_name = schema.get("type")
        if kind_name in ("long", "int") and schema.get("logicalType") in (
            "timestamp-millis",
            "date",
        ):
            return _Op(_PRIMITIVES[kind_name])  # a datetime or date is fastavro's to convert
        if kind_name in _PRIMITIVES and "logicalType" not in schema:
            return _Op(_PRIMITIVES[kind_name])
        if kind_name == "array":
            items = _op(schema["items"])
            return None if items is None else _Op(_ARRAY, items)
        if kind_name == "map":
            values = _op(schema["values"])
            return None if values is None else _Op(_MAP, values)
    return None


def _put(op: _Op, value: Any, out: list[bytes]) -> None:
    """Append the Avro binary of `value` as `op` says; Unfit where it does not fit."""
    if op.null:  # a union with null
        if value is None:
            out.append(op.null)
            return
        out.append(op.some)
    kind = op.kind
    if kind == _STRING:
        out.append(_string(value))
    elif kind == _DOUBLE:
        out.append(_double(value))
    elif kind == _LONG:
        out.append(_long(value))
    elif kind == _INT:
        out.append(_int(value))
    elif kind == _BOOLEAN:
        out.append(_boolean(value))
    elif kind == _BYTES:
        out.append(_bytes(value))
    elif kind == _FLOAT:
        out.append(_float(value))
    elif kind == _ARRAY:
        if type(value) is not list and type(value) is not tuple:
            raise Unfit
        items = op.items
        assert items is not None
        if value:
            out.append(_long(len(value)))
            for item in value:
                _put(items, item, out)
        out.append(b"\x00")
    else:  # _MAP
        if type(value) is not dict:
            raise Unfit
        items = op.items
        assert items is not None
        if value:
            out.append(_long(len(value)))
            for key, item in value.items():
                out.append(_string(key))
                _put(items, item, out)
        out.append(b"\x00")


class RecordWriter:
    """Writes records of one record schema, field after field."""

    def __init__(self, fields: list[tuple[str, _Op]]) -> None:
        self.names = [name for name, _ in fields]
        self.ops = [op for _, op in fields]
        self.count = len(fields)

    def __call__(self, record: Mapping[str, Any]) -> bytes:
        if type(record) is not dict or len(record) != self.count:
            raise Unfit  # a field left to its default, or one too many: fastavro decides
        values: dict[str, Any] = record
        out: list[bytes] = []
        names, ops = self.names, self.ops
        try:
            for index in range(self.count):
                _put(ops[index], values[names[index]], out)
        except (KeyError, TypeError, ValueError, OverflowError, struct.error) as error:
            raise Unfit from error
        return b"".join(out)


def compile_writer(schema: Any) -> Writer | None:
    """A writer of records of `schema` (a parsed record schema), or None when one of its
    fields has a type this module does not compile (fastavro then writes them all)."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return None
    fields = []
    for field in schema["fields"]:
        op = _op(field["type"])
        if op is None:
            return None
        fields.append((field["name"], op))
    return RecordWriter(fields)
