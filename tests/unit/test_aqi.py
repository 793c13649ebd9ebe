"""Specification of processors.aqi: the EPA AQI 2024 (EPA-454/B-24-002) and the NowCast.

The tables below are copied from docs/domain-reference.md §1 independently of the
implementation, so these tests check the code against the reference, not against itself.
"""

from __future__ import annotations

import math
from decimal import Decimal, localcontext
from fractions import Fraction

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from processors.aqi import (
    AQI_VERSION,
    CATEGORIES,
    CATEGORY_COLORS,
    KEYS,
    REASONS,
    HourlyAqi,
    category,
    hourly_aqi,
    nowcast,
    overall,
    sub_index,
    truncate,
)
from processors.exceptions import InvalidValue, ProcessorError, UnknownKey
from processors.rolling import mean

D = Decimal

# key → (truncation step, [(C_lo, C_hi, I_lo, I_hi), ...]) from the reference, Table 6.
PM25 = [
    ("0.0", "9.0", 0, 50),
    ("9.1", "35.4", 51, 100),
    ("35.5", "55.4", 101, 150),
    ("55.5", "125.4", 151, 200),
    ("125.5", "225.4", 201, 300),
    ("225.5", "325.4", 301, 500),
]
PM10 = [
    ("0", "54", 0, 50),
    ("55", "154", 51, 100),
    ("155", "254", 101, 150),
    ("255", "354", 151, 200),
    ("355", "424", 201, 300),
    ("425", "604", 301, 500),
]
REFERENCE: dict[str, tuple[str, list[tuple[str, str, int, int]]]] = {
    "pm25_24h": ("0.1", PM25),
    "pm25_nowcast": ("0.1", PM25),
    "pm10_24h": ("1", PM10),
    "pm10_nowcast": ("1", PM10),
    "o3_8h": (
        "0.001",
        [
            ("0.000", "0.054", 0, 50),
            ("0.055", "0.070", 51, 100),
            ("0.071", "0.085", 101, 150),
            ("0.086", "0.105", 151, 200),
            ("0.106", "0.200", 201, 300),
        ],
    ),
    "o3_1h": (
        "0.001",
        [
            ("0.125", "0.164", 101, 150),
            ("0.165", "0.204", 151, 200),
            ("0.205", "0.404", 201, 300),
            ("0.405", "0.604", 301, 500),
        ],
    ),
    "co_8h": (
        "0.1",
        [
            ("0.0", "4.4", 0, 50),
            ("4.5", "9.4", 51, 100),
            ("9.5", "12.4", 101, 150),
            ("12.5", "15.4", 151, 200),
            ("15.5", "30.4", 201, 300),
            ("30.5", "50.4", 301, 500),
        ],
    ),
    "so2_1h": (
        "1",
        [
            ("0", "35", 0, 50),
            ("36", "75", 51, 100),
            ("76", "185", 101, 150),
            ("186", "304", 151, 200),
        ],
    ),
    "so2_24h": ("1", [("305", "604", 201, 300), ("605", "1004", 301, 500)]),
    "no2_1h": (
        "1",
        [
            ("0", "53", 0, 50),
            ("54", "100", 51, 100),
            ("101", "360", 101, 150),
            ("361", "649", 151, 200),
            ("650", "1249", 201, 300),
            ("1250", "2049", 301, 500),
        ],
    ),
}
EDGES = [
    pytest.param(key, D(c), i, id=f"{key}:{c}->{i}")
    for key, (_, segments) in REFERENCE.items()
    for c_lo, c_hi, i_lo, i_hi in segments
    for c, i in ((c_lo, i_lo), (c_hi, i_hi))
]
NO_INDEX_FROM = {"o3_8h": D("0.201"), "so2_1h": D(305)}  # at or above: no index
NO_INDEX_BELOW = {"o3_1h": D("0.125"), "so2_24h": D(305)}  # below: no index


