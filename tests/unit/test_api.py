"""The HTTP API, end to end over HTTP on loopback, on SQLite and on a real PostgreSQL.

One server per backend (module scope) over one fixed set of records; every expectation is
computed from the records themselves (`Dataset.to_row`), so both backends are held to the
same rows, byte for byte.
"""

from __future__ import annotations

import csv
import io
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest

from civicstream.settings import Settings
from civicstream.site import build_site
from sinks._datasets import DATASETS, Dataset
from sinks.api import ApiServer, Site
from sinks.store import Store, open_store
from tests.conftest import BACKENDS
from tests.unit.test_store import aqi, reading

AQI = DATASETS["aqi_hourly"]
READINGS = DATASETS["readings"]
STATIONS = ("dongsi", "guanyuan", "tiantan", "nowhere")  # nowhere: not in the city file
CATEGORIES = [
    (30, "Good"),
    (75, "Moderate"),
    (120, "Unhealthy for Sensitive Groups"),
    (180, "Unhealthy"),
    (250, "Very Unhealthy"),
    (420, "Hazardous"),
]


def aqi_records() -> list[dict[str, Any]]:
    records = []
    for s, station in enumerate(STATIONS):
        for hour in range(30):
            value, category = CATEGORIES[(s + hour) % len(CATEGORIES)]
            if (s + hour) % 11 == 0:
                records.append(
                    aqi(
                        station,
                        hour,
                        aqi=None,
                        category=None,
                        main_pollutant=None,
                        reason="insufficient_data",
                    )
                )
            else:
                records.append(
                    aqi(station, hour, aqi=value + hour, category=category, reading_count=hour % 13)
                )
    return records


def reading_records() -> list[dict[str, Any]]:
    places = {"dongsi": (39.929, 116.417), "guanyuan": (39.929, 116.339), "tiantan": (None, None)}
    records = []
    for station, (lat, lon) in places.items():
        for pollutant in ("pm25", "o3", "no2"):
            for minute in range(0, 300, 7):
                records.append(
                    reading(
                        station,
                        pollutant,
                        minute,
                        value=round(minute / 3, 3),
                        value_epa=minute * 1.5,
                        mean_8h=None if minute % 3 == 0 else minute / 10,
                        sensor_id=None if minute % 5 == 0 else f"{station}-{pollutant}",
                        lat=lat,
                        lon=lon,
                        flags=["spike"] if minute % 4 == 0 else [],
                    )
                )
    return records


def expected_rows(ds: Dataset, records: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The rows the store must hold, in natural-key order."""
    return sorted((ds.to_row(r) for r in records), key=ds.key_of)


def as_record(ds: Dataset, row: tuple[Any, ...]) -> dict[str, Any]:
    """A row as the API's JSON gives it (JSON columns as values)."""
    return {
        column.name: json.loads(value) if column.kind == "json" else value
        for column, value in zip(ds.columns, row, strict=True)
    }


@dataclass
class Reply:
    status: int
    headers: Any
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, path: str, params: Any = None, method: str = "GET") -> Reply:
        query = ("?" + urlencode(params, doseq=True)) if params else ""
        request = urllib.request.Request(self.url + path + query, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return Reply(response.status, response.headers, response.read())
        except urllib.error.HTTPError as error:
            return Reply(error.code, error.headers, error.read())

    def records(self, name: str, params: Any = None) -> dict[str, Any]:
        reply = self.get(f"/api/datasets/{name}/records", params)
        assert reply.status == 200, reply.body
        return reply.json()  # type: ignore[no-any-return]

    def error(self, path: str, params: Any = None, status: int = 400) -> str:
        reply = self.get(path, params)
        assert reply.status == status, reply.body
        body = reply.json()
        assert body["status"] == status and body["error"] and body["message"]
        assert reply.headers["Content-Type"].startswith("application/json")
        return body["message"]  # type: ignore[no-any-return]


@dataclass
class Served:
    client: Client
    store: Store
    site: Site
    backend: str


@pytest.fixture(scope="module", params=BACKENDS)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('api')}/store.db"
    else:
        url = request.getfixturevalue("postgres_database")()
    store = open_store(url)
    store.write_batch({"aqi_hourly": aqi_records(), "readings": reading_records()})
    site = build_site(Settings(), poll_seconds=30)
    with ApiServer(store, site, chunk_rows=50) as server:
        yield Served(Client(server.url), store, site, request.param)
    store.close()


