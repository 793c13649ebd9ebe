"""The contracts: Avro schemas, their framing, topic names and raw-input parsing."""

from schemas.codec import decode, encode
from schemas.exceptions import InvalidInput, Reason, SchemaError
from schemas.raw import RawReading, parse_raw_reading
from schemas.topics import Topics

__all__ = [
    "InvalidInput",
    "RawReading",
    "Reason",
    "SchemaError",
    "Topics",
    "decode",
    "encode",
    "parse_raw_reading",
]
