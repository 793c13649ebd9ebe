"""Specification of processors.units: unit conversion and number intake."""

from __future__ import annotations

from decimal import Decimal, getcontext, localcontext

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.exceptions import InvalidValue, ProcessorError, UnitError
from processors.units import (
    EPA_UNITS,
    GASES,
    MOLECULAR_WEIGHTS,
    POLLUTANTS,
    UNITS,
    convert,
    to_decimal,
    to_epa_units,
)

D = Decimal


# --- constants ------------------------------------------------------------------------


def test_pollutants_units_and_epa_units_are_the_documented_ones() -> None:
    assert POLLUTANTS == ("pm25", "pm10", "o3", "no2", "so2", "co")
    assert UNITS == ("ug/m3", "mg/m3", "ppm", "ppb")
    assert dict(EPA_UNITS) == {
        "pm25": "ug/m3",
        "pm10": "ug/m3",
        "o3": "ppm",
        "co": "ppm",
        "so2": "ppb",
        "no2": "ppb",
    }


def test_molecular_weights_are_the_reference_values() -> None:
    assert dict(MOLECULAR_WEIGHTS) == {
        "o3": D("48.00"),
        "no2": D("46.01"),
        "so2": D("64.07"),
        "co": D("28.01"),
    }


def test_constant_tables_are_read_only() -> None:
    with pytest.raises(TypeError):
        EPA_UNITS["pm25"] = "ppb"  # type: ignore[index]


# --- to_decimal -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (35.2, "35.2"),
        (0.1, "0.1"),
        (9.099999999999998, "9.099999999999998"),
        (12, "12"),
        ("0.078", "0.078"),
        (" 17.4 ", "17.4"),
        (D("1.50"), "1.50"),
    ],
)
def test_to_decimal_keeps_the_shortest_text_of_the_number(value: object, expected: str) -> None:
    result = to_decimal(value)  # type: ignore[arg-type]
    assert isinstance(result, Decimal)
    assert str(result) == expected


def test_to_decimal_of_a_float_is_not_its_binary_expansion() -> None:
    assert to_decimal(35.2) == D("35.2")
    assert D(35.2) != D("35.2")


@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), float("-inf"), D("NaN"), D("sNaN"), D("Infinity"), "nan", "inf"],
)
def test_to_decimal_rejects_nan_and_infinity(value: object) -> None:
    with pytest.raises(InvalidValue):
        to_decimal(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["", "abc", "1,5", True, None, [1]])
def test_to_decimal_rejects_what_is_not_a_number(value: object) -> None:
    with pytest.raises(InvalidValue):
        to_decimal(value)  # type: ignore[arg-type]


def test_invalid_value_is_a_processor_error_and_a_value_error() -> None:
    assert issubclass(InvalidValue, ProcessorError)
    assert issubclass(UnitError, ProcessorError)
    assert issubclass(ProcessorError, ValueError)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_to_decimal_of_any_finite_float_round_trips(value: float) -> None:
    assert float(to_decimal(value)) == value


# --- to_epa_units ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pollutant", "value", "unit", "expected"),
    [
        # PM stays in µg/m³; mg/m³ is a factor 1000.
        ("pm25", "35.2", "ug/m3", "35.2"),
        ("pm25", "0.0352", "mg/m3", "35.2"),
        ("pm10", "0.504", "mg/m3", "504"),
        # ppb = µg/m³ × 24.45 / MW; O3 wants ppm = ppb / 1000.
        ("o3", "100", "ug/m3", "0.0509375"),
        ("o3", "0.1", "mg/m3", "0.0509375"),
        ("o3", "78", "ppb", "0.078"),
        ("o3", "0.078", "ppm", "0.078"),
        # SO2 and NO2 want ppb.
        ("so2", "64.07", "ug/m3", "24.45"),
        ("so2", "0.305", "ppm", "305"),
        ("no2", "46.01", "ug/m3", "24.45"),
        ("no2", "53", "ppb", "53"),
        # CO wants ppm: 28.01 mg/m³ is 24.45 ppm.
        ("co", "28.01", "mg/m3", "24.45"),
        ("co", "8400", "ppb", "8.4"),
    ],
)
def test_to_epa_units_converts_at_25_c_and_1_atm(
    pollutant: str, value: str, unit: str, expected: str
) -> None:
    assert to_epa_units(pollutant, D(value), unit) == D(expected)