@pytest.fixture
def client(served: Served) -> Client:
    return served.client


# --- datasets -------------------------------------------------------------------------------


def test_datasets_lists_every_dataset_with_its_dictionary_and_size(client: Client) -> None:
    body = client.get("/api/datasets").json()
    by_name = {item["name"]: item for item in body["datasets"]}
    assert list(by_name) == list(DATASETS)
    hourly = by_name["aqi_hourly"]
    assert hourly["rows"] == len(aqi_records())
    assert hourly["title"] == AQI.catalog.title  # type: ignore[union-attr]
    assert hourly["key"] == ["station_id", "hour_start"]
    assert hourly["time_field"] == "hour_start"
    assert hourly["temporal"] == {"start": "2026-01-01T02:00:00Z", "end": "2026-01-02T07:00:00Z"}
    assert hourly["modified"].endswith("Z")
    assert [f["name"] for f in hourly["fields"]] == list(AQI.column_names)
    aqi_field = next(f for f in hourly["fields"] if f["name"] == "aqi")
    assert aqi_field["type"] == "integer" and aqi_field["unit"] == "AQI" and aqi_field["nullable"]
    assert by_name["readings"]["rows"] == len(reading_records())
    lat = next(f for f in by_name["readings"]["fields"] if f["name"] == "lat")
    assert (lat["type"], lat["unit"]) == ("number", "degrees")
    assert set(by_name["readings"]["links"]) == {"self", "records", "csv", "geojson", "jsonl"}


def test_one_dataset_and_an_unknown_one(client: Client) -> None:
    body = client.get("/api/datasets/readings").json()
    assert body["name"] == "readings"
    assert body["coordinates"] == ["lat", "lon"]
    assert body["links"]["csv"].endswith("/api/datasets/readings/records?format=csv")
    message = client.error("/api/datasets/weather", status=404)
    assert "no dataset 'weather'" in message and "aqi_hourly" in message
    assert "no dataset" in client.error("/api/datasets/weather/records", status=404)


# --- records: pages -------------------------------------------------------------------------


def test_a_first_page_is_the_first_100_rows_in_natural_key_order(client: Client) -> None:
    body = client.records("readings")
    expected = expected_rows(READINGS, reading_records())
    assert body["dataset"] == "readings"
    assert (body["limit"], body["offset"], body["count"]) == (100, 0, 100)
    assert body["records"] == [as_record(READINGS, row) for row in expected[:100]]
    assert body["next_cursor"] and body["next"].startswith("/api/datasets/readings/records?")


def test_cursor_paging_walks_every_row_once(client: Client) -> None:
    expected = expected_rows(AQI, aqi_records())
    walked: list[dict[str, Any]] = []
    path = "/api/datasets/aqi_hourly/records?limit=17"
    while path:
        body = client.get(path).json()
        walked.extend(body["records"])
        path = body["next"]
    assert walked == [as_record(AQI, row) for row in expected]


def test_offset_paging(client: Client) -> None:
    expected = expected_rows(AQI, aqi_records())
    body = client.records("aqi_hourly", {"limit": 10, "offset": 25})
    assert body["records"] == [as_record(AQI, row) for row in expected[25:35]]
    assert "offset=35" in body["next"]
    last = client.records("aqi_hourly", {"limit": 10, "offset": len(expected) - 3})
    assert (last["count"], last["next"], last["next_cursor"]) == (3, None, None)
    beyond = client.records("aqi_hourly", {"offset": 10_000})
    assert beyond["records"] == []


