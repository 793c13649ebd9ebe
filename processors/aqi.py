"""The US EPA Air Quality Index, 2024 edition (EPA-454/B-24-002, Table 6).

Everything here follows ``docs/domain-reference.md`` §1–2, the project's authoritative
rule. Concentrations are in EPA units (µg/m³ for PM, ppm for O3 and CO, ppb for SO2 and
NO2; see :func:`processors.units.to_epa_units`) and are handled as ``Decimal`` under the
package's explicit context, so a result never depends on binary floats or on the
caller's decimal context.

A *key* names a pollutant and its averaging period (``"o3_8h"``). The steps for one key
are: truncate toward zero to the key's precision, find the segment, interpolate
linearly, round half **up** (EPA: 125.5 → 126; Python's half-to-even ``round`` would
turn 104.5 into 104). Above the top breakpoint the top segment's line continues: the AQI is
not clamped at 500 and the category stays "Hazardous".

Rule interpretations (where the reference leaves a case open):

* Ozone: both ``o3_8h`` and ``o3_1h`` count when they define an index, and the higher
  wins. An ``o3_1h`` ≥ 0.125 ppm counts even without an 8 h value (the reference sends
  8 h values ≥ 0.201 ppm to the 1 h table, so the 1 h index stands on its own); an
  ``o3_8h`` ≥ 0.201 ppm without a 1 h value gives no ozone index.
* SO2: an ``so2_1h`` ≥ 305 ppb has no index of its own. With an ``so2_24h`` ≥ 305 ppb the
  24 h index applies; with an ``so2_24h`` below 305 the SO2 index is exactly 200 under
  key ``"so2_1h"``; with no ``so2_24h`` SO2 contributes nothing (an hourly report cannot
  honestly invent the 24 h mean). An ``so2_24h`` ≥ 305 counts whatever the 1 h value,
  because such a mean implies an hour ≥ 305 inside its window.
* Ties between equal sub-indices go to the key that comes first in :data:`KEYS`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal, InvalidOperation
from types import MappingProxyType
from typing import Final, NamedTuple, NoReturn, cast

from processors._context import DECIMAL_CONTEXT
from processors.exceptions import InvalidValue, UnknownKey
from processors.rolling import ROLLING_WINDOWS, rolling_mean
from processors.units import POLLUTANTS, Number, to_decimal

__all__ = [
    "AQI_VERSION",
    "CATEGORIES",
    "CATEGORY_COLORS",
    "KEYS",
    "NOWCAST_HOURS",
    "REASONS",
    "HourlyAqi",
    "category",
    "hourly_aqi",
    "nowcast",
    "overall",
    "sub_index",
    "truncate",
]

AQI_VERSION: Final = "EPA-454/B-24-002"

KEYS: Final[tuple[str, ...]] = (
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
"""Every key the tables define, in the order that breaks ties between equal indices."""

NOWCAST_HOURS: Final = 12

REASONS: Final[tuple[str, ...]] = ("insufficient_data", "no_index")
"""Why :func:`hourly_aqi` has no AQI: no pollutant had enough hours for any average, or
averages exist but none defines an index (e.g. only an O3 1 h value below 0.125 ppm)."""


# --- tables ---------------------------------------------------------------------------


class _Segment(NamedTuple):
    c_lo: Decimal
    c_hi: Decimal
    i_lo: int
    i_hi: int
    i_spread: Decimal
    """i_hi − i_lo"""
    c_spread: Decimal
    """c_hi − c_lo"""
    i_base: Decimal
    """i_lo"""


class _Table(NamedTuple):
    quantum: Decimal
    """Truncation step: 0.1 means truncate to tenths."""
    segments: tuple[_Segment, ...]
    """Below the first ``c_lo`` there is no index (O3 1 h, SO2 24 h)."""
    no_index_from: Decimal | None
    """At or above this there is no index (O3 8 h, SO2 1 h); None: the top line continues."""


def _table(quantum: str, rows: str, no_index_from: str | None = None) -> _Table:
    """Build a table from the reference's ``C_lo–C_hi:I_lo–I_hi`` notation."""
    segments = []
    for row in rows.split():
        concentrations, indices = row.split(":")
        c_lo, c_hi = concentrations.split("-")
        i_lo, i_hi = indices.split("-")
        low, high, index_low, index_high = Decimal(c_lo), Decimal(c_hi), int(i_lo), int(i_hi)
        segments.append(
            _Segment(
                low,
                high,
                index_low,
                index_high,
                Decimal(index_high - index_low),
                DECIMAL_CONTEXT.subtract(high, low),
                Decimal(index_low),
            )
        )
    limit = None if no_index_from is None else Decimal(no_index_from)
    return _Table(Decimal(quantum), tuple(segments), limit)