def reference_index(key: str, concentration: Decimal) -> int | None:
    """The reference's four steps in exact rational arithmetic."""
    step, segments = REFERENCE[key]
    c = Fraction(concentration)
    q = Fraction(D(step))
    t = math.floor(c / q) * q  # truncate (concentrations are non-negative)
    if key in NO_INDEX_FROM and t >= Fraction(NO_INDEX_FROM[key]):
        return None
    if key in NO_INDEX_BELOW and t < Fraction(NO_INDEX_BELOW[key]):
        return None
    chosen = segments[-1]
    for segment in segments:
        if t <= Fraction(D(segment[1])):
            chosen = segment
            break
    c_lo, c_hi, i_lo, i_hi = Fraction(D(chosen[0])), Fraction(D(chosen[1])), chosen[2], chosen[3]
    value = Fraction(i_hi - i_lo) / (c_hi - c_lo) * (t - c_lo) + i_lo
    return math.floor(value + Fraction(1, 2))  # half up


def test_version_and_keys() -> None:
    assert AQI_VERSION == "EPA-454/B-24-002"
    assert KEYS == (
        "pm25_24h",
        "pm10_24h",
        "o3_8h",
        "o3_1h",
        "co_8h",
        "so2_1h",
        "so2_24h",
        "no2_1h",
        "pm25_nowcast",
        "pm10_nowcast",
    )
    assert set(REFERENCE) == set(KEYS)


# --- worked examples of the reference -------------------------------------------------


def test_pm25_35_9_is_102() -> None:
    assert sub_index("pm25_24h", D("35.9")) == 102


def test_o3_8h_0_07853_truncates_to_0_078_and_125_5_rounds_up_to_126() -> None:
    assert truncate("o3_8h", D("0.07853")) == D("0.078")
    assert sub_index("o3_8h", D("0.07853")) == 126


def test_co_8_4_ppm_is_90() -> None:
    assert sub_index("co_8h", D("8.4")) == 90


def test_overall_of_the_three_examples_is_126_from_ozone() -> None:
    assert overall({"pm25_24h": D("35.9"), "o3_8h": D("0.07853"), "co_8h": D("8.4")}) == (
        126,
        "o3_8h",
    )


def test_pm10_504_is_389_under_the_single_hazardous_segment() -> None:
    assert sub_index("pm10_24h", D(504)) == 389  # 400 under the pre-2024 table


def test_nowcast_training_example_is_17_4_and_aqi_66() -> None:
    hours = [50, 80, 75, 90, 82, 53, 64, 74, 21, 10, 16, 13]
    result = nowcast(hours)
    assert result == D("17.4")
    assert str(result) == "17.4"
    assert sub_index("pm25_nowcast", result) == 66  # type: ignore[arg-type]


# --- every breakpoint edge ------------------------------------------------------------


@pytest.mark.parametrize(("key", "concentration", "expected"), EDGES)
def test_every_breakpoint_maps_to_its_index(
    key: str, concentration: Decimal, expected: int
) -> None:
    assert sub_index(key, concentration) == expected


@pytest.mark.parametrize(
    ("key", "concentration", "expected"),
    [
        ("pm25_24h", "9.09", 50),  # between segments: truncates back into the lower one
        ("pm25_24h", "35.49", 100),
        ("pm10_24h", "54.9", 50),
        ("o3_8h", "0.0549", 50),
        ("co_8h", "4.49", 50),
        ("so2_1h", "35.9", 50),
        ("no2_1h", "53.99", 50),
    ],
)
def test_values_in_a_gap_between_segments_truncate_into_the_lower_one(
    key: str, concentration: str, expected: int
) -> None:
    assert sub_index(key, concentration) == expected


# --- truncation and rounding ----------------------------------------------------------


def test_truncation_trap_float_mean_reads_good_decimal_mean_reads_moderate() -> None:
    float_mean = sum([9.1] * 10) / 10  # 9.099999999999998
    assert sub_index("pm25_24h", float_mean) == 50
    assert sub_index("pm25_24h", 9.0999999) == 50
    assert sub_index("pm25_24h", mean([D("9.1")] * 10)) == 51
    assert sub_index("pm25_24h", D("9.1")) == 51