def test_limit_is_capped_and_checked(client: Client) -> None:
    assert client.records("readings", {"limit": 10_000})["count"] == len(reading_records())
    assert "between 1 and 10,000" in client.error(
        "/api/datasets/readings/records", {"limit": 10_001}
    )
    assert "between 1" in client.error("/api/datasets/readings/records", {"limit": 0})
    assert "not an integer" in client.error("/api/datasets/readings/records", {"limit": "ten"})
    assert "at least 0" in client.error("/api/datasets/readings/records", {"offset": -1})


# --- records: filters -----------------------------------------------------------------------


def rows_where(
    ds: Dataset, records: list[dict[str, Any]], keep: Callable[[dict[str, Any]], bool]
) -> list[dict[str, Any]]:
    return [
        as_record(ds, row)
        for row in expected_rows(ds, records)
        if keep(dict(zip(ds.column_names, row, strict=True)))
    ]


FILTERS: list[tuple[str, dict[str, Any], Callable[[dict[str, Any]], bool]]] = [
    ("aqi_hourly", {"station_id": "dongsi"}, lambda r: r["station_id"] == "dongsi"),
    (
        "aqi_hourly",
        {"station_id": ["dongsi", "tiantan"]},
        lambda r: r["station_id"] in ("dongsi", "tiantan"),
    ),
    ("aqi_hourly", {"category": "Hazardous"}, lambda r: r["category"] == "Hazardous"),
    ("aqi_hourly", {"station_id__ne": "dongsi"}, lambda r: r["station_id"] != "dongsi"),
    ("aqi_hourly", {"aqi__gt": 200}, lambda r: r["aqi"] is not None and r["aqi"] > 200),
    (
        "aqi_hourly",
        {"aqi__gte": 200, "aqi__lt": 260},
        lambda r: r["aqi"] is not None and 200 <= r["aqi"] < 260,
    ),
    ("aqi_hourly", {"aqi__lte": 40}, lambda r: r["aqi"] is not None and r["aqi"] <= 40),
    ("aqi_hourly", {"aqi__null": "true"}, lambda r: r["aqi"] is None),
    ("aqi_hourly", {"reason__null": "false"}, lambda r: r["reason"] is not None),
    ("aqi_hourly", {"reading_count": [0, 12]}, lambda r: r["reading_count"] in (0, 12)),
    ("readings", {"value__gte": "50.5"}, lambda r: r["value"] >= 50.5),
    (
        "readings",
        {"mean_8h__null": "true", "pollutant": "o3"},
        lambda r: r["mean_8h"] is None and r["pollutant"] == "o3",
    ),
    (
        "readings",
        {"sensor_id__gt": "guanyuan"},
        lambda r: r["sensor_id"] is not None and r["sensor_id"] > "guanyuan",
    ),
    (
        "readings",
        {"ts__gte": "2026-01-01T03:00:00Z", "ts__lt": "2026-01-01T11:30+08:00"},
        lambda r: "2026-01-01T03:00:00.000Z" <= r["ts"] < "2026-01-01T03:30:00.000Z",
    ),
    (
        "readings",
        {"hour_start": "2026-01-01T04:00:00Z", "station_id": "tiantan"},
        lambda r: r["hour_start"] == "2026-01-01T04:00:00Z" and r["station_id"] == "tiantan",
    ),
    (
        "aqi_hourly",
        {"since": "2026-01-01T20:00:00Z", "until": "2026-01-02"},
        lambda r: "2026-01-01T20:00:00Z" <= r["hour_start"] < "2026-01-02T00:00:00Z",
    ),
    (
        "aqi_hourly",
        {"since": "2026-01-02T12:00+08:00"},
        lambda r: r["hour_start"] >= "2026-01-02T04:00:00Z",
    ),
    (
        "readings",
        {"since": "2026-01-01T04:00:00.123Z", "until": "2026-01-01T04:10:00Z"},
        lambda r: "2026-01-01T04:00:00.123Z" <= r["ts"] < "2026-01-01T04:10:00.000Z",
    ),
    # bbox: readings by their own coordinates, hourly AQI by their station's (city file)
    (
        "readings",
        {"bbox": "116.40,39.90,116.45,39.95"},
        lambda r: r["lon"] is not None and 116.40 <= r["lon"] <= 116.45,
    ),
    (
        "aqi_hourly",
        {"bbox": "116.30,39.80,116.42,39.93"},
        lambda r: r["station_id"] in ("guanyuan", "dongsi", "tiantan"),
    ),
    ("aqi_hourly", {"bbox": "0,0,1,1"}, lambda r: False),
]


