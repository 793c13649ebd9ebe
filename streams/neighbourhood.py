"""The neighbour check in the stream: where the stations of an area meet.

Re-keying. The air-quality agent publishes each station's hourly record when the hour is
final (civic.aqi.hourly, key station_id). For the stations of the city file it also sends
the record to the internal topic ``civic.internal.hourly-by-area``, keyed by *area*, once
for every area the station takes part in: its home area, and the home areas of the
stations it is a neighbour of (`AreaPlan.feeds`). All the records an area needs then meet
in one partition, in the hands of one worker; the area's state lives in a changelog-backed
table (``area-state``), written to that partition like the station states.

Areas. By default the whole city is one area (``[neighbours] area_km = 0``): simplest, and
right for a city's few dozen reference stations. A dense network sets ``area_km``: areas
are then grid cells of that size, spread over the partitions, and a station near a cell's
edge is sent to the next cell too, so its neighbours there are judged with it. The work
per area-hour is O(stations × max_neighbours); the state of an area is its stations'
baselines plus the open hours' values.

When an hour is judged (event time only). A station's hourly records arrive in hour order
(one station's hours are made final in order, from one raw partition), so once a station
has reported hour H or a later one, it will send nothing more for H. An area judges H when
every member station has, except those *absent*: stations whose newest hour is more than
``wait`` behind the area's newest hour (a dead station must not hold its area forever; a
station that never reported counts as having reported just before the area's first hour;
the area's newest hour is its second-newest station's, so one station with a clock far
ahead cannot hurry the others).
The outcome depends only on the records, not on batches or arrival timing, as long as no
live station falls more than ``wait`` behind the others (in a live city they are minutes
apart; the default wait is 24 hours). Records of hours already judged are late and left
out (a re-delivered duplicate, or a station that came back after being absent).

Each hour judged runs `processors.neighbours.judge` per pollutant over the area's home
stations; each disagreement is an anomaly event (kind ``disagrees_with_neighbours``,
ts the hour's start) on civic.anomalies, keyed by station like the others.

Delivery (the air-quality agent's rules): re-keyed records are produced with the other
outputs, before the station states; the area agent produces its events, then writes the
area states and the progress of its input partitions. Applying a record twice changes
nothing (values are replaced, hours already judged are skipped), so re-delivery after a
crash gives the same events again, which the store's upserts absorb.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from processors import neighbours as nb
from processors.units import EPA_UNITS
from schemas import Topics, encode
from schemas.codec import decode_as
from streams.air_quality import (
    Gap,
    Output,
    SourceRecord,
    StateStore,
    StateUpdate,
    load_progress,
    progress_update,
)
from streams.time import HOUR_MS

__all__ = [
    "DEFAULT_WAIT_MS",
    "ONE_AREA",
    "AreaPlan",
    "AreaState",
    "NeighbourConfig",
    "NeighbourPipeline",
    "NeighbourResult",
]

DEFAULT_WAIT_MS = 24 * HOUR_MS
ONE_AREA = "city"
"""The area's name when the whole city is one area."""
_KM_PER_DEGREE = math.pi * nb.EARTH_RADIUS_KM / 180.0
_SNAPSHOT_VERSION = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)


@dataclass(frozen=True)
class NeighbourConfig:
    """The city file's ``[neighbours]`` table."""

    enabled: bool = True
    radius_km: float = 40.0
    max_neighbours: int = 8
    min_neighbours: int = 3
    area_km: float = 0.0
    """Grid cell size of the areas; 0: the whole city is one area."""
    wait_ms: int = DEFAULT_WAIT_MS
    """How far (event time) a station may fall behind its area before it is not waited for."""

    @property
    def rules(self) -> nb.NeighbourRules:
        return nb.NeighbourRules(self.radius_km, self.max_neighbours, self.min_neighbours)


def _cell(lat: float, lon: float, area_km: float) -> str:
    """The grid cell of a point: rows of `area_km` of latitude, each cut into columns of
    about `area_km` at the row's middle latitude."""
    height = area_km / _KM_PER_DEGREE
    row = math.floor(lat / height)
    middle = math.radians((row + 0.5) * height)
    width = min(360.0, height / max(math.cos(middle), 1e-6))
    return f"cell/{row}/{math.floor(lon / width)}"