@pytest.mark.parametrize(
    ("key", "concentration", "expected"),
    [
        ("pm25_24h", "12.34", "12.3"),
        ("pm25_24h", "12.39", "12.3"),
        ("pm10_24h", "54.99", "54"),
        ("o3_8h", "0.0789", "0.078"),
        ("co_8h", "8.49", "8.4"),
        ("so2_1h", "304.9", "304"),
        ("no2_1h", "100.999", "100"),
        ("pm25_24h", 35.2, "35.2"),
        ("pm25_24h", "-1.25", "-1.2"),  # toward zero, not toward -inf
    ],
)
def test_truncate_goes_toward_zero_to_the_keys_precision(
    key: str, concentration: object, expected: str
) -> None:
    result = truncate(key, concentration)  # type: ignore[arg-type]
    assert result == D(expected)
    assert str(result) == expected


@pytest.mark.parametrize(
    ("concentration", "exact", "expected"),
    [
        ("0.072", "104.5", 105),  # half-even would say 104
        ("0.074", "111.5", 112),
        ("0.076", "118.5", 119),  # half-even would say 118
        ("0.078", "125.5", 126),
    ],
)
def test_halves_round_up(concentration: str, exact: str, expected: int) -> None:
    # O3 8 h 0.071-0.085 : 101-150 climbs 3.5 per ppb.
    assert D(49) / D("0.014") * (D(concentration) - D("0.071")) + 101 == D(exact)
    assert sub_index("o3_8h", concentration) == expected


def test_sub_index_does_not_depend_on_the_callers_decimal_context() -> None:
    with localcontext() as ctx:
        ctx.prec = 2
        ctx.rounding = "ROUND_FLOOR"
        assert sub_index("o3_8h", "0.078") == 126
        assert sub_index("pm25_24h", "35.9") == 102
        assert nowcast([50, 80, 75, 90, 82, 53, 64, 74, 21, 10, 16, 13]) == D("17.4")


# --- where no index exists ------------------------------------------------------------


def test_o3_1h_below_0_125_has_no_index() -> None:
    assert sub_index("o3_1h", D("0.124")) is None
    assert sub_index("o3_1h", D("0.1249")) is None
    assert sub_index("o3_1h", D("0.125")) == 101


def test_o3_8h_at_or_above_0_201_has_no_index() -> None:
    assert sub_index("o3_8h", D("0.2009")) == 300
    assert sub_index("o3_8h", D("0.201")) is None
    assert sub_index("o3_8h", D("0.5")) is None


def test_so2_1h_at_or_above_305_has_no_own_index() -> None:
    assert sub_index("so2_1h", D("304.9")) == 200
    assert sub_index("so2_1h", D(305)) is None


def test_so2_24h_below_305_has_no_index() -> None:
    assert sub_index("so2_24h", D("304.9")) is None
    assert sub_index("so2_24h", D(305)) == 201


# --- beyond the AQI -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "concentration", "expected"),
    [
        ("pm25_24h", "500", 848),  # 199/99.9 × 274.5 + 301 = 847.8
        ("pm10_24h", "700", 607),  # 199/179 × 275 + 301 = 606.7
        ("o3_1h", "0.7", 596),  # 1000 × 0.295 + 301
        ("co_8h", "60", 596),
        ("no2_1h", "3000", 737),
        ("so2_24h", "1200", 598),
        ("pm25_nowcast", "325.5", 500),  # 325.5 - 325.4 = one step above the anchor
    ],
)
def test_above_the_top_breakpoint_the_line_continues(
    key: str, concentration: str, expected: int
) -> None:
    assert sub_index(key, concentration) == expected
    assert category(expected) == "Hazardous"


def test_nothing_is_clamped_at_500() -> None:
    assert sub_index("pm25_24h", "325.4") == 500
    assert sub_index("pm25_24h", "326.0") == 501  # 199/99.9 × 100.5 + 301 = 501.2


# --- invalid input --------------------------------------------------------------------


@pytest.mark.parametrize("bad", [D("-0.1"), -1, -0.001, "-5"])
def test_negative_concentration_is_invalid(bad: object) -> None:
    with pytest.raises(InvalidValue, match="negative"):
        sub_index("pm25_24h", bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [float("nan"), D("NaN"), float("inf"), "x"])