@pytest.mark.parametrize(
    ("name", "params", "keep"), FILTERS, ids=[urlencode(f[1], doseq=True) for f in FILTERS]
)
def test_filters_select_exactly_the_matching_rows(
    client: Client, name: str, params: dict[str, Any], keep: Callable[[dict[str, Any]], bool]
) -> None:
    ds = DATASETS[name]
    records = aqi_records() if name == "aqi_hourly" else reading_records()
    expected = rows_where(ds, records, keep)
    body = client.records(name, {**params, "limit": 10_000})
    assert body["records"] == expected
    if name == "aqi_hourly" and params != {"bbox": "0,0,1,1"}:
        assert expected  # the case tests something


# --- records: sorting -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "sort",
    ["-hour_start", "aqi", "-aqi,station_id", "category,-reading_count", "reason"],
)
def test_sort_orders_rows_with_nulls_first_ascending_and_last_descending(
    client: Client, sort: str
) -> None:
    rows = [dict(zip(AQI.column_names, r, strict=True)) for r in expected_rows(AQI, aqi_records())]
    terms = [(t.lstrip("-"), t.startswith("-")) for t in sort.split(",")]
    terms += [(key, False) for key in AQI.key if key not in {name for name, _ in terms}]
    for name, descending in reversed(terms):  # stable sorts, least significant first
        rows.sort(key=lambda r, n=name: (r[n] is not None, r[n] or 0), reverse=descending)
    expected = [as_record(AQI, tuple(r.values())) for r in rows]
    assert client.records("aqi_hourly", {"sort": sort, "limit": 10_000})["records"] == expected
    # and paging keeps that order
    walked, path = [], f"/api/datasets/aqi_hourly/records?sort={sort}&limit=23"
    while path:
        body = client.get(path).json()
        walked += body["records"]
        path = body["next"]
    assert walked == expected


# --- records: errors ------------------------------------------------------------------------

ERRORS = [
    ({"colour": "red"}, "readings has no field 'colour'"),
    ({"value__between": "1"}, "unknown operator 'between'"),
    ({"value": "high"}, "value is a number; 'high' is not a finite number"),
    ({"value": "nan"}, "not a finite number"),
    ({"mean_1h__gt": "inf"}, "not a finite number"),
    ({"flags": "spike"}, "flags is a JSON"),
    ({"mean_8h__null": "maybe"}, "expected true or false"),
    ({"ts__gte": "2026-01-01T03:00:00"}, "has no zone"),
    ({"ts__gte": "yesterday"}, "not an ISO 8601 time or date"),
    ({"ts": "2026-01-01T03:00:00.0001Z"}, "holds milliseconds"),
    ({"hour_start": "2026-01-01T03:00:00.5Z"}, "holds whole seconds"),
    ({"since": "2026-13-01"}, "not an ISO 8601"),
    ({"since": "2026-01-01", "until": "x"}, "until: 'x' is not"),
    ({"bbox": "1,2,3"}, "four numbers"),
    ({"bbox": "10,50,5,60"}, "min_lon ≤ max_lon"),
    ({"bbox": "0,-91,1,1"}, "-90 ≤ min_lat"),
    ({"sort": "colour"}, "sort: readings has no field 'colour'"),
    ({"sort": "flags"}, "flags is a JSON column and cannot be sorted"),
    ({"sort": "ts,-ts"}, "ts is named twice"),
    ({"limit": "5", "sort": "ts", "cursor": "bm90IGEgY3Vyc29y"}, "not a cursor"),
    ({"cursor": "!!!"}, "not a cursor"),
    ({"cursor": "W10", "offset": "3"}, "either cursor or offset"),
    ({"limit": "1", "limit ": "2"}, "readings has no field 'limit '"),
    ({"format": "xml"}, "'xml' is not one of json, csv, geojson, jsonl"),
    ({"format": ["csv", "json"]}, "'format' is given more than once"),
    ({"sort": ["ts", "value"]}, "'sort' is given more than once"),
    ({"station_id__lt": "x", "aqi": "1"}, "readings has no field 'aqi'"),
]


