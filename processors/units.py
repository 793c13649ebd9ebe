"""Pollutant units and the conversion to the units the EPA AQI tables expect.

The AQI breakpoints are in µg/m³ for PM, ppm for O3 and CO, and ppb for SO2 and NO2
(domain reference §1). Sources report whatever they like, so every concentration is
converted here before it reaches :mod:`processors.aqi`. Gas conversions assume 25 °C and
1 atm, where one mole of gas occupies 24.45 L (domain reference §3).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Final, TypeAlias

from processors._context import DECIMAL_CONTEXT
from processors.exceptions import InvalidValue, UnitError

__all__ = [
    "EPA_UNITS",
    "GASES",
    "MOLAR_VOLUME",
    "MOLECULAR_WEIGHTS",
    "POLLUTANTS",
    "UNITS",
    "Number",
    "convert",
    "to_decimal",
    "to_epa_units",
]

Number: TypeAlias = int | float | str | Decimal
"""What callers may hand us as a concentration; it becomes a ``Decimal`` at once."""

POLLUTANTS: Final = ("pm25", "pm10", "o3", "no2", "so2", "co")
UNITS: Final = ("ug/m3", "mg/m3", "ppm", "ppb")
GASES: Final = ("o3", "no2", "so2", "co")

EPA_UNITS: Final[Mapping[str, str]] = MappingProxyType(
    {"pm25": "ug/m3", "pm10": "ug/m3", "o3": "ppm", "co": "ppm", "so2": "ppb", "no2": "ppb"}
)

MOLECULAR_WEIGHTS: Final[Mapping[str, Decimal]] = MappingProxyType(
    {
        "o3": Decimal("48.00"),
        "no2": Decimal("46.01"),
        "so2": Decimal("64.07"),
        "co": Decimal("28.01"),
    }
)
"""g/mol, as the domain reference gives them (not recomputed from atomic weights)."""

MOLAR_VOLUME: Final = Decimal("24.45")
"""Litres per mole of an ideal gas at 25 °C and 1 atm."""

_THOUSAND: Final = Decimal(1000)
_DECIMAL: Final = Decimal  # a C static in the compiled build: no global lookup per call


def to_decimal(value: Number) -> Decimal:
    """Turn a number into a finite ``Decimal`` without inventing binary noise.

    Floats go through ``repr()`` (the shortest text that round-trips), so ``35.2`` becomes
    ``Decimal("35.2")`` and not ``Decimal("35.2000000000000028421709430404007434844970703125")``.
    """
    if type(value) is _DECIMAL and value.is_finite():  # the hot path: already exact
        return value
    if isinstance(value, bool):
        msg = f"a concentration must be a number, got the bool {value!r}"
        raise InvalidValue(msg)
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            msg = f"a concentration must be finite, got {value!r}"
            raise InvalidValue(msg)
        result = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            # The context only decides how a malformed string is signalled.
            result = Decimal(value.strip(), context=DECIMAL_CONTEXT)
        except InvalidOperation as exc:
            msg = f"not a decimal number: {value!r}"
            raise InvalidValue(msg) from exc
    else:
        msg = f"a concentration must be int, float, str or Decimal, got {type(value).__name__}"
        raise InvalidValue(msg)
    if not result.is_finite():
        msg = f"a concentration must be finite, got {value!r}"
        raise InvalidValue(msg)
    return result


def _check(pollutant: str, unit: str) -> None:
    """Reject unknown names and units that do not describe the pollutant."""
    if pollutant not in POLLUTANTS:
        msg = f"unknown pollutant {pollutant!r}; expected one of {', '.join(POLLUTANTS)}"
        raise UnitError(msg)
    if unit not in UNITS:
        msg = f"unknown unit {unit!r}; expected one of {', '.join(UNITS)}"
        raise UnitError(msg)
    if pollutant not in GASES and unit in ("ppm", "ppb"):
        msg = f"{pollutant} is particulate matter: a mixing ratio ({unit}) is meaningless"
        raise UnitError(msg)


def _to_base(pollutant: str, value: Decimal, unit: str) -> Decimal:
    """Express a value in the pollutant's base unit: µg/m³ for PM, ppb for gases."""
    ctx = DECIMAL_CONTEXT
    if unit == "mg/m3":
        value = ctx.multiply(value, _THOUSAND)
        unit = "ug/m3"
    if pollutant not in GASES:
        return value  # ug/m3
    if unit == "ug/m3":
        return ctx.divide(ctx.multiply(value, MOLAR_VOLUME), MOLECULAR_WEIGHTS[pollutant])
    if unit == "ppm":
        return ctx.multiply(value, _THOUSAND)
    return value  # ppb


def _from_base(pollutant: str, value: Decimal, unit: str) -> Decimal:
    """Inverse of :func:`_to_base`."""
    ctx = DECIMAL_CONTEXT
    if pollutant in GASES:
        if unit == "ppb":
            return value
        if unit == "ppm":
            return ctx.divide(value, _THOUSAND)
        value = ctx.divide(ctx.multiply(value, MOLECULAR_WEIGHTS[pollutant]), MOLAR_VOLUME)
    if unit == "mg/m3":
        return ctx.divide(value, _THOUSAND)
    return value


def convert(pollutant: str, value: Number, from_unit: str, to_unit: str) -> Decimal:
    """Convert a concentration between two units valid for the pollutant.

    Identity conversions return the value unchanged; others are exact except for the
    division by a molecular weight, which is rounded to 28 significant digits.
    """
    _check(pollutant, from_unit)
    _check(pollutant, to_unit)
    number = to_decimal(value)
    if from_unit == to_unit:
        return number
    return _from_base(pollutant, _to_base(pollutant, number, from_unit), to_unit)


def to_epa_units(pollutant: str, value: Number, unit: str) -> Decimal:
    """Convert a concentration into the unit of the EPA AQI table for the pollutant."""
    _check(pollutant, unit)
    return convert(pollutant, value, unit, EPA_UNITS[pollutant])
