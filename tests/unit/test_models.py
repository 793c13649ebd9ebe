"""FIWARE AirQualityObserved entities (sinks.models): valid against the Smart Data Models
JSON Schema, NGSI-LD normalized with UN/CEFACT unit codes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from sinks.models import FIWARE_CONTEXT, fiware_entities, fiware_entity, latest_per_station

SCHEMAS = Path(__file__).resolve().parents[1] / "data" / "fiware"
ENVIRONMENT_URL = (
    "https://raw.githubusercontent.com/smart-data-models/dataModel.Environment/master/"
    "Environment-schema.json"
)


@dataclass(frozen=True)
class Station:
    name: str
    lat: float
    lon: float


STATIONS = {"dongsi": Station("Dongsi", 39.929, 116.417)}


def _load(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    """The AirQualityObserved schema with its $refs resolved from the vendored files."""
    common = _load("common-schema.json")
    environment = _load("Environment-schema.json")
    schema = _load("AirQualityObserved.schema.json")
    # Environment-schema.json names the unversioned "http://json-schema.org/schema#"
    # dialect; it is read as 2020-12, the dialect of the schema that refers to it.
    environment_resource = DRAFT202012.create_resource(environment)
    registry = Registry().with_resources(
        [
            (common["$id"], Resource.from_contents(common)),
            (environment["$id"], environment_resource),
            (ENVIRONMENT_URL, environment_resource),
        ]
    )
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, registry=registry, format_checker=cls.FORMAT_CHECKER)


def row(hour: str = "2013-03-31T14:00:00Z", **changes: Any) -> dict[str, Any]:
    """An aqi_hourly row as the store holds it (JSON text maps)."""
    stored = {
        "station_id": "dongsi",
        "hour_start": hour,
        "aqi": 102,
        "category": "Unhealthy for Sensitive Groups",
        "main_pollutant": "pm25_nowcast",
        "sub_indices": '{"pm25_nowcast":102}',
        "concentrations": '{"pm25_nowcast":35.9}',
        "hourly_means": '{"co":1.2,"no2":41.0,"o3":0.031,"pm10":80.0,"pm25":35.9,"so2":4.0}',
        "reading_count": 6,
        "reason": None,
        "aqi_version": "EPA-454/B-24-002",
        "health_message": None,
    }
    stored.update(changes)
    return stored


def test_key_values_entities_validate_against_the_smart_data_models_schema(validator) -> None:
    for entity in fiware_entities([row()], STATIONS, "keyValues"):
        validator.validate(entity)


def test_the_schema_is_really_checked(validator) -> None:
    entity = fiware_entity(row(), STATIONS["dongsi"], "keyValues")
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({**entity, "pm25": -1.0})
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({k: v for k, v in entity.items() if k != "location"})
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({**entity, "airQualityIndex": "high"})


def test_a_normalized_entity_is_ngsi_ld_with_unit_codes() -> None:
    entity = fiware_entity(row(), STATIONS["dongsi"])
    assert entity["id"] == "urn:ngsi-ld:AirQualityObserved:dongsi:2013-03-31T14:00:00Z"
    assert entity["type"] == "AirQualityObserved"
    assert entity["@context"] == list(FIWARE_CONTEXT)
    assert entity["dateObserved"] == {
        "type": "Property",
        "value": {"@type": "DateTime", "@value": "2013-03-31T14:00:00Z"},
    }
    assert entity["location"] == {
        "type": "GeoProperty",
        "value": {"type": "Point", "coordinates": [116.417, 39.929]},  # GeoJSON: lon, lat
    }
    assert entity["pm25"] == {
        "type": "Property",
        "value": 35.9,
        "unitCode": "GQ",
        "observedAt": "2013-03-31T14:00:00Z",
    }
    units = {p: entity[p]["unitCode"] for p in ("pm25", "pm10", "o3", "co", "so2", "no2")}
    assert units == {"pm25": "GQ", "pm10": "GQ", "o3": "59", "co": "59", "so2": "61", "no2": "61"}
    assert entity["airQualityIndex"]["value"] == 102
    assert entity["airQualityLevel"]["value"] == "Unhealthy for Sensitive Groups"


def test_the_simplified_form_of_a_normalized_entity_is_the_key_values_entity(validator) -> None:
    def simplify(attribute: Any) -> Any:
        if isinstance(attribute, dict) and attribute.get("type") in ("Property", "GeoProperty"):
            value = attribute["value"]
            return value["@value"] if isinstance(value, dict) and "@value" in value else value
        return attribute

    normalized = fiware_entity(row(), STATIONS["dongsi"])
    simplified = {name: simplify(attribute) for name, attribute in normalized.items()}
    assert simplified == fiware_entity(row(), STATIONS["dongsi"], "keyValues")
    validator.validate(simplified)


def test_an_hour_without_an_aqi_has_no_index_attributes(validator) -> None:
    entity = fiware_entity(row(aqi=None, category=None), STATIONS["dongsi"], "keyValues")
    assert "airQualityIndex" not in entity and "airQualityLevel" not in entity
    validator.validate(entity)


def test_decoded_records_convert_like_stored_rows() -> None:
    from datetime import UTC, datetime

    decoded = row(
        hour_start=datetime(2013, 3, 31, 14, tzinfo=UTC),
        hourly_means={"co": 1.2, "no2": 41.0, "o3": 0.031, "pm10": 80.0, "pm25": 35.9, "so2": 4.0},
    )
    assert fiware_entity(decoded, STATIONS["dongsi"]) == fiware_entity(row(), STATIONS["dongsi"])


def test_the_latest_hour_of_each_station_and_unknown_stations_left_out() -> None:
    rows = [
        row("2013-03-31T13:00:00Z"),
        row("2013-03-31T14:00:00Z"),
        row("2013-03-31T12:00:00Z"),
        row("2013-03-31T15:00:00Z", station_id="nowhere"),
    ]
    latest = latest_per_station(rows)
    assert [(r["station_id"], r["hour_start"]) for r in latest] == [
        ("dongsi", "2013-03-31T14:00:00Z"),
        ("nowhere", "2013-03-31T15:00:00Z"),
    ]
    assert [e["id"] for e in fiware_entities(latest, STATIONS)] == [
        "urn:ngsi-ld:AirQualityObserved:dongsi:2013-03-31T14:00:00Z"
    ]


def test_an_unknown_representation_is_refused() -> None:
    with pytest.raises(ValueError, match="keyValues"):
        fiware_entity(row(), STATIONS["dongsi"], "compact")  # type: ignore[arg-type]
