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

from schemas.exceptions import SchemaError

__all__ = [
    "MAGIC",
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

# Contract name -> .avsc file. Add an evolved version as a new file and list it here; every
# version stays decodable (old fingerprints keep resolving to their writer schema).
SCHEMA_NAMES: dict[str, str] = {
    "raw_reading": "raw_reading.avsc",
    "enriched_reading": "enriched_reading.avsc",
    "aqi_hourly": "aqi_hourly.avsc",
    "deadletter": "deadletter.avsc",
    "archived_record": "archived_record.avsc",
}


@cache
def schema(name: str) -> Any:
    """The parsed Avro schema of contract `name`."""
    try:
        filename = SCHEMA_NAMES[name]
    except KeyError:
        msg = f"unknown contract {name!r}; known: {', '.join(sorted(SCHEMA_NAMES))}"
        raise SchemaError(msg) from None
    with (_SCHEMA_DIR / filename).open(encoding="utf-8") as handle:
        return fastavro.parse_schema(json.load(handle))


@cache
def fingerprint(name: str) -> bytes:
    """The 8-byte single-object fingerprint of contract `name`."""
    canonical = fastavro.schema.to_parsing_canonical_form(schema(name))
    # fastavro returns the hex of the little-endian bytes, exactly what the header carries.
    return bytes.fromhex(fastavro.schema.fingerprint(canonical, "CRC-64-AVRO"))


@cache
def _by_fingerprint() -> dict[bytes, str]:
    return {fingerprint(name): name for name in SCHEMA_NAMES}


def encode(name: str, record: Mapping[str, Any]) -> bytes:
    """Encode `record` as contract `name`, framed for Kafka."""
    buffer = io.BytesIO()
    buffer.write(MAGIC)
    buffer.write(fingerprint(name))
    try:
        fastavro.schemaless_writer(buffer, schema(name), dict(record), strict=True)
    except (ValueError, TypeError) as error:
        msg = f"record does not fit contract {name!r}: {error}"
        raise SchemaError(msg) from error
    return buffer.getvalue()


def is_avro(data: bytes) -> bool:
    """True when `data` carries the single-object marker."""
    return len(data) >= _HEADER_LEN and data[:2] == MAGIC


def decode_as(data: bytes) -> tuple[str, dict[str, Any]]:
    """Decode a framed message; return (contract name, record)."""
    if not is_avro(data):
        msg = "not an Avro single-object message (missing C3 01 marker)"
        raise SchemaError(msg)
    name = _by_fingerprint().get(bytes(data[2:_HEADER_LEN]))
    if name is None:
        msg = f"unknown schema fingerprint {bytes(data[2:_HEADER_LEN]).hex()}"
        raise SchemaError(msg)
    body = io.BytesIO(data)
    body.seek(_HEADER_LEN)
    try:
        record = fastavro.schemaless_reader(body, schema(name), None)
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
    """Decode any message the project writes (timestamps come back as aware UTC datetimes)."""
    return decode_as(data)[1]
