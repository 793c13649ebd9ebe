"""Hostile messages for the raw topics, and a fuzzed run through the real worker.

Used by tests/integration/test_hostile_stream.py (a few thousand messages) and by
`make fuzz-long` (`python -m tests.fuzz`, 100,000). Every hostile message is one that the
worker must dead-letter: garbage (random bytes, truncated, oversized, deeply nested JSON,
wrong types, NaN, unicode tricks, year 1 and 9999, damaged Avro) and well-formed readings
and incident rows whose time is far ahead of their station's (source's) stream time, sent
only once that station (source) has history: a first reading sets stream time, whatever
its time (streams.time.far_ahead).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from schemas.raw import MAX_RAW_BYTES
from streams.time import DAY_MS, MAX_AHEAD_MS

YEAR_MS = 365 * DAY_MS
Message = tuple[bytes | None, bytes]


def _far_ahead(rng: random.Random, now_ms: int) -> int:
    """A time more than MAX_AHEAD_MS after `now_ms`, the latest event time of the real
    input (31 days to 7,000 years after it), capped at year 9999."""
    ahead = now_ms + MAX_AHEAD_MS + DAY_MS + rng.randrange(0, 7_000 * YEAR_MS)
    return min(ahead, 253_402_300_799_000)


def hostile_readings(count: int, seed: int, now_ms: int) -> list[Message]:
    """`count` hostile air-quality messages (key, value); `now_ms` is the latest event
    time of the real readings."""
    rng = random.Random(seed)
    good = {
        "station_id": "dongsi",
        "pollutant": "pm25",
        "value": 12.5,
        "unit": "ug/m3",
        "ts": "2013-03-01T00:30:00+08:00",
    }
    good_bytes = json.dumps(good).encode()

    def reading(**changes: Any) -> bytes:
        return json.dumps(good | changes).encode()

    makers: list[Callable[[], bytes]] = [
        lambda: rng.randbytes(rng.randrange(1, 200)),
        lambda: good_bytes[: rng.randrange(1, len(good_bytes))],
        lambda: b"[" * rng.randrange(1_000, 60_000),
        lambda: reading(value="NaN", ts=0),
        lambda: reading(value=float("inf")),
        lambda: reading(station_id="d\u202eongsi", value=1, ts="0001-01-01T00:00:00+00:00"),
        lambda: json.dumps(
            {"station_id": ["dongsi"], "pollutant": 25, "value": {}, "unit": None, "ts": "9999"}
        ).encode(),
        lambda: reading(value=1e308),
        lambda: reading(value=rng.choice([-1, -0.001, "12,5", True])),
        lambda: b"\xc3\x01" + rng.randbytes(rng.randrange(0, 64)),
        lambda: "ｄｏｎｇｓｉ".encode() + rng.randbytes(5),
        lambda: reading(station_id="dongsi\u200b"),
        lambda: reading(ts=_far_ahead(rng, now_ms)),  # a clock years ahead
        lambda: reading(ts=_far_ahead(rng, now_ms), pollutant="no2", unit="ppb"),
    ]
    messages = [(b"dongsi", rng.choice(makers)()) for _ in range(count)]
    messages.append((b"dongsi", good_bytes[:-1] + b" " * (MAX_RAW_BYTES + 1) + b"}"))
    messages.append((b"dongsi", b"x" * 1_000_000))  # near the topic's limit
    return messages


def hostile_incidents(count: int, seed: int, now_ms: int, template: bytes) -> list[Message]:
    """`count` hostile raw incident messages; `template` is a real SFPD row (JSON), `now_ms`
    the latest time of the real input (its heartbeat included)."""
    rng = random.Random(seed)
    base = json.loads(template)

    def row(**changes: Any) -> Message:
        body = base | changes
        key = str(body.get("incident_id")).encode()
        return key, json.dumps(body).encode()

    def ident() -> str:
        return f"fuzz-{rng.randrange(10**12)}"

    makers: list[Callable[[], Message]] = [
        lambda: (None, rng.randbytes(rng.randrange(1, 200))),
        lambda: (None, template[: rng.randrange(1, len(template))]),
        lambda: (None, b"{" * rng.randrange(1_000, 30_000)),
        lambda: row(incident_id=ident(), occurred_at="0001-01-01T00:00:00Z"),
        lambda: row(incident_id=ident(), occurred_at=None),
        lambda: row(incident_id=ident(), lat=float("nan"), lon=1.0),
        lambda: row(incident_id=ident(), lat=91.0, lon=0.0),
        lambda: row(incident_id=ident(), category=None, offence_code=None),
        lambda: row(incident_id=ident(), source="nowhere"),
        lambda: row(incident_id=ident(), description="\x00\x1b[31m"),
        lambda: row(incident_id=["x"]),
        lambda: row(incident_id=ident(), extra=["not", "an", "object"]),
        lambda: (b"not-the-id", json.dumps(base | {"incident_id": ident()}).encode()),
        lambda: (None, b"\xc3\x01" + rng.randbytes(rng.randrange(0, 64))),
        lambda: row(
            incident_id=ident(), occurred_at=_iso(now_ms), reported_at=_iso(_far_ahead(rng, now_ms))
        ),
        lambda: row(  # occurred long after it was reported
            incident_id=ident(), occurred_at=_iso(now_ms + 30 * DAY_MS), reported_at=_iso(now_ms)
        ),
    ]
    return [rng.choice(makers)() for _ in range(count)]


def _is_beat(parsed: Any) -> bool:
    from schemas.raw_incident import IncidentHeartbeat

    return isinstance(parsed, IncidentHeartbeat)


def _iso(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()


def mix(real: list[Message], hostile: list[Message], seed: int, after: int) -> list[Message]:
    """`hostile` inserted at seeded random places of `real`, each after the first `after`
    real messages (so that their station or source has history)."""
    rng = random.Random(seed)
    mixed = list(real)
    for message in hostile:
        mixed.insert(rng.randrange(after, len(mixed) + 1), message)
    return mixed


@dataclass
class Outcome:
    """What the dead-letter topic holds against what was sent."""

    hostile: int
    dead_letters: int
    missing: int  # hostile messages not dead-lettered
    extra: int  # dead letters beyond the hostile messages (twice, or of a real one)
    reasons: Counter[str]

    @property
    def exact(self) -> bool:
        return self.missing == 0 and self.extra == 0


def account(
    hostile: list[Message],
    letters: list[tuple[str, bytes]],
    baseline: list[tuple[str, bytes]] = (),  # type: ignore[assignment]
) -> Outcome:
    """`letters`: (reason, original value) of every dead letter of the fuzzed namespace;
    `baseline`: those of the clean run (real messages that are dead-lettered anyway)."""
    sent = Counter(value for _, value in hostile)
    got = Counter(value for _, value in letters) - Counter(value for _, value in baseline)
    return Outcome(
        hostile=len(hostile),
        dead_letters=len(letters) - len(baseline),
        missing=sum((sent - got).values()),
        extra=sum((got - sent).values()),
        reasons=Counter(reason for reason, _ in letters) - Counter(r for r, _ in baseline),
    )


# -- a fuzzed run through the real worker ------------------------------------------------------


@dataclass
class FuzzReport:
    real: int
    readings: Outcome
    incidents: Outcome
    differences: int
    rows: dict[str, int]
    seconds: float

    @property
    def passed(self) -> bool:
        return self.readings.exact and self.incidents.exact and self.differences == 0

    def summary(self) -> str:
        reasons = self.readings.reasons + self.incidents.reasons
        return "\n".join(
            [
                f"real messages: {self.real:,}; hostile: {self.readings.hostile:,} air-quality + "
                f"{self.incidents.hostile:,} incident = "
                f"{self.readings.hostile + self.incidents.hostile:,}",
                f"dead letters: {self.readings.dead_letters + self.incidents.dead_letters:,}; "
                f"hostile not dead-lettered: {self.readings.missing + self.incidents.missing}, "
                f"dead letters beyond the hostile: {self.readings.extra + self.incidents.extra}",
                "reasons: " + ", ".join(f"{r} {n:,}" for r, n in reasons.most_common()),
                "datasets: " + ", ".join(f"{name} {n:,} rows" for name, n in self.rows.items()),
                f"differing rows against the clean run: {self.differences}",
                f"processed in {self.seconds:.0f}s",
            ]
        )


def fuzzed_run(
    clean: Any,
    fuzzed: Any,
    readings: list[Message],
    incidents: list[Message],
    hostile_count: int,
    seed: int,
    timeout_s: float = 600,
) -> FuzzReport:
    """Send the real input to `clean` and the real input with `hostile_count` hostile
    messages mixed in (about 2/3 air quality, 1/3 incidents) to `fuzzed` (both
    tests.integration.harness pipelines, started); compare every dataset and every dead
    letter."""
    import time

    from civicstream.diff import compare_stores
    from schemas import InvalidInput
    from schemas.raw import parse_raw_reading
    from schemas.raw_incident import parse_raw_incident

    newest_reading = max(parse_raw_reading(value).ts_ms for _, value in readings)
    parsed = []
    for _, value in incidents:
        try:
            parsed.append(parse_raw_incident(value))
        except InvalidInput:
            parsed.append(None)  # a real row the worker dead-letters (in both runs)
    newest_incident = max(p.ts_ms if _is_beat(p) else p.known_ms for p in parsed if p is not None)
    template = next(
        value
        for (_, value), p in zip(incidents, parsed, strict=True)
        if p is not None and not _is_beat(p)
    )
    bad_readings = hostile_readings(hostile_count * 2 // 3, seed, newest_reading)
    bad_incidents = hostile_incidents(
        hostile_count - len(bad_readings), seed + 1, newest_incident, template
    )
    # the raw incidents topic has one partition: hostile rows after the first real ones,
    # and before the final heartbeat (the last real message)
    mixed_incidents = mix(incidents[:-1], bad_incidents, seed + 2, after=10) + incidents[-1:]
    mixed_readings = mix(readings, bad_readings, seed + 3, after=len(readings) // 20)
    started = time.monotonic()
    clean.send(readings)
    clean.send_incidents(incidents)
    fuzzed.send(mixed_readings)
    fuzzed.send_incidents(mixed_incidents)
    for pipeline, air, rows in (
        (clean, readings, incidents),
        (fuzzed, mixed_readings, mixed_incidents),
    ):
        pipeline.wait_until_caught_up(len(air), timeout_s=timeout_s)
        pipeline.wait_until_incidents_caught_up(len(rows), timeout_s=timeout_s)
        pipeline.wait_until_caught_up(len(air), timeout_s=timeout_s)
    seconds = time.monotonic() - started

    def letters(pipeline: Any) -> dict[str, list[tuple[str, bytes]]]:
        by_topic: dict[str, list[tuple[str, bytes]]] = {"air": [], "incidents": []}
        for _, letter, *_ in pipeline.read_topic(pipeline.topics.deadletter):
            raw = letter["source_topic"] == pipeline.topics.raw_incidents
            by_topic["incidents" if raw else "air"].append((letter["reason"], letter["value"]))
        return by_topic

    got, baseline = letters(fuzzed), letters(clean)
    diffs = compare_stores(clean.store_url, fuzzed.store_url)
    return FuzzReport(
        real=len(readings) + len(incidents),
        readings=account(bad_readings, got["air"], baseline["air"]),
        incidents=account(bad_incidents, got["incidents"], baseline["incidents"]),
        differences=sum(len(d.only_a) + len(d.only_b) + len(d.changed) for d in diffs),
        rows={d.name: d.rows_a for d in diffs},
        seconds=seconds,
    )
