"""The neighbour check in the stream (streams.neighbourhood): hourly records re-keyed by
area, an area's hour judged once its stations have reported, events on civic.anomalies."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from schemas import Topics, decode, encode
from streams.air_quality import SourceRecord
from streams.neighbourhood import (
    ONE_AREA,
    AreaPlan,
    AreaState,
    NeighbourConfig,
    NeighbourPipeline,
    NeighbourResult,
)
from streams.time import HOUR_MS

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
KM = 1 / 111.19508  # a kilometre of latitude, in degrees
TOPICS = Topics()
# Five stations 2 km apart, north to south.
CITY = {f"s{i}": (40.0 + 2 * i * KM, 116.0) for i in range(5)}
PLAN = AreaPlan.of(CITY, NeighbourConfig())


def hourly(station: str, hour: int, **means: float) -> bytes:
    record = {"station_id": station, "hour_start": T0 + hour * HOUR_MS, "hourly_means": means}
    return encode("aqi_hourly", record)


def city_hours(hours: int, odd: dict[tuple[str, int], float] | None = None) -> list[list[bytes]]:
    """Per station, its hourly records in hour order: PM2.5 and NO2 that agree across the
    city, with `odd` (station, hour) → PM2.5 factor."""
    rng = random.Random(11)
    per_station: dict[str, list[bytes]] = {station: [] for station in CITY}
    for hour in range(hours):
        pm25 = rng.uniform(20, 80)
        no2 = rng.uniform(10, 40)
        for station in CITY:
            factor = (odd or {}).get((station, hour), 1.0)
            per_station[station].append(
                hourly(
                    station,
                    hour,
                    pm25=round(pm25 * rng.uniform(0.92, 1.08) * factor, 1),
                    no2=round(no2 * rng.uniform(0.92, 1.08), 1),
                )
            )
    return list(per_station.values())


def interleave(streams: Sequence[Sequence[bytes]], rng: random.Random) -> list[bytes]:
    """One random interleaving that keeps each station's records in order."""
    positions = [0] * len(streams)
    out = []
    while any(p < len(s) for p, s in zip(positions, streams, strict=True)):
        choices = [i for i, s in enumerate(streams) if positions[i] < len(s)]
        pick = rng.choice(choices)
        out.append(streams[pick][positions[pick]])
        positions[pick] += 1
    return out


def by_hour(streams: Sequence[Sequence[bytes]]) -> list[bytes]:
    return [value for hour in zip(*streams, strict=True) for value in hour]


class MemoryStore(dict[str, bytes]):
    def load(self, key: str) -> bytes | None:
        return self.get(key)

    def apply(self, result: NeighbourResult) -> None:
        for update in result.state_updates:
            self[update.station_id] = update.data


def run(
    values: Sequence[bytes],
    plan: AreaPlan = PLAN,
    batch: int = 7,
    store: MemoryStore | None = None,
    area: str = ONE_AREA,
    first_offset: int = 0,
) -> tuple[list[dict], MemoryStore]:
    """Feed the records (one area, partition 0) in batches; the anomaly events, in order."""
    pipeline = NeighbourPipeline(TOPICS, plan)
    store = MemoryStore() if store is None else store
    records = [
        SourceRecord(TOPICS.hourly_by_area, 0, first_offset + i, area.encode(), value)
        for i, value in enumerate(values)
    ]
    events = []
    for start in range(0, len(records), batch):
        result = pipeline.process(records[start : start + batch], store)
        assert not result.gaps
        for output in result.outputs:
            assert output.topic == TOPICS.anomalies
            event = decode(output.value)
            assert output.key == event["station_id"].encode()
            events.append(event)
        store.apply(result)
    return events, store


def summary(events: list[dict]) -> list[tuple[str, str, int, str]]:
    return [
        (
            e["station_id"],
            e["pollutant"],
            (int(e["ts"].timestamp() * 1000) - T0) // HOUR_MS,
            e["kind"],
        )
        for e in events
    ]


# -- the plan: areas, who is sent where ------------------------------------------------


def test_by_default_the_whole_city_is_one_area() -> None:
    assert set(PLAN.home.values()) == {ONE_AREA}
    assert PLAN.members == {ONE_AREA: frozenset(CITY)}
    assert PLAN.feeds["s0"] == (ONE_AREA,)
    assert PLAN.neighbours["s0"] == ("s1", "s2", "s3", "s4")


def test_grid_areas_also_receive_the_stations_next_door_that_their_stations_need() -> None:
    # A line of stations 2 km apart over 40 km, in 10 km cells, neighbours within 5 km.
    line = {f"p{i:02d}": (40.0 + 2 * i * KM, 116.0) for i in range(20)}
    config = NeighbourConfig(radius_km=5, min_neighbours=2, area_km=10)
    plan = AreaPlan.of(line, config)
    assert len(set(plan.home.values())) >= 4
    for station, around in plan.neighbours.items():
        for other in around:
            assert plan.home[station] in plan.feeds[other]  # every neighbour reaches it
            assert other in plan.members[plan.home[station]]
    edge = [s for s in line if len(plan.feeds[s]) > 1]
    assert edge and all(plan.feeds[s][0] == plan.home[s] for s in line)
    assert max(len(plan.feeds[s]) for s in line) == 2