_PM25 = _table(
    "0.1",
    "0.0-9.0:0-50 9.1-35.4:51-100 35.5-55.4:101-150 55.5-125.4:151-200 "
    "125.5-225.4:201-300 225.5-325.4:301-500",
)
_PM10 = _table(
    "1", "0-54:0-50 55-154:51-100 155-254:101-150 255-354:151-200 355-424:201-300 425-604:301-500"
)

_TABLES: Final[Mapping[str, _Table]] = MappingProxyType(
    {
        "pm25_24h": _PM25,
        "pm10_24h": _PM10,
        "o3_8h": _table(
            "0.001",
            "0.000-0.054:0-50 0.055-0.070:51-100 0.071-0.085:101-150 0.086-0.105:151-200 "
            "0.106-0.200:201-300",
            no_index_from="0.201",
        ),
        "o3_1h": _table(
            "0.001",
            "0.125-0.164:101-150 0.165-0.204:151-200 0.205-0.404:201-300 0.405-0.604:301-500",
        ),
        "co_8h": _table(
            "0.1",
            "0.0-4.4:0-50 4.5-9.4:51-100 9.5-12.4:101-150 12.5-15.4:151-200 "
            "15.5-30.4:201-300 30.5-50.4:301-500",
        ),
        "so2_1h": _table(
            "1", "0-35:0-50 36-75:51-100 76-185:101-150 186-304:151-200", no_index_from="305"
        ),
        "so2_24h": _table("1", "305-604:201-300 605-1004:301-500"),
        "no2_1h": _table(
            "1",
            "0-53:0-50 54-100:51-100 101-360:101-150 361-649:151-200 650-1249:201-300 "
            "1250-2049:301-500",
        ),
        "pm25_nowcast": _PM25,
        "pm10_nowcast": _PM10,
    }
)

_SO2_1H_LIMIT: Final = Decimal(305)
_SO2_FIXED_INDEX: Final = 200

CATEGORIES: Final[tuple[str, ...]] = (
    "Good",
    "Moderate",
    "Unhealthy for Sensitive Groups",
    "Unhealthy",
    "Very Unhealthy",
    "Hazardous",
)
_CATEGORY_TOPS: Final = (50, 100, 150, 200, 300)  # Hazardous is everything above 300

CATEGORY_COLORS: Final[Mapping[str, tuple[int, int, int]]] = MappingProxyType(
    {
        "Good": (0, 228, 0),
        "Moderate": (255, 255, 0),
        "Unhealthy for Sensitive Groups": (255, 126, 0),
        "Unhealthy": (255, 0, 0),
        "Very Unhealthy": (143, 63, 151),
        "Hazardous": (126, 0, 35),
    }
)

_ZERO: Final = Decimal(0)
_ONE: Final = Decimal(1)
_HALF: Final = Decimal("0.5")


# --- one key --------------------------------------------------------------------------


def _lookup(key: str) -> _Table:
    try:
        return _TABLES[key]
    except KeyError:
        msg = f"unknown AQI key {key!r}; expected one of {', '.join(KEYS)}"
        raise UnknownKey(msg) from None


def _non_negative(value: Number, what: str) -> Decimal:
    """A finite, non-negative concentration; a negative one is a sensor or upstream bug."""
    number = to_decimal(value)
    if number < _ZERO:
        _negative(what, number)
    return number


def _negative(what: str, number: Decimal) -> NoReturn:
    msg = f"{what}: a concentration cannot be negative, got {number}"
    raise InvalidValue(msg)


def _truncate(table: _Table, number: Decimal) -> Decimal:
    try:
        return number.quantize(table.quantum, rounding=ROUND_DOWN, context=DECIMAL_CONTEXT)
    except InvalidOperation as exc:
        msg = f"concentration {number} is too large to truncate"
        raise InvalidValue(msg) from exc


