"""Specification of processors.daily: the daily AQI of one local-standard-time day.

Rules from docs/domain-reference.md §1 ("Daily AQI"): PM 24 h mean with ≥ 18 of 24 hours;
O3 daily maximum of the 17 eight-hour means starting 07:00–23:00 (each ≥ 6 of 8 hours,
≥ 13 of 17 windows); CO daily max 8 h; SO2/NO2 daily max 1 h, with the SO2 24 h rule.
Expected values are computed by hand in the comments, from Table 6 of the reference.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors import daily
from processors.daily import DailyAqi, daily_aqi
from processors.exceptions import InvalidValue, UnknownKey

D = Decimal


def day(value: str, **overrides: str | None) -> list[Decimal | None]:
    """24 hours of ``value``; ``h7="0.1"`` or ``h7=None`` overrides hour 7."""
    hours: list[Decimal | None] = [D(value)] * 24
    for name, override in overrides.items():
        hours[int(name[1:])] = None if override is None else D(override)
    return hours


def missing(hours: list[Decimal | None], *positions: int) -> list[Decimal | None]:
    return [None if i in positions else v for i, v in enumerate(hours)]


# --- PM: 24 h mean, 18 of 24 hours ----------------------------------------------------


def test_a_complete_day_of_pm25_at_35_9_is_102() -> None:
    # TAD worked example: 35.9 is in 35.5–55.4:101–150 → 49/19.9·0.4 + 101 = 101.98 → 102
    result = daily_aqi({"pm25": day("35.9")})
    assert result == DailyAqi(
        aqi=102,
        category="Unhealthy for Sensitive Groups",
        main_pollutant="pm25_24h",
        sub_indices={"pm25_24h": 102},
        concentrations={"pm25_24h": D("35.9")},
        completeness={"pm25_24h": 24},
        reasons={},
        reason=None,
    )


def test_a_mean_of_exactly_9_1_is_moderate_51_not_a_float_9_0999() -> None:
    hours = [D("9.0"), D("9.2")] * 12
    assert sum(float(h) for h in hours) / 24 < 9.1  # the float trap: 9.0999… → 9.0 → 50
    result = daily_aqi({"pm25": hours})
    assert result.concentrations["pm25_24h"] == D("9.1")
    assert result.aqi == 51
    assert result.category == "Moderate"


def test_pm25_with_17_valid_hours_is_an_incomplete_day() -> None:
    result = daily_aqi({"pm25": missing(day("35.9"), 0, 1, 2, 3, 4, 5, 6)})
    assert result.aqi is None
    assert result.category is None
    assert result.main_pollutant is None
    assert result.sub_indices == {}
    assert result.completeness == {"pm25_24h": 17}
    assert result.reasons == {"pm25": "incomplete_day"}
    assert result.reason == "insufficient_data"


def test_pm25_with_18_valid_hours_averages_only_those_hours() -> None:
    # 18 hours: twelve 30.0 and six 42.0 → 612/18 = 34.0 → 49/26.3·24.9 + 51 = 97.39 → 97
    hours = [D("30.0")] * 12 + [D("42.0")] * 6 + [None] * 6
    result = daily_aqi({"pm25": hours})
    assert result.completeness == {"pm25_24h": 18}
    assert result.concentrations == {"pm25_24h": D("34.0")}
    assert result.aqi == 97
    assert result.reasons == {}


def test_pm10_is_truncated_to_whole_micrograms_before_the_table() -> None:
    # mean 154.5 → 154 → top of 55–154:51–100 → 100 (not 155 → 101)
    result = daily_aqi({"pm10": [D(154), D(155)] * 12})
    assert result.concentrations == {"pm10_24h": D(154)}
    assert result.sub_indices == {"pm10_24h": 100}


@settings(max_examples=60, deadline=None)
@given(
    value=st.decimals(min_value=0, max_value=500, places=1),
    absent=st.sets(st.integers(0, 23), min_size=7),
)
def test_no_permutation_of_missing_hours_leaves_a_pm_index_with_under_18_hours(
    value: Decimal, absent: set[int]
) -> None:
    result = daily_aqi({"pm25": missing(day(str(value)), *absent)})
    assert result.aqi is None
    assert "pm25_24h" not in result.sub_indices
    assert result.completeness == {"pm25_24h": 24 - len(absent)}
    # a day with every hour missing has no data to explain (see the no-data tests)
    assert result.reasons == ({} if len(absent) == 24 else {"pm25": "incomplete_day"})


@settings(max_examples=60, deadline=None)
@given(
    value=st.decimals(min_value=0, max_value=500, places=1),
    absent=st.sets(st.integers(0, 23), max_size=6),
)
def test_any_18_or_more_valid_hours_of_one_value_give_that_value(
    value: Decimal, absent: set[int]
) -> None:
    result = daily_aqi({"pm25": missing(day(str(value)), *absent)})
    assert result.concentrations == {"pm25_24h": value}
    assert result.aqi is not None


# --- O3: 17 eight-hour windows starting 07:00–23:00 ----------------------------------


def test_ozone_tad_example_0_07853_is_126() -> None:
    head = {"o3": [D("0.07853")] * 7}
    result = daily_aqi({"o3": day("0.07853")}, head)
    assert result.completeness["o3_8h"] == 17
    assert result.concentrations["o3_8h"] == D("0.078")
    assert result.sub_indices == {"o3_8h": 126}  # 125.5 rounds up
    assert result.main_pollutant == "o3_8h"


def test_the_last_ozone_window_reaches_seven_hours_into_the_next_day() -> None:
    # Window 23:00–07:00: (0.060 + 7·0.090)/8 = 0.08625 → 0.086 → 151 (first of 151–200).
    # Window 22:00–06:00: (2·0.060 + 6·0.090)/8 = 0.0825, lower. Day windows: 0.060.
    result = daily_aqi({"o3": day("0.060")}, {"o3": [D("0.090")] * 7})
    assert result.concentrations["o3_8h"] == D("0.086")
    assert result.sub_indices["o3_8h"] == 151
    assert result.aqi == 151


def test_ozone_windows_ignore_hours_before_07_00() -> None:
    # A peak at 00:00–07:00 is in no window that starts 07:00–23:00.
    hours = [D("0.150")] * 7 + [D("0.040")] * 17
    result = daily_aqi({"o3": hours}, {"o3": [D("0.040")] * 7})
    assert result.concentrations["o3_8h"] == D("0.040")
    # …but the 1 h maximum 0.150 counts: 49/0.039·0.025 + 101 = 132.41 → 132
    assert result.sub_indices == {"o3_8h": 37, "o3_1h": 132}
    assert (result.aqi, result.main_pollutant) == (132, "o3_1h")


def test_without_the_next_day_only_12_ozone_windows_are_valid_an_incomplete_day() -> None:
    # Windows starting 07:00–18:00 have ≥ 6 hours in the day; 19:00 has only 5.
    result = daily_aqi({"o3": day("0.060")})
    assert result.completeness["o3_8h"] == 12
    assert "o3_8h" not in result.concentrations
    assert result.reasons == {"o3": "incomplete_day"}
    assert result.aqi is None
    assert result.reason == "insufficient_data"


def test_one_hour_of_the_next_day_makes_13_windows_exactly_enough() -> None:
    # next day 00:00 completes the 19:00 window (5 + 1 = 6 hours): 13 of 17.
    result = daily_aqi({"o3": day("0.060")}, {"o3": [D("0.060")]})
    assert result.completeness["o3_8h"] == 13
    # 0.060 → 49/0.015·0.005 + 51 = 67.33 → 67
    assert result.sub_indices["o3_8h"] == 67
    assert result.reasons == {}


def test_an_ozone_window_needs_6_of_its_8_hours() -> None:
    # Hours 10–13 missing: windows 07:00–11:00 hold 4 or 5 of 8 → invalid; 12:00 holds 6.
    # That leaves 12 of 17 even with a full next day.
    hours = missing(day("0.060"), 10, 11, 12, 13)
    result = daily_aqi({"o3": hours}, {"o3": [D("0.060")] * 7})
    assert result.completeness["o3_8h"] == 12
    assert result.reasons == {"o3": "incomplete_day"}


def test_a_low_one_hour_ozone_value_is_reported_but_gives_no_index() -> None:
    result = daily_aqi({"o3": day("0.060")}, {"o3": [D("0.060")] * 7})
    assert result.concentrations == {"o3_8h": D("0.060"), "o3_1h": D("0.060")}
    assert result.sub_indices == {"o3_8h": 67}
    assert result.completeness == {"o3_8h": 17, "o3_1h": 24}


def test_the_higher_of_ozone_8_h_and_1_h_is_the_ozone_index() -> None:
    # One hour at 0.130 in a day of 0.040: 8 h max (7·0.040 + 0.130)/8 = 0.05125 → 0.051
    # → 50/0.054·0.051 = 47.2 → 47; 1 h 0.130 → 49/0.039·0.005 + 101 = 107.28 → 107.
    result = daily_aqi({"o3": day("0.040", h12="0.130")}, {"o3": [D("0.040")] * 7})
    assert result.sub_indices == {"o3_8h": 47, "o3_1h": 107}
    assert (result.aqi, result.main_pollutant) == (107, "o3_1h")


# --- CO: daily maximum 8 h (24 windows starting 00:00–23:00) -------------------------


def test_co_daily_max_is_the_highest_8_hour_window() -> None:
    # 8.4 ppm from 10:00 to 18:00 in a day of 1.0: the 10:00 window is 8.4 → 90 (TAD).
    hours = [D("1.0")] * 10 + [D("8.4")] * 8 + [D("1.0")] * 6
    result = daily_aqi({"co": hours})
    assert result.concentrations == {"co_8h": D("8.4")}
    assert result.sub_indices == {"co_8h": 90}
    # Without the next day, windows 00:00–18:00 have ≥ 6 hours: 19 of 24.
    assert result.completeness == {"co_8h": 19}


def test_co_windows_use_the_next_day_and_a_late_peak_counts() -> None:
    # 23:00 at 1.0 then 7 next-day hours at 9.0: (1.0 + 63.0)/8 = 8.0 → 49/4.9·3.5 + 51
    # = 86 (51–100 runs 4.5–9.4).
    result = daily_aqi({"co": day("1.0")}, {"co": [D("9.0")] * 7})
    assert result.completeness == {"co_8h": 24}
    assert result.concentrations == {"co_8h": D("8.0")}
    assert result.sub_indices == {"co_8h": 86}


def test_co_needs_18_of_24_valid_windows() -> None:
    # Hours 0–2 missing: the 00:00 window has 5 hours; windows 01:00–18:00 = 18 → enough.
    enough = daily_aqi({"co": missing(day("2.0"), 0, 1, 2)})
    assert enough.completeness == {"co_8h": 18}
    assert enough.sub_indices == {"co_8h": 23}  # 50/4.4·2.0 = 22.7 → 23
    # Hours 0–3 missing: windows 02:00–18:00 = 17 → incomplete.
    short = daily_aqi({"co": missing(day("2.0"), 0, 1, 2, 3)})
    assert short.completeness == {"co_8h": 17}
    assert short.reasons == {"co": "incomplete_day"}
    assert short.aqi is None


# --- SO2 and NO2: daily maximum 1 h --------------------------------------------------


def test_so2_below_305_is_the_daily_max_hour() -> None:
    # max 100 → 76–185:101–150 → 49/109·24 + 101 = 111.79 → 112; no 24 h mean needed.
    result = daily_aqi({"so2": missing(day("10", h15="100"), 3)})
    assert result.concentrations == {"so2_1h": D(100)}
    assert result.sub_indices == {"so2_1h": 112}
    assert result.completeness == {"so2_1h": 23}


def test_so2_max_at_305_with_a_24_h_mean_at_305_or_more_uses_the_24_h_table() -> None:
    # 24 h mean 400 → 99/299·95 + 201 = 232.45 → 232
    result = daily_aqi({"so2": day("400")})
    assert result.concentrations == {"so2_1h": D(400), "so2_24h": D(400)}
    assert result.sub_indices == {"so2_24h": 232}
    assert result.completeness == {"so2_1h": 24, "so2_24h": 24}
    assert (result.aqi, result.main_pollutant) == (232, "so2_24h")


def test_so2_max_at_305_with_a_24_h_mean_below_305_is_exactly_200() -> None:
    # (23·10 + 400)/24 = 26.25 → 26 < 305 → SO2 index fixed at 200
    result = daily_aqi({"so2": day("10", h12="400")})
    assert result.concentrations == {"so2_1h": D(400), "so2_24h": D(26)}
    assert result.sub_indices == {"so2_1h": 200}
    assert (result.aqi, result.category, result.main_pollutant) == (200, "Unhealthy", "so2_1h")


def test_so2_max_at_305_without_18_hours_for_the_24_h_mean_has_no_index() -> None:
    result = daily_aqi({"so2": missing(day("10", h12="400"), *range(7))})
    assert result.completeness == {"so2_1h": 17, "so2_24h": 17}
    assert result.sub_indices == {}
    assert result.reasons == {"so2": "incomplete_day"}
    assert result.reason == "insufficient_data"


def test_so2_max_is_truncated_before_the_305_threshold() -> None:
    # 304.9 → 304: still the 1 h table, 49/118·118 + 151 = 200, no 24 h mean computed
    result = daily_aqi({"so2": day("10", h5="304.9")})
    assert result.concentrations == {"so2_1h": D(304)}
    assert result.sub_indices == {"so2_1h": 200}
    assert "so2_24h" not in result.completeness


def test_no2_is_the_daily_max_hour_and_one_valid_hour_is_enough() -> None:
    # 101 → 101–360:101–150 → 101
    result = daily_aqi({"no2": [None] * 8 + [D(101)] + [None] * 15})
    assert result.completeness == {"no2_1h": 1}
    assert result.sub_indices == {"no2_1h": 101}
    assert result.main_pollutant == "no2_1h"


# --- overall ---------------------------------------------------------------------------


def test_overall_is_the_highest_sub_index_tad_example_126_ozone() -> None:
    result = daily_aqi(
        {
            "pm25": day("35.9"),
            "o3": day("0.07853"),
            "co": [D("1.0")] * 10 + [D("8.4")] * 8 + [D("1.0")] * 6,
            "no2": day("20"),
        },
        {"o3": [D("0.07853")] * 7, "co": [D("1.0")] * 7},
    )
    # no2 20 → 50/53·20 = 18.87 → 19
    assert result.sub_indices == {"pm25_24h": 102, "o3_8h": 126, "co_8h": 90, "no2_1h": 19}
    assert result.aqi == 126
    assert result.main_pollutant == "o3_8h"
    assert result.category == "Unhealthy for Sensitive Groups"
    assert result.reason is None


def test_an_incomplete_pollutant_is_explained_while_others_give_the_aqi() -> None:
    result = daily_aqi({"pm25": missing(day("80.0"), *range(10)), "no2": day("60")})
    # no2 60 → 49/46·6 + 51 = 57.39 → 57
    assert (result.aqi, result.main_pollutant) == (57, "no2_1h")
    assert result.reasons == {"pm25": "incomplete_day"}
    assert result.reason is None


# --- no data and bad input -----------------------------------------------------------


def test_no_pollutants_is_insufficient_data() -> None:
    result = daily_aqi({})
    assert result == DailyAqi(None, None, None, {}, {}, {}, {}, "insufficient_data")


def test_a_pollutant_with_every_hour_missing_has_no_data_and_no_reason() -> None:
    result = daily_aqi({"pm25": [None] * 24, "so2": [None] * 24})
    assert result.completeness == {"pm25_24h": 0, "so2_1h": 0}
    assert result.reasons == {}
    assert result.reason == "insufficient_data"


def test_next_day_hours_beyond_the_seventh_are_ignored() -> None:
    short = daily_aqi({"o3": day("0.060")}, {"o3": [D("0.060")] * 7})
    whole_day = daily_aqi({"o3": day("0.060")}, {"o3": [D("0.060")] * 7 + [D("0.200")] * 17})
    assert whole_day == short


def test_a_day_must_have_24_hours() -> None:
    with pytest.raises(InvalidValue, match="24"):
        daily_aqi({"pm25": [D(1)] * 23})


def test_unknown_pollutants_are_refused() -> None:
    with pytest.raises(UnknownKey):
        daily_aqi({"pm1": day("1")})
    with pytest.raises(UnknownKey):
        daily_aqi({"o3": day("0.01")}, {"ozone": [D("0.01")]})


def test_negative_concentrations_are_refused() -> None:
    with pytest.raises(InvalidValue, match="negative"):
        daily_aqi({"no2": day("5", h3="-1")})
    with pytest.raises(InvalidValue, match="negative"):
        daily_aqi({"co": day("1")}, {"co": [D(-1)]})


def test_the_result_is_immutable_and_the_module_exports_its_api() -> None:
    result = daily_aqi({"pm25": day("5.0")})
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.aqi = 1  # type: ignore[misc]
    assert set(daily.__all__) >= {"DailyAqi", "daily_aqi"}