def test_a_disabled_check_plans_nothing_and_rekeys_nothing() -> None:
    plan = AreaPlan.of(CITY, NeighbourConfig(enabled=False))
    assert plan.rekey([(0, "s0", hourly("s0", 0, pm25=10.0))], TOPICS) == []


def test_hourly_records_are_rekeyed_by_area_ordered_by_hour_then_station() -> None:
    batch = [
        (hour, station, hourly(station, hour, pm25=pm25))
        for station, hour, pm25 in [
            ("s1", 0, 1.0),
            ("s1", 1, 2.0),
            ("elsewhere", 0, 3.0),
            ("s0", 1, 4.0),
            ("s0", 0, 5.0),
        ]
    ]
    rekeyed = PLAN.rekey([(T0 + hour * HOUR_MS, s, value) for hour, s, value in batch], TOPICS)
    assert {o.topic for o in rekeyed} == {TOPICS.hourly_by_area}
    assert {o.key for o in rekeyed} == {ONE_AREA.encode()}
    assert [decode(o.value)["hourly_means"]["pm25"] for o in rekeyed] == [5.0, 1.0, 4.0, 2.0]
    assert [o.value for o in rekeyed] == [batch[i][2] for i in (4, 0, 3, 1)]  # not re-encoded


# -- judging an area's hours -----------------------------------------------------------


def test_a_station_five_times_its_neighbours_at_one_hour_is_reported_once() -> None:
    events, _ = run(by_hour(city_hours(30, {("s2", 24): 5.0})))
    assert summary(events) == [("s2", "pm25", 24, "disagrees_with_neighbours")]
    event = events[0]
    assert event["unit"] == "ug/m3" and event["sensor_id"] is None
    assert event["expected_low"] < event["value"] / 5 < event["expected_high"] < event["value"]
    assert event["score"] > 0.6
    assert "of 4 neighbours (s1 " in event["detail"]


def test_the_events_do_not_depend_on_arrival_order_or_batches() -> None:
    streams = city_hours(30, {("s2", 24): 5.0, ("s0", 20): 0.1})
    expected, _ = run(by_hour(streams))
    assert len(expected) == 2
    rng = random.Random(4)
    for batch in (1, 3, 50):
        events, _ = run(interleave(streams, rng), batch=batch)
        assert events == expected


def test_an_hour_is_judged_when_every_station_has_reported_it() -> None:
    streams = city_hours(3, {("s2", 1): 5.0})
    values = by_hour(streams)
    events, store = run(values[:-1])  # the last station has not sent hour 2
    assert summary(events) == [("s2", "pm25", 1, "disagrees_with_neighbours")]
    state = AreaState.from_bytes(store[ONE_AREA])
    assert list(state.open_hours) == [T0 + 2 * HOUR_MS]
    assert state.judged_through_ms == T0 + HOUR_MS


def test_an_hour_waits_for_a_late_station_and_then_counts_it() -> None:
    streams = city_hours(6, {("s4", 1): 5.0})
    others = by_hour(streams[:4])
    events, store = run(others)  # s4 is 6 hours behind: waited for (wait 24 h)
    assert events == []
    assert sorted(AreaState.from_bytes(store[ONE_AREA]).open_hours) == [
        T0 + h * HOUR_MS for h in range(6)
    ]
    events, _ = run(streams[4], store=store, first_offset=len(others))
    assert summary(events) == [("s4", "pm25", 1, "disagrees_with_neighbours")]


def test_a_station_gone_silent_is_not_waited_for_beyond_the_wait() -> None:
    plan = AreaPlan.of(CITY, NeighbourConfig(wait_ms=3 * HOUR_MS))
    streams = city_hours(12, {("s1", 8): 5.0})
    values = by_hour(streams[1:])
    values[2:2] = streams[0][:2]  # s0 sends hours 0 and 1, then goes silent
    events, store = run(values, plan=plan)
    assert summary(events) == [("s1", "pm25", 8, "disagrees_with_neighbours")]
    state = AreaState.from_bytes(store[ONE_AREA])
    assert state.judged_through_ms == T0 + 11 * HOUR_MS  # nobody waits for s0 any longer


def test_one_station_with_a_clock_far_ahead_does_not_hurry_the_area() -> None:
    streams = city_hours(30, {("s2", 24): 5.0})
    ahead = hourly("s4", 24 * 365, pm25=40.0, no2=20.0)  # a year ahead, sent first
    values = [ahead, *interleave(streams, random.Random(2))]
    events, store = run(values, batch=5)
    assert summary(events) == [("s2", "pm25", 24, "disagrees_with_neighbours")]
    state = AreaState.from_bytes(store[ONE_AREA])
    assert state.judged_through_ms == T0 + 29 * HOUR_MS
    assert T0 + 24 * 365 * HOUR_MS in state.open_hours


