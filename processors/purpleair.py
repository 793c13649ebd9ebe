"""EPA's US-wide correction of PurpleAir PM2.5 (low-cost sensors), with its data cleaning.

Source: Barkjohn, Gantt and Clements, "Development and application of a United
States-wide correction for PM2.5 data collected with the PurpleAir sensor", Atmos. Meas.
Tech. 14, 4617–4637 (2021), doi:10.5194/amt-14-4617-2021 (domain reference §3):

* ``PM2.5 = 0.524 × PA_cf1 − 0.0862 × RH + 5.75``, with ``PA_cf1`` the mean of the A and
  B channels' CF=1 PM2.5 (µg/m³) and ``RH`` the relative humidity in %; a negative result
  is clamped to 0 (a concentration cannot be negative).
* Cleaning (the paper's section 3.2.3, "Comparison of A and B channels", as EPA's
  sensortoolkit implements it): a reading is dropped when the channels differ by more
  than 5 µg/m³ **and** by more than 70 % of their mean, ``|A − B| / ((A + B) / 2)``.
  Either difference alone is not enough: at low concentrations a large relative
  difference is noise, at high ones a large absolute difference is.

Everything is exact ``Decimal`` arithmetic, so a corrected value never depends on floats.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from processors._context import decimal_context
from processors.exceptions import InvalidValue
from processors.units import Number, to_decimal

__all__ = [
    "CORRECTION",
    "ChannelDisagreement",
    "Correction",
    "channels_disagree",
    "correct_pm25",
]

CORRECTION: Final = "epa-purpleair-us-2021"
"""The name recorded on each corrected reading (EnrichedReading.correction)."""

_SLOPE: Final = Decimal("0.524")
_RH_SLOPE: Final = Decimal("0.0862")
_INTERCEPT: Final = Decimal("5.75")
_MAX_ABS_DIFF: Final = Decimal(5)  # µg/m³
_MAX_REL_DIFF: Final = Decimal("0.7")  # of the channels' mean
_ZERO: Final = Decimal(0)
_TWO: Final = Decimal(2)


class ChannelDisagreement(InvalidValue):
    """The A and B channels disagree beyond EPA's cleaning criteria: the reading is invalid."""


@dataclass(frozen=True, slots=True)
class Correction:
    """A corrected PurpleAir PM2.5 value and what it was computed from."""

    pm25: Decimal
    """Corrected PM2.5, µg/m³, ≥ 0."""
    pa_cf1: Decimal
    """Mean of the A and B channels (CF=1), µg/m³."""
    model: str = CORRECTION


def _channel(value: Number, name: str) -> Decimal:
    number = to_decimal(value)
    if number < 0:
        msg = f"PurpleAir channel {name} cannot be negative, got {number}"
        raise InvalidValue(msg)
    return number


def channels_disagree(channel_a: Number, channel_b: Number) -> bool:
    """True when |A − B| > 5 µg/m³ and |A − B| > 70 % of the channels' mean."""
    a, b = _channel(channel_a, "A"), _channel(channel_b, "B")
    with decimal_context():
        difference = abs(a - b)
        # |A−B| / ((A+B)/2) > 0.7  ⇔  2·|A−B| > 0.7·(A+B): no division, exact at A+B = 0.
        return difference > _MAX_ABS_DIFF and _TWO * difference > _MAX_REL_DIFF * (a + b)


def correct_pm25(channel_a: Number, channel_b: Number, relative_humidity: Number) -> Correction:
    """EPA's US-wide correction of one PurpleAir reading.

    Raises :class:`ChannelDisagreement` when the channels fail the cleaning criteria and
    :class:`InvalidValue` for a negative channel or a humidity outside 0–100 %.
    """
    a, b = _channel(channel_a, "A"), _channel(channel_b, "B")
    rh = to_decimal(relative_humidity)
    if not _ZERO <= rh <= 100:
        msg = f"relative humidity must be 0–100 %, got {rh}"
        raise InvalidValue(msg)
    if channels_disagree(a, b):
        msg = f"PurpleAir channels disagree: A {a}, B {b} µg/m³ (|A−B| > 5 and > 70 % of the mean)"
        raise ChannelDisagreement(msg)
    with decimal_context():
        pa_cf1 = (a + b) / _TWO
        corrected = _SLOPE * pa_cf1 - _RH_SLOPE * rh + _INTERCEPT
    return Correction(max(corrected, _ZERO), pa_cf1)