@dataclass(frozen=True)
class AreaPlan:
    """Who meets where: each station's home area, the areas its records go to, each
    area's members (whose records it receives) and each station's neighbours."""

    config: NeighbourConfig
    home: Mapping[str, str]
    feeds: Mapping[str, tuple[str, ...]]
    members: Mapping[str, frozenset[str]]
    neighbours: Mapping[str, tuple[str, ...]]

    @classmethod
    def of(
        cls, coordinates: Mapping[str, tuple[float, float]], config: NeighbourConfig
    ) -> AreaPlan:
        """The plan for the stations' coordinates (lat, lon); none when disabled."""
        if not config.enabled:
            return cls(config, {}, {}, {}, {})
        neighbours = nb.neighbours_within(coordinates, config.rules)
        if config.area_km > 0:
            home = {s: _cell(lat, lon, config.area_km) for s, (lat, lon) in coordinates.items()}
        else:
            home = dict.fromkeys(coordinates, ONE_AREA)
        feeds: dict[str, set[str]] = {station: {home[station]} for station in coordinates}
        for station, around in neighbours.items():
            for other in around:
                feeds[other].add(home[station])
        members: dict[str, set[str]] = {}
        for station, areas in feeds.items():
            for area in areas:
                members.setdefault(area, set()).add(station)
        return cls(
            config,
            home,
            {
                s: tuple(sorted(areas, key=lambda a: (a != home[s], a)))
                for s, areas in feeds.items()
            },
            {area: frozenset(stations) for area, stations in members.items()},
            neighbours,
        )

    def rekey(self, hourly: Sequence[tuple[int, str, bytes]], topics: Topics) -> list[Output]:
        """The re-keyed copies of a batch's hourly records (its `BatchResult.hourly`: hour
        start, station, Avro value), for the area topic.

        Ordered by hour, then station: a batch of the air-quality agent may hold many hours
        of one raw partition before those of another, and an area should see its stations'
        hours side by side (one station's hours stay in order).
        """
        if not self.feeds:
            return []
        found = sorted(
            (record for record in hourly if record[1] in self.feeds),
            key=lambda record: (record[0], record[1]),
        )
        return [
            Output(topics.hourly_by_area, area.encode(), value)
            for _, station, value in found
            for area in self.feeds[station]
        ]


def _ms(value: datetime | int) -> int:
    if isinstance(value, datetime):
        return (value - _EPOCH) // _MILLISECOND
    return int(value)