def test_nan_infinity_and_garbage_are_invalid(bad: object) -> None:
    with pytest.raises(InvalidValue):
        sub_index("pm25_24h", bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("key", ["pm25", "o3_24h", "PM25_24H", ""])
def test_unknown_key_is_an_error(key: str) -> None:
    with pytest.raises(UnknownKey, match="unknown AQI key"):
        sub_index(key, 1)
    with pytest.raises(UnknownKey):
        truncate(key, 1)
    assert issubclass(UnknownKey, ProcessorError)


def test_absurdly_large_value_is_invalid_not_a_crash() -> None:
    with pytest.raises(InvalidValue):
        sub_index("o3_1h", D("1e30"))


# --- categories -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("aqi", "name"),
    [
        (0, "Good"),
        (50, "Good"),
        (51, "Moderate"),
        (100, "Moderate"),
        (101, "Unhealthy for Sensitive Groups"),
        (150, "Unhealthy for Sensitive Groups"),
        (151, "Unhealthy"),
        (200, "Unhealthy"),
        (201, "Very Unhealthy"),
        (300, "Very Unhealthy"),
        (301, "Hazardous"),
        (500, "Hazardous"),
        (501, "Hazardous"),
        (10_000, "Hazardous"),
    ],
)
def test_category_boundaries(aqi: int, name: str) -> None:
    assert category(aqi) == name


@pytest.mark.parametrize("bad", [-1, True, 50.0])
def test_category_rejects_what_is_not_an_aqi(bad: object) -> None:
    with pytest.raises(InvalidValue):
        category(bad)  # type: ignore[arg-type]


def test_category_colors_are_the_reference_rgb() -> None:
    assert dict(CATEGORY_COLORS) == {
        "Good": (0, 228, 0),
        "Moderate": (255, 255, 0),
        "Unhealthy for Sensitive Groups": (255, 126, 0),
        "Unhealthy": (255, 0, 0),
        "Very Unhealthy": (143, 63, 151),
        "Hazardous": (126, 0, 35),
    }
    assert tuple(CATEGORY_COLORS) == CATEGORIES


# --- NowCast --------------------------------------------------------------------------


def test_nowcast_needs_two_of_the_three_most_recent_hours() -> None:
    full = [D(10)] * 12
    assert nowcast([*full[:9], None, D(10), D(10)]) == D("10.0")  # c3 missing: ok
    assert nowcast([*full[:9], D(10), None, D(10)]) == D("10.0")  # c2 missing: ok
    assert nowcast([*full[:9], D(10), None, None]) is None  # c1 and c2 missing
    assert nowcast([*full[:9], None, D(10), None]) is None  # c1 and c3 missing


def test_nowcast_with_a_short_history() -> None:
    assert nowcast([D(10), D(12)]) == D("11.0")  # w = 10/12: (12 + 10·5/6) / (1 + 5/6)
    assert nowcast([D(10)]) is None
    assert nowcast([]) is None


def test_nowcast_uses_only_the_last_12_hours() -> None:
    hours = [50, 80, 75, 90, 82, 53, 64, 74, 21, 10, 16, 13]
    assert nowcast([10_000, None, "not a number, never read", *hours]) == D("17.4")  # type: ignore[list-item]


def test_nowcast_missing_hour_keeps_the_true_exponent() -> None:
    # c1 = 10, c2 missing, c3 = 20; w = 0.5 (clamped): (10 + 0.25·20)/(1 + 0.25) = 12.
    # Shifting c3 into c2's place would give (10 + 0.5·20)/1.5 = 13.3.
    assert nowcast([20, None, 10]) == D("12.0")


def test_nowcast_weight_is_clamped_at_one_half() -> None:
    # w* = 1/100 → 0.5: (100 + 0.5·1)/(1.5) = 67.0
    assert nowcast([1, 100]) == D("67.0")


def test_nowcast_of_all_zero_hours_is_zero() -> None:
    assert nowcast([0, 0, 0]) == D("0.0")


def test_pm10_nowcast_truncates_to_whole_micrograms() -> None:
    assert nowcast([50, 80, 75, 90, 82, 53, 64, 74, 21, 10, 16, 13], "pm10") == D(17)


