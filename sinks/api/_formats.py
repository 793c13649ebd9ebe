"""Rows as bytes: JSON objects, JSON lines, CSV and GeoJSON, chunk by chunk.

Every encoder takes rows in the dataset's column order (as the store returns them) and
writes the stored values unchanged: JSON columns are spliced in as the JSON text the store
holds (they are objects and arrays in JSON, GeoJSON and JSON lines, and that same text in
a CSV cell); floats are written as Python's ``repr`` (the shortest text that reads back
to the same double); NULL is ``null`` in JSON and an empty cell in CSV.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sinks._datasets import Dataset

__all__ = ["FORMATS", "Format", "RowEncoder"]

Row = Sequence[Any]


def _scalar(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def _raw(value: Any) -> str:
    return "null" if value is None else str(value)


class RowEncoder:
    """Encodes the rows of one dataset; `places` maps a station id to (lat, lon)."""

    def __init__(self, ds: Dataset, places: Mapping[str, tuple[float, float]] | None = None):
        self.ds = ds
        names = ds.column_names
        self._parts: list[tuple[str, Callable[[Any], str]]] = [
            (json.dumps(column.name) + ":", _raw if column.kind == "json" else _scalar)
            for column in ds.columns
        ]
        self._lat_lon = (
            (names.index(ds.coordinates[0]), names.index(ds.coordinates[1]))
            if ds.coordinates
            else None
        )
        self._station = names.index(ds.station_column) if ds.station_column else None
        self._places = places or {}

    @property
    def has_geometry(self) -> bool:
        return self._lat_lon is not None or self._station is not None

    def json(self, row: Row) -> str:
        """One row as a JSON object."""
        return (
            "{"
            + ",".join(
                prefix + encode(value)
                for (prefix, encode), value in zip(self._parts, row, strict=True)
            )
            + "}"
        )

    def point(self, row: Row) -> tuple[float, float] | None:
        """(lon, lat) of a row: its own coordinates, else its station's, else None."""
        if self._lat_lon is not None:
            lat, lon = row[self._lat_lon[0]], row[self._lat_lon[1]]
            if lat is not None and lon is not None:
                return float(lon), float(lat)
        if self._station is not None:
            place = self._places.get(row[self._station])
            if place is not None:
                return float(place[1]), float(place[0])
        return None

    def feature(self, row: Row) -> str:
        """One row as a GeoJSON Feature (geometry null when the row has no place)."""
        point = self.point(row)
        geometry = (
            "null"
            if point is None
            else '{"type":"Point","coordinates":[' + repr(point[0]) + "," + repr(point[1]) + "]}"
        )
        return '{"type":"Feature","geometry":' + geometry + ',"properties":' + self.json(row) + "}"

    def csv(self, rows: Sequence[Row], header: bool) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        if header:
            writer.writerow(self.ds.column_names)
        writer.writerows(rows)
        return buffer.getvalue()


@dataclass(frozen=True)
class Format:
    """A download format: media type, file suffix, and how chunks become text."""

    name: str
    media_type: str
    suffix: str
    title: str
    start: Callable[[RowEncoder], str]
    chunk: Callable[[RowEncoder, Sequence[Row], bool], str]
    end: str = ""


def _jsonl(encoder: RowEncoder, rows: Sequence[Row], first: bool) -> str:
    return "".join(encoder.json(row) + "\n" for row in rows)


def _csv(encoder: RowEncoder, rows: Sequence[Row], first: bool) -> str:
    return encoder.csv(rows, header=False)


def _geojson(encoder: RowEncoder, rows: Sequence[Row], first: bool) -> str:
    text = ",\n".join(encoder.feature(row) for row in rows)
    return text if first or not text else ",\n" + text


FORMATS: dict[str, Format] = {
    "csv": Format(
        "csv",
        "text/csv",
        "csv",
        "CSV (comma-separated values, RFC 4180, header row)",
        lambda encoder: encoder.csv((), header=True),
        _csv,
    ),
    "geojson": Format(
        "geojson",
        "application/geo+json",
        "geojson",
        "GeoJSON FeatureCollection (RFC 7946)",
        lambda encoder: '{"type":"FeatureCollection","features":[\n',
        _geojson,
        "\n]}\n",
    ),
    "jsonl": Format(
        "jsonl",
        "application/x-ndjson",
        "jsonl",
        "JSON lines (one JSON object per line)",
        lambda encoder: "",
        _jsonl,
    ),
}