def _index(table: _Table, truncated: Decimal) -> int | None:
    """Interpolate a truncated concentration; None where the table defines no index."""
    if truncated < table.segments[0].c_lo:
        return None
    if table.no_index_from is not None and truncated >= table.no_index_from:
        return None
    # Truncation leaves no value in the one-step gaps between segments, so the first
    # segment whose top is not below the value contains it; above the table, the top
    # segment's line continues.
    segment = table.segments[-1]
    for candidate in table.segments:
        if truncated <= candidate.c_hi:
            segment = candidate
            break
    ctx = DECIMAL_CONTEXT
    # (i_hi − i_lo) × (C − c_lo) / (c_hi − c_lo) + i_lo, multiplying before dividing: an
    # exact .5 stays exactly .5 for the rounding. (The index bounds are kept as Decimals
    # too: the same exact values, without converting an int for every operation.)
    spread = ctx.multiply(segment.i_spread, ctx.subtract(truncated, segment.c_lo))
    value = ctx.add(ctx.divide(spread, segment.c_spread), segment.i_base)
    return int(value.quantize(_ONE, rounding=ROUND_HALF_UP, context=ctx))


def truncate(key: str, concentration: Number) -> Decimal:
    """Truncate toward zero to the key's reporting precision, as EPA does before lookup."""
    return _truncate(_lookup(key), to_decimal(concentration))


def sub_index(key: str, concentration: Number) -> int | None:
    """The AQI of one key for a concentration in EPA units, or None where none is defined.

    None for ``o3_1h`` < 0.125 ppm, ``o3_8h`` ≥ 0.201 ppm, ``so2_1h`` ≥ 305 ppb and
    ``so2_24h`` < 305 ppb; the combination rules live in :func:`overall`.
    """
    table = _lookup(key)
    return _index(table, _truncate(table, _non_negative(concentration, key)))


def category(aqi: object) -> str:
    """The category name of an AQI value; 301 and above (also beyond 500) is Hazardous.

    Typed `object`: anything else than an int is refused here with InvalidValue (a
    compiled `int` parameter would take True as 1 and refuse 50.0 with a TypeError)."""
    if isinstance(aqi, bool) or not isinstance(aqi, int):
        msg = f"an AQI is an int, got {aqi!r}"
        raise InvalidValue(msg)
    if aqi < 0:
        msg = f"an AQI cannot be negative, got {aqi}"
        raise InvalidValue(msg)
    for name, top in zip(CATEGORIES, _CATEGORY_TOPS, strict=False):
        if aqi <= top:
            return name
    return CATEGORIES[-1]


# --- NowCast --------------------------------------------------------------------------

_NOWCAST_KEYS: Final[Mapping[str, str]] = MappingProxyType(
    {"pm25": "pm25_nowcast", "pm10": "pm10_nowcast"}
)


def nowcast(hourly: Sequence[Number | None], pollutant: str = "pm25") -> Decimal | None:
    """The AirNow NowCast for PM2.5 or PM10, truncated to the key's precision.

    ``hourly`` runs oldest → newest, ends with the current hour, and may hold None for a
    missing hour; only the last 12 entries count. None unless at least two of the three
    most recent hours are present. Each present hour keeps its true "hours ago" exponent,
    so a gap weakens the older hours instead of shifting them closer.

    Results are computed with 28 significant digits; only an exact value within about
    1e-25 of a truncation step could come out one step lower than exact arithmetic.
    """
    key = _NOWCAST_KEYS.get(pollutant)
    if key is None:
        msg = (
            f"NowCast is defined here for pm25 and pm10, not {pollutant!r} "
            "(ozone uses the 8 h rolling mean)"
        )
        raise UnknownKey(msg)
    return _nowcast(key, hourly, checked=False)


_EXPONENTS: Final = tuple(Decimal(age) for age in range(NOWCAST_HOURS))
"""The hours-ago exponents as Decimals: the same powers, without converting an int each."""
_POWERS: Final[dict[Decimal, tuple[Decimal, ...]]] = {}
"""Weight → its powers w⁰ … w¹¹, remembered (at most _POWERS_MAX weights)."""
_POWERS_MAX: Final = 4096