def test_nowcast_uses_raw_values_then_truncates() -> None:
    # Truncating each hour first would give 9.0; the raw mean is 9.09 → 9.0 only at the end.
    assert nowcast(["9.09", "9.09", "9.09"]) == D("9.0")
    assert nowcast(["9.05", "9.15", "9.15"]) == D("9.1")


@pytest.mark.parametrize("pollutant", ["o3", "co", "pm25_nowcast"])
def test_nowcast_is_only_for_particulate_matter(pollutant: str) -> None:
    with pytest.raises(UnknownKey):
        nowcast([1, 2, 3], pollutant)


def test_nowcast_rejects_negative_hours() -> None:
    with pytest.raises(InvalidValue):
        nowcast([1, -2, 3])


# --- combining keys: ozone ------------------------------------------------------------


def test_ozone_reports_the_higher_of_8h_and_1h() -> None:
    o3_8h, o3_1h = sub_index("o3_8h", "0.080"), sub_index("o3_1h", "0.180")
    assert (o3_8h, o3_1h) == (133, 170)
    assert overall({"o3_8h": "0.080", "o3_1h": "0.180"}) == (170, "o3_1h")
    assert overall({"o3_8h": "0.104", "o3_1h": "0.130"}) == (sub_index("o3_8h", "0.104"), "o3_8h")


def test_ozone_1h_below_0_125_is_disregarded() -> None:
    assert overall({"o3_8h": "0.060", "o3_1h": "0.124"}) == (sub_index("o3_8h", "0.060"), "o3_8h")


def test_ozone_8h_at_0_201_gives_way_to_the_1h_index() -> None:
    assert overall({"o3_8h": "0.210", "o3_1h": "0.300"}) == (sub_index("o3_1h", "0.300"), "o3_1h")
    assert overall({"o3_8h": "0.210"}) == (None, None)


def test_ozone_1h_alone_counts() -> None:
    assert overall({"o3_1h": "0.130"}) == (sub_index("o3_1h", "0.130"), "o3_1h")


# --- combining keys: SO2 --------------------------------------------------------------


def test_so2_1h_below_305_uses_the_1h_table() -> None:
    assert overall({"so2_1h": 100}) == (sub_index("so2_1h", 100), "so2_1h")
    assert overall({"so2_1h": 100, "so2_24h": 80}) == (sub_index("so2_1h", 100), "so2_1h")


def test_so2_1h_at_305_with_24h_at_or_above_305_uses_the_24h_index() -> None:
    assert overall({"so2_1h": 400, "so2_24h": 305}) == (201, "so2_24h")
    assert overall({"so2_1h": 700, "so2_24h": 650}) == (sub_index("so2_24h", 650), "so2_24h")


def test_so2_1h_at_305_with_24h_below_305_is_exactly_200() -> None:
    assert overall({"so2_1h": 305, "so2_24h": 304}) == (200, "so2_1h")
    assert overall({"so2_1h": 900, "so2_24h": 20}) == (200, "so2_1h")


def test_so2_1h_at_305_without_a_24h_mean_contributes_nothing() -> None:
    assert overall({"so2_1h": 400}) == (None, None)
    assert overall({"so2_1h": 400, "pm25_24h": "5.0"}) == (28, "pm25_24h")


def test_so2_24h_at_or_above_305_counts_even_with_a_lower_1h_value() -> None:
    # Interpretation: a 24 h mean ≥ 305 implies an hour ≥ 305 inside its window.
    assert overall({"so2_1h": 100, "so2_24h": 400}) == (sub_index("so2_24h", 400), "so2_24h")
    assert overall({"so2_24h": 400}) == (sub_index("so2_24h", 400), "so2_24h")
    assert overall({"so2_24h": 100}) == (None, None)


# --- combining keys: overall ----------------------------------------------------------


def test_ties_go_to_the_key_listed_first_in_keys() -> None:
    assert sub_index("o3_8h", "0.054") == sub_index("pm25_nowcast", "9.0") == 50
    assert overall({"pm25_nowcast": "9.0", "o3_8h": "0.054"}) == (50, "o3_8h")
    assert overall({"pm25_nowcast": "9.0", "pm25_24h": "9.0"}) == (50, "pm25_24h")


