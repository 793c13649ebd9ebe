"""Averages of hourly means, with the completeness rules the AQI needs.

Averaging happens in ``Decimal``: a float mean of ten 9.1 readings is 9.0999…, which
truncates to 9.0 and reports "Good" instead of "Moderate" (domain reference §1).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from types import MappingProxyType
from typing import Final

from processors._context import DECIMAL_CONTEXT
from processors.exceptions import InvalidValue, ProcessorError
from processors.units import to_decimal

__all__ = ["ROLLING_WINDOWS", "mean", "rolling_mean"]

_ZERO = Decimal(0)

ROLLING_WINDOWS: Final[Mapping[str, tuple[int, int]]] = MappingProxyType(
    {"1h": (1, 1), "8h": (8, 6), "24h": (24, 18)}
)
"""Window name → (hours in the window, hours that must be present): EPA's 75 % rule."""


def mean(values: Iterable[Decimal]) -> Decimal:
    """Arithmetic mean under the package context: exact sums, one rounding at 28 digits.

    A mean that is a short decimal (9.1, 17.45) comes out exactly that decimal, so the
    truncation that follows can never be flipped by representation error.
    """
    numbers = list(values)
    if not numbers:
        msg = "mean() of no values is undefined"
        raise InvalidValue(msg)
    # Hourly means are finite Decimals already (the hot path of every closing hour);
    # anything else is checked and converted by to_decimal.
    add = DECIMAL_CONTEXT.add
    total = _ZERO
    for number in numbers:
        if type(number) is not Decimal or not number.is_finite():
            number = to_decimal(number)
        total = add(total, number)
    return DECIMAL_CONTEXT.divide(total, Decimal(len(numbers)))


def rolling_mean(hourly: Sequence[Decimal | None], hours: int, min_valid: int) -> Decimal | None:
    """Mean of the last ``hours`` hourly values, or None if fewer than ``min_valid`` exist.

    ``hourly`` runs oldest → newest and ends with the current hour; ``None`` marks a
    missing hour. A sequence shorter than ``hours`` is treated as missing its oldest hours.
    """
    if hours < 1:
        msg = f"a window needs at least one hour, got hours={hours}"
        raise ProcessorError(msg)
    if not 1 <= min_valid <= hours:
        msg = f"min_valid must be between 1 and hours={hours}, got {min_valid}"
        raise ProcessorError(msg)
    window = hourly[-hours:]
    present = [value for value in window if value is not None]
    if len(present) < min_valid:
        return None
    return mean(present)
