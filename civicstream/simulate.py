"""Synthetic stations for load tests: deterministic values, synthetic event time."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np

from civicstream.sources.base import SourceRecord

__all__ = ["simulate_readings"]

_MINUTE_MS = 60_000
# Typical urban levels and units, as a gateway would send them.
_BASELINES = (
    ("pm25", 20.0, "ug/m3"),
    ("pm10", 40.0, "ug/m3"),
    ("o3", 0.03, "ppm"),
    ("no2", 20.0, "ppb"),
    ("so2", 3.0, "ppb"),
    ("co", 0.5, "ppm"),
)


def simulate_readings(
    stations: int, count: int, start_ms: int, seed: int = 0, step_ms: int = _MINUTE_MS
) -> Iterator[SourceRecord]:
    """`count` readings: every station reports every pollutant once per `step_ms`.

    Values follow a seeded random walk, so the same arguments give the same stream.
    """
    rng = np.random.default_rng(seed)
    ids = [f"sim-{i:04d}" for i in range(stations)]
    keys = [station_id.encode() for station_id in ids]
    levels = np.array([[base for _, base, _ in _BASELINES]] * stations)
    sent = 0
    tick = 0
    while sent < count:
        ts_ms = start_ms + tick * step_ms
        levels = np.abs(levels * (1 + rng.normal(0, 0.02, levels.shape)))
        for s, station_id in enumerate(ids):
            for p, (pollutant, _, unit) in enumerate(_BASELINES):
                if sent >= count:
                    return
                value = {
                    "station_id": station_id,
                    "sensor_id": f"{station_id}-{pollutant}",
                    "pollutant": pollutant,
                    "value": round(float(levels[s, p]), 4),
                    "unit": unit,
                    "ts": ts_ms,
                }
                yield SourceRecord(ts_ms, keys[s], json.dumps(value).encode())
                sent += 1
        tick += 1