def test_overall_of_nothing_is_none() -> None:
    assert overall({}) == (None, None)
    assert overall({"pm25_24h": None, "o3_8h": None}) == (None, None)


def test_overall_rejects_unknown_keys_and_negative_values() -> None:
    with pytest.raises(UnknownKey):
        overall({"pm25": 10})
    with pytest.raises(InvalidValue):
        overall({"pm25_24h": -3})


def test_overall_above_500_is_not_clamped() -> None:
    assert overall({"pm10_24h": 700, "pm25_24h": "12.0"}) == (607, "pm10_24h")


# --- hourly_aqi -----------------------------------------------------------------------


def _hours(*values: object) -> list[Decimal | None]:
    return [None if v is None else D(str(v)) for v in values]


def test_hourly_aqi_combines_nowcast_rolling_and_current_hour() -> None:
    report = hourly_aqi(
        {
            "pm25": _hours(50, 80, 75, 90, 82, 53, 64, 74, 21, 10, 16, 13),
            "o3": _hours(*["0.070"] * 7, "0.100"),  # 8 h mean 0.07375, 1 h 0.100
            "co": _hours(*[8] * 6, 9, 10),  # 8 h mean 8.375
            "no2": _hours(40, 120),
            "so2": _hours(5, 3),
        }
    )
    assert report == HourlyAqi(
        aqi=sub_index("o3_8h", "0.073"),
        category="Unhealthy for Sensitive Groups",
        main_pollutant="o3_8h",
        sub_indices={
            "o3_8h": sub_index("o3_8h", "0.073"),
            "co_8h": sub_index("co_8h", "8.3"),
            "so2_1h": sub_index("so2_1h", 3),
            "no2_1h": sub_index("no2_1h", 120),
            "pm25_nowcast": 66,
        },
        concentrations={
            "o3_8h": D("0.073"),
            "o3_1h": D("0.100"),  # consulted by the ozone rule, below 0.125: no index
            "co_8h": D("8.3"),
            "so2_1h": D(3),
            "no2_1h": D(120),
            "pm25_nowcast": D("17.4"),
        },
        reason=None,
    )
    assert report.aqi == 108  # 101 + 3.5 × 2


def test_hourly_aqi_uses_the_1h_ozone_when_it_is_higher() -> None:
    report = hourly_aqi({"o3": _hours(*["0.050"] * 7, "0.180")})
    assert report.main_pollutant == "o3_1h"
    assert report.aqi == sub_index("o3_1h", "0.180")
    assert set(report.sub_indices) == {"o3_8h", "o3_1h"}


def test_hourly_aqi_missing_current_hour_drops_the_1h_keys_only() -> None:
    report = hourly_aqi({"o3": _hours(*["0.050"] * 7, None), "no2": _hours(30, None)})
    assert report.sub_indices == {"o3_8h": sub_index("o3_8h", "0.050")}
    assert "o3_1h" not in report.concentrations
    assert "no2_1h" not in report.concentrations


def test_hourly_aqi_so2_at_305_with_a_low_24h_mean_is_200() -> None:
    report = hourly_aqi({"so2": _hours(*[100] * 23, 400)})  # 24 h mean 112.5
    assert report.aqi == 200
    assert report.main_pollutant == "so2_1h"
    assert report.sub_indices == {"so2_1h": 200}
    assert report.concentrations == {"so2_1h": D(400), "so2_24h": D(112)}


def test_hourly_aqi_so2_at_305_with_a_high_24h_mean_uses_the_24h_index() -> None:
    report = hourly_aqi({"so2": _hours(*[350] * 24)})
    assert (report.aqi, report.main_pollutant) == (sub_index("so2_24h", 350), "so2_24h")
    assert report.concentrations == {"so2_1h": D(350), "so2_24h": D(350)}


def test_hourly_aqi_so2_at_305_without_18_hours_contributes_nothing() -> None:
    report = hourly_aqi({"so2": _hours(*[None] * 7, *[400] * 17)})
    assert report.aqi is None
    assert report.reason == "no_index"
    assert report.concentrations == {"so2_1h": D(400)}


