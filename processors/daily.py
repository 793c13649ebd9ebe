"""The daily AQI of one local-standard-time day (domain reference §1, "Daily AQI").

The day is given as 24 hourly means per pollutant in EPA units, index 0 being
00:00–01:00 and index 23 being 23:00–24:00 local *standard* time (so a day always has
24 hours); ``None`` marks a missing hour. The daily values are:

* PM2.5 and PM10 (``pm25_24h``, ``pm10_24h``): the midnight-to-midnight mean, only with
  at least 18 of the 24 hours valid.
* O3 (``o3_8h``): the maximum of the 17 eight-hour means that start 07:00 … 23:00, each
  needing at least 6 of its 8 hours, and only with at least 13 of the 17 windows valid.
  The windows starting 17:00 … 23:00 end in the next day: their last hours come from
  ``next_day_head`` (missing there, or not given, means missing hours).
* O3 1 h (``o3_1h``): the day's maximum hourly value, handed to :func:`aqi.overall`
  with the 8 h value so the "report the higher" rule applies (it only counts from
  0.125 ppm).
* CO (``co_8h``): the maximum 8-hour mean, see the interpretation below.
* SO2 and NO2 (``so2_1h``, ``no2_1h``): the day's maximum hourly value (any valid hour).
  When the SO2 maximum is 305 ppb or more, the day's 24 h SO2 mean (``so2_24h``, at least
  18 of 24 hours) is computed too and :func:`aqi.overall` applies the SO2 rule (24 h
  table from 305 ppb, otherwise exactly 200).

Interpretations (where the reference leaves a case open):

* CO: the reference says only "CO daily max 8 h". Here it is the maximum over the 24
  eight-hour windows that *start* in the day (00:00 … 23:00), each needing 6 of 8 hours,
  the windows starting 17:00 … 23:00 ending in ``next_day_head`` as for ozone; the day
  counts with at least 18 of the 24 windows valid (the same 75 % rule as the other
  pollutants; ozone's 13 of 17 is that rule rounded up).
* A pollutant "has data" when at least one of its hours in the day is valid; only such
  a pollutant gets an entry in ``reasons`` when it yields no sub-index:
  ``"incomplete_day"`` when too few hours or windows were valid for its daily value,
  ``"no_index"`` when the daily values exist but the tables define no index for them.
  A pollutant with an index from any of its keys (e.g. an O3 1 h value ≥ 0.125 ppm on a
  day with too few 8 h windows) has no reason: ``completeness`` still shows the gap.
* An SO2 maximum ≥ 305 ppb on a day with fewer than 18 valid SO2 hours gives no SO2
  index (``"incomplete_day"``): the 1 h table has no index there and the 24 h mean
  cannot honestly be invented.
* ``concentrations`` holds every daily value computed, truncated to its key's precision:
  the value behind each sub-index, plus those the tables leave without an index
  (O3 1 h below 0.125 ppm, SO2 1 h at or above 305 ppb) since the rules consulted them.
* ``next_day_head`` may be longer than 7 hours (e.g. the whole next day); only its first
  7 hours are used. Only its O3 and CO hours matter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from processors import aqi, rolling
from processors.exceptions import InvalidValue, UnknownKey
from processors.units import POLLUTANTS, to_decimal

__all__ = ["DAY_HOURS", "NEXT_DAY_HOURS", "REASONS", "DailyAqi", "daily_aqi"]

DAY_HOURS: Final = 24
NEXT_DAY_HOURS: Final = 7
"""Hours of the next day the last 8-hour windows reach into (23:00 + 8 h = 07:00)."""

REASONS: Final[tuple[str, ...]] = ("incomplete_day", "insufficient_data", "no_index")
"""``incomplete_day`` and ``no_index`` explain one pollutant (``DailyAqi.reasons``);
``insufficient_data`` explains a day without an AQI (``DailyAqi.reason``)."""

_WINDOW_HOURS, _WINDOW_VALID = rolling.ROLLING_WINDOWS["8h"]
_DAY_VALID: Final = rolling.ROLLING_WINDOWS["24h"][1]  # 18 of 24 hours
_O3_STARTS: Final = range(7, 24)  # the 17 windows starting 07:00 … 23:00
_O3_WINDOWS_VALID: Final = 13
_CO_STARTS: Final = range(DAY_HOURS)  # the 24 windows starting 00:00 … 23:00
_CO_WINDOWS_VALID: Final = 18
_SO2_24H_FROM: Final = Decimal(305)

_KEYS_OF: Final[Mapping[str, tuple[str, ...]]] = {
    "pm25": ("pm25_24h",),
    "pm10": ("pm10_24h",),
    "o3": ("o3_8h", "o3_1h"),
    "co": ("co_8h",),
    "so2": ("so2_1h", "so2_24h"),
    "no2": ("no2_1h",),
}


@dataclass(frozen=True, slots=True)
class DailyAqi:
    """The AQI of one day, with what it was computed from."""

    aqi: int | None
    category: str | None
    main_pollutant: str | None
    """The key that gave the AQI, e.g. ``"pm25_24h"`` or ``"o3_8h"``."""
    sub_indices: dict[str, int]
    concentrations: dict[str, Decimal]
    """Each daily value computed, truncated to its key's precision."""
    completeness: dict[str, int]
    """Valid hours (``pm25_24h``, ``pm10_24h``, ``o3_1h``, ``so2_1h``, ``so2_24h``,
    ``no2_1h``; 0–24) or valid 8-hour windows (``o3_8h`` 0–17, ``co_8h`` 0–24)."""
    reasons: dict[str, str]
    """Pollutant (``"pm25"``) → why it has data but no sub-index."""
    reason: str | None
    """None when ``aqi`` is set, else ``"insufficient_data"``."""


