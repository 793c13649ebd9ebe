"""What every reader yields."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["SourceError", "SourceRecord"]


class SourceError(ValueError):
    """A data file that cannot be read; the message names the file."""


class SourceRecord(NamedTuple):
    """One message for the raw topic; ordered by event time, then station."""

    ts_ms: int
    key: bytes | None
    value: bytes
