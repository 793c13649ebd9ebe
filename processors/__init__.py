"""Pure computations for civicstream: units, rolling means, the EPA AQI, anomaly flags,
the neighbour check, incident privacy and statistics.

Nothing here does I/O, reads a clock or knows about Kafka, so every function is
deterministic and testable on its own. Import the modules, not names from the root::

    from processors import aqi
    aqi.sub_index("pm25_24h", "35.9")  # 102
"""

from __future__ import annotations

from processors import (
    anomaly,
    aqi,
    daily,
    exceptions,
    health,
    incident_stats,
    neighbours,
    privacy,
    purpleair,
    rolling,
    taxonomy,
    units,
    validation,
)

__all__ = [
    "anomaly",
    "aqi",
    "daily",
    "exceptions",
    "health",
    "incident_stats",
    "neighbours",
    "privacy",
    "purpleair",
    "rolling",
    "taxonomy",
    "units",
    "validation",
]
