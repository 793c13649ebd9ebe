"""An independent, straightforward computation of EPA's daily AQI (domain reference §1).

Exact rationals (fractions.Fraction) and its own copy of Table 6; it shares no code with
processors.daily or processors.aqi, so tests can hold the pipeline against it.
"""

from __future__ import annotations

import math
from fractions import Fraction

MOLECULAR_WEIGHT = {
    "o3": Fraction("48.00"),
    "no2": Fraction("46.01"),
    "so2": Fraction("64.07"),
    "co": Fraction("28.01"),
}
COLUMNS = {"PM2.5": "pm25", "PM10": "pm10", "SO2": "so2", "NO2": "no2", "CO": "co", "O3": "o3"}

# key: (truncation step, [(C_lo, C_hi, I_lo, I_hi)], no index at or above)
TABLE = {
    "pm25_24h": (
        "0.1",
        "0.0 9.0 0 50|9.1 35.4 51 100|35.5 55.4 101 150|55.5 125.4 151 200|"
        "125.5 225.4 201 300|225.5 325.4 301 500",
        None,
    ),
    "pm10_24h": (
        "1",
        "0 54 0 50|55 154 51 100|155 254 101 150|255 354 151 200|355 424 201 300|425 604 301 500",
        None,
    ),
    "o3_8h": (
        "0.001",
        "0.000 0.054 0 50|0.055 0.070 51 100|0.071 0.085 101 150|"
        "0.086 0.105 151 200|0.106 0.200 201 300",
        "0.201",
    ),
    "o3_1h": (
        "0.001",
        "0.125 0.164 101 150|0.165 0.204 151 200|0.205 0.404 201 300|0.405 0.604 301 500",
        None,
    ),
    "co_8h": (
        "0.1",
        "0.0 4.4 0 50|4.5 9.4 51 100|9.5 12.4 101 150|12.5 15.4 151 200|"
        "15.5 30.4 201 300|30.5 50.4 301 500",
        None,
    ),
    "so2_1h": ("1", "0 35 0 50|36 75 51 100|76 185 101 150|186 304 151 200", "305"),
    "so2_24h": ("1", "305 604 201 300|605 1004 301 500", None),
    "no2_1h": (
        "1",
        "0 53 0 50|54 100 51 100|101 360 101 150|361 649 151 200|650 1249 201 300|"
        "1250 2049 301 500",
        None,
    ),
}
ORDER = ["pm25_24h", "pm10_24h", "o3_8h", "o3_1h", "co_8h", "so2_1h", "so2_24h", "no2_1h"]
CATEGORY_TOPS = [
    (50, "Good"),
    (100, "Moderate"),
    (150, "Unhealthy for Sensitive Groups"),
    (200, "Unhealthy"),
    (300, "Very Unhealthy"),
]


def epa_units(pollutant: str, micrograms: str) -> Fraction:
    """µg/m³ as read → PM µg/m³, O3/CO ppm, SO2/NO2 ppb (25 °C, 1 atm: 24.45 L/mol)."""
    value = Fraction(micrograms)
    if pollutant in ("pm25", "pm10"):
        return value
    ppb = value * Fraction("24.45") / MOLECULAR_WEIGHT[pollutant]
    return ppb / 1000 if pollutant in ("o3", "co") else ppb


def truncate(key: str, value: Fraction) -> Fraction:
    step = Fraction(TABLE[key][0])
    return math.floor(value / step) * step


def index(key: str, value: Fraction) -> int | None:
    """EPA's interpolation of a truncated value, rounded half up; None where undefined."""
    _, rows, limit = TABLE[key]
    segments = [tuple(Fraction(x) for x in row.split()) for row in rows.split("|")]
    if value < segments[0][0] or (limit is not None and value >= Fraction(limit)):
        return None
    c_lo, c_hi, i_lo, i_hi = next((s for s in segments if value <= s[1]), segments[-1])
    return math.floor((i_hi - i_lo) / (c_hi - c_lo) * (value - c_lo) + i_lo + Fraction(1, 2))


def mean(values: list[Fraction]) -> Fraction:
    return sum(values, Fraction(0)) / len(values)


def expected_day(today: dict[str, list], tomorrow: dict[str, list]) -> dict:
    """Sub-indices, values and completeness of one day, by EPA's daily rules."""
    values: dict[str, Fraction] = {}
    completeness: dict[str, int] = {}
    for pm in ("pm25", "pm10"):
        present = [v for v in today[pm] if v is not None]
        if present:
            completeness[f"{pm}_24h"] = len(present)
            if len(present) >= 18:  # 75 % of 24 hours
                values[f"{pm}_24h"] = mean(present)
    for gas, starts, needed in (("o3", range(7, 24), 13), ("co", range(24), 18)):
        if not any(v is not None for v in today[gas]):
            continue
        hours = today[gas] + tomorrow[gas][:7]
        windows = []
        for start in starts:  # 8-hour means starting in the day, each with ≥ 6 hours
            present = [v for v in hours[start : start + 8] if v is not None]
            if len(present) >= 6:
                windows.append(mean(present))
        completeness[f"{gas}_8h"] = len(windows)
        if len(windows) >= needed:
            values[f"{gas}_8h"] = max(windows)
    for gas in ("o3", "so2", "no2"):
        present = [v for v in today[gas] if v is not None]
        if present:
            completeness[f"{gas}_1h"] = len(present)
            values[f"{gas}_1h"] = max(present)
    truncated = {key: truncate(key, value) for key, value in values.items()}
    sub_indices = {key: i for key, v in truncated.items() if (i := index(key, v)) is not None}
    if truncated.get("so2_1h", 0) >= 305:  # the SO2 rule: the 24-hour mean decides
        present = [v for v in today["so2"] if v is not None]
        completeness["so2_24h"] = len(present)
        if len(present) >= 18:
            truncated["so2_24h"] = truncate("so2_24h", mean(present))
            if truncated["so2_24h"] >= 305:
                sub_indices["so2_24h"] = index("so2_24h", truncated["so2_24h"])
            else:
                sub_indices["so2_1h"] = 200
    best = max(sub_indices.values(), default=None)
    main = None if best is None else next(k for k in ORDER if sub_indices.get(k) == best)
    category = None
    if best is not None:
        category = next((name for top, name in CATEGORY_TOPS if best <= top), "Hazardous")
    return {
        "aqi": best,
        "main_pollutant": main,
        "category": category,
        "sub_indices": sub_indices,
        "concentrations": {k: float(v) for k, v in truncated.items()},
        "completeness": completeness,
    }