def test_hourly_aqi_below_305_never_computes_the_24h_mean() -> None:
    report = hourly_aqi({"so2": _hours(*[500] * 23, 300)})
    assert report.concentrations == {"so2_1h": D(300)}
    assert report.sub_indices == {"so2_1h": sub_index("so2_1h", 300)}


def test_hourly_aqi_with_too_few_hours_is_insufficient_data() -> None:
    report = hourly_aqi({"pm25": _hours(12, None, None), "co": _hours(*[1] * 5), "o3": []})
    assert report == HourlyAqi(None, None, None, {}, {}, "insufficient_data")
    assert hourly_aqi({}).reason == "insufficient_data"


def test_hourly_aqi_with_values_but_no_index_says_so() -> None:
    report = hourly_aqi({"o3": _hours("0.050")})  # 1 h below 0.125, too short for 8 h
    assert report == HourlyAqi(None, None, None, {}, {"o3_1h": D("0.050")}, "no_index")
    assert set(REASONS) == {"insufficient_data", "no_index"}


def test_hourly_aqi_ignores_hours_older_than_24() -> None:
    old = [D(-1)] * 10  # never looked at
    assert hourly_aqi({"pm10": [*old, *_hours(*[40] * 24)]}).aqi == sub_index("pm10_24h", 40)


def test_hourly_aqi_rejects_unknown_pollutants_and_negative_hours() -> None:
    with pytest.raises(UnknownKey):
        hourly_aqi({"pm2.5": _hours(1, 2, 3)})
    with pytest.raises(InvalidValue, match="co"):
        hourly_aqi({"co": _hours(1, -2, 3)})


# --- properties -----------------------------------------------------------------------

TOPS = {key: D(segments[-1][1]) for key, (_, segments) in REFERENCE.items()}


@st.composite
def key_and_concentration(draw: st.DrawFn) -> tuple[str, Decimal]:
    key = draw(st.sampled_from(KEYS))
    value = draw(st.decimals(min_value=0, max_value=TOPS[key] * 2, places=5, allow_nan=False))
    return key, value


@given(key_and_concentration())
def test_sub_index_matches_exact_rational_arithmetic(case: tuple[str, Decimal]) -> None:
    key, concentration = case
    assert sub_index(key, concentration) == reference_index(key, concentration)


@given(key_and_concentration())
def test_overall_of_one_key_is_its_exact_index_every_time_it_is_asked(
    case: tuple[str, Decimal],
) -> None:
    key, concentration = case  # overall() remembers the index of each truncated value
    expected = reference_index(key, concentration)
    for _ in range(2):
        assert overall({key: concentration}) == (expected, None if expected is None else key)


def test_indices_stay_exact_past_the_values_remembered() -> None:
    values = [D(tenths) / 10 for tenths in range(6000)]  # more than are remembered per key
    for _ in range(2):
        assert [overall({"pm25_24h": v})[0] for v in values] == [
            reference_index("pm25_24h", v) for v in values
        ]


@given(key_and_concentration(), st.decimals(min_value=0, max_value=1000, places=5))
def test_sub_index_is_monotone_where_defined(case: tuple[str, Decimal], delta: Decimal) -> None:
    key, low = case
    high = low + delta
    a, b = sub_index(key, low), sub_index(key, high)
    if a is not None and b is not None:
        assert a <= b


@given(key_and_concentration())
def test_no_index_exactly_in_the_documented_ranges(case: tuple[str, Decimal]) -> None:
    key, concentration = case
    t = truncate(key, concentration)
    expected_none = (key in NO_INDEX_FROM and t >= NO_INDEX_FROM[key]) or (
        key in NO_INDEX_BELOW and t < NO_INDEX_BELOW[key]
    )
    assert (sub_index(key, concentration) is None) == expected_none