@pytest.mark.parametrize(("params", "message"), ERRORS, ids=[str(e[0]) for e in ERRORS])
def test_bad_parameters_get_a_400_that_says_why(
    client: Client, params: dict[str, Any], message: str
) -> None:
    assert message in client.error("/api/datasets/readings/records", params)


def test_a_cursor_of_another_sort_order_is_refused(client: Client) -> None:
    cursor = client.records("readings", {"sort": "-ts", "limit": 2})["next_cursor"]
    assert "another sort order" in client.error(
        "/api/datasets/readings/records", {"sort": "ts", "cursor": cursor}
    )


def test_unknown_paths_and_methods_are_json_errors(client: Client) -> None:
    assert client.get("/api/nothing-here").status == 404
    assert client.get("/api/nothing-here").json()["error"] == "not_found"
    reply = client.get("/api/datasets", method="POST")
    assert reply.status == 405
    assert reply.json()["status"] == 405


# --- downloads ------------------------------------------------------------------------------


def test_csv_download_is_every_row_with_a_header(client: Client) -> None:
    reply = client.get("/api/datasets/readings/records", {"format": "csv"})
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert reply.headers["Content-Disposition"] == 'attachment; filename="readings.csv"'
    table = list(csv.reader(io.StringIO(reply.body.decode())))
    assert table[0] == list(READINGS.column_names)
    expected = [
        ["" if v is None else repr(v) if isinstance(v, float) else str(v) for v in row]
        for row in expected_rows(READINGS, reading_records())
    ]
    assert table[1:] == expected


def test_jsonl_download_with_filters_and_limit(client: Client) -> None:
    reply = client.get(
        "/api/datasets/aqi_hourly/records",
        {"format": "jsonl", "station_id": "guanyuan", "sort": "-hour_start", "limit": 5},
    )
    assert reply.headers["Content-Type"] == "application/x-ndjson; charset=utf-8"
    lines = reply.body.decode().splitlines()
    expected = [r for r in rows_where(AQI, aqi_records(), lambda r: r["station_id"] == "guanyuan")]
    assert [json.loads(line) for line in lines] == expected[::-1][:5]


def test_geojson_download_places_rows_by_coordinates_or_station(
    client: Client, served: Served
) -> None:
    reply = client.get("/api/datasets/readings/records", {"format": "geojson"})
    assert reply.headers["Content-Type"] == "application/geo+json; charset=utf-8"
    collection = reply.body and json.loads(reply.body)
    assert collection["type"] == "FeatureCollection"
    features = collection["features"]
    assert [f["properties"] for f in features] == [
        as_record(READINGS, row) for row in expected_rows(READINGS, reading_records())
    ]
    # readings of dongsi carry their coordinates; tiantan's have none, but tiantan is a
    # station of the city, so its place comes from the city file
    tiantan = served.site.stations["tiantan"]
    for feature in features:
        props = feature["properties"]
        if props["lat"] is not None:
            assert feature["geometry"] == {
                "type": "Point",
                "coordinates": [props["lon"], props["lat"]],
            }
        else:
            assert feature["geometry"]["coordinates"] == [tiantan.lon, tiantan.lat]
    hourly = json.loads(client.get("/api/datasets/aqi_hourly/records", {"format": "geojson"}).body)[
        "features"
    ]
    nowhere = [f for f in hourly if f["properties"]["station_id"] == "nowhere"]
    assert nowhere and all(f["geometry"] is None for f in nowhere)
    dongsi = served.site.stations["dongsi"]
    assert next(f for f in hourly if f["properties"]["station_id"] == "dongsi")["geometry"] == {
        "type": "Point",
        "coordinates": [dongsi.lon, dongsi.lat],
    }


