"""Is a raw reading a usable concentration? Domain checks after structural parsing.

A reading that fails here is dead-lettered with the reason code of `InvalidReading`.
Plausible maxima are physical limits for ambient air (in EPA units), far above any AQI
breakpoint: a value above them is an instrument or transmission fault, not air.
"""

from __future__ import annotations

from decimal import Decimal

from processors.exceptions import ProcessorError, UnitError
from processors.units import EPA_UNITS, POLLUTANTS, UNITS, to_epa_units

__all__ = ["PLAUSIBLE_MAX", "InvalidReading", "check_reading"]

PLAUSIBLE_MAX: dict[str, Decimal] = {
    "pm25": Decimal(5000),  # ug/m3; the worst wildfire smoke stays below ~2,000
    "pm10": Decimal(10000),  # ug/m3; dust storms reach a few thousand
    "o3": Decimal(1),  # ppm; the AQI table ends at 0.604
    "co": Decimal(500),  # ppm
    "so2": Decimal(10000),  # ppb; volcanic plumes
    "no2": Decimal(10000),  # ppb
}


_LARGEST_INPUT = Decimal("1e12")


class InvalidReading(ProcessorError):
    """A reading the domain rejects; `reason` is a dead-letter reason code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def check_reading(pollutant: str, value: Decimal, unit: str) -> Decimal:
    """The value in EPA units; InvalidReading (unknown_pollutant, unknown_unit, invalid_value)."""
    if pollutant not in POLLUTANTS:
        reason, detail = "unknown_pollutant", f"{pollutant!r} is not one of {', '.join(POLLUTANTS)}"
        raise InvalidReading(reason, detail)
    if unit not in UNITS:
        reason, detail = "unknown_unit", f"{unit!r} is not one of {', '.join(UNITS)}"
        raise InvalidReading(reason, detail)
    if not value.is_finite() or value < 0:
        reason, detail = "invalid_value", f"{pollutant} concentration {value} is not >= 0"
        raise InvalidReading(reason, detail)
    if value > _LARGEST_INPUT:  # far beyond any unit's physical limit; keeps Decimal in range
        reason, detail = "invalid_value", f"{pollutant} concentration {value} is absurdly large"
        raise InvalidReading(reason, detail)
    try:
        epa_value = to_epa_units(pollutant, value, unit)
    except UnitError as error:
        reason = "unknown_unit"
        raise InvalidReading(reason, str(error)) from None
    if epa_value > PLAUSIBLE_MAX[pollutant]:
        reason = "invalid_value"
        detail = (
            f"{pollutant} {value} {unit} = {epa_value:.6g} {EPA_UNITS[pollutant]} is above the "
            f"physical limit {PLAUSIBLE_MAX[pollutant]} {EPA_UNITS[pollutant]}"
        )
        raise InvalidReading(reason, detail)
    return epa_value
