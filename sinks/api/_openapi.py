"""The OpenAPI 3.1 description of the API, generated from the dataset definitions.

Each dataset gets its own records path with every filter parameter spelled out, so a
client generator (or a person) sees exactly which fields and operators exist.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sinks._datasets import Column, Dataset
from sinks._query import DEFAULT_LIMIT, MAX_LIMIT
from sinks.api._catalog import catalog_of
from sinks.api._formats import FORMATS, RowEncoder

__all__ = ["openapi"]

_SCHEMA_OF_KIND: Mapping[str, dict[str, Any]] = {
    "text": {"type": "string"},
    "int": {"type": "integer"},
    "real": {"type": "number"},
    "hour": {"type": "string", "format": "date-time"},
    "millis": {"type": "string", "format": "date-time"},
}
_OPERATORS = {
    "ne": "not equal to",
    "gt": "greater than",
    "gte": "greater than or equal to",
    "lt": "less than",
    "lte": "less than or equal to",
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _param(name: str, description: str, schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": name, "in": "query", "description": description, "schema": schema, **extra}


def _field_params(ds: Dataset, column: Column) -> list[dict[str, Any]]:
    if column.kind == "json":
        return []
    value = dict(_SCHEMA_OF_KIND.get(column.kind, {"type": "string"}))
    if column.kind in ("hour", "millis"):
        value["description"] = "ISO 8601 with a zone (Z or +08:00), or a date (00:00 UTC)"
    params = [
        _param(
            column.name,
            f"{column.name} equals the value (repeat for any of several values).",
            {"type": "array", "items": value},
            style="form",
            explode=True,
        )
    ]
    params += [
        _param(f"{column.name}__{op}", f"{column.name} {text} the value.", value)
        for op, text in _OPERATORS.items()
    ]
    if column.nullable:
        params.append(
            _param(
                f"{column.name}__null",
                f"true: {column.name} is empty; false: it is not.",
                {"type": "boolean"},
            )
        )
    return params


def _record_schema(ds: Dataset) -> dict[str, Any]:
    catalog = catalog_of(ds)
    properties: dict[str, Any] = {}
    for column in ds.columns:
        if column.kind == "json":
            schema: dict[str, Any] = {"type": ["object", "array"]}
        else:
            schema = dict(_SCHEMA_OF_KIND.get(column.kind, {"type": "string"}))
        if column.nullable:
            schema["type"] = (
                [schema["type"], "null"]
                if isinstance(schema["type"], str)
                else [
                    *schema["type"],
                    "null",
                ]
            )
        doc = catalog.fields.get(column.name)
        if doc is not None:
            schema["description"] = doc.description + (f" Unit: {doc.unit}." if doc.unit else "")
        properties[column.name] = schema
    return {
        "type": "object",
        "properties": properties,
        "required": [column.name for column in ds.columns],
    }


def _records_path(ds: Dataset) -> dict[str, Any]:
    catalog = catalog_of(ds)
    encoder = RowEncoder(ds)
    formats = ["json", *(name for name in FORMATS if name != "geojson" or encoder.has_geometry)]
    params: list[dict[str, Any]] = []
    if ds.time_column:
        params += [
            _param("since", f"{ds.time_column} at or after this time.", {"type": "string"}),
            _param("until", f"{ds.time_column} before this time.", {"type": "string"}),
        ]
    if ds.coordinates or ds.station_column:
        params.append(
            _param(
                "bbox",
                "min_lon,min_lat,max_lon,max_lat (WGS 84): rows placed inside the box"
                + (" (by their station's coordinates)." if not ds.coordinates else "."),
                {"type": "string", "pattern": r"^[-+.0-9eE]+(,[-+.0-9eE]+){3}$"},
            )
        )
    sortable = [c.name for c in ds.columns if c.kind != "json"]
    params += [
        _param(
            "sort",
            "Comma-separated fields, '-' before a field for descending; the natural key "
            f"({', '.join(ds.key)}) always ends the order. Fields: {', '.join(sortable)}.",
            {"type": "string"},
        ),
        _param(
            "limit",
            f"Rows per page (JSON: default {DEFAULT_LIMIT}, at most {MAX_LIMIT}); "
            "downloads have no default limit.",
            {"type": "integer", "minimum": 1},
        ),
        _param("offset", "Rows to skip (or use cursor).", {"type": "integer", "minimum": 0}),
        _param("cursor", "next_cursor of the previous page (keyset paging).", {"type": "string"}),
        _param(
            "format",
            "json: one page; csv, geojson, jsonl: a download of every matching row, streamed.",
            {"type": "string", "enum": formats, "default": "json"},
        ),
    ]
    for column in ds.columns:
        params += _field_params(ds, column)
    page = {
        "type": "object",
        "properties": {
            "dataset": {"type": "string"},
            "limit": {"type": "integer"},
            "offset": {"type": "integer"},
            "count": {"type": "integer"},
            "next_cursor": {"type": ["string", "null"]},
            "next": {"type": ["string", "null"]},
            "records": {"type": "array", "items": {"$ref": f"#/components/schemas/{ds.name}"}},
        },
        "required": ["dataset", "count", "records", "next_cursor", "next"],
    }
    content: dict[str, Any] = {"application/json": {"schema": page}}
    for name in formats[1:]:
        content[FORMATS[name].media_type] = {"schema": {"type": "string"}}
    return {
        "get": {
            "operationId": f"records_{ds.name}",
            "summary": f"{catalog.title}: records",
            "tags": ["datasets"],
            "parameters": params,
            "responses": {
                "200": {"description": "A page of records, or a download.", "content": content},
                "400": _error("A parameter names an unknown field or has a bad value."),
            },
        }
    }


def openapi(datasets: Mapping[str, Dataset], title: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document."""
    any_object = {"type": "object"}
    paths: dict[str, Any] = {
        "/api/datasets": {
            "get": {
                "operationId": "list_datasets",
                "summary": "Every dataset with its data dictionary, freshness and links.",
                "tags": ["datasets"],
                "responses": {
                    "200": {
                        "description": "The datasets.",
                        "content": {"application/json": {"schema": any_object}},
                    }
                },
            }
        },
        "/api/datasets/{name}": {
            "get": {
                "operationId": "get_dataset",
                "summary": "One dataset: fields (type, unit, meaning), key, coverage, links.",
                "tags": ["datasets"],
                "parameters": [
                    {
                        "name": "name",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "enum": list(datasets)},
                    }
                ],
                "responses": {
                    "200": {
                        "description": "The dataset.",
                        "content": {"application/json": {"schema": any_object}},
                    },
                    "404": _error("No dataset of that name."),
                },
            }
        },
        "/api/air-quality/now": {
            "get": {
                "operationId": "air_quality_now",
                "summary": "The latest hourly AQI of every station, with EPA category, colour "
                "and health guidance.",
                "tags": ["air quality"],
                "responses": {
                    "200": {
                        "description": "Stations, newest hour each.",
                        "content": {"application/json": {"schema": any_object}},
                    }
                },
            }
        },
        "/data.json": {
            "get": {
                "operationId": "catalog",
                "summary": "The DCAT-US 1.1 catalog of every dataset.",
                "tags": ["catalog"],
                "responses": {
                    "200": {
                        "description": "data.json",
                        "content": {"application/json": {"schema": any_object}},
                    }
                },
            }
        },
    }
    for name, ds in datasets.items():
        paths[f"/api/datasets/{name}/records"] = _records_path(ds)
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "properties": {
                "status": {"type": "integer"},
                "error": {"type": "string"},
                "message": {"type": "string"},
            },
            "required": ["status", "error", "message"],
        }
    }
    for name, ds in datasets.items():
        schemas[name] = _record_schema(ds)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": "1",
            "description": (
                "Read-only open data: every dataset of the store with filters, sorting, "
                "paging and downloads (CSV, GeoJSON, JSON lines), the current air quality, "
                "and the DCAT-US catalog."
            ),
        },
        "paths": paths,
        "components": {"schemas": schemas},
    }