@given(
    st.sampled_from(KEYS),
    st.decimals(min_value=-10_000, max_value=10_000, places=6, allow_nan=False),
)
def test_truncation_is_idempotent_and_never_moves_away_from_zero(
    key: str, concentration: Decimal
) -> None:
    once = truncate(key, concentration)
    assert truncate(key, once) == once
    assert abs(once) <= abs(concentration)
    if concentration >= 0:
        assert once <= concentration
        step = D(REFERENCE[key][0])
        assert concentration - once < step


@given(st.integers(min_value=0, max_value=2000))
def test_category_agrees_with_the_index_ranges(aqi: int) -> None:
    bounds = [(0, 50), (51, 100), (101, 150), (151, 200), (201, 300), (301, math.inf)]
    expected = next(
        name for name, (lo, hi) in zip(CATEGORIES, bounds, strict=True) if lo <= aqi <= hi
    )
    assert category(aqi) == expected


pm_values = st.decimals(min_value=0, max_value=1000, places=2, allow_nan=False)
pm_hours = st.lists(st.none() | pm_values, min_size=0, max_size=16)


def exact_nowcast(hourly: list[Decimal | None]) -> Fraction | None:
    """The reference's NowCast formula in exact rational arithmetic, untruncated."""
    recent = hourly[-12:][::-1]
    present = [(age, Fraction(v)) for age, v in enumerate(recent) if v is not None]
    if sum(1 for age, _ in present if age < 3) < 2:
        return None
    c_min, c_max = min(v for _, v in present), max(v for _, v in present)
    w = Fraction(1) if c_max == 0 else min(max(c_min / c_max, Fraction(1, 2)), Fraction(1))
    return sum((w**age * v for age, v in present), Fraction(0)) / sum(
        (w**age for age, _ in present), Fraction(0)
    )


@given(pm_hours, st.sampled_from(["pm25", "pm10"]))
def test_nowcast_matches_exact_arithmetic_with_true_exponents(
    hourly: list[Decimal | None], pollutant: str
) -> None:
    exact = exact_nowcast(hourly)
    result = nowcast(hourly, pollutant)
    if exact is None:
        assert result is None
        return
    step = Fraction(D("0.1")) if pollutant == "pm25" else Fraction(1)
    scaled = exact / step
    assume(abs(scaled - round(scaled)) > Fraction(1, 10**15))  # not on a truncation step
    assert result is not None
    assert Fraction(result) == math.floor(scaled) * step


def test_nowcast_weights_stay_exact_past_the_weights_remembered() -> None:
    checked = 0
    for newest in range(5000, 10_001):  # weights newest/10000 ≥ ½: more than are remembered
        hourly = [D(10_000), D(newest), D(newest)]
        exact = exact_nowcast(hourly)
        assert exact is not None
        if abs(exact * 10 - round(exact * 10)) > Fraction(1, 10**15):  # not on a step
            assert Fraction(nowcast(hourly)) == math.floor(exact * 10) / Fraction(10)
            checked += 1
    assert checked > 4500


@given(pm_hours.filter(lambda h: exact_nowcast(h) is not None))
def test_nowcast_lies_between_the_valid_hours(hourly: list[Decimal | None]) -> None:
    valid = [v for v in hourly[-12:] if v is not None]
    result = nowcast(hourly)
    assert result is not None
    assert truncate("pm25_nowcast", min(valid)) <= result <= max(valid)


@given(pm_values, st.integers(min_value=2, max_value=12), st.sampled_from(["pm25", "pm10"]))
def test_nowcast_of_equal_hours_is_that_value_truncated(
    value: Decimal, count: int, pollutant: str
) -> None:
    assert nowcast([value] * count, pollutant) == truncate(f"{pollutant}_nowcast", value)


@given(st.dictionaries(st.sampled_from(["pm25_24h", "pm10_24h", "co_8h", "no2_1h"]), pm_values))
def test_overall_without_special_rules_is_the_max_sub_index(
    concentrations: dict[str, Decimal],
) -> None:
    indices = {key: sub_index(key, value) for key, value in concentrations.items()}
    aqi, main = overall(concentrations)
    if not indices:
        assert (aqi, main) == (None, None)
        return
    assert aqi == max(i for i in indices.values() if i is not None)
    assert main == min((k for k, i in indices.items() if i == aqi), key=KEYS.index)
