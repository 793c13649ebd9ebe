"""The neighbour check (processors.neighbours): who a station's neighbours are, and when its
hourly value disagrees with theirs."""

from __future__ import annotations

import random

import pytest

from processors import neighbours as nb
from processors.neighbours import Baseline, NeighbourRules, haversine_km, judge, neighbours_within

KM_PER_DEGREE = 111.19508  # of latitude, on the mean Earth radius

# Five stations in a row along a meridian, 5 km apart, and one far away.
ROW = {f"s{i}": (40.0 + i * 5 / KM_PER_DEGREE, 116.0) for i in range(5)}
FAR = {"far": (41.0, 116.0)}
EVERYONE = {s: tuple(o for o in ROW if o != s) for s in ROW}


def test_distances_are_great_circle_kilometres() -> None:
    assert haversine_km((40.0, 116.0), (41.0, 116.0)) == pytest.approx(KM_PER_DEGREE, rel=1e-6)
    # Dongsi to Tiantan (the city file): 0.043° north (4.781 km), 0.010° east (0.853 km).
    assert haversine_km((39.929, 116.417), (39.886, 116.407)) == pytest.approx(4.857, abs=0.001)


def test_neighbours_are_the_nearest_stations_within_the_radius_nearest_first() -> None:
    found = neighbours_within({**ROW, **FAR}, NeighbourRules(radius_km=12, max_neighbours=8))
    assert found["s0"] == ("s1", "s2")
    assert found["s2"] == ("s1", "s3", "s0", "s4")  # equal distances: by id
    assert found["far"] == ()


def test_a_station_has_at_most_max_neighbours() -> None:
    found = neighbours_within(ROW, NeighbourRules(radius_km=30, max_neighbours=3, min_neighbours=2))
    assert found["s0"] == ("s1", "s2", "s3")
    assert all(len(around) == 3 for around in found.values())


def test_neighbours_agree_with_brute_force_on_a_random_network() -> None:
    rng = random.Random(3)
    points = {f"p{i:03d}": (39.5 + rng.random(), 116 + rng.random()) for i in range(200)}
    rules = NeighbourRules(radius_km=8, max_neighbours=5)
    found = neighbours_within(points, rules)
    for station, here in points.items():
        ranked = sorted(
            (haversine_km(here, there), other)
            for other, there in points.items()
            if other != station and haversine_km(here, there) <= 8
        )
        assert found[station] == tuple(other for _, other in ranked[:5])


def test_rules_refuse_impossible_counts() -> None:
    with pytest.raises(ValueError, match="min_neighbours"):
        NeighbourRules(max_neighbours=2, min_neighbours=3)
    with pytest.raises(ValueError, match="radius"):
        NeighbourRules(radius_km=0)


def test_stations_that_agree_are_not_flagged() -> None:
    values = {"s0": 30.0, "s1": 33.0, "s2": 28.0, "s3": 31.5, "s4": 29.0}
    verdicts, _ = judge("pm25", values, EVERYONE, {}, ROW)
    assert len(verdicts) == 5
    assert not any(v.disagrees for v in verdicts)
    assert all(v.score < 0.6 for v in verdicts)


def test_a_station_five_times_its_neighbours_disagrees_and_only_it() -> None:
    values = {"s0": 30.0, "s1": 33.0, "s2": 150.0, "s3": 31.5, "s4": 29.0}
    verdicts, _ = judge("pm25", values, EVERYONE, {}, ROW)
    flagged = [v for v in verdicts if v.disagrees]
    assert [v.station_id for v in flagged] == ["s2"]
    verdict = flagged[0]
    assert verdict.consensus == pytest.approx(30.75)  # the median of the other four
    low, high = verdict.expected
    assert low < verdict.consensus < high < verdict.value
    assert verdict.score > 0.6
    assert verdict.neighbours == (("s0", 30.0), ("s1", 33.0), ("s3", 31.5), ("s4", 29.0))
    assert "s1 33" in verdict.detail and "4.88× the median" in verdict.detail


def test_a_unit_mix_up_disagrees() -> None:
    values = {"s0": 80.0, "s1": 75.0, "s2": 0.078, "s3": 85.0, "s4": 70.0}  # mg/m³ as µg/m³
    verdicts, _ = judge("pm10", values, EVERYONE, {}, ROW)
    assert [v.station_id for v in verdicts if v.disagrees] == ["s2"]


def test_low_levels_differ_additively_and_are_not_flagged() -> None:
    values = {"s0": 3.0, "s1": 2.0, "s2": 9.0, "s3": 3.0, "s4": 4.0}  # µg/m³: all clean air
    verdicts, _ = judge("pm25", values, EVERYONE, {}, ROW)
    assert not any(v.disagrees for v in verdicts)


