"""Avro encoding of every record the project writes.

Framing: Avro *single-object encoding* (Avro specification 1.10+, "Single object
encoding"): two marker bytes ``C3 01``, the 8-byte little-endian CRC-64-AVRO fingerprint of
the writer schema's Parsing Canonical Form, then the Avro binary body. Any Avro library
(Java ``BinaryMessageDecoder``, Python fastavro, Rust apache-avro, ...) decodes it with the
``.avsc`` files in this folder; no schema registry is needed.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import fastavro
import fastavro.schema

from schemas._reader import Cursor, Reader, Unread, compile_reader
from schemas._writer import Unfit, Writer, compile_writer
from schemas.exceptions import SchemaError

__all__ = [
    "MAGIC",
    "SCHEMA_HISTORY",
    "SCHEMA_NAMES",
    "decode",
    "decode_as",
    "encode",
    "fingerprint",
    "is_avro",
    "schema",
]

MAGIC = b"\xc3\x01"
_HEADER_LEN = len(MAGIC) + 8
_SCHEMA_DIR = Path(__file__).resolve().parent

# Contract name -> the .avsc file of its current version (what `encode` writes).
SCHEMA_NAMES: dict[str, str] = {
    "raw_reading": "raw_reading.avsc",
    "enriched_reading": "enriched_reading.avsc",
    "aqi_hourly": "aqi_hourly.avsc",
    "aqi_daily": "aqi_daily.avsc",
    "deadletter": "deadletter.avsc",
    "raw_incident": "raw_incident.avsc",
    "incident_heartbeat": "incident_heartbeat.avsc",
    "incident_published": "incident_published.avsc",
    "incident_count": "incident_count.avsc",
    "archived_record": "archived_record.avsc",
    "anomaly": "anomaly.avsc",
}

# Contract name -> the files of its earlier versions. A contract evolves compatibly: the new
# version only adds fields with defaults, its file replaces the current one, and the old
# file is kept here (``<name>.v<N>.avsc``). A message written with an old version keeps its
# old fingerprint, is read with that writer schema and resolved into the current version
# (Avro schema resolution: the added fields get their defaults), so topics written before
# an upgrade stay readable.
SCHEMA_HISTORY: dict[str, tuple[str, ...]] = {
    "raw_reading": ("raw_reading.v1.avsc",),
    "enriched_reading": ("enriched_reading.v1.avsc",),
    "aqi_hourly": ("aqi_hourly.v1.avsc", "aqi_hourly.v2.avsc"),
}


@cache
def _parse(filename: str) -> Any:
    with (_SCHEMA_DIR / filename).open(encoding="utf-8") as handle:
        return fastavro.parse_schema(json.load(handle))


def _fingerprint_of(parsed: Any) -> bytes:
    canonical = fastavro.schema.to_parsing_canonical_form(parsed)
    # fastavro returns the hex of the little-endian bytes, exactly what the header carries.
    return bytes.fromhex(fastavro.schema.fingerprint(canonical, "CRC-64-AVRO"))


def schema(name: str) -> Any:
    """The parsed Avro schema of contract `name` (its current version)."""
    try:
        filename = SCHEMA_NAMES[name]
    except KeyError:
        msg = f"unknown contract {name!r}; known: {', '.join(sorted(SCHEMA_NAMES))}"
        raise SchemaError(msg) from None
    return _parse(filename)


@cache
def fingerprint(name: str) -> bytes:
    """The 8-byte single-object fingerprint of contract `name` (its current version)."""
    return _fingerprint_of(schema(name))


@cache
def _by_fingerprint() -> dict[bytes, tuple[str, Any]]:
    """Fingerprint -> (contract name, writer schema), for every version of every contract."""
    known: dict[bytes, tuple[str, Any]] = {}
    for name in SCHEMA_NAMES:
        for filename in SCHEMA_HISTORY.get(name, ()):
            known[_fingerprint_of(_parse(filename))] = (name, _parse(filename))
        known[fingerprint(name)] = (name, schema(name))
    return known


@cache
def _compiled(name: str) -> tuple[bytes, Writer | None]:
    """The framing header of contract `name` and its compiled writer (schemas._writer)."""
    return MAGIC + fingerprint(name), compile_writer(schema(name))


def encode(name: str, record: Mapping[str, Any]) -> bytes:
    """Encode `record` as contract `name`, framed for Kafka."""
    header, write = _compiled(name)
    if write is not None:
        try:
            return header + write(record)
        except Unfit:
            pass  # fastavro's writer below encodes it, or says what does not fit
    buffer = io.BytesIO()
    buffer.write(header)
    try:
        # Strict: no unknown fields, no missing fields, except those with a default (a
        # field added by a compatible evolution may be left out and gets its default).
        # (fastavro: strict_allow_default alone is that rule; strict=True would refuse it.)
        fastavro.schemaless_writer(buffer, schema(name), dict(record), strict_allow_default=True)
    except (ValueError, TypeError) as error:
        msg = f"record does not fit contract {name!r}: {error}"
        raise SchemaError(msg) from error
    return buffer.getvalue()


@cache
def _compiled_reader(name: str) -> Reader | None:
    """The compiled reader of contract `name`'s current version (schemas._reader)."""
    return compile_reader(schema(name))


def is_avro(data: bytes) -> bool:
    """True when `data` carries the single-object marker."""
    return len(data) >= _HEADER_LEN and data[:2] == MAGIC


def decode_as(data: bytes) -> tuple[str, dict[str, Any]]:
    """Decode a framed message; return (contract name, record)."""
    if not is_avro(data):
        msg = "not an Avro single-object message (missing C3 01 marker)"
        raise SchemaError(msg)
    known = _by_fingerprint().get(bytes(data[2:_HEADER_LEN]))
    if known is None:
        msg = f"unknown schema fingerprint {bytes(data[2:_HEADER_LEN]).hex()}"
        raise SchemaError(msg)
    name, writer = known
    reader = schema(name)
    if writer is reader and type(data) is bytes:
        read = _compiled_reader(name)
        if read is not None:
            cursor = Cursor(data, _HEADER_LEN)
            try:
                compiled = read(cursor)
            except Unread:
                pass  # fastavro reads it below, or says what is wrong with it
            else:
                if cursor.position == len(data):
                    return name, compiled
    body = io.BytesIO(data)
    body.seek(_HEADER_LEN)
    try:
        record = fastavro.schemaless_reader(body, writer, None if writer is reader else reader)
    except (EOFError, ValueError, TypeError, IndexError, OverflowError, MemoryError) as error:
        msg = f"corrupt {name} body: {error}"
        raise SchemaError(msg) from error
    if body.tell() != len(data):
        msg = f"{len(data) - body.tell()} trailing bytes after a {name} record"
        raise SchemaError(msg)
    if not isinstance(record, dict):
        msg = f"{name} body is not a record"
        raise SchemaError(msg)
    return name, record


def decode(data: bytes) -> dict[str, Any]:
    """Decode any message the project writes (timestamps come back as aware UTC datetimes),
    as the current version of its contract, whichever version wrote it."""
    return decode_as(data)[1]