@dataclass
class AreaState:
    """One area: what its stations reported for the hours not yet judged, how far each
    station has got, and the baselines of its home stations."""

    area: str
    first_hour_ms: int | None = None
    judged_through_ms: int | None = None
    """The newest hour judged; records for it and earlier hours are late."""
    seen: dict[str, int] = field(default_factory=dict)
    """Station → the newest hour it reported."""
    open_hours: dict[int, dict[str, dict[str, float]]] = field(default_factory=dict)
    """Hour → station → pollutant → hourly mean (EPA units)."""
    baselines: dict[str, dict[str, nb.Baseline]] = field(default_factory=dict)
    """Pollutant → home station → its baseline."""

    def add(self, station: str, hour_ms: int, means: Mapping[str, float]) -> bool:
        """Take a station's hourly means; False (and nothing kept) when the hour is judged."""
        if self.first_hour_ms is None or hour_ms < self.first_hour_ms:
            self.first_hour_ms = hour_ms
        self.seen[station] = max(self.seen.get(station, hour_ms), hour_ms)
        if self.judged_through_ms is not None and hour_ms <= self.judged_through_ms:
            return False
        self.open_hours.setdefault(hour_ms, {})[station] = {
            pollutant: float(value) for pollutant, value in sorted(means.items())
        }
        return True

    def complete_through(self, members: Iterable[str], wait_ms: int) -> int | None:
        """The newest hour every member station has reported or passed, absent ones aside."""
        if self.first_hour_ms is None:
            return None
        # The area's clock: the second-newest hour of its stations (the newest when only one
        # reported), so that one station with a wrong clock cannot make the others absent.
        reached_by = sorted(self.seen.values())
        newest = reached_by[-2] if len(reached_by) > 1 else reached_by[-1]
        before_start = self.first_hour_ms - HOUR_MS
        waiting = [
            reached
            for reached in (self.seen.get(m, before_start) for m in members)
            if newest - reached <= wait_ms
        ]
        return min(waiting, default=newest)

    def ready(self, members: Iterable[str], wait_ms: int) -> list[int]:
        """Judge-ready hours, oldest first; marks them judged."""
        through = self.complete_through(members, wait_ms)
        if through is None:
            return []
        hours = sorted(hour for hour in self.open_hours if hour <= through)
        if hours:
            self.judged_through_ms = hours[-1]  # open hours are all after the last judged
        return hours

    def judge(self, hour_ms: int, plan: AreaPlan) -> list[nb.Verdict]:
        """Judge one ready hour: every pollutant's verdicts for the area's home stations."""
        reported = self.open_hours.pop(hour_ms)
        verdicts: list[nb.Verdict] = []
        pollutants = sorted({p for means in reported.values() for p in means})
        for pollutant in pollutants:
            values = {s: means[pollutant] for s, means in reported.items() if pollutant in means}
            home = [s for s in values if plan.home.get(s) == self.area]
            learnt_before = self.baselines.setdefault(pollutant, {})
            judged, learnt = nb.judge(
                pollutant,
                values,
                plan.neighbours,
                learnt_before,
                home,
                plan.config.min_neighbours,
            )
            learnt_before.update(learnt)
            verdicts.extend(judged)
        return verdicts

    # -- snapshot ------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        return {
            "v": _SNAPSHOT_VERSION,
            "area": self.area,
            "first_hour_ms": self.first_hour_ms,
            "judged_through_ms": self.judged_through_ms,
            "seen": dict(sorted(self.seen.items())),
            "open_hours": {
                str(hour): {s: dict(means) for s, means in sorted(stations.items())}
                for hour, stations in sorted(self.open_hours.items())
            },
            "baselines": {
                p: {s: b.to_row() for s, b in sorted(stations.items())}
                for p, stations in sorted(self.baselines.items())
            },
        }

    @classmethod
    def restore(cls, snapshot: Mapping[str, Any]) -> AreaState:
        if snapshot.get("v") != _SNAPSHOT_VERSION:
            msg = f"unsupported area state version {snapshot.get('v')!r}"
            raise ValueError(msg)
        return cls(
            area=snapshot["area"],
            first_hour_ms=snapshot["first_hour_ms"],
            judged_through_ms=snapshot["judged_through_ms"],
            seen={s: int(h) for s, h in snapshot["seen"].items()},
            open_hours={
                int(hour): {s: dict(means) for s, means in stations.items()}
                for hour, stations in snapshot["open_hours"].items()
            },
            baselines={
                p: {s: nb.Baseline.from_row(row) for s, row in stations.items()}
                for p, stations in snapshot["baselines"].items()
            },
        )

    def to_bytes(self) -> bytes:
        return json.dumps(self.snapshot(), separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> AreaState:
        return cls.restore(json.loads(data))


@dataclass
class NeighbourResult:
    """What one batch of re-keyed hourly records produced (see streams.air_quality's
    BatchResult for the order: outputs durable before state updates)."""

    outputs: list[Output] = field(default_factory=list)
    state_updates: list[StateUpdate] = field(default_factory=list)
    gaps: dict[int, Gap] = field(default_factory=dict)
    applied: int = 0
    redelivered: int = 0
    skipped: int = 0
    late: int = 0
    unreadable: int = 0
    hours_judged: int = 0
    verdicts: int = 0
    disagreements: int = 0
    anomalies: Counter[str] = field(default_factory=Counter)


def _event(verdict: nb.Verdict, hour_ms: int) -> dict[str, Any]:
    low, high = verdict.expected
    return {
        "station_id": verdict.station_id,
        "sensor_id": None,
        "pollutant": verdict.pollutant,
        "ts": hour_ms,
        "kind": nb.KIND,
        "score": verdict.score,
        "value": verdict.value,
        "unit": EPA_UNITS[verdict.pollutant],
        "expected_low": low,
        "expected_high": high,
        "detail": verdict.detail,
    }


class NeighbourPipeline:
    """Applies re-keyed hourly records to their areas and judges the hours made ready."""

    def __init__(self, topics: Topics, plan: AreaPlan) -> None:
        self.topics = topics
        self.plan = plan

    def process(self, records: Sequence[SourceRecord], store: StateStore) -> NeighbourResult:
        """Apply a batch in order; `store` is only read (the caller writes the updates)."""
        result = NeighbourResult()
        touched: dict[str, tuple[AreaState, int]] = {}
        next_offsets: dict[int, int | None] = {}
        for record in records:
            partition = record.partition
            if partition not in next_offsets:
                next_offsets[partition] = load_progress(store, partition)
            expected = next_offsets[partition]
            if expected is not None and record.offset < expected:
                result.redelivered += 1
                continue
            if expected is not None and record.offset > expected:
                gap = result.gaps.get(partition)
                if gap is None or record.offset < gap.first_seen:
                    result.gaps[partition] = Gap(expected, record.offset)
                result.skipped += 1
                continue
            next_offsets[partition] = record.offset + 1
            parsed = _parse(record)
            if parsed is None:
                result.unreadable += 1  # our own topic: not expected, never fatal
                continue
            area, station, hour_ms, means = parsed
            if area in touched:
                state = touched[area][0]
            else:
                stored = store.load(area)
                state = AreaState.from_bytes(stored) if stored else AreaState(area)
            touched[area] = (state, partition)
            if not state.add(station, hour_ms, means):
                result.late += 1
                continue
            result.applied += 1
            members = self.plan.members.get(area) or frozenset(state.seen)
            for hour in state.ready(members, self.plan.config.wait_ms):
                result.hours_judged += 1
                for verdict in state.judge(hour, self.plan):
                    result.verdicts += 1
                    if verdict.disagrees:
                        result.disagreements += 1
                        result.anomalies[nb.KIND] += 1
                        event = encode("anomaly", _event(verdict, hour))
                        key = verdict.station_id.encode()
                        result.outputs.append(Output(self.topics.anomalies, key, event))
        for area, (state, partition) in touched.items():
            result.state_updates.append(StateUpdate(area, partition, state.to_bytes()))
        for partition, next_offset in sorted(next_offsets.items()):
            if next_offset is not None:
                result.state_updates.append(progress_update(partition, next_offset))
        return result


def _parse(record: SourceRecord) -> tuple[str, str, int, dict[str, float]] | None:
    if not record.key or not record.value:
        return None
    try:
        name, row = decode_as(record.value)
        if name != "aqi_hourly":
            return None
        return (
            record.key.decode(),
            str(row["station_id"]),
            _ms(row["hour_start"]),
            {str(p): float(v) for p, v in row["hourly_means"].items()},
        )
    except Exception:  # an unreadable record is counted, never fatal
        return None
