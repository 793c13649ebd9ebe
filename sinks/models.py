"""Standard data models for the open data: FIWARE ``AirQualityObserved`` (NGSI-LD).

Pure conversions from the store's rows, so the CLI (``civicstream export --model fiware``)
and, later, the API produce the same entities. The model: Smart Data Models,
``dataModel.Environment/AirQualityObserved`` (schema.json, CC BY 4.0); the representation:
ETSI NGSI-LD (GS CIM 009) JSON-LD.

- ``normalized`` (the NGSI-LD default): every attribute is a ``Property`` with a ``value``;
  pollutant concentrations carry their UN/CEFACT ``unitCode`` (``GQ`` µg/m³, ``59`` ppm,
  ``61`` ppb) and ``observedAt``; ``location`` is a ``GeoProperty`` holding a GeoJSON point;
  ``dateObserved`` is an NGSI-LD ``DateTime``.
- ``keyValues`` (NGSI-LD "simplified"): the same entity with each attribute reduced to its
  value: exactly what the Smart Data Models JSON Schema describes and validates.

An entity is one station-hour: ``dateObserved`` is the start (UTC) of the hour whose
means the pollutant attributes give, in EPA units (PM µg/m³, O3 and CO ppm, SO2 and NO2
ppb); ``airQualityIndex`` and ``airQualityLevel`` are the hour's EPA AQI and category.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, Literal, Protocol

__all__ = [
    "FIWARE_CONTEXT",
    "UNIT_CODES",
    "Place",
    "fiware_entities",
    "fiware_entity",
    "latest_per_station",
]

Representation = Literal["normalized", "keyValues"]

FIWARE_CONTEXT: tuple[str, ...] = (
    "https://raw.githubusercontent.com/smart-data-models/dataModel.Environment/master/context.jsonld",
    "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld",
)

UNIT_CODES: Mapping[str, str] = {
    "pm25": "GQ",  # microgram per cubic metre
    "pm10": "GQ",
    "o3": "59",  # part per million
    "co": "59",
    "so2": "61",  # part per billion
    "no2": "61",
}
"""Pollutant → UN/CEFACT Recommendation 20 code of its EPA unit."""


class Place(Protocol):
    """Where a station is: civicstream.settings.Station fits."""

    @property
    def name(self) -> str: ...

    @property
    def lat(self) -> float: ...

    @property
    def lon(self) -> float: ...


def _json_map(value: Any) -> dict[str, Any]:
    """A map column as stored (JSON text) or as decoded (a mapping)."""
    if isinstance(value, str):
        loaded = json.loads(value)
        return dict(loaded) if isinstance(loaded, dict) else {}
    return dict(value) if isinstance(value, Mapping) else {}


def _hour_text(value: Any) -> str:
    """The hour as stored (``2013-03-01T08:00:00Z``), also from a decoded datetime."""
    if isinstance(value, str):
        return value
    text: str = value.isoformat(timespec="seconds")
    return text.replace("+00:00", "Z")


def latest_per_station(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The newest ``aqi_hourly`` row of each station, by station id."""
    latest: dict[str, Mapping[str, Any]] = {}
    for row in rows:
        current = latest.get(row["station_id"])
        if current is None or _hour_text(row["hour_start"]) > _hour_text(current["hour_start"]):
            latest[row["station_id"]] = row
    return [latest[station] for station in sorted(latest)]


def fiware_entity(
    row: Mapping[str, Any], place: Place, representation: Representation = "normalized"
) -> dict[str, Any]:
    """One ``aqi_hourly`` row (as stored or as decoded) as an ``AirQualityObserved`` entity."""
    if representation not in ("normalized", "keyValues"):
        msg = f"representation must be 'normalized' or 'keyValues', not {representation!r}"
        raise ValueError(msg)
    normalized = representation == "normalized"
    hour = _hour_text(row["hour_start"])
    station_id = row["station_id"]

    def prop(value: Any, **extra: Any) -> Any:
        return {"type": "Property", "value": value, **extra} if normalized else value

    point = {"type": "Point", "coordinates": [place.lon, place.lat]}
    entity: dict[str, Any] = {
        "id": f"urn:ngsi-ld:AirQualityObserved:{station_id}:{hour}",
        "type": "AirQualityObserved",
        "dateObserved": prop({"@type": "DateTime", "@value": hour} if normalized else hour),
        "location": {"type": "GeoProperty", "value": point} if normalized else point,
        "name": prop(place.name),
        "typeofLocation": prop("outdoor"),
        "dataProvider": prop("civicstream"),
    }
    means = _json_map(row.get("hourly_means"))
    for pollutant in ("pm25", "pm10", "o3", "no2", "so2", "co"):
        if pollutant in means:
            value = float(means[pollutant])
            entity[pollutant] = prop(value, unitCode=UNIT_CODES[pollutant], observedAt=hour)
    if row.get("aqi") is not None:
        entity["airQualityIndex"] = prop(int(row["aqi"]), observedAt=hour)
        entity["airQualityLevel"] = prop(str(row["category"]), observedAt=hour)
    entity["@context"] = list(FIWARE_CONTEXT)
    return entity


def fiware_entities(
    rows: Iterable[Mapping[str, Any]],
    stations: Mapping[str, Place],
    representation: Representation = "normalized",
) -> list[dict[str, Any]]:
    """``AirQualityObserved`` entities of the given ``aqi_hourly`` rows.

    Rows of stations not in ``stations`` are left out: an entity needs a location.
    """
    return [
        fiware_entity(row, stations[row["station_id"]], representation)
        for row in rows
        if row["station_id"] in stations
    ]
