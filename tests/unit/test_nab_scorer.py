"""Specification of the NAB scorer in bench/anomaly/nab.py, on hand-made files whose
scores can be worked out on paper, and on one real NAB file."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from bench.anomaly import nab

STANDARD = nab.Profile("standard", tp=1.0, fp=0.11, fn=1.0)
LOW_FN = nab.Profile("reward_low_FN_rate", tp=1.0, fp=0.11, fn=2.0)
NAB = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "nab"


def sigma(x: float) -> float:
    """NAB's scaled sigmoid, written out."""
    return -1.0 if x > 3.0 else 2.0 / (1.0 + math.exp(5.0 * x)) - 1.0


def one_file(rows: int = 100, windows: tuple[tuple[int, int], ...] = ((40, 49),)) -> nab.DataFile:
    ts = np.arange(rows, dtype=np.float64) * 300.0
    return nab.DataFile("hand/made.csv", ts, np.zeros(rows), windows)


def raw(data: nab.DataFile, detections: list[int], profile: nab.Profile = STANDARD) -> float:
    scores = np.zeros(len(data.values))
    scores[detections] = 1.0
    return nab.score_at([data], [scores], profile, 0.5).score


def test_the_scaled_sigmoid_is_naBs() -> None:
    assert float(nab.scaled_sigmoid(-1.0)) == pytest.approx(0.98661, abs=1e-5)
    assert float(nab.scaled_sigmoid(-0.5)) == pytest.approx(0.84828, abs=1e-5)
    assert float(nab.scaled_sigmoid(0.0)) == 0.0
    assert float(nab.scaled_sigmoid(3.5)) == -1.0


def test_probation_is_15_percent_of_a_file_at_most_750_rows() -> None:
    assert nab.probation_length(1000) == 150
    assert nab.probation_length(1127) == 169
    assert nab.probation_length(22695) == 750


def test_a_detection_at_a_windows_left_edge_is_worth_exactly_a_true_positive() -> None:
    assert raw(one_file(), [40]) == pytest.approx(1.0)


def test_a_later_detection_in_the_window_is_worth_less() -> None:
    # row 45 of window 40..49 (width 10): position -(49 - 45 + 1) / 10 = -0.5
    assert raw(one_file(), [45]) == pytest.approx(sigma(-0.5) / sigma(-1.0))


def test_only_the_first_detection_in_a_window_counts() -> None:
    assert raw(one_file(), [42, 45, 49]) == pytest.approx(raw(one_file(), [42]))


def test_a_missed_window_costs_a_false_negative() -> None:
    assert raw(one_file(), []) == -1.0
    assert raw(one_file(), [], LOW_FN) == -2.0


def test_a_false_positive_before_the_first_window_costs_the_full_weight() -> None:
    assert raw(one_file(), [20, 40]) == pytest.approx(1.0 - 0.11)


def test_a_false_positive_right_after_a_window_costs_little_and_more_later() -> None:
    right_after = raw(one_file(), [40, 50]) - 1.0
    later = raw(one_file(), [40, 60]) - 1.0
    far = raw(one_file(), [40, 90]) - 1.0
    assert right_after == pytest.approx(0.11 * sigma(1 / 9))  # distance 1, width - 1 = 9
    assert later == pytest.approx(0.11 * sigma(11 / 9))
    assert far == pytest.approx(-0.11)  # beyond three widths
    assert right_after > later > far


def test_every_false_positive_counts() -> None:
    assert raw(one_file(), [20, 21, 22]) == pytest.approx(-1.0 - 3 * 0.11)


def test_detections_in_the_probation_period_are_not_scored() -> None:
    assert raw(one_file(), [0, 5, 14]) == -1.0
    assert raw(one_file(), [15]) == pytest.approx(-1.0 - 0.11)


def test_a_window_inside_the_probation_period_does_not_count() -> None:
    data = one_file(windows=((2, 8), (40, 49)))
    assert raw(data, []) == -1.0


def test_normalisation_puts_the_null_detector_at_0_and_the_perfect_one_at_100() -> None:
    assert nab.normalised(-116.0, STANDARD, 116) == 0.0
    assert nab.normalised(116.0, STANDARD, 116) == 100.0
    assert nab.normalised(-232.0, LOW_FN, 116) == 0.0
    assert nab.normalised(0.0, STANDARD, 116) == 50.0


def test_the_optimiser_picks_the_corpus_wide_threshold_with_the_best_score() -> None:
    data = one_file()
    scores = np.zeros(100)
    scores[42] = 0.7  # early in the window
    scores[[20, 21, 22, 23]] = 0.9  # noise that ranks higher
    scores[80] = 0.3
    best = nab.optimise([data], [scores], STANDARD)
    assert best.threshold == 0.7  # 0.9 alone misses the window; 0.3 adds a false positive
    assert best.windows_detected == 1 and best.windows_missed == 0
    assert best.false_positives == 4
    assert best.score == pytest.approx(raw(data, [20, 21, 22, 23, 42]))


def test_a_detector_that_never_fires_is_best_left_alone() -> None:
    best = nab.optimise([one_file()], [np.zeros(100)], STANDARD)
    assert best.score == -1.0 and best.windows_detected == 0


def test_the_whole_pipeline_on_a_real_nab_file() -> None:
    name = "artificialWithAnomaly/art_daily_jumpsup.csv"
    data = nab.load_file(NAB, name, [["2014-04-10 16:15:00.000000", "2014-04-12 01:45:00.000000"]])
    assert len(data.values) == 4032
    # 2014-04-10 16:15 is 2787 five-minute rows after the first, 2014-04-01 00:00
    assert data.windows == ((2787, 3189),)
    perfect = np.zeros(len(data.values))
    perfect[2787] = 1.0
    profiles = nab.load_profiles(NAB / "config" / "profiles.json")
    assert profiles["reward_low_FP_rate"] == nab.Profile("reward_low_FP_rate", 1.0, 0.22, 1.0)
    best = nab.optimise([data], [perfect], profiles["standard"])
    assert nab.normalised(best.score, profiles["standard"], 1) == pytest.approx(100.0)