def test_fewer_than_the_minimum_of_neighbours_with_a_value_gives_no_verdict() -> None:
    values = {"s0": 30.0, "s1": 150.0, "s2": 31.0}  # s1 has two neighbours with a value
    verdicts, learnt = judge("pm25", values, EVERYONE, {}, ROW, min_neighbours=3)
    assert verdicts == [] and learnt == {}
    verdicts, _ = judge("pm25", values, EVERYONE, {}, ROW, min_neighbours=2)
    assert [v.station_id for v in verdicts if v.disagrees] == ["s1"]


def test_only_the_stations_asked_for_are_judged() -> None:
    values = {"s0": 30.0, "s1": 33.0, "s2": 150.0, "s3": 31.5, "s4": 29.0}
    verdicts, learnt = judge("pm25", values, EVERYONE, {}, ["s0", "s2", "nobody"])
    assert [v.station_id for v in verdicts] == ["s0", "s2"]
    assert set(learnt) == {"s0", "s2"}


def test_an_unknown_pollutant_is_not_judged() -> None:
    assert judge("benzene", {"s0": 1.0}, EVERYONE, {}, ROW) == ([], {})


def test_verdicts_do_not_depend_on_the_order_of_anything() -> None:
    values = {"s0": 30.0, "s1": 33.0, "s2": 150.0, "s3": 31.5, "s4": 29.0}
    expected = judge("pm25", values, EVERYONE, {}, ROW)
    rng = random.Random(5)
    for _ in range(20):
        shuffled = dict(rng.sample(list(values.items()), len(values)))
        stations = rng.sample(list(ROW), len(ROW))
        assert judge("pm25", shuffled, EVERYONE, {}, stations) == expected


def test_a_station_that_always_reads_higher_is_learnt_and_stops_disagreeing() -> None:
    """A roadside station reads 3× its neighbours every hour: against the baseline of a
    station that agrees that disagrees; its own baseline learns it, and then only a real
    change stands out."""
    agreeing = {"s2": Baseline(centre=0.0, scale=0.2, weight=500)}
    values = {s: 50.0 for s in ROW} | {"s2": 150.0}
    verdicts, _ = judge("no2", values, EVERYONE, agreeing, ["s2"])
    assert verdicts[0].disagrees
    rng = random.Random(9)
    baselines: dict[str, Baseline] = {}
    flags = []
    for _ in range(200):
        level = rng.uniform(20, 120)
        values = {s: level * rng.uniform(0.9, 1.1) for s in ROW}
        values["s2"] = 3 * level * rng.uniform(0.9, 1.1)
        verdicts, learnt = judge("no2", values, EVERYONE, baselines, ["s2"])
        baselines.update(learnt)
        flags.append(verdicts[0].disagrees)
    assert not any(flags[-150:])
    assert baselines["s2"].centre > 0.7
    values = {s: 50.0 for s in ROW} | {"s2": 5 * 3 * 50.0}
    verdicts, _ = judge("no2", values, EVERYONE, baselines, ["s2"])
    assert verdicts[0].disagrees


def test_a_flagged_hour_does_not_widen_the_baseline() -> None:
    baseline = Baseline(centre=0.0, scale=0.25, weight=500)
    assert baseline.learn(residual=2.0, flagged=True).scale == 0.25
    assert baseline.learn(residual=2.0, flagged=False).scale > 0.25
    moved = baseline.learn(residual=2.0, flagged=True)
    assert 0 < moved.centre <= nb.CLIP * 0.25 * 0.01  # clipped, at the slow rate


def test_a_lasting_fault_stays_flagged() -> None:
    """A station sending mg/m³ for a day: flagged every hour, the baseline does not give in."""
    baselines: dict[str, Baseline] = {}
    for hour in range(48):
        values = {s: 60.0 + hour % 5 for s in ROW}
        _, learnt = judge("pm10", values, EVERYONE, baselines, ROW)
        baselines.update(learnt)
    flagged = []
    for _ in range(24):
        values = {s: 60.0 for s in ROW} | {"s3": 0.06}
        verdicts, learnt = judge("pm10", values, EVERYONE, baselines, ROW)
        baselines.update(learnt)
        flagged.append([v.station_id for v in verdicts if v.disagrees])
    assert flagged == [["s3"]] * 24


def test_baselines_survive_a_round_trip() -> None:
    baseline = Baseline(0.12, 0.31, 40.0).learn(0.5, False)
    assert Baseline.from_row(baseline.to_row()) == baseline