def test_to_epa_units_of_an_inexact_ratio_has_28_significant_digits() -> None:
    assert to_epa_units("no2", D("100"), "ug/m3") == D("53.14062160399913062377743969")


def test_conversion_does_not_depend_on_the_callers_decimal_context() -> None:
    expected = to_epa_units("no2", D("100"), "ug/m3")
    with localcontext() as ctx:
        ctx.prec = 3
        assert getcontext().prec == 3
        assert to_epa_units("no2", D("100"), "ug/m3") == expected


@pytest.mark.parametrize("pollutant", ["pm25", "pm10"])
@pytest.mark.parametrize("unit", ["ppm", "ppb"])
def test_pm_in_a_mixing_ratio_is_a_unit_error(pollutant: str, unit: str) -> None:
    with pytest.raises(UnitError, match="particulate"):
        to_epa_units(pollutant, D(1), unit)


def test_unknown_pollutant_is_a_unit_error_naming_it() -> None:
    with pytest.raises(UnitError, match="'nh3'"):
        to_epa_units("nh3", D(1), "ug/m3")


def test_unknown_unit_is_a_unit_error_naming_it() -> None:
    with pytest.raises(UnitError, match="'ug/l'"):
        to_epa_units("o3", D(1), "ug/l")


def test_to_epa_units_rejects_nan() -> None:
    with pytest.raises(InvalidValue):
        to_epa_units("o3", D("NaN"), "ppm")


# --- properties -----------------------------------------------------------------------

concentrations = st.decimals(
    min_value=0, max_value=100_000, places=4, allow_nan=False, allow_infinity=False
)


def _units_for(pollutant: str) -> tuple[str, ...]:
    return UNITS if pollutant in GASES else ("ug/m3", "mg/m3")


@st.composite
def pollutant_and_two_units(draw: st.DrawFn) -> tuple[str, str, str]:
    pollutant = draw(st.sampled_from(POLLUTANTS))
    units = _units_for(pollutant)
    return pollutant, draw(st.sampled_from(units)), draw(st.sampled_from(units))


def _close(a: Decimal, b: Decimal) -> bool:
    return abs(a - b) <= abs(b) * D("1e-25")


@given(pollutant_and_two_units(), concentrations)
def test_convert_round_trips(spec: tuple[str, str, str], value: Decimal) -> None:
    pollutant, a, b = spec
    assert _close(convert(pollutant, convert(pollutant, value, a, b), b, a), value)


@given(pollutant_and_two_units(), concentrations)
def test_to_epa_units_agrees_with_going_through_any_other_unit(
    spec: tuple[str, str, str], value: Decimal
) -> None:
    pollutant, a, b = spec
    direct = to_epa_units(pollutant, value, a)
    via_b = to_epa_units(pollutant, convert(pollutant, value, a, b), b)
    assert _close(via_b, direct)


@given(st.sampled_from(GASES), concentrations)
def test_ppm_is_a_thousandth_of_ppb_and_mg_a_thousand_ug(pollutant: str, value: Decimal) -> None:
    assert to_epa_units(pollutant, value, "ppm") == to_epa_units(pollutant, value * 1000, "ppb")
    assert to_epa_units(pollutant, value, "mg/m3") == to_epa_units(pollutant, value * 1000, "ug/m3")


@given(st.sampled_from(POLLUTANTS), concentrations, concentrations)
def test_conversion_preserves_order(pollutant: str, a: Decimal, b: Decimal) -> None:
    low, high = sorted((a, b))
    assert to_epa_units(pollutant, low, "ug/m3") <= to_epa_units(pollutant, high, "ug/m3")
