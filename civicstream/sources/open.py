"""Choosing a reader by file, and merging several files into one event-time order."""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping, Sequence
from itertools import chain
from pathlib import Path

from civicstream.sources.base import SourceError, SourceRecord
from civicstream.sources.beijing import read_beijing
from civicstream.sources.jsonlines import read_jsonlines

__all__ = ["open_sources"]


def open_sources(
    paths: Sequence[Path],
    coordinates: Mapping[str, tuple[float, float]] | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
) -> Iterator[SourceRecord]:
    """Records of every file; Beijing station files are merged by event time."""
    csv_streams: list[Iterator[SourceRecord]] = []
    jsonl_streams: list[Iterator[SourceRecord]] = []
    for path in paths:
        if not path.is_file():
            msg = f"{path}: no such file"
            raise SourceError(msg)
        if path.suffix.lower() == ".csv":
            csv_streams.append(read_beijing(path, coordinates, since_ms, until_ms))
        elif path.suffix.lower() in {".jsonl", ".ndjson", ".json"}:
            jsonl_streams.append(read_jsonlines(path, since_ms, until_ms))
        else:
            msg = f"{path}: unknown format (expected a Beijing .csv or a .jsonl file)"
            raise SourceError(msg)
    merged = heapq.merge(*csv_streams, key=lambda r: (r.ts_ms, r.key or b""))
    return chain(merged, *jsonl_streams)