def test_a_record_for_a_judged_hour_is_late_and_changes_nothing() -> None:
    values = by_hour(city_hours(4))
    _, store = run(values)
    pipeline = NeighbourPipeline(TOPICS, PLAN)
    late = SourceRecord(
        TOPICS.hourly_by_area, 0, len(values), ONE_AREA.encode(), hourly("s3", 1, pm25=500.0)
    )
    result = pipeline.process([late], store)
    assert (result.late, result.outputs) == (1, [])


def test_fewer_than_three_neighbours_with_a_value_give_no_verdict() -> None:
    streams = city_hours(30, {("s2", 24): 5.0})
    trio = by_hour([streams[1], streams[2], streams[3]])
    config = NeighbourConfig(wait_ms=2 * HOUR_MS)
    events, _ = run(trio, plan=AreaPlan.of(CITY, config))
    assert events == []


def test_redelivered_records_are_skipped_and_a_lost_state_gives_the_same_events() -> None:
    values = by_hour(city_hours(30, {("s2", 24): 5.0}))
    expected, store = run(values)
    again, _ = run(values, store=store)  # the same offsets: already applied
    assert again == []
    # A crash before the area state was written: the records are applied again from an
    # older state and give the same events (the store's upserts absorb them).
    _, halfway = run(values[:100])
    replayed, _ = run(values[100:], store=halfway, first_offset=100)
    assert replayed == expected


def test_skipped_offsets_are_reported_as_a_gap() -> None:
    values = by_hour(city_hours(2))
    _, store = run(values[:3])
    pipeline = NeighbourPipeline(TOPICS, PLAN)
    ahead = SourceRecord(TOPICS.hourly_by_area, 0, 5, ONE_AREA.encode(), values[5])
    result = pipeline.process([ahead], store)
    assert result.gaps[0].expected == 3 and result.skipped == 1


def test_an_area_state_survives_a_snapshot_round_trip() -> None:
    values = by_hour(city_hours(30))
    _, store = run(values[:-3])
    state = AreaState.from_bytes(store[ONE_AREA])
    assert state.baselines["pm25"]["s2"].weight > 12
    assert AreaState.restore(state.snapshot()) == state
    with pytest.raises(ValueError, match="version"):
        AreaState.restore({**state.snapshot(), "v": 99})


def test_an_unreadable_record_is_counted_and_skipped() -> None:
    pipeline = NeighbourPipeline(TOPICS, PLAN)
    bad = SourceRecord(TOPICS.hourly_by_area, 0, 0, ONE_AREA.encode(), b"garbage")
    result = pipeline.process([bad], MemoryStore())
    assert result.unreadable == 1 and result.outputs == []


# -- the city file's [neighbours] table -------------------------------------------------

CITY_FILE = """
[city]
name = "Test"
timezone = "UTC"

[[stations]]
id = "a"
lat = 40.0
lon = 116.0
"""


def test_the_city_file_sets_the_neighbour_check(tmp_path) -> None:
    from civicstream.settings import load_city

    path = tmp_path / "city.toml"
    path.write_text(CITY_FILE)
    assert load_city(path).neighbours is None  # the defaults
    path.write_text(
        CITY_FILE
        + "[neighbours]\nradius_km = 15\nmax_neighbours = 6\nmin_neighbours = 4\n"
        + 'area_km = 50\nwait = "6h"\n'
    )
    assert load_city(path).neighbours == NeighbourConfig(
        radius_km=15, max_neighbours=6, min_neighbours=4, area_km=50, wait_ms=6 * HOUR_MS
    )
    path.write_text(CITY_FILE + "[neighbours]\nenabled = false\n")
    assert load_city(path).neighbours == NeighbourConfig(enabled=False)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("radius = 10", r'neighbours.radius: unknown key \(did you mean "radius_km"\?\)'),
        ("radius_km = -1", r"neighbours.radius_km: -1 is out of range"),
        ("radius_km = 0", r"neighbours.radius_km: 0 is out of range"),
        ("min_neighbours = 2.5", "neighbours.min_neighbours: must be a whole number"),
        ("min_neighbours = 9", "min_neighbours <= max_neighbours"),
        ('wait = "soon"', 'neighbours.wait: "soon" is not a duration'),
        ('enabled = "yes"', "neighbours.enabled: must be true or false"),
    ],
)
def test_a_wrong_neighbours_table_is_refused_with_its_key(tmp_path, table, message) -> None:
    from civicstream.settings import ConfigError, load_city

    path = tmp_path / "city.toml"
    path.write_text(f"{CITY_FILE}[neighbours]\n{table}\n")
    with pytest.raises(ConfigError, match=message):
        load_city(path)