def _powers(weight: Decimal) -> tuple[Decimal, ...]:
    """The NowCast factors of a weight, each exactly what `power` gives, computed once per
    weight: the weight is often the floor ½, or repeats hour after hour while the same
    hours hold the window's extremes. (Every later step reads the factors' values only.)"""
    powers = _POWERS.get(weight)
    if powers is None:
        if len(_POWERS) >= _POWERS_MAX:
            _POWERS.clear()
        power = DECIMAL_CONTEXT.power
        powers = (_ONE, *[power(weight, exponent) for exponent in _EXPONENTS[1:]])  # w⁰ = 1
        _POWERS[weight] = powers
    return powers


def _nowcast(key: str, series: Sequence[Number | None], *, checked: bool) -> Decimal | None:
    """`nowcast` of a key; `checked`: the values are finite, non-negative Decimals already."""
    hourly = series if isinstance(series, list) else list(series)  # a list indexes natively
    newest = len(hourly) - 1
    oldest = max(newest - NOWCAST_HOURS + 1, 0)
    ages: list[int] = []
    values: list[Decimal] = []
    recent = 0
    for position in range(newest, oldest - 1, -1):
        value = hourly[position]
        if value is None:
            continue
        age = newest - position
        if checked:
            number = cast(Decimal, value)
        else:
            number = to_decimal(value)
            if number < _ZERO:
                _negative(f"{key} hour -{age}", number)
        ages.append(age)
        values.append(number)
        if age < 3:
            recent += 1
    if recent < 2:
        return None
    ctx = DECIMAL_CONTEXT
    c_min, c_max = min(values), max(values)
    weight = _ONE if c_max == _ZERO else max(ctx.divide(c_min, c_max), _HALF)
    powers = _powers(weight)
    add, multiply = ctx.add, ctx.multiply
    numerator = denominator = _ZERO
    for index, age in enumerate(ages):  # Σ wᵃ·cₐ / Σ wᵃ
        factor = powers[age]
        numerator = add(numerator, multiply(factor, values[index]))
        denominator = add(denominator, factor)
    return _truncate(_TABLES[key], ctx.divide(numerator, denominator))


# --- combining keys -------------------------------------------------------------------


_NO_INDEX: Final = -1
_INDICES: Final[dict[str, dict[Decimal, int]]] = {key: {} for key in KEYS}
"""Key → truncated concentration → its index (_NO_INDEX: none), at most _INDICES_MAX each."""
_INDICES_MAX: Final = 4096


def _known_index(key: str, truncated: Decimal) -> int | None:
    """`_index` of a key's table, remembered: truncated concentrations come in steps of
    the key's precision and repeat, hour after hour and station after station. The index
    depends on the value only (64.3 and 64.30 have the same)."""
    known = _INDICES[key]
    index = known.get(truncated)
    if index is None:
        found = _index(_TABLES[key], truncated)
        index = _NO_INDEX if found is None else found
        if len(known) >= _INDICES_MAX:
            known.clear()
        known[truncated] = index
    return None if index == _NO_INDEX else index


def _assess(truncated: Mapping[str, Decimal]) -> tuple[dict[str, int], dict[str, Decimal]]:
    """Sub-indices after the ozone and SO2 rules, and the concentrations they used."""
    indices: dict[str, int] = {}
    used: dict[str, Decimal] = {}
    for key in KEYS:
        if key not in truncated:
            continue
        index = _known_index(key, truncated[key])
        if index is not None:
            indices[key] = index
            used[key] = truncated[key]
        elif key in ("o3_8h", "o3_1h", "so2_1h"):
            used[key] = truncated[key]  # consulted by a special rule, so it is reported
    so2_1h, so2_24h = truncated.get("so2_1h"), truncated.get("so2_24h")
    if (
        so2_1h is not None
        and so2_1h >= _SO2_1H_LIMIT
        and so2_24h is not None
        and so2_24h < _SO2_1H_LIMIT
    ):
        indices["so2_1h"] = _SO2_FIXED_INDEX
        used["so2_24h"] = so2_24h
    ordered = {key: indices[key] for key in KEYS if key in indices}
    return ordered, {key: used[key] for key in KEYS if key in used}


