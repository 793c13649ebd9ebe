"""Specification of processors.purpleair: EPA's US-wide correction (Barkjohn et al. 2021)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.exceptions import InvalidValue
from processors.purpleair import (
    CORRECTION,
    ChannelDisagreement,
    channels_disagree,
    correct_pm25,
)

D = Decimal


def test_the_correction_of_a_typical_reading_computed_by_hand() -> None:
    # PA_cf1 = (20 + 22)/2 = 21; 0.524·21 − 0.0862·50 + 5.75 = 11.004 − 4.31 + 5.75 = 12.444
    result = correct_pm25(20, 22, 50)
    assert result.pa_cf1 == D(21)
    assert result.pm25 == D("12.444")
    assert result.model == CORRECTION == "epa-purpleair-us-2021"


def test_a_smoky_reading_computed_by_hand() -> None:
    # PA_cf1 = (150.5 + 149.5)/2 = 150; 0.524·150 − 0.0862·30 + 5.75 = 78.6 − 2.586 + 5.75
    assert correct_pm25("150.5", "149.5", 30).pm25 == D("81.764")


def test_a_negative_result_is_clamped_to_zero() -> None:
    # PA_cf1 = 0.5; 0.262 − 8.62 + 5.75 = −2.608 → 0
    assert correct_pm25("0.4", "0.6", 100).pm25 == D(0)


def test_exact_decimals_not_floats() -> None:
    # 0.524·0.1 − 0.0862·0 + 5.75 = 5.8024 exactly
    assert correct_pm25(0.1, 0.1, 0).pm25 == D("5.8024")


@pytest.mark.parametrize(
    ("a", "b", "disagree"),
    [
        ("10", "30", True),  # |A−B| 20 > 5 and 20/20 = 100 % > 70 %
        ("2", "9", True),  # 7 > 5 and 7/5.5 = 127 % > 70 %
        ("2", "7", False),  # |A−B| = 5 exactly: not more than 5
        ("100", "150", False),  # 50 > 5 but 50/125 = 40 % ≤ 70 %
        ("0", "4", False),  # 200 % but only 4 µg/m³ apart
        ("10", "20.8", True),  # 10.8 > 5 and 10.8/15.4 = 70.1 % > 70 %
        ("0", "0", False),
    ],
)
def test_channel_disagreement_needs_both_criteria(a: str, b: str, disagree: bool) -> None:
    assert channels_disagree(a, b) is disagree


def test_exactly_70_percent_is_not_beyond_the_criterion() -> None:
    # |A−B| / mean = 14/20 = 0.7 exactly (and 14 > 5): not *more* than 70 %
    assert channels_disagree(13, 27) is False
    assert channels_disagree(13, "27.01") is True


def test_a_disagreeing_reading_is_invalid() -> None:
    with pytest.raises(ChannelDisagreement, match="disagree"):
        correct_pm25(10, 30, 40)


@pytest.mark.parametrize(("a", "b", "rh"), [(-1, 2, 40), (1, -2, 40), (1, 2, -1), (1, 2, 101)])
def test_negative_channels_and_impossible_humidity_are_refused(a, b, rh) -> None:
    with pytest.raises(InvalidValue):
        correct_pm25(a, b, rh)


@given(
    a=st.decimals(min_value=0, max_value=1000, places=2),
    rh=st.decimals(min_value=0, max_value=100, places=1),
)
def test_identical_channels_always_agree_and_never_go_negative(a: Decimal, rh: Decimal) -> None:
    result = correct_pm25(a, a, rh)
    assert result.pa_cf1 == a
    assert result.pm25 >= 0
