"""The incident step's configuration, days and state: everything but the decisions.

`IncidentSource` is one source of the city configuration. Days are the city's local days:
`local_day` and `day_end_ms` convert with the source's IANA zone, daylight saving included.
State is a set of small JSON values in one changelog-backed table (see streams.incidents
for the keys); `BatchState` is a batch's view of it: values decoded once, changed keys
written once, at the end, after the outputs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, time
from functools import lru_cache
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from processors.privacy import PrivacyRules
from processors.taxonomy import Taxonomy

__all__ = [
    "DAY_MS",
    "PROGRESS_PREFIX",
    "BatchState",
    "IncidentSource",
    "IncidentStateStore",
    "IncidentStateUpdate",
    "cell_key",
    "cell_of",
    "day_end_ms",
    "incident_progress_update",
    "local_day",
]

DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS
PROGRESS_PREFIX = "\x00progress/"


@dataclass(frozen=True)
class IncidentSource:
    """One incident source of a city (from the city configuration)."""

    name: str
    title: str
    timezone: str
    taxonomy: Taxonomy = field(default_factory=Taxonomy)
    privacy: PrivacyRules = field(default_factory=PrivacyRules)
    allowed_lateness_ms: int = 13 * WEEK_MS


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def local_day(ts_ms: int, timezone: str) -> date:
    """The city's local day that contains `ts_ms`."""
    return datetime.fromtimestamp(ts_ms // 1000, tz=_zone(timezone)).date()


@lru_cache(maxsize=4096)
def day_end_ms(day_ordinal: int, timezone: str) -> int:
    """UTC epoch ms of the local midnight that ends the day (daylight saving included)."""
    midnight = datetime.combine(date.fromordinal(day_ordinal + 1), time(), tzinfo=_zone(timezone))
    return int(midnight.timestamp()) * 1000


class IncidentStateStore(Protocol):
    """Where the incident state lives between batches (a Faust table in the worker)."""

    def load(self, key: str) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class IncidentStateUpdate:
    """A state key's new value (None deletes it) and the partition of its changelog."""

    key: str
    partition: int
    data: bytes | None


def incident_progress_update(partition: int, next_offset: int) -> IncidentStateUpdate:
    """The state write that records a raw partition's next offset to apply."""
    data = json.dumps({"next_offset": next_offset}).encode()
    return IncidentStateUpdate(f"{PROGRESS_PREFIX}{partition}", partition, data)


class BatchState:
    """The batch's view of the state: decoded values, and which keys changed."""

    def __init__(self, store: IncidentStateStore) -> None:
        self._store = store
        self._values: dict[str, Any] = {}
        self.changed: set[str] = set()

    def get(self, key: str) -> Any:
        if key not in self._values:
            data = self._store.load(key)
            self._values[key] = json.loads(data) if data is not None else None
        return self._values[key]

    def put(self, key: str, value: Any) -> None:
        self._values[key] = value
        self.changed.add(key)

    def delete(self, key: str) -> None:
        self.put(key, None)

    def updates(self, partition: int) -> list[IncidentStateUpdate]:
        def encoded(value: Any) -> bytes | None:
            if value is None:
                return None
            return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()

        return [
            IncidentStateUpdate(key, partition, encoded(self._values[key]))
            for key in sorted(self.changed)
        ]


def cell_key(day: int, district: str) -> str:
    return f"c/{day}/{district}"  # day: proleptic Gregorian ordinal of the local date


def cell_of(key: str) -> tuple[int, str]:
    day, district = key[2:].split("/", 1)
    return int(day), district
