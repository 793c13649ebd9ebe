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
from typing import Any

__all__ = ["Unfit", "compile_writer"]

Writer = Callable[[Mapping[str, Any]], bytes]


class Unfit(Exception):
    """The compiled writer does not handle this record: let fastavro encode it."""


_INT_MIN, _INT_MAX = -(1 << 31), (1 << 31) - 1
_LONG_MIN, _LONG_MAX = -(1 << 63), (1 << 63) - 1
_SMALL = {n: bytes([((n << 1) ^ (n >> 63)) & 0xFF]) for n in range(-64, 64)}
_pack_double = struct.Struct("<d").pack
_pack_float = struct.Struct("<f").pack


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


_PRIMITIVES: dict[str, Callable[[Any], bytes]] = {
    "string": _string,
    "bytes": _bytes,
    "int": _int,
    "long": _long,
    "double": _double,
    "float": _float,
    "boolean": _boolean,
}


def _value_writer(schema: Any) -> Callable[[Any], bytes] | None:
    """A writer of one value of `schema` (fastavro's parsed form); None if not handled."""
    if isinstance(schema, str):
        return _PRIMITIVES.get(schema)
    if isinstance(schema, list):
        branches = [branch for branch in schema if branch != "null"]
        if len(schema) != 2 or len(branches) != 1:
            return None
        inner = _value_writer(branches[0])
        if inner is None:
            return None
        null, some = (b"\x00", b"\x02") if schema[0] == "null" else (b"\x02", b"\x00")

        def union(value: Any) -> bytes:
            return null if value is None else some + inner(value)

        return union
    if isinstance(schema, dict):
        kind = schema.get("type")
        if kind in ("long", "int") and schema.get("logicalType") in (
            "timestamp-millis",
            "date",
        ):
            return _PRIMITIVES[kind]  # a datetime or date value is fastavro's to convert
        if kind in _PRIMITIVES and "logicalType" not in schema:
            return _PRIMITIVES[kind]
        if kind == "array":
            items = _value_writer(schema["items"])
            if items is None:
                return None

            def array(values: Any) -> bytes:
                if type(values) is not list and type(values) is not tuple:
                    raise Unfit
                if not values:
                    return b"\x00"
                return _long(len(values)) + b"".join([items(v) for v in values]) + b"\x00"

            return array
        if kind == "map":
            values_writer = _value_writer(schema["values"])
            if values_writer is None:
                return None

            def map_(mapping: Any) -> bytes:
                if type(mapping) is not dict:
                    raise Unfit
                if not mapping:
                    return b"\x00"
                body = b"".join([_string(k) + values_writer(v) for k, v in mapping.items()])
                return _long(len(mapping)) + body + b"\x00"

            return map_
    return None


def compile_writer(schema: Any) -> Writer | None:
    """A writer of records of `schema` (a parsed record schema), or None when one of its
    fields has a type this module does not compile (fastavro then writes them all)."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return None
    fields = []
    for field in schema["fields"]:
        writer = _value_writer(field["type"])
        if writer is None:
            return None
        fields.append((field["name"], writer))
    count = len(fields)

    def write(record: Mapping[str, Any]) -> bytes:
        if type(record) is not dict or len(record) != count:
            raise Unfit  # a field left to its default, or one too many: fastavro decides
        try:
            return b"".join([writer(record[name]) for name, writer in fields])
        except (KeyError, TypeError, ValueError, OverflowError, struct.error) as error:
            raise Unfit from error

    return write
