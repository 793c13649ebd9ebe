"""The project's own JSON-lines format: one raw reading (gateway JSON) per line.

Lines are sent byte for byte; a line that is not a reading is still sent (without a key)
so that the worker dead-letters it with a reason instead of it being lost silently.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from civicstream.sources.base import SourceRecord
from schemas.raw import parse_timestamp_ms

__all__ = ["read_jsonlines"]


def read_jsonlines(
    path: Path, since_ms: int | None = None, until_ms: int | None = None
) -> Iterator[SourceRecord]:
    """Raw readings of a .jsonl file in file order; unreadable lines pass through unkeyed."""
    with path.open("rb") as handle:
        for line in handle:
            value = line.rstrip(b"\r\n")
            if not value.strip():
                continue
            key, ts_ms = None, 0
            try:
                record = json.loads(value)
                key = str(record["station_id"]).encode()
                ts_ms = parse_timestamp_ms(record["ts"])
            except (ValueError, KeyError, TypeError):
                pass
            if ts_ms and (since_ms is not None and ts_ms < since_ms):
                continue
            if ts_ms and (until_ms is not None and ts_ms >= until_ms):
                continue
            yield SourceRecord(ts_ms, key, value)