def _series(
    pollutant: str, values: Sequence[Decimal | None], length: int, what: str
) -> list[Decimal | None]:
    """Validated Decimals, padded with None (missing) up to ``length``."""
    numbers: list[Decimal | None] = []
    for position, value in enumerate(values[:length]):
        if value is None:
            numbers.append(None)
            continue
        number = to_decimal(value)
        if number < 0:
            msg = f"{pollutant} {what} hour {position}: a concentration cannot be negative"
            raise InvalidValue(msg)
        numbers.append(number)
    return numbers + [None] * (length - len(numbers))


def _check_pollutants(hours: Mapping[str, object]) -> None:
    for pollutant in hours:
        if pollutant not in POLLUTANTS:
            msg = f"unknown pollutant {pollutant!r}; expected one of {', '.join(POLLUTANTS)}"
            raise UnknownKey(msg)


def _valid(values: Sequence[Decimal | None]) -> list[Decimal]:
    return [value for value in values if value is not None]


def _window_max(hours: Sequence[Decimal | None], starts: range) -> tuple[Decimal | None, int]:
    """Maximum 8-hour mean over the windows starting at ``starts`` and how many were valid.

    ``hours`` is the day followed by the next day's head (31 hours).
    """
    means = [
        rolling.mean(present)
        for start in starts
        if len(present := _valid(hours[start : start + _WINDOW_HOURS])) >= _WINDOW_VALID
    ]
    return (max(means) if means else None), len(means)


