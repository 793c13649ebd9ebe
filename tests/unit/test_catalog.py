"""The catalog: every dataset's metadata, and data.json valid against DCAT-US 1.1.

The schema files are test data in tests/data/dcat-us-1.1/ (sources in its README).
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from civicstream.settings import ConfigError, Settings, load_city
from civicstream.site import build_site
from sinks._datasets import DATASETS
from sinks.api import ApiServer, Site
from sinks.store import Store, open_store
from tests.unit.test_store import anomaly, aqi, daily, incident, incident_count, reading

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "data" / "dcat-us-1.1"
BASE = "https://project-open-data.cio.gov/v1.1/schema/"
ISO_DURATION = re.compile(
    r"^R/P(?:\d+Y)?(?:\d+M)?(?:\d+W)?(?:\d+D)?(?:T(?:\d+H)?(?:\d+M)?(?:\d+S)?)?$"
)


def validator(federal: bool) -> jsonschema.Draft4Validator:
    """A validator of whole catalogs; `federal` False uses the non-federal dataset schema."""
    schemas = {p.name: json.loads(p.read_text()) for p in SCHEMA_DIR.glob("*.json")}
    dataset = schemas["dataset.json" if federal else "dataset-non-federal.json"]
    resources = [
        (BASE + name, Resource.from_contents(contents, default_specification=DRAFT4))
        for name, contents in schemas.items()
    ]
    resources.append(
        (BASE + "dataset.json", Resource.from_contents(dataset, default_specification=DRAFT4))
    )
    registry: Registry[Any] = Registry().with_resources(resources)
    return jsonschema.Draft4Validator(
        schemas["catalog.json"],
        registry=registry,
        format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER,
    )


def city_file(tmp_path: Path, publisher: str = "") -> Path:
    bundled = (Path(__file__).resolve().parents[2] / "civicstream/cities/beijing.toml").read_text()
    stations = bundled[bundled.index("[[stations]]") :]
    path = tmp_path / "city.toml"
    path.write_text(
        '[city]\nname = "Testville"\ntimezone = "Asia/Shanghai"\n\n' + publisher + "\n" + stations
    )
    return path


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.status == 200
        return response.read()


@pytest.fixture
def filled(store_url: str) -> Iterator[Store]:
    with open_store(store_url) as store:
        store.write_batch(
            {
                "aqi_hourly": [aqi("dongsi", h) for h in range(5)],
                "readings": [reading(minute=m) for m in (0, 30, 59)],
                "aqi_daily": [daily("dongsi", d) for d in (1, 2)],
                "incidents": [incident("sfpd-1"), incident("sfpd-2")],
                "incident_counts": [incident_count(day=d) for d in (19, 20)],
                "anomalies": [anomaly(kind=k) for k in ("stuck", "stale")],
            }
        )
        yield store


def catalog_of(store: Store, site: Site) -> tuple[dict[str, Any], str]:
    with ApiServer(store, site) as server:
        return json.loads(get(server.url + "/data.json")), server.url


def test_data_json_is_valid_dcat_us_for_a_city(filled: Store) -> None:
    catalog, _ = catalog_of(filled, build_site(Settings()))
    errors = sorted(validator(federal=False).iter_errors(catalog), key=str)
    assert errors == []
    assert [entry["identifier"].rsplit("/", 1)[1] for entry in catalog["dataset"]] == list(DATASETS)


def test_a_federal_publisher_gets_a_catalog_valid_against_the_official_schema(
    filled: Store, tmp_path: Path
) -> None:
    publisher = (
        '[publisher]\nname = "US EPA"\ncontact_email = "airnow@example.gov"\n'
        'bureau_code = ["020:00"]\nprogram_code = ["020:000"]\n'
    )
    settings = Settings(config_path=city_file(tmp_path, publisher))
    catalog, _ = catalog_of(filled, build_site(settings))
    assert list(validator(federal=True).iter_errors(catalog)) == []
    assert catalog["dataset"][0]["bureauCode"] == ["020:00"]
    # without the codes the official schema says what is missing
    plain, _ = catalog_of(filled, build_site(Settings()))
    assert "'bureauCode' is a required property" in str(
        list(validator(federal=True).iter_errors(plain))
    )


def test_an_empty_store_has_a_valid_catalog_too(store_url: str) -> None:
    with open_store(store_url) as store:
        catalog, _ = catalog_of(store, build_site(Settings()))
    assert list(validator(federal=False).iter_errors(catalog)) == []
    entry = catalog["dataset"][0]
    assert "temporal" not in entry
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", entry["modified"])


def test_each_entry_says_what_where_when_and_who(filled: Store, tmp_path: Path) -> None:
    publisher = (
        '[publisher]\nname = "Testville Environment Office"\ncontact_name = "Air desk"\n'
        'contact_email = "air@testville.example.org"\n'
        'license = "https://opendatacommons.org/licenses/odbl/1-0/"\n'
        'homepage = "https://data.testville.example.org/"\n'
    )
    site = build_site(Settings(config_path=city_file(tmp_path, publisher)))
    catalog, url = catalog_of(filled, site)
    assert catalog["@id"] == url + "/data.json"
    assert catalog["conformsTo"] == "https://project-open-data.cio.gov/v1.1/schema"
    hourly, readings = catalog["dataset"][:2]  # in DATASETS order
    meta = DATASETS["aqi_hourly"].catalog
    assert meta is not None
    assert hourly["title"] == meta.title
    assert hourly["description"] == meta.description
    assert hourly["keyword"] == list(meta.keywords)
    assert hourly["accrualPeriodicity"] == "R/PT1H"
    assert hourly["publisher"] == {
        "@type": "org:Organization",
        "name": "Testville Environment Office",
    }
    assert hourly["contactPoint"] == {
        "@type": "vcard:Contact",
        "fn": "Air desk",
        "hasEmail": "mailto:air@testville.example.org",
    }
    assert hourly["license"] == "https://opendatacommons.org/licenses/odbl/1-0/"
    assert hourly["landingPage"] == "https://data.testville.example.org/"
    assert hourly["accessLevel"] == "public"
    assert hourly["spatial"] == "116.184,39.878,116.655,40.328"  # the stations' bounding box
    assert hourly["temporal"] == "2026-01-01T02:00:00Z/2026-01-01T06:00:00Z"
    assert readings["temporal"] == "2026-01-01T02:00:00.123Z/2026-01-01T02:59:00.123Z"
    assert hourly["modified"] == filled.statuses()["aqi_hourly"].modified
    assert hourly["describedBy"] == url + "/api/datasets/aqi_hourly"


def test_every_distribution_link_works(filled: Store) -> None:
    with ApiServer(filled, build_site(Settings())) as server:
        catalog = json.loads(get(server.url + "/data.json"))
        for entry in catalog["dataset"]:
            formats = set()
            for distribution in entry["distribution"]:
                link = distribution.get("downloadURL") or distribution["accessURL"]
                assert link.startswith(server.url + "/")
                body = get(link)
                assert body
                formats.add(distribution["format"])
                if "mediaType" in distribution and distribution["format"] == "CSV":
                    first_column = DATASETS[entry["identifier"].rsplit("/", 1)[-1]].columns[0]
                    assert body.decode().splitlines()[0].startswith(first_column.name + ",")
            ds = DATASETS[entry["identifier"].rsplit("/", 1)[-1]]
            placed = {"GEOJSON"} if ds.coordinates or ds.station_column else set()
            assert formats == {"CSV", "JSONL", "API"} | placed
            assert get(entry["describedBy"])


def test_public_url_makes_every_link_absolute_to_it(filled: Store) -> None:
    site = build_site(Settings(public_url="https://data.city.example.org/air/"))
    catalog, _ = catalog_of(filled, site)
    assert catalog["@id"] == "https://data.city.example.org/air/data.json"
    links = [
        d.get("downloadURL") or d["accessURL"]
        for e in catalog["dataset"]
        for d in e["distribution"]
    ]
    assert all(link.startswith("https://data.city.example.org/air/api/datasets/") for link in links)


# --- the metadata next to the datasets ------------------------------------------------------


@pytest.mark.parametrize("name", list(DATASETS))
def test_every_dataset_brings_complete_catalog_metadata(name: str) -> None:
    ds = DATASETS[name]
    assert ds.catalog is not None, f"{name}: add catalog=Catalog(...) next to its Dataset"
    assert ds.catalog.title and ds.catalog.description and ds.catalog.keywords
    assert ISO_DURATION.match(ds.catalog.update_frequency) or ds.catalog.update_frequency == (
        "irregular"
    )
    assert set(ds.catalog.fields) == set(ds.column_names), "document every column, no other"
    assert all(field.description for field in ds.catalog.fields.values())
    for column in (ds.time_column, ds.station_column, *(ds.coordinates or ())):
        assert column is None or column in ds.column_names


# --- publisher configuration ----------------------------------------------------------------


def test_the_bundled_city_names_its_publisher_and_licence() -> None:
    site = build_site(Settings())
    assert site.publisher.name == "civicstream demo: Beijing air quality"
    assert site.publisher.license == "https://creativecommons.org/licenses/by/4.0/"
    assert site.city == "Beijing" and len(site.stations) == 12


def test_a_city_without_a_publisher_table_gets_working_defaults(tmp_path: Path) -> None:
    site = build_site(Settings(config_path=city_file(tmp_path)))
    assert site.publisher.name == "Testville open data"
    assert site.publisher.contact_email == "opendata@example.org"
    assert site.publisher.license == "https://creativecommons.org/licenses/by/4.0/"


@pytest.mark.parametrize(
    ("table", "match"),
    [
        ('contact_email = "nobody"', "not an e-mail address"),
        ("name = 3", r"publisher\.name: must be a string"),
        ('bureau_code = "020:00"', r"publisher\.bureau_code: must be an array of strings"),
    ],
)
def test_a_bad_publisher_table_is_a_clear_configuration_error(
    tmp_path: Path, table: str, match: str
) -> None:
    path = city_file(tmp_path, "[publisher]\n" + table + "\n")
    with pytest.raises(ConfigError, match=match):
        load_city(path)  # every process refuses it at start-up, not only `serve`
    with pytest.raises(ConfigError, match=match):
        build_site(Settings(config_path=path))
