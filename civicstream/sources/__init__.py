"""Readers that turn public data files into raw readings (key, value, event time)."""

from civicstream.sources.base import SourceError, SourceRecord
from civicstream.sources.beijing import read_beijing
from civicstream.sources.jsonlines import read_jsonlines
from civicstream.sources.open import open_sources

__all__ = ["SourceError", "SourceRecord", "open_sources", "read_beijing", "read_jsonlines"]