def daily_aqi(
    hours: Mapping[str, Sequence[Decimal | None]],
    next_day_head: Mapping[str, Sequence[Decimal | None]] | None = None,
) -> DailyAqi:
    """The daily AQI of one local-standard-time day; see the module docstring for rules.

    ``hours[pollutant]`` must hold exactly 24 hourly means (EPA units, None = missing);
    pollutants ``pm25 pm10 o3 co so2 no2``, any may be absent. ``next_day_head[pollutant]``
    holds the next day's first hours (00:00 … 06:00), used by the O3 and CO windows that
    end after midnight.
    """
    head = next_day_head or {}
    _check_pollutants(hours)
    _check_pollutants(head)

    day: dict[str, list[Decimal | None]] = {}
    for pollutant, hourly in hours.items():
        if len(hourly) != DAY_HOURS:
            msg = f"{pollutant}: a day has {DAY_HOURS} hourly means, got {len(hourly)}"
            raise InvalidValue(msg)
        day[pollutant] = _series(pollutant, hourly, DAY_HOURS, "day")

    values: dict[str, Decimal] = {}
    completeness: dict[str, int] = {}
    for pollutant in ("pm25", "pm10"):
        if pollutant in day:
            present = _valid(day[pollutant])
            completeness[f"{pollutant}_24h"] = len(present)
            if len(present) >= _DAY_VALID:
                values[f"{pollutant}_24h"] = rolling.mean(present)
    for pollutant, starts, needed in (
        ("o3", _O3_STARTS, _O3_WINDOWS_VALID),
        ("co", _CO_STARTS, _CO_WINDOWS_VALID),
    ):
        if pollutant in day:
            tail = _series(pollutant, head.get(pollutant, ()), NEXT_DAY_HOURS, "next day")
            highest, valid_windows = _window_max(day[pollutant] + tail, starts)
            completeness[f"{pollutant}_8h"] = valid_windows
            if highest is not None and valid_windows >= needed:
                values[f"{pollutant}_8h"] = highest
    for pollutant in ("o3", "so2", "no2"):
        if pollutant in day:
            present = _valid(day[pollutant])
            completeness[f"{pollutant}_1h"] = len(present)
            if present:
                values[f"{pollutant}_1h"] = max(present)
    so2_max = values.get("so2_1h")
    if so2_max is not None and aqi.truncate("so2_1h", so2_max) >= _SO2_24H_FROM:
        present = _valid(day["so2"])
        completeness["so2_24h"] = len(present)
        if len(present) >= _DAY_VALID:
            values["so2_24h"] = rolling.mean(present)

    truncated = {key: aqi.truncate(key, value) for key, value in values.items()}
    sub_indices = _sub_indices(truncated)
    index, main = aqi.overall(truncated)
    reasons: dict[str, str] = {
        pollutant: _reason(pollutant, truncated)
        for pollutant in POLLUTANTS
        if pollutant in day
        and _valid(day[pollutant])
        and not any(key in sub_indices for key in _KEYS_OF[pollutant])
    }
    ordered = {key: truncated[key] for key in aqi.KEYS if key in truncated}
    if index is None:
        return DailyAqi(
            None, None, None, sub_indices, ordered, completeness, reasons, "insufficient_data"
        )
    return DailyAqi(
        index, aqi.category(index), main, sub_indices, ordered, completeness, reasons, None
    )


def _sub_indices(truncated: Mapping[str, Decimal]) -> dict[str, int]:
    """Each key's index, with the SO2 rule: a 1 h maximum ≥ 305 ppb with a 24 h mean
    below 305 ppb is exactly 200, reported under ``so2_1h`` as :func:`aqi.overall` does."""
    indices: dict[str, int] = {}
    for key in aqi.KEYS:
        if key in truncated and (index := aqi.sub_index(key, truncated[key])) is not None:
            indices[key] = index
    # The SO2 rule is aqi.overall's: ask it about the SO2 keys alone.
    so2 = {key: truncated[key] for key in ("so2_1h", "so2_24h") if key in truncated}
    so2_index, so2_key = aqi.overall(so2)
    if so2_index is not None and so2_key is not None:
        indices[so2_key] = so2_index
    return {key: indices[key] for key in aqi.KEYS if key in indices}


def _reason(pollutant: str, truncated: Mapping[str, Decimal]) -> str:
    """Why a pollutant with data has no index: a daily value missing, or no table index."""
    keys = _KEYS_OF[pollutant]
    if pollutant == "so2":
        needs_24h = truncated.get("so2_1h", Decimal(0)) >= _SO2_24H_FROM
        keys = ("so2_1h", "so2_24h") if needs_24h else ("so2_1h",)
    elif pollutant == "o3":
        keys = ("o3_8h",)  # the 1 h value is optional; the 8 h value is required
    return "no_index" if all(key in truncated for key in keys) else "incomplete_day"
