"""The UCI "Beijing Multi-Site Air Quality" files (PRSA_Data_<Station>_*.csv).

Hourly rows in Beijing local time (UTC+8, no daylight saving), every pollutant in µg/m³
(CO too), missing values as NA. Each non-missing pollutant becomes one raw reading in
the gateway JSON form, so the replay exercises exactly the path live gateways use.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path

from civicstream.sources.base import SourceError, SourceRecord

__all__ = ["BEIJING_COLUMNS", "read_beijing"]

BEIJING_TZ = timezone(timedelta(hours=8))
# CSV column -> pollutant; all in ug/m3 in this data set.
BEIJING_COLUMNS = {
    "PM2.5": "pm25",
    "PM10": "pm10",
    "SO2": "so2",
    "NO2": "no2",
    "CO": "co",
    "O3": "o3",
}


def read_beijing(
    path: Path,
    coordinates: Mapping[str, tuple[float, float]] | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
) -> Iterator[SourceRecord]:
    """Raw readings of one station file, in time order, within [since, until)."""
    coordinates = coordinates or {}
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"year", "month", "day", "hour", "station", *BEIJING_COLUMNS} - set(
            reader.fieldnames or []
        )
        if missing:
            msg = f"{path}: not a Beijing multi-site file (missing columns {sorted(missing)})"
            raise SourceError(msg)
        for row in reader:
            local = datetime(
                int(row["year"]),
                int(row["month"]),
                int(row["day"]),
                int(row["hour"]),
                tzinfo=BEIJING_TZ,
            )
            ts_ms = int(local.timestamp()) * 1000
            if since_ms is not None and ts_ms < since_ms:
                continue
            if until_ms is not None and ts_ms >= until_ms:
                break
            station_id = row["station"].strip().lower()
            key = station_id.encode()
            lat_lon = coordinates.get(station_id)
            for column, pollutant in BEIJING_COLUMNS.items():
                text = row[column].strip()
                if not text or text == "NA":
                    continue
                reading = {
                    "station_id": station_id,
                    "sensor_id": f"{station_id}-{pollutant}",
                    "pollutant": pollutant,
                    "value": float(text),
                    "unit": "ug/m3",
                    "ts": local.isoformat(),
                }
                if lat_lon is not None:
                    reading["lat"], reading["lon"] = lat_lon
                yield SourceRecord(ts_ms, key, json.dumps(reading, separators=(",", ":")).encode())
