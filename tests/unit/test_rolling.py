"""Specification of processors.rolling: Decimal means and completeness rules."""

from __future__ import annotations

from decimal import Decimal, localcontext

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.exceptions import InvalidValue, ProcessorError
from processors.rolling import ROLLING_WINDOWS, mean, rolling_mean

D = Decimal


def test_standard_windows_follow_the_75_percent_rule() -> None:
    assert dict(ROLLING_WINDOWS) == {"1h": (1, 1), "8h": (8, 6), "24h": (24, 18)}


# --- mean -----------------------------------------------------------------------------


def test_mean_of_ten_9_1_readings_is_exactly_9_1_unlike_floats() -> None:
    assert mean([D("9.1")] * 10) == D("9.1")
    assert sum([9.1] * 10) / 10 == 9.099999999999998  # the trap the Decimal mean avoids


def test_mean_rounds_once_at_28_significant_digits() -> None:
    assert mean([D(1), D(1), D(2)]) == D("1.333333333333333333333333333")


def test_mean_does_not_depend_on_the_callers_context() -> None:
    with localcontext() as ctx:
        ctx.prec = 2
        assert mean([D("9.1")] * 3) == D("9.1")
        assert mean([D(1), D(2), D(2)]) == D("1.666666666666666666666666667")


def test_mean_accepts_any_iterable() -> None:
    assert mean(D(v) for v in (1, 2, 3, 4)) == D("2.5")


def test_mean_of_nothing_is_an_error() -> None:
    with pytest.raises(InvalidValue):
        mean([])


def test_mean_rejects_nan() -> None:
    with pytest.raises(InvalidValue):
        mean([D(1), D("NaN")])


# --- rolling_mean ---------------------------------------------------------------------


def test_rolling_mean_uses_only_the_last_hours() -> None:
    hourly = [D(100)] * 4 + [D(1)] * 8
    assert rolling_mean(hourly, 8, 6) == D(1)


def test_rolling_mean_skips_missing_hours() -> None:
    hourly: list[Decimal | None] = [D(2), None, D(4), D(6), None, D(8), D(10), D(12)]
    assert rolling_mean(hourly, 8, 6) == D(7)


def test_8h_needs_6_of_8_hours() -> None:
    six: list[Decimal | None] = [None, None] + [D(1)] * 6
    five: list[Decimal | None] = [None, None, None] + [D(1)] * 5
    assert rolling_mean(six, *ROLLING_WINDOWS["8h"]) == D(1)
    assert rolling_mean(five, *ROLLING_WINDOWS["8h"]) is None


def test_24h_needs_18_of_24_hours() -> None:
    eighteen: list[Decimal | None] = [None] * 6 + [D(5)] * 18
    seventeen: list[Decimal | None] = [None] * 7 + [D(5)] * 17
    assert rolling_mean(eighteen, *ROLLING_WINDOWS["24h"]) == D(5)
    assert rolling_mean(seventeen, *ROLLING_WINDOWS["24h"]) is None


def test_1h_is_the_current_hour_or_nothing() -> None:
    assert rolling_mean([D(3), D(7)], *ROLLING_WINDOWS["1h"]) == D(7)
    assert rolling_mean([D(3), None], *ROLLING_WINDOWS["1h"]) is None


def test_a_short_history_counts_its_missing_leading_hours_as_missing() -> None:
    assert rolling_mean([D(1)] * 6, 8, 6) == D(1)
    assert rolling_mean([D(1)] * 5, 8, 6) is None
    assert rolling_mean([], 8, 6) is None


@pytest.mark.parametrize(
    "bad",
    [D("NaN"), D("sNaN"), D("Infinity"), D("-Infinity")],
    ids=["nan", "signalling-nan", "infinity", "minus-infinity"],
)
def test_rolling_mean_refuses_a_value_that_is_not_finite(bad: Decimal) -> None:
    with pytest.raises(InvalidValue):
        rolling_mean([D(1)] * 6 + [bad], 8, 6)


def test_rolling_mean_refuses_infinities_of_both_signs_whose_sum_is_undefined() -> None:
    with pytest.raises(InvalidValue):
        rolling_mean([D(1)] * 6 + [D("Infinity"), D("-Infinity")], 8, 6)


def test_rolling_mean_does_not_read_the_values_of_a_window_with_too_few_hours() -> None:
    assert rolling_mean([None] * 3 + [D("NaN")] * 5, 8, 6) is None


def test_rolling_mean_takes_ints_and_floats_as_mean_does() -> None:
    assert rolling_mean([1, 2.5, D(3), None, 4], 8, 3) == mean([D(1), D("2.5"), D(3), D(4)])


@pytest.mark.parametrize(("hours", "min_valid"), [(0, 0), (8, 0), (8, 9), (-1, 1)])
def test_nonsense_window_parameters_are_errors(hours: int, min_valid: int) -> None:
    with pytest.raises(ProcessorError):
        rolling_mean([D(1)], hours, min_valid)


# --- properties -----------------------------------------------------------------------

values = st.decimals(min_value=0, max_value=10_000, places=3, allow_nan=False)
hourly_values = st.lists(st.none() | values, max_size=30)


@given(st.lists(values, min_size=1, max_size=30))
def test_mean_lies_between_min_and_max(xs: list[Decimal]) -> None:
    assert min(xs) <= mean(xs) <= max(xs)


@given(values, st.integers(min_value=1, max_value=30))
def test_mean_of_equal_values_is_that_value(x: Decimal, n: int) -> None:
    assert mean([x] * n) == x


@given(hourly_values, st.sampled_from(sorted(ROLLING_WINDOWS)))
def test_rolling_mean_is_none_exactly_when_too_few_hours_are_present(
    hourly: list[Decimal | None], window: str
) -> None:
    hours, min_valid = ROLLING_WINDOWS[window]
    present = [v for v in hourly[-hours:] if v is not None]
    result = rolling_mean(hourly, hours, min_valid)
    if len(present) < min_valid:
        assert result is None
    else:
        assert result == mean(present)


@given(hourly_values, st.sampled_from(sorted(ROLLING_WINDOWS)))
def test_rolling_mean_does_not_depend_on_the_callers_context(
    hourly: list[Decimal | None], window: str
) -> None:
    hours, min_valid = ROLLING_WINDOWS[window]
    expected = rolling_mean(hourly, hours, min_valid)
    with localcontext() as ctx:
        ctx.prec = 3
        assert rolling_mean(hourly, hours, min_valid) == expected
