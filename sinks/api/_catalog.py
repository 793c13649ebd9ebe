"""The catalog: every dataset's metadata as API JSON and as DCAT-US 1.1 ``data.json``.

The metadata comes from three places: the dataset's `Catalog` (title, description,
keywords, update frequency, field documentation: written next to its `Dataset`), the city
(`Site`: publisher, contact, licence, the stations' bounding box) and the store
(`DatasetStatus`: last modified, temporal coverage; row counts).

DCAT-US 1.1: https://resources.data.gov/resources/dcat-us/ (schema:
project-open-data/project-open-data.github.io, v1.1/schema/). bureauCode and programCode
are required only from US federal publishers and are written when the city configuration
gives them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sinks._datasets import Catalog, Dataset, Field
from sinks.api._formats import FORMATS, RowEncoder
from sinks.api._site import Site
from sinks.store import DatasetStatus

__all__ = ["FIELD_TYPES", "catalog_of", "data_json", "dataset_json"]

DCAT_US = "https://project-open-data.cio.gov/v1.1/schema"

FIELD_TYPES: Mapping[str, tuple[str, str]] = {
    # kind -> (type name in the data dictionary, how the value is written)
    "text": ("string", "text"),
    "int": ("integer", "64-bit integer"),
    "real": ("number", "IEEE 754 double"),
    "hour": ("datetime", "ISO 8601 UTC, whole seconds: 2026-01-01T08:00:00Z"),
    "millis": ("datetime", "ISO 8601 UTC, milliseconds: 2026-01-01T08:03:04.567Z"),
    "json": ("json", "JSON text (an object or an array)"),
}


def catalog_of(ds: Dataset) -> Catalog:
    """The dataset's catalog entry, or a plain one made from its name (a new dataset whose
    metadata is not written yet still gets listed; tests require the real thing)."""
    if ds.catalog is not None:
        return ds.catalog
    title = ds.name.replace("_", " ").capitalize()
    return Catalog(
        title=title,
        description=f"The {title} dataset.",
        keywords=(ds.name,),
        update_frequency="irregular",
        fields={},
    )


def _fields(ds: Dataset, catalog: Catalog) -> list[dict[str, Any]]:
    result = []
    for column in ds.columns:
        doc = catalog.fields.get(column.name, Field(""))
        kind_name, written = FIELD_TYPES.get(column.kind, (column.kind, column.kind))
        result.append(
            {
                "name": column.name,
                "type": kind_name,
                "format": written,
                "unit": doc.unit,
                "nullable": column.nullable,
                "key": column.name in ds.key,
                "filterable": column.kind != "json",
                "description": doc.description,
            }
        )
    return result


def dataset_json(
    ds: Dataset, status: DatasetStatus, base: str, rows: int | None = None
) -> dict[str, Any]:
    """The API's description of a dataset (``/api/datasets/{name}``): its data dictionary,
    freshness, links."""
    catalog = catalog_of(ds)
    records = f"{base}/api/datasets/{ds.name}/records"
    encoder = RowEncoder(ds)
    downloads = {
        name: f"{records}?format={name}"
        for name in FORMATS
        if name != "geojson" or encoder.has_geometry
    }
    result: dict[str, Any] = {
        "name": ds.name,
        "title": catalog.title,
        "description": catalog.description,
        "keywords": list(catalog.keywords),
        "update_frequency": catalog.update_frequency,
        "key": list(ds.key),
        "time_field": ds.time_column,
        "coordinates": list(ds.coordinates) if ds.coordinates else None,
        "station_field": ds.station_column,
        "bbox_filter": ds.coordinates is not None or ds.station_column is not None,
        "modified": status.modified,
        "temporal": {"start": status.first_time, "end": status.last_time}
        if status.first_time
        else None,
        "fields": _fields(ds, catalog),
        "links": {"self": f"{base}/api/datasets/{ds.name}", "records": records, **downloads},
    }
    if rows is not None:
        result["rows"] = rows
    return result


def _distributions(ds: Dataset, base: str) -> list[dict[str, Any]]:
    records = f"{base}/api/datasets/{ds.name}/records"
    encoder = RowEncoder(ds)
    result: list[dict[str, Any]] = [
        {
            "@type": "dcat:Distribution",
            "title": f"{ds.name}.{fmt.suffix}",
            "description": f"The whole dataset as {fmt.title}; filters as in the API apply.",
            "downloadURL": f"{records}?format={fmt.name}",
            "mediaType": fmt.media_type,
            "format": fmt.suffix.upper(),
        }
        for fmt in FORMATS.values()
        if fmt.name != "geojson" or encoder.has_geometry
    ]
    result.append(
        {
            "@type": "dcat:Distribution",
            "title": f"{ds.name} API",
            "description": (
                "Filter, sort and page through the records (JSON); the OpenAPI description "
                "lists every parameter."
            ),
            "accessURL": records,
            "format": "API",
            "conformsTo": f"{base}/api/openapi.json",
            "describedBy": f"{base}/api/datasets/{ds.name}",
            "describedByType": "application/json",
        }
    )
    return result


def _dcat_dataset(
    ds: Dataset, status: DatasetStatus, site: Site, base: str, migrated_at: str
) -> dict[str, Any]:
    catalog = catalog_of(ds)
    publisher = site.publisher
    entry: dict[str, Any] = {
        "@type": "dcat:Dataset",
        "identifier": f"{base}/api/datasets/{ds.name}",
        "title": catalog.title,
        "description": catalog.description,
        "keyword": list(catalog.keywords),
        # DCAT: when the dataset last changed; before its first batch, when its table
        # was set up.
        "modified": status.modified or migrated_at,
        "publisher": {"@type": "org:Organization", "name": publisher.name},
        "contactPoint": {
            "@type": "vcard:Contact",
            "fn": publisher.contact_name,
            "hasEmail": f"mailto:{publisher.contact_email}",
        },
        "accessLevel": "public",
        "license": publisher.license,
        "spatial": site.bbox() or site.city,
        "accrualPeriodicity": catalog.update_frequency,
        "describedBy": f"{base}/api/datasets/{ds.name}",
        "describedByType": "application/json",
        "landingPage": publisher.homepage or f"{base}/",
        "language": ["en-US"],
        "distribution": _distributions(ds, base),
    }
    if status.first_time and status.last_time:
        entry["temporal"] = f"{status.first_time}/{status.last_time}"
    if catalog.theme:
        entry["theme"] = list(catalog.theme)
    if publisher.bureau_code:
        entry["bureauCode"] = list(publisher.bureau_code)
    if publisher.program_code:
        entry["programCode"] = list(publisher.program_code)
    return entry


def data_json(
    datasets: Mapping[str, Dataset],
    statuses: Mapping[str, DatasetStatus],
    site: Site,
    base: str,
    migrated_at: str,
) -> dict[str, Any]:
    """The DCAT-US 1.1 catalog of every dataset."""
    empty = DatasetStatus(None, None, None)
    return {
        "@context": f"{DCAT_US}/catalog.jsonld",
        "@id": f"{base}/data.json",
        "@type": "dcat:Catalog",
        "conformsTo": DCAT_US,
        "describedBy": f"{DCAT_US}/catalog.json",
        "dataset": [
            _dcat_dataset(ds, statuses.get(name, empty), site, base, migrated_at)
            for name, ds in datasets.items()
        ],
    }
