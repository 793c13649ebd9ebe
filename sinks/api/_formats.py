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


_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_MARK = "\x00civic-json-{}\x00"  # stands in for a JSON column while a row is encoded


def _scalar(value: Any) -> str:
    return _ENCODER.encode(value)


def _raw(value: Any) -> str:
    return "null" if value is None else str(value)


class RowEncoder:
    """Encodes the rows of one dataset; `places` maps a station id to (lat, lon)."""

    def __init__(self, ds: Dataset, places: Mapping[str, tuple[float, float]] | None = None):
        self.ds = ds
        names = ds.column_names
        self._names = names
        self._parts: list[tuple[str, Callable[[Any], str]]] = [
            (json.dumps(column.name) + ":", _raw if column.kind == "json" else _scalar)
            for column in ds.columns
        ]
        self._json_at = [i for i, column in enumerate(ds.columns) if column.kind == "json"]
        self._marks = {i: _MARK.format(i) for i in self._json_at}
        self._encoded_marks = {i: _ENCODER.encode(mark) for i, mark in self._marks.items()}
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
        """One row as a JSON object, members in column order.

        One C-encoder call for the whole row: each JSON column is first replaced by a
        marker string, and its stored JSON text is put where the marker's encoding is.
        A text value that happens to contain a marker falls back to encoding value by value.
        """
        values = list(row)
        for i in self._json_at:
            values[i] = self._marks[i]
        text = _ENCODER.encode(dict(zip(self._names, values, strict=True)))
        for i in self._json_at:
            encoded = self._encoded_marks[i]
            if text.count(encoded) != 1:
                return self._json_slowly(row)
            text = text.replace(encoded, _raw(row[i]), 1)
        return text

    def _json_slowly(self, row: Row) -> str:
        parts = zip(self._parts, row, strict=True)
        return "{" + ",".join(prefix + encode(value) for (prefix, encode), value in parts) + "}"

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