def _highest(indices: Mapping[str, int]) -> tuple[int | None, str | None]:
    """Maximum sub-index; the first key in :data:`KEYS` wins a tie."""
    best: tuple[int | None, str | None] = (None, None)
    for key in KEYS:
        index = indices.get(key)
        if index is not None and (best[0] is None or index > best[0]):
            best = (index, key)
    return best


def overall(concentrations: Mapping[str, Number | None]) -> tuple[int | None, str | None]:
    """The AQI and its main key over the given keys (None values are skipped).

    Applies the ozone and SO2 rules described in the module docstring; (None, None) when
    no key defines an index.
    """
    truncated = {
        key: _truncate(_lookup(key), _non_negative(value, key))
        for key, value in concentrations.items()
        if value is not None
    }
    return _highest(_assess(truncated)[0])


@dataclass(frozen=True, slots=True)
class HourlyAqi:
    """One hourly (real-time) AQI report, with what it was computed from."""

    aqi: int | None
    category: str | None
    main_pollutant: str | None
    """The key that gave the AQI, e.g. ``"pm25_nowcast"``."""
    sub_indices: dict[str, int]
    concentrations: dict[str, Decimal]
    """Truncated concentration behind each sub-index, plus O3/SO2 values the rules used."""
    reason: str | None
    """None when ``aqi`` is set, else one of :data:`REASONS`."""


def _hourly_series(pollutant: str, hourly: Sequence[Number | None]) -> list[Decimal | None]:
    """Validated Decimals; the error message is built only when a value is bad (hot path)."""
    numbers: list[Decimal | None] = []
    for position, value in enumerate(hourly):
        if value is None:
            numbers.append(None)
            continue
        number = to_decimal(value)  # returns a finite Decimal as it is
        if number < _ZERO:  # a Decimal zero: comparing with int 0 converts it every time
            _negative(f"{pollutant} hour {position}", number)
        numbers.append(number)
    return numbers


def _current(hourly: Sequence[Decimal | None]) -> Decimal | None:
    return hourly[-1] if hourly else None


def hourly_aqi(hourly_means: Mapping[str, Sequence[Number | None]]) -> HourlyAqi:
    """The real-time AQI for the last hour of each pollutant's hourly means.

    ``hourly_means`` maps a pollutant (``"pm25"``, …) to hourly means in EPA units,
    oldest → newest, the last entry being the hour reported (None = missing; entries
    older than 24 hours are ignored). PM uses the NowCast, O3 and CO the 8 h rolling mean
    (6 of 8 hours), O3/SO2/NO2 1 h the current hour, and SO2 24 h (18 of 24 hours) is
    computed only when the current SO2 hour is at or above 305 ppb.
    """
    series: dict[str, list[Decimal | None]] = {}
    for pollutant, hourly in hourly_means.items():
        if pollutant not in POLLUTANTS:
            msg = f"unknown pollutant {pollutant!r}; expected one of {', '.join(POLLUTANTS)}"
            raise UnknownKey(msg)
        series[pollutant] = _hourly_series(pollutant, hourly[-24:])

    eight_hours, eight_valid = ROLLING_WINDOWS["8h"]
    day_hours, day_valid = ROLLING_WINDOWS["24h"]
    averages: dict[str, Decimal | None] = {}
    for pollutant, key in _NOWCAST_KEYS.items():
        if pollutant in series:
            averages[key] = _nowcast(key, series[pollutant], checked=True)
    for pollutant in ("o3", "co"):
        if pollutant in series:
            averages[f"{pollutant}_8h"] = rolling_mean(series[pollutant], eight_hours, eight_valid)
    for pollutant in ("o3", "so2", "no2"):
        if pollutant in series:
            averages[f"{pollutant}_1h"] = _current(series[pollutant])
    so2_now = averages.get("so2_1h")
    if so2_now is not None and truncate("so2_1h", so2_now) >= _SO2_1H_LIMIT:
        averages["so2_24h"] = rolling_mean(series["so2"], day_hours, day_valid)

    truncated = {
        key: _truncate(_TABLES[key], value) for key, value in averages.items() if value is not None
    }
    indices, used = _assess(truncated)
    aqi, main = _highest(indices)
    if aqi is None:
        reason = "no_index" if truncated else "insufficient_data"
        return HourlyAqi(None, None, None, indices, used, reason)
    return HourlyAqi(aqi, category(aqi), main, indices, used, None)
