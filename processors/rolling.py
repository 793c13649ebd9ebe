"""Averages of hourly means, with the completeness rules the AQI needs.

Averaging happens in ``Decimal``: a float mean of ten 9.1 readings is 9.0999…, which
truncates to 9.0 and reports "Good" instead of "Moderate" (domain reference §1).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Final

from processors._context import DECIMAL_CONTEXT
from processors.exceptions import InvalidValue, ProcessorError
from processors.units import to_decimal

__all__ = ["ROLLING_WINDOWS", "mean", "rolling_mean"]

# Final module names compile to C statics; other globals are a dict lookup at every use,
# which the loops below would pay per value.
_DECIMAL: Final = Decimal
_ZERO: Final = Decimal(0)
_ADD: Final = DECIMAL_CONTEXT.add
_DIVIDE: Final = DECIMAL_CONTEXT.divide
_COUNTS: Final = tuple(Decimal(count) for count in range(25))
"""Divisors of the means of up to a day of hours, made once."""

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
    total = _ZERO
    for number in numbers:
        if type(number) is not _DECIMAL or not number.is_finite():
            number = to_decimal(number)
        total = _ADD(total, number)
    return _DIVIDE(total, _divisor(len(numbers)))


def _divisor(count: int) -> Decimal:
    return _COUNTS[count] if count < len(_COUNTS) else _DECIMAL(count)


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
    # Counted first, summed second: no lists built (this runs a dozen times an hour per
    # station), and a bad value in a window with too few hours still gives None.
    values = hourly if isinstance(hourly, list) else list(hourly)  # a list indexes natively
    end = len(values)
    start = max(end - hours, 0)
    present = 0
    for position in range(start, end):
        if values[position] is not None:
            present += 1
    if present < min_valid:
        return None
    total = _sum_of_decimals(values, start, end)
    if total is None:  # not all finite Decimals: mean() converts (or refuses) each
        return mean([value for value in values[start:end] if value is not None])
    return _DIVIDE(total, _divisor(present))


def _sum_of_decimals(values: list[Decimal | None], start: int, end: int) -> Decimal | None:
    """The sum of the present values when all are finite Decimals (the hot path: checked
    once on the sum, not per value), else None."""
    total = _ZERO
    try:
        for position in range(start, end):
            value = values[position]
            if value is None:
                continue
            if type(value) is not _DECIMAL:
                return None
            total = _ADD(total, value)
    except InvalidOperation:  # a signalling NaN, or infinities of both signs
        return None
    return total if total.is_finite() else None
