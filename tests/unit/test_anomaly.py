"""Specification of processors.anomaly: the per-series detector, its flags and its state."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.anomaly import FAULT_FLAGS, FLAGS, SENTINELS, SeriesDetector, Verdict
from processors.validation import PLAUSIBLE_MAX

HOUR = 3600.0
START = 1_362_067_200.0  # 2013-03-01 00:00 UTC


def hourly(
    values: Iterable[float | None], start: float = START
) -> list[tuple[float, float | None]]:
    return [(start + i * HOUR, v) for i, v in enumerate(values)]


def noisy(count: int, level: float = 40.0, sd: float = 4.0, seed: int = 1) -> list[float]:
    """An honest-looking series: a daily cycle plus noise, rounded like the Beijing files."""
    rng = random.Random(seed)
    return [
        max(1.0, round(level + 0.3 * level * math.sin(i * 2 * math.pi / 24) + rng.gauss(0, sd)))
        for i in range(count)
    ]


def run(detector: SeriesDetector, readings: Sequence[tuple[float, float | None]]) -> list[Verdict]:
    return [detector.update(ts, value) for ts, value in readings]


def fault_flags(verdicts: Iterable[Verdict]) -> set[str]:
    flags: set[str] = set()
    for verdict in verdicts:
        flags |= verdict.flags & FAULT_FLAGS
        if verdict.revision is not None:
            flags |= verdict.revision.flags & FAULT_FLAGS
    return flags


def trained(pollutant: str | None = "pm25", count: int = 1000) -> SeriesDetector:
    detector = SeriesDetector(pollutant)
    run(detector, hourly(noisy(count)))
    return detector


# --- vocabulary ---------------------------------------------------------------------


def test_the_flag_vocabulary_is_fixed_and_four_flags_are_faults() -> None:
    assert FLAGS == ("out_of_range", "sentinel", "stuck", "spike", "anomaly")
    assert frozenset({"out_of_range", "sentinel", "stuck", "spike"}) == FAULT_FLAGS


def test_a_verdict_is_a_fault_when_any_fault_flag_is_set() -> None:
    def verdict(*flags: str) -> Verdict:
        return Verdict(0.0, 1.0, 0.0, frozenset(flags), None, "")

    assert not verdict().is_fault
    assert not verdict("anomaly").is_fault
    assert verdict("anomaly").is_anomaly
    assert all(verdict(flag).is_fault for flag in FAULT_FLAGS)


def test_an_unknown_pollutant_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown pollutant"):
        SeriesDetector("nox")


def test_one_threshold_for_every_series() -> None:
    assert SeriesDetector("pm25").threshold == SeriesDetector().threshold == 0.6


# --- missing readings and hard faults -------------------------------------------------


@pytest.mark.parametrize("value", [None, math.nan])
def test_a_missing_reading_is_reported_missing_with_no_flag(value: float | None) -> None:
    verdict = trained().update(START + 2000 * HOUR, value)
    assert (verdict.value, verdict.score, verdict.flags, verdict.detail) == (
        None,
        0.0,
        frozenset(),
        "missing",
    )


@pytest.mark.parametrize("code", [-200.0, -999.0, -9999.0, 9999.0])
def test_missing_value_codes_are_sentinels(code: float) -> None:
    assert code in SENTINELS
    verdict = trained().update(START + 2000 * HOUR, code)
    assert verdict.flags == {"sentinel"}
    assert verdict.is_fault
    assert str(int(code)) in verdict.detail


def test_a_sentinel_is_recognised_in_the_number_as_sent_before_conversion() -> None:
    # -200 ug/m3 of SO2 arrives as -76.3 ppb; the code is in the raw number
    verdict = trained("so2").update(START + 2000 * HOUR, -76.32, raw=-200.0)
    assert verdict.flags == {"sentinel"}


def test_a_generic_series_knows_sentinels_too() -> None:
    assert trained(None).update(START + 2000 * HOUR, -999.0).flags == {"sentinel"}


@pytest.mark.parametrize(
    ("pollutant", "value"),
    [("pm25", -1.0), ("pm25", 5000.5), ("o3", 1.2), ("co", 501.0), ("no2", math.inf)],
)
def test_impossible_concentrations_are_out_of_range(pollutant: str, value: float) -> None:
    verdict = trained(pollutant).update(START + 2000 * HOUR, value)
    assert verdict.flags == {"out_of_range"}
    assert verdict.score == 0.0


def test_the_physical_limit_itself_is_still_in_range() -> None:
    limit = float(PLAUSIBLE_MAX["pm25"])
    assert "out_of_range" not in trained().update(START + 2000 * HOUR, limit).flags


def test_a_generic_series_may_go_negative_but_not_to_infinity() -> None:
    detector = SeriesDetector()
    verdicts = run(detector, hourly(v - 60.0 for v in noisy(500)))
    assert not fault_flags(verdicts)
    assert detector.update(START + 500 * HOUR, -math.inf).flags == {"out_of_range"}


def test_a_faulty_reading_teaches_the_detector_nothing() -> None:
    clean, dirty = trained(), trained()
    dirty.update(START + 1000 * HOUR, 9999.0)
    assert (
        dirty.update(START + 1001 * HOUR, 41.0).expected
        == clean.update(START + 1001 * HOUR, 41.0).expected
    )


# --- stuck ----------------------------------------------------------------------------


def test_a_frozen_sensor_is_flagged_stuck_after_a_few_repeats() -> None:
    values = noisy(1000) + [57.0] * 30
    verdicts = run(SeriesDetector("pm25"), hourly(values))
    stuck = [i for i, v in enumerate(verdicts) if "stuck" in v.flags]
    assert stuck, "the frozen value was never flagged"
    assert 1000 + 3 <= stuck[0] <= 1000 + 12
    assert stuck == list(range(stuck[0], 1030))  # until the run ends
    assert "57 30 times in a row" in verdicts[-1].detail


def test_honest_repeats_at_the_floor_of_a_quantised_series_are_not_stuck() -> None:
    # SO2 at night sits at its floor (2 ug/m3) for hours, sometimes for days
    rng = random.Random(7)
    values: list[float] = []
    while len(values) < 6000:
        values += [2.0] * rng.choice([3, 8, 20, 40, 90])
        values += [float(max(3, round(rng.lognormvariate(2.0, 0.6)))) for _ in range(30)]
    verdicts = run(SeriesDetector("so2"), hourly(values))
    flagged = [v for v in verdicts if "stuck" in v.flags]
    assert len(flagged) / len(verdicts) < 0.01
    assert all(v.value == 2.0 for v in flagged) or not flagged


def test_a_gap_ends_a_run() -> None:
    detector = trained()
    readings = [(START + (1000 + i) * HOUR, 50.0) for i in range(3)]
    readings += [(START + (1010 + i) * HOUR, 50.0) for i in range(3)]  # after a silence
    assert "stuck" not in fault_flags(run(detector, readings))


# --- spike ----------------------------------------------------------------------------


def test_a_spike_is_confirmed_by_the_next_reading_as_a_revision() -> None:
    detector = trained()
    before = detector.update(START + 1000 * HOUR, 40.0)
    spike = detector.update(START + 1001 * HOUR, 400.0)
    back = detector.update(START + 1002 * HOUR, 42.0)
    assert "spike" not in spike.flags and spike.revision is None and before.revision is None
    assert back.revision is not None
    assert "spike" not in back.flags
    revised = back.revision
    assert (revised.ts, revised.value, revised.score) == (spike.ts, 400.0, spike.score)
    assert revised.flags == spike.flags | {"spike"}
    assert revised.is_fault
    assert revised.detail == "jumped from 40 to 400 and back to 42"


def test_only_a_reading_that_jumped_leaves_a_spike_pending() -> None:
    detector = trained()
    detector.update(START + 1000 * HOUR, 40.0)
    assert not detector.spike_pending  # an ordinary step: no next reading can revise it
    detector.update(START + 1001 * HOUR, 400.0)
    assert detector.spike_pending  # only the next reading can tell a spike from a step
    detector.update(START + 1002 * HOUR, 42.0)
    assert not SeriesDetector("pm25").spike_pending  # nothing seen, nothing pending


@given(st.integers(min_value=0, max_value=2**32 - 1))
@settings(max_examples=25, deadline=None)
def test_a_revision_comes_only_after_a_pending_spike(seed: int) -> None:
    """The promise callers rely on to stop waiting: no revision without `spike_pending`."""
    rng = random.Random(seed)
    detector = SeriesDetector("pm25")
    values: list[float | None] = list(noisy(400, seed=seed))
    for i in rng.sample(range(160, 400), 30):
        values[i] = rng.choice([None, 900.0, 1.0, -5.0, values[i - 1], 250.0])
    pending = False
    for ts, value in hourly(values):
        verdict = detector.update(ts, value)
        assert verdict.revision is None or pending
        pending = detector.spike_pending


def test_a_spike_downwards_is_a_spike_too() -> None:
    detector = trained()
    run(detector, [(START + 1000 * HOUR, 60.0), (START + 1001 * HOUR, 1.0)])
    back = detector.update(START + 1002 * HOUR, 58.0)
    assert back.revision is not None and "spike" in back.revision.flags


def test_a_jump_that_stays_is_not_a_spike() -> None:
    detector = trained()
    verdicts = run(detector, hourly([40.0, 400.0, 410.0, 395.0], START + 1000 * HOUR))
    assert "spike" not in fault_flags(verdicts)


def test_no_spike_is_confirmed_across_a_missing_reading() -> None:
    detector = trained()
    verdicts = run(detector, hourly([40.0, 400.0, None, 42.0], START + 1000 * HOUR))
    assert "spike" not in fault_flags(verdicts)


# --- anomaly score --------------------------------------------------------------------


@pytest.mark.parametrize("seed", [3, 4])
def test_an_honest_flat_but_noisy_series_is_not_flagged(seed: int) -> None:
    verdicts = run(SeriesDetector("pm25"), hourly(noisy(5000, level=30.0, sd=3.0, seed=seed)))
    assert not fault_flags(verdicts)
    # only a new record high or low of the series is unusual enough, and that is rare
    alerts = [v for v in verdicts if v.is_anomaly]
    assert len(alerts) <= 0.002 * len(verdicts)
    assert all("beyond anything the series has shown" in v.detail for v in alerts)


def test_a_level_shift_is_an_anomaly_with_the_expected_range() -> None:
    detector = trained()
    verdicts = run(detector, hourly([160.0] * 3, START + 1000 * HOUR))
    alert = next(v for v in verdicts if v.is_anomaly)
    assert alert.score >= SeriesDetector.threshold
    assert not alert.is_fault
    assert alert.expected is not None
    low, high = alert.expected
    assert 0.0 <= low < 40.0 < high < 160.0
    assert alert.detail.startswith("160 is beyond anything the series has shown, expected")


def test_restless_values_within_the_range_seen_raise_the_score() -> None:
    readings = hourly(noisy(1048))
    detector = SeriesDetector("pm25")
    run(detector, readings[:1000])
    calm = run(detector, readings[1000:1024])
    restless = run(
        detector, [(ts, 8.0 if i % 2 else 60.0) for i, (ts, _) in enumerate(readings[1024:])]
    )
    assert max(v.score for v in restless) > 0.5 > max(v.score for v in calm)


def test_an_anomaly_alerts_once_then_the_series_rests() -> None:
    detector = trained()
    shifted = run(detector, hourly([120.0 + (i % 3) for i in range(40)], START + 1000 * HOUR))
    alerts = [v for v in shifted if v.is_anomaly]
    assert len(alerts) == 1
    assert all(v.score < SeriesDetector.threshold for v in shifted if not v.is_anomaly)


def test_a_unit_mix_up_scores_one_on_every_reading() -> None:
    detector = trained()
    verdicts = run(detector, hourly([0.041, 0.039, 0.044], START + 1000 * HOUR))
    assert all(v.score == 1.0 and v.is_anomaly for v in verdicts)
    assert "unit mix-up?" in verdicts[0].detail


def test_nothing_is_scored_while_the_detector_learns() -> None:
    verdicts = run(SeriesDetector("pm25"), hourly(noisy(SeriesDetector.WARMUP)))
    assert all(v.score == 0.0 and v.expected is None for v in verdicts)


finite_or_not = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.sampled_from([0.0, -200.0, 9999.0, 35.0]),
)


@settings(max_examples=40, deadline=None)
@given(values=st.lists(finite_or_not, min_size=1, max_size=400))
def test_scores_stay_in_0_1_and_flags_in_the_vocabulary_whatever_arrives(
    values: list[float | None],
) -> None:
    for pollutant in (None, "pm25"):
        detector = SeriesDetector(pollutant)
        for verdict in run(detector, hourly(values)):
            assert 0.0 <= verdict.score <= 1.0
            assert verdict.flags <= set(FLAGS)


# --- determinism and state ------------------------------------------------------------


def series_with_everything() -> list[tuple[float, float | None]]:
    values: list[float | None] = list(noisy(1200))
    values[300:310] = [None] * 10
    values[500] = -200.0
    values[700] = 900.0
    values[800:830] = [55.0] * 30
    values[900:905] = [0.05] * 5
    return hourly(values)


def test_the_same_readings_give_the_same_verdicts() -> None:
    readings = series_with_everything()
    assert run(SeriesDetector("pm25"), readings) == run(SeriesDetector("pm25"), readings)


@pytest.mark.parametrize("cut", [1, 149, 150, 701, 815, 1000])
def test_a_restored_detector_continues_exactly_like_an_uninterrupted_one(cut: int) -> None:
    readings = series_with_everything()
    uninterrupted = SeriesDetector("pm25")
    expected = run(uninterrupted, readings)
    first = SeriesDetector("pm25")
    head = run(first, readings[:cut])
    restored = SeriesDetector.from_bytes(first.to_bytes())
    assert restored.pollutant == "pm25"
    assert head + run(restored, readings[cut:]) == expected
    assert restored.to_bytes() == uninterrupted.to_bytes()


def test_the_state_of_a_series_is_small_and_of_fixed_size() -> None:
    fresh, used = SeriesDetector("pm25"), SeriesDetector("pm25")
    run(used, series_with_everything())
    assert len(fresh.to_bytes()) == len(used.to_bytes()) < 2500
    assert len(SeriesDetector().to_bytes()) == len(fresh.to_bytes())


def test_a_state_of_another_version_or_size_is_refused() -> None:
    state = trained().to_bytes()
    with pytest.raises(ValueError, match="version"):
        SeriesDetector.from_bytes(b"\x02" + state[1:])
    with pytest.raises(ValueError, match="bytes"):
        SeriesDetector.from_bytes(state + b"\x00")
