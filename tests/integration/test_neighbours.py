"""The neighbour check end to end on the real broker: a station whose hour is five times
its neighbours' is reported in the anomalies dataset, and nobody else is."""

from __future__ import annotations

import json
import random

import pytest

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
HOUR = 3_600_000
MINUTE = 60_000
KM = 1 / 111.19508  # a kilometre of latitude, in degrees
STATIONS = ("n1", "n2", "n3", "n4")
ODD_STATION, ODD_HOUR = "n3", 5

CITY = "\n".join(
    [
        '[city]\nname = "Neighbourtown"\ntimezone = "UTC"\n',
        *(
            f'[[stations]]\nid = "{s}"\nlat = {40.0 + i * 1.5 * KM:.6f}\nlon = 116.0\n'
            for i, s in enumerate(STATIONS)
        ),
    ]
)


def readings() -> list[tuple[bytes, bytes]]:
    """Nine hours of PM2.5 every 10 minutes at four stations 1.5 km apart, in time order:
    the same air everywhere (±5 %), except one station's hour 5, five times as high."""
    rng = random.Random(21)
    out = []
    for step in range(9 * 6):
        level = 35 + 10 * rng.random()
        for station in STATIONS:
            value = level * rng.uniform(0.95, 1.05)
            if station == ODD_STATION and step // 6 == ODD_HOUR:
                value *= 5
            body = {
                "station_id": station,
                "sensor_id": f"{station}-pm25",
                "pollutant": "pm25",
                "value": round(value, 1),
                "unit": "ug/m3",
                "ts": T0 + step * 10 * MINUTE + 5 * MINUTE,
            }
            out.append((station.encode(), json.dumps(body).encode()))
    return out


def test_a_station_five_times_its_neighbours_for_an_hour_is_reported_alone(
    pipeline_factory, tmp_path
):
    city = tmp_path / "neighbourtown.toml"
    city.write_text(CITY)
    pipeline = pipeline_factory("neighbours", config=str(city)).start_all()
    sent = pipeline.send(readings())
    pipeline.wait_until_caught_up(sent)  # the area topic and the anomalies included

    rows = [r for r in pipeline.rows("anomalies") if r["kind"] == "disagrees_with_neighbours"]
    assert [(r["station_id"], r["pollutant"], r["ts"]) for r in rows] == [
        ("n3", "pm25", "2026-01-01T05:00:00.000Z")
    ]
    row = rows[0]
    hourly = {(r["station_id"], r["hour_start"]): r for r in pipeline.rows("aqi_hourly")}
    means = json.loads(hourly[("n3", "2026-01-01T05:00:00Z")]["hourly_means"])
    assert row["value"] == pytest.approx(means["pm25"])
    assert row["expected_low"] < row["value"] / 5 < row["expected_high"] < row["value"]
    assert row["unit"] == "ug/m3" and row["score"] > 0.6
    for neighbour in ("n1", "n2", "n4"):
        assert f"{neighbour} " in row["detail"]
