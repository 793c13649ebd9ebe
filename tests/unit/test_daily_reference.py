"""processors.daily against an independent reading of the daily rules (tests/daily_reference.py),
on random days with gaps, high ozone and SO2 above 305 ppb."""

from __future__ import annotations

import random
from decimal import Decimal
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from processors.daily import daily_aqi
from tests.daily_reference import expected_day

SCALES = {"pm25": 300, "pm10": 700, "o3": "0.4", "co": 25, "so2": 800, "no2": 900}


def _hours(rng: random.Random, pollutant: str, count: int) -> list[Decimal | None]:
    missing = rng.random() * 0.6
    places = Decimal("0.001") if pollutant == "o3" else Decimal("0.1")
    scale = Decimal(SCALES[pollutant])
    return [
        None if rng.random() < missing else (scale * Decimal(rng.random())).quantize(places)
        for _ in range(count)
    ]


def _fractions(values: list[Decimal | None]) -> list[Fraction | None]:
    return [None if v is None else Fraction(v) for v in values]


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32))
def test_the_daily_aqi_agrees_with_an_independent_computation(seed: int) -> None:
    rng = random.Random(seed)
    pollutants = [p for p in SCALES if rng.random() < 0.7]
    today = {p: _hours(rng, p, 24) for p in pollutants}
    tomorrow = {p: _hours(rng, p, 7) for p in pollutants}
    result = daily_aqi(today, tomorrow)
    missing = [None] * 24
    want = expected_day(
        {p: _fractions(today[p]) if p in today else missing for p in SCALES},
        {p: _fractions(tomorrow[p]) if p in tomorrow else missing for p in SCALES},
    )
    got = {
        "aqi": result.aqi,
        "main_pollutant": result.main_pollutant,
        "category": result.category,
        "sub_indices": result.sub_indices,
        "concentrations": {k: float(v) for k, v in result.concentrations.items()},
        # the reference lists only pollutants with data; daily_aqi also counts 0 hours
        "completeness": {k: n for k, n in result.completeness.items() if n},
    }
    want["completeness"] = {k: n for k, n in want["completeness"].items() if n}
    assert got == want