def test_an_empty_download_is_still_a_valid_document(client: Client) -> None:
    empty = {"station_id": "no-such-station"}
    geo = client.get("/api/datasets/readings/records", {**empty, "format": "geojson"})
    assert json.loads(geo.body) == {"type": "FeatureCollection", "features": []}
    table = client.get("/api/datasets/readings/records", {**empty, "format": "csv"}).body
    assert table.decode().splitlines() == [",".join(READINGS.column_names)]
    assert client.get("/api/datasets/readings/records", {**empty, "format": "jsonl"}).body == b""


def test_a_download_streams_before_the_store_has_read_everything(served: Served) -> None:
    """The server sends the first rows while the export's later chunks are not read yet."""
    store = served.store
    original = store.stream
    first_bytes_seen = threading.Event()
    chunks_read: list[int] = []

    def gated(query: Any, chunk_rows: int = 2000) -> Iterator[Any]:
        for number, chunk in enumerate(original(query, chunk_rows)):
            chunks_read.append(number)
            if number == 1:  # hold the second chunk back until the client has data
                assert first_bytes_seen.wait(20), "the client got nothing before chunk 2"
            yield chunk

    store.stream = gated  # type: ignore[method-assign]
    try:
        url = served.client.url + "/api/datasets/readings/records?format=jsonl"
        with urllib.request.urlopen(url, timeout=30) as response:
            try:
                first = response.read1(1 << 20)  # what has arrived so far
                assert first.count(b"\n") >= 1  # complete rows...
                deadline = time.monotonic() + 20
                while chunks_read != [0, 1] and time.monotonic() < deadline:
                    time.sleep(0.01)
                assert chunks_read == [0, 1]  # ...while chunk 2 is not read from the store
            finally:
                first_bytes_seen.set()
            rest = response.read()
    finally:
        store.stream = original  # type: ignore[method-assign]
    lines = (first + rest).decode().splitlines()
    assert len(lines) == len(reading_records())
    assert len(chunks_read) == -(-len(reading_records()) // 50)


# --- air quality now ------------------------------------------------------------------------


def test_air_quality_now_is_each_stations_latest_hour_with_its_category(
    client: Client, served: Served
) -> None:
    body = client.get("/api/air-quality/now").json()
    assert body["city"] == "Beijing"
    assert body["timezone"] == "Asia/Shanghai"
    assert body["poll_seconds"] == 30
    assert [c["name"] for c in body["categories"]] == [name for _, name in CATEGORIES]
    assert body["categories"][0] == {
        "name": "Good",
        "low": 0,
        "high": 50,
        "color": "#00e400",
        "text_color": "#000000",
        "guidance": "Air quality is satisfactory, and air pollution poses little or no risk.",
    }
    assert body["categories"][-1]["high"] is None
    latest = {}
    for record in aqi_records():
        row = as_record(AQI, AQI.to_row(record))
        if row["hour_start"] > latest.get(row["station_id"], {"hour_start": ""})["hour_start"]:
            latest[row["station_id"]] = row
    stations = {item["station_id"]: item for item in body["stations"]}
    assert set(stations) == set(STATIONS)
    colours = {c["name"]: (c["color"], c["text_color"], c["guidance"]) for c in body["categories"]}
    for station, row in latest.items():
        item = stations[station]
        assert {k: item[k] for k in AQI.column_names} == row  # every column passes through
        if row["category"] is not None:
            assert (item["color"], item["text_color"], item["guidance"]) == colours[row["category"]]
        else:
            assert item["color"] == "#d9d9d9"
            assert "insufficient data" in item["guidance"]
        place = served.site.stations.get(station)
        assert item["name"] == (place.name if place else station)
        assert (item["lat"], item["lon"]) == ((place.lat, place.lon) if place else (None, None))
    assert [item["name"] for item in body["stations"]] == [
        "Dongsi",
        "Guanyuan",
        "nowhere",
        "Tiantan",
    ]


def test_very_unhealthy_and_hazardous_read_white_on_their_colour(client: Client) -> None:
    categories = {c["name"]: c for c in client.get("/api/air-quality/now").json()["categories"]}
    assert categories["Very Unhealthy"]["color"] == "#8f3f97"
    assert categories["Hazardous"]["color"] == "#7e0023"
    assert categories["Hazardous"]["text_color"] == "#ffffff"
    assert categories["Unhealthy"]["text_color"] == "#000000"


# --- documents, headers, failures -----------------------------------------------------------


def test_openapi_description_is_valid_and_lists_every_filter(client: Client) -> None:
    from openapi_spec_validator import validate

    document = client.get("/api/openapi.json").json()
    validate(document)
    for name, ds in DATASETS.items():
        operation = document["paths"][f"/api/datasets/{name}/records"]["get"]
        params = {p["name"] for p in operation["parameters"]}
        for column in ds.columns:
            if column.kind == "json":
                assert column.name not in params
                continue
            assert {column.name, f"{column.name}__gte", f"{column.name}__lt"} <= params
            assert (f"{column.name}__null" in params) == column.nullable
        assert {"since", "until", "bbox", "sort", "limit", "offset", "cursor", "format"} <= params
    assert {"/api/datasets", "/api/datasets/{name}", "/api/air-quality/now", "/data.json"} <= set(
        document["paths"]
    )


def test_api_answers_may_be_read_by_any_site(client: Client) -> None:
    assert client.get("/api/datasets").headers["Access-Control-Allow-Origin"] == "*"
    csv_reply = client.get("/api/datasets/readings/records", {"format": "csv", "limit": 1})
    assert csv_reply.headers["Access-Control-Allow-Origin"] == "*"


def test_the_page_and_its_map_library_are_served_locally(client: Client) -> None:
    page = client.get("/")
    assert page.status == 200
    html = page.body.decode()
    assert '<html lang="en">' in html
    assert 'src="/static/vendor/leaflet/leaflet.js"' in html
    assert "http" not in html.split("<footer>")[0].replace('href="/', "")  # no CDN
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    for asset in ("page.js", "page.css", "vendor/leaflet/leaflet.js", "vendor/leaflet/LICENSE"):
        assert client.get(f"/static/{asset}").status == 200, asset


def test_a_store_that_cannot_answer_is_a_503(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sinks.exceptions import StoreError

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise StoreError("read from the store failed: connection refused")

    monkeypatch.setattr(served.store, "records", broken)
    monkeypatch.setattr(served.store, "stream", broken)
    for params in ({}, {"format": "csv"}):
        message = served.client.error("/api/datasets/readings/records", params, status=503)
        assert "connection refused" in message


def test_both_backends_answer_identically(served: Served) -> None:
    """Each backend's answers equal the expectation computed from the records; recorded here
    per backend so a difference names the backend."""
    body = served.client.records("readings", {"sort": "-value_epa,sensor_id", "limit": 50})
    rows = [
        dict(zip(READINGS.column_names, r, strict=True))
        for r in expected_rows(READINGS, reading_records())
    ]
    rows.sort(key=lambda r: (r["sensor_id"] is not None, r["sensor_id"] or ""))
    rows.sort(key=lambda r: r["value_epa"], reverse=True)
    assert body["records"] == [as_record(READINGS, tuple(r.values())) for r in rows[:50]], (
        served.backend
    )


def test_hour_filters_accept_times_in_any_zone(client: Client) -> None:
    one = client.records("aqi_hourly", {"hour_start": "2026-01-01T10:00:00+08:00"})["records"]
    other = client.records("aqi_hourly", {"hour_start": "2026-01-01T02:00:00Z"})["records"]
    assert one == other and len(one) == len(STATIONS)
    assert all(r["hour_start"] == "2026-01-01T02:00:00Z" for r in one)


def test_a_tile_server_in_the_city_file_is_the_only_other_host_the_page_may_load_from() -> None:
    from sinks.api._app import Api

    with open_store("sqlite:///:memory:") as store:
        plain = Api(store, Site())
        tiles = Api(store, Site(map_tiles="https://{s}.tile.example.org/{z}/{x}/{y}.png"))
        try:
            assert "img-src 'self' data:;" in plain._csp
            assert "img-src 'self' data: https://*.tile.example.org;" in tiles._csp
        finally:
            plain.close()
            tiles.close()
