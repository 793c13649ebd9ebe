"""The datasets of the open-data store, backend-neutral: columns, keys and serialisation.

A dataset row is derived from a decoded Avro record (as `schemas.decode` returns it) by one
deterministic function, so every backend stores the same text for the same record:

- timestamps become ISO 8601 UTC text: ``2026-01-01T02:00:00Z`` for hour starts, and
  ``2026-01-01T02:03:04.567Z`` (milliseconds) for event times; both sort as they read;
- calendar dates (local days) become ISO 8601 dates, ``2026-01-01``;
- maps and arrays become compact JSON with sorted keys, floats written as Python's ``repr``;
- booleans become 0 or 1;
- non-finite floats and naive datetimes are refused (`InvalidRecord`), never stored.

``None`` passes through unchanged: the store's NOT NULL constraints decide about it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Final, Literal

from sinks.exceptions import InvalidRecord, StoreError

__all__ = [
    "AQI_DAILY",
    "AQI_HOURLY",
    "DATASETS",
    "INCIDENTS",
    "INCIDENT_COUNTS",
    "READINGS",
    "Catalog",
    "Column",
    "Dataset",
    "Field",
    "get_dataset",
]

Kind = Literal["text", "int", "real", "hour", "millis", "date", "json", "bool"]


def _text(value: Any) -> str:
    if not isinstance(value, str):
        msg = f"expected a string, got {type(value).__name__}"
        raise InvalidRecord(msg)
    return value


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        msg = f"expected an integer, got {type(value).__name__}"
        raise InvalidRecord(msg)
    return value


def _bool(value: Any) -> int:
    if not isinstance(value, bool):
        msg = f"expected a boolean, got {type(value).__name__}"
        raise InvalidRecord(msg)
    return int(value)


def _real(value: Any) -> float:
    if type(value) is float and math.isfinite(value):  # as every Avro double decodes
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        msg = f"expected a number, got {type(value).__name__}"
        raise InvalidRecord(msg)
    result = float(value)
    if not math.isfinite(result):
        msg = f"expected a finite number, got {result!r}"
        raise InvalidRecord(msg)
    return result


def _utc(value: Any) -> datetime:
    if type(value) is datetime and value.tzinfo is UTC:  # as every Avro timestamp decodes
        return value.replace(tzinfo=None)
    if not isinstance(value, datetime):
        msg = f"expected a datetime, got {type(value).__name__}"
        raise InvalidRecord(msg)
    if value.tzinfo is None or value.utcoffset() is None:
        msg = f"naive datetime {value.isoformat()}: event time must carry a zone"
        raise InvalidRecord(msg)
    return value.astimezone(UTC).replace(tzinfo=None)


_TEXTS_KEPT = 4096
"""Timestamps whose text is remembered (per kind): an hour start is shared by every
reading of its hour, an event time by the sensors of a station, so most are repeats."""
_HOUR_TEXTS: dict[datetime, str] = {}
_MILLIS_TEXTS: dict[datetime, str] = {}


def _remember(texts: dict[datetime, str], value: datetime, text: str) -> str:
    if len(texts) >= _TEXTS_KEPT:
        texts.clear()
    texts[value] = text
    return text


def _hour(value: Any) -> str:
    remembered = type(value) is datetime and value.tzinfo is UTC  # as Avro decodes them
    if remembered:
        known = _HOUR_TEXTS.get(value)
        if known is not None:
            return known
    moment = _utc(value)
    if moment.microsecond:
        msg = f"hour start {moment.isoformat()}Z is not a whole second"
        raise InvalidRecord(msg)
    text = moment.isoformat(timespec="seconds") + "Z"
    return _remember(_HOUR_TEXTS, value, text) if remembered else text


def _millis(value: Any) -> str:
    if type(value) is datetime and value.tzinfo is UTC:
        known = _MILLIS_TEXTS.get(value)
        if known is None:
            text = value.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"
            known = _remember(_MILLIS_TEXTS, value, text)
        return known
    return _utc(value).isoformat(timespec="milliseconds") + "Z"


def _date(value: Any) -> str:
    if isinstance(value, datetime) or not isinstance(value, date):
        msg = f"expected a date, got {type(value).__name__}"
        raise InvalidRecord(msg)
    return value.isoformat()


# json.dumps with options builds a JSONEncoder per call: this one is built once.
_json_text: Final = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), allow_nan=False, ensure_ascii=False
).encode


def _json(value: Any) -> str:
    if not value and type(value) in _EMPTY_JSON:  # most readings carry no flags
        return _EMPTY_JSON[type(value)]
    if not isinstance(value, Mapping | list | tuple):
        msg = f"expected a map or an array, got {type(value).__name__}"
        raise InvalidRecord(msg)
    try:
        return _json_text(dict(value) if isinstance(value, Mapping) else list(value))
    except (TypeError, ValueError) as error:
        msg = f"not serialisable as JSON: {error}"
        raise InvalidRecord(msg) from error


_EMPTY_JSON: dict[type, str] = {list: "[]", tuple: "[]", dict: "{}"}

_CONVERTERS: dict[Kind, Callable[[Any], Any]] = {
    "text": _text,
    "int": _int,
    "real": _real,
    "hour": _hour,
    "millis": _millis,
    "date": _date,
    "json": _json,
    "bool": _bool,
}


@dataclass(frozen=True)
class Column:
    """One column: its name (also the Avro field it comes from) and how it is stored."""

    name: str
    kind: Kind
    nullable: bool = False

    def convert(self, value: Any) -> Any:
        """The stored form of `value`; None stays None (constraints are the store's job)."""
        if value is None:
            return None
        try:
            return _CONVERTERS[self.kind](value)
        except InvalidRecord as error:
            msg = f"field {self.name!r}: {error}"
            raise InvalidRecord(msg) from error


@dataclass(frozen=True)
class Field:
    """What a column means, for the catalog, the API's data dictionary and OpenAPI."""

    description: str
    unit: str | None = None


@dataclass(frozen=True)
class Catalog:
    """A dataset's catalog entry (DCAT-US 1.1 ``data.json``, ``/api/datasets``).

    Publisher, contact and licence are the city's (its configuration file), not the
    dataset's; spatial coverage, temporal coverage and last modification come from the
    store. `update_frequency` is DCAT's ``accrualPeriodicity``: an ISO 8601 repeating
    duration such as ``R/PT1H``, or ``irregular``. `fields` documents every column.
    """

    title: str
    description: str
    keywords: tuple[str, ...]
    update_frequency: str
    fields: Mapping[str, Field]
    theme: tuple[str, ...] = ()


@dataclass(frozen=True)
class Dataset:
    """A table of the open-data store, filled from one Avro contract on one topic.

    `topic` names the `schemas.Topics` property of the topic the sink reads it from.
    `revision`, when set, names an integer column: a row is replaced only by a record with
    a revision at least as high, so a late re-delivery of an old revision never wins.

    How the dataset is published (all optional, used by the query layer and the API):
    `time_column` is the event time that ``since``/``until`` filter on and the temporal
    coverage spans; `coordinates` names the (latitude, longitude) columns of a dataset whose
    rows carry a place; `station_column` names the station id of a dataset whose rows are
    placed at the city's stations (bounding boxes and GeoJSON use the station's
    coordinates); `catalog` is its catalog entry.
    """

    name: str
    contract: str
    topic: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    revision: str | None = None
    time_column: str | None = None
    coordinates: tuple[str, str] | None = None
    station_column: str | None = None
    catalog: Catalog | None = field(default=None, compare=False)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)

    def column(self, name: str) -> Column:
        """The column called `name`; `StoreError` when there is none."""
        for column in self.columns:
            if column.name == name:
                return column
        msg = f"dataset {self.name!r} has no column {name!r}"
        raise StoreError(msg)

    def to_row(self, record: Mapping[str, Any]) -> tuple[Any, ...]:
        """The row for `record`, in column order. Raises `InvalidRecord`."""
        return tuple(column.convert(record.get(column.name)) for column in self.columns)

    def rows(self, records: Iterable[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
        """Rows for `records`, one per natural key: the last record of a key wins, or, for
        a dataset with a revision, the last of those with the highest revision."""
        return self.latest([self.to_row(record) for record in records])

    def latest(self, rows: Iterable[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """`rows` (made by `to_row`), one per natural key, as `rows` picks them."""
        latest: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        at = self.column_names.index(self.revision) if self.revision else -1
        for row in rows:
            key = self.key_of(row)
            earlier = latest.pop(key, None)  # a replaced key moves to its latest position
            if earlier is not None and at >= 0 and earlier[at] > row[at]:
                row = earlier
            latest[key] = row
        return list(latest.values())

    def key_of(self, row: tuple[Any, ...]) -> tuple[Any, ...]:
        """The natural key of a row made by `to_row`."""
        names = self.column_names
        return tuple(row[names.index(name)] for name in self.key)


AQI_HOURLY = Dataset(
    name="aqi_hourly",
    contract="aqi_hourly",
    topic="aqi_hourly",
    columns=(
        Column("station_id", "text"),
        Column("hour_start", "hour"),
        Column("aqi", "int", nullable=True),
        Column("category", "text", nullable=True),
        Column("main_pollutant", "text", nullable=True),
        Column("sub_indices", "json"),
        Column("concentrations", "json"),
        Column("hourly_means", "json"),
        Column("reading_count", "int"),
        Column("reason", "text", nullable=True),
        Column("aqi_version", "text"),
        Column("health_message", "text", nullable=True),
        Column("excluded_count", "int", nullable=True),
    ),
    key=("station_id", "hour_start"),
    time_column="hour_start",
    station_column="station_id",
    catalog=Catalog(
        title="Hourly Air Quality Index (US EPA) by monitoring station",
        description=(
            "One row per monitoring station and clock hour: the real-time US EPA Air Quality "
            "Index (EPA-454/B-24-002, 2024 rules) with its category, the pollutant that sets "
            "it, every sub-index, the truncated concentrations behind them and the hour's "
            "mean concentrations. PM2.5 and PM10 use the NowCast, ozone and carbon monoxide "
            "the 8-hour mean, nitrogen dioxide and sulfur dioxide the 1-hour value. A row is "
            "published once, when its hour is final in event time."
        ),
        keywords=(
            "air quality",
            "AQI",
            "air quality index",
            "PM2.5",
            "PM10",
            "ozone",
            "nitrogen dioxide",
            "sulfur dioxide",
            "carbon monoxide",
            "NowCast",
            "EPA",
        ),
        update_frequency="R/PT1H",
        theme=("Environment", "Health"),
        fields={
            "station_id": Field("Identifier of the monitoring station (see the city's list)."),
            "hour_start": Field("Start of the clock hour, UTC (ISO 8601).", "UTC"),
            "aqi": Field(
                "Overall AQI: the highest sub-index; empty when no index can be computed "
                "(see reason). Values above 500 continue the top line (beyond the AQI).",
                "AQI",
            ),
            "category": Field(
                "EPA category of aqi: Good, Moderate, Unhealthy for Sensitive Groups, "
                "Unhealthy, Very Unhealthy or Hazardous."
            ),
            "main_pollutant": Field(
                "Key of the sub-index that sets the AQI, e.g. pm25_nowcast or o3_8h."
            ),
            "sub_indices": Field(
                "JSON object: the sub-index per key (pm25_nowcast pm10_nowcast o3_8h o3_1h "
                "co_8h so2_1h so2_24h no2_1h).",
                "AQI",
            ),
            "concentrations": Field(
                "JSON object: the truncated concentration behind each sub-index, in EPA "
                "units (PM µg/m³, O3 and CO ppm, SO2 and NO2 ppb)."
            ),
            "hourly_means": Field(
                "JSON object: the mean of this hour's samples per pollutant, EPA units."
            ),
            "reading_count": Field(
                "Samples behind this hour's means, all pollutants together (accepted "
                "samples without a fault flag)."
            ),
            "excluded_count": Field(
                "Accepted samples of this hour left out of the means because the anomaly "
                "detector flagged them as faults (stuck, spike, out_of_range, sentinel; see "
                "the anomalies dataset); empty on rows published before it was counted."
            ),
            "reason": Field("Why aqi is empty: insufficient_data or no_index."),
            "aqi_version": Field("The EPA rule set applied, EPA-454/B-24-002."),
            "health_message": Field(
                "EPA's cautionary statement for the category and the main pollutant (who "
                "should limit outdoor exertion); empty when there is no index."
            ),
        },
    ),
)

READINGS = Dataset(
    name="readings",
    contract="enriched_reading",
    topic="enriched_air_quality",
    columns=(
        Column("station_id", "text"),
        Column("pollutant", "text"),
        Column("ts", "millis"),
        Column("hour_start", "hour"),
        Column("sensor_id", "text", nullable=True),
        Column("value", "real"),
        Column("unit", "text"),
        Column("value_epa", "real"),
        Column("unit_epa", "text"),
        Column("mean_1h", "real", nullable=True),
        Column("mean_8h", "real", nullable=True),
        Column("mean_24h", "real", nullable=True),
        Column("lat", "real", nullable=True),
        Column("lon", "real", nullable=True),
        Column("flags", "json"),
        Column("anomaly_score", "real", nullable=True),
        Column("correction", "text", nullable=True),
    ),
    key=("station_id", "pollutant", "ts"),
    time_column="ts",
    coordinates=("lat", "lon"),
    station_column="station_id",
    catalog=Catalog(
        title="Air-quality sensor readings, validated, in EPA units, with rolling means",
        description=(
            "Every accepted air-quality sample of the city's monitoring stations: the value "
            "as the sensor sent it, the same value in EPA units, and the rolling means of its "
            "hour (1, 8 and 24 hours, with EPA's completeness rules), with the station's "
            "coordinates and quality flags. Invalid, duplicate and late samples are not "
            "published. A reading is published when its clock hour is final in event time."
        ),
        keywords=(
            "air quality",
            "air pollution",
            "sensor readings",
            "PM2.5",
            "PM10",
            "ozone",
            "nitrogen dioxide",
            "sulfur dioxide",
            "carbon monoxide",
            "rolling mean",
        ),
        update_frequency="R/PT1H",
        theme=("Environment",),
        fields={
            "station_id": Field("Identifier of the monitoring station."),
            "pollutant": Field("One of pm25 pm10 o3 no2 so2 co."),
            "ts": Field("Event time of the sample, UTC (ISO 8601, milliseconds).", "UTC"),
            "hour_start": Field("Start of the clock hour the sample belongs to, UTC.", "UTC"),
            "sensor_id": Field("Identifier of the sensor, when the station sends one."),
            "value": Field("The sample as sent, in unit."),
            "unit": Field("Unit of value: ug/m3, mg/m3, ppm or ppb."),
            "value_epa": Field("The sample in EPA units (see unit_epa)."),
            "unit_epa": Field(
                "EPA unit of the pollutant: ug/m3 for PM, ppm for O3 and CO, ppb for SO2 and NO2."
            ),
            "mean_1h": Field("Mean of the samples of this clock hour, in unit_epa."),
            "mean_8h": Field(
                "Mean of the hourly means of the 8 hours ending with this one, in unit_epa; "
                "empty with fewer than 6 valid hours."
            ),
            "mean_24h": Field(
                "Mean of the hourly means of the 24 hours ending with this one, in unit_epa; "
                "empty with fewer than 18 valid hours."
            ),
            "lat": Field("Latitude of the station, WGS 84.", "degrees"),
            "lon": Field("Longitude of the station, WGS 84.", "degrees"),
            "flags": Field("JSON array of quality flags; empty when none apply."),
            "anomaly_score": Field(
                "Anomaly score between 0 and 1 where a detector runs; empty otherwise."
            ),
            "correction": Field(
                "The correction model applied to value_epa, e.g. EPA's US-wide PurpleAir "
                "correction (Barkjohn et al. 2021); empty when none was applied."
            ),
        },
    ),
)

AQI_DAILY = Dataset(
    name="aqi_daily",
    contract="aqi_daily",
    topic="aqi_daily",
    columns=(
        Column("station_id", "text"),
        Column("day", "date"),
        Column("day_start", "hour"),
        Column("utc_offset_minutes", "int"),
        Column("revision", "int"),
        Column("aqi", "int", nullable=True),
        Column("category", "text", nullable=True),
        Column("main_pollutant", "text", nullable=True),
        Column("sub_indices", "json"),
        Column("concentrations", "json"),
        Column("completeness", "json"),
        Column("reasons", "json"),
        Column("reason", "text", nullable=True),
        Column("health_message", "text", nullable=True),
        Column("aqi_version", "text"),
    ),
    key=("station_id", "day"),
    revision="revision",
    time_column="day_start",
    station_column="station_id",
    catalog=Catalog(
        title="Daily Air Quality Index (US EPA) by monitoring station",
        description=(
            "One row per monitoring station and local day (midnight to midnight in local "
            "standard time): the US EPA daily AQI (EPA-454/B-24-002) from the 24-hour PM "
            "means (at least 18 valid hours), the ozone and carbon monoxide daily maximum "
            "8-hour means and the nitrogen dioxide and sulfur dioxide daily maximum 1-hour "
            "values, with completeness counts and the reason when no index can be given. A "
            "day is published when it is final in event time; a late reading that changes it "
            "publishes a higher revision, and only the highest is kept."
        ),
        keywords=(
            "air quality",
            "AQI",
            "daily AQI",
            "air quality index",
            "PM2.5",
            "PM10",
            "ozone",
            "EPA",
        ),
        update_frequency="R/P1D",
        theme=("Environment", "Health"),
        fields={
            "station_id": Field("Identifier of the monitoring station."),
            "day": Field("The local day (ISO date), in the city's standard time."),
            "day_start": Field("Start of the day, UTC (local standard midnight).", "UTC"),
            "utc_offset_minutes": Field(
                "The city's standard UTC offset used for the day, in minutes.", "minutes"
            ),
            "revision": Field("0 when first published; higher after a late correction."),
            "aqi": Field(
                "Daily AQI: the highest sub-index; empty when no index can be given (see reason).",
                "AQI",
            ),
            "category": Field("EPA category of aqi."),
            "main_pollutant": Field("Key of the sub-index that sets the AQI, e.g. pm25_24h."),
            "sub_indices": Field(
                "JSON object: the sub-index per key (pm25_24h pm10_24h o3_8h o3_1h co_8h "
                "so2_1h so2_24h no2_1h).",
                "AQI",
            ),
            "concentrations": Field(
                "JSON object: the truncated daily value behind each sub-index, EPA units."
            ),
            "completeness": Field(
                "JSON object: valid hours (or 8-hour windows) behind each daily value."
            ),
            "reasons": Field(
                "JSON object: per pollutant with data but no sub-index, why "
                "(incomplete_day or no_index)."
            ),
            "reason": Field("Why aqi is empty, e.g. insufficient_data."),
            "health_message": Field(
                "EPA's cautionary statement for the category and the main pollutant."
            ),
            "aqi_version": Field("The EPA rule set applied, EPA-454/B-24-002."),
        },
    ),
)

INCIDENTS = Dataset(
    name="incidents",
    contract="incident_published",
    topic="incidents_published",
    columns=(
        Column("incident_id", "text"),
        Column("source", "text"),
        Column("revision", "int"),
        Column("category", "text"),
        Column("source_category", "text", nullable=True),
        Column("source_subcategory", "text", nullable=True),
        Column("description", "text", nullable=True),
        Column("offence_codes", "json"),
        Column("source_categories", "json"),
        Column("occurred_at", "millis"),
        Column("day", "text"),
        Column("reported_at", "millis", nullable=True),
        Column("district", "text"),
        Column("address", "text", nullable=True),
        Column("lat", "real", nullable=True),
        Column("lon", "real", nullable=True),
        Column("location_withheld", "bool"),
        Column("status", "text", nullable=True),
    ),
    key=("incident_id",),
    revision="revision",
    time_column="occurred_at",
    coordinates=("lat", "lon"),
    catalog=Catalog(
        title="Police and fire incidents, privacy-safe",
        description=(
            "One row per reported incident (police incident reports and fire calls), "
            "published once its publication delay has passed in event time: several offence "
            "rows of one incident merged (the most serious category wins, every offence code "
            "kept), the source's category mapped to a common taxonomy, the address generalised "
            "to the hundred block or an intersection, coordinates snapped to a fixed grid, and "
            "sensitive offences (sex offences, domestic violence, offences against children, "
            "human trafficking; EMS calls) published without any location. No narratives or "
            "personal data. A late report that changes an incident publishes a higher revision."
        ),
        keywords=("public safety", "crime", "police", "fire", "incidents", "open data"),
        update_frequency="R/PT1H",
        theme=("Public Safety",),
        fields={
            "incident_id": Field("The source's incident identifier, prefixed by the source."),
            "source": Field("The publishing source, e.g. sfpd or pittsburgh-fire."),
            "revision": Field("1 when first published; higher after a late change."),
            "category": Field(
                "Common category: violent, property, drugs, public_order, traffic, fire, ems, "
                "false_alarm or other."
            ),
            "source_category": Field("The source's own category of the most serious offence."),
            "source_subcategory": Field("The source's own subcategory, where it has one."),
            "description": Field("The source's short offence description (no narrative)."),
            "offence_codes": Field("JSON array: every offence code of the incident."),
            "source_categories": Field("JSON array: every source category of the incident."),
            "occurred_at": Field("When the incident happened, UTC (ISO 8601).", "UTC"),
            "day": Field("The city's local day of occurred_at (ISO date)."),
            "reported_at": Field("When the incident was reported, UTC, where known.", "UTC"),
            "district": Field("Police district or council district."),
            "address": Field(
                "Hundred block (e.g. 1200 BLOCK OF MAIN ST) or intersection; empty when withheld."
            ),
            "lat": Field("Latitude of the grid cell's centre; empty when withheld.", "degrees"),
            "lon": Field("Longitude of the grid cell's centre; empty when withheld.", "degrees"),
            "location_withheld": Field("1 when the location is withheld (sensitive offence)."),
            "status": Field("The source's resolution or status, where it has one."),
        },
    ),
)

INCIDENT_COUNTS = Dataset(
    name="incident_counts",
    contract="incident_count",
    topic="incidents_stats",
    columns=(
        Column("district", "text"),
        Column("category", "text"),
        Column("day", "text"),
        Column("count", "int", nullable=True),
        Column("suppressed", "bool"),
        Column("baseline", "real", nullable=True),
        Column("baseline_days", "int"),
        Column("spike", "bool"),
        Column("tail_probability", "real", nullable=True),
        Column("revision", "int"),
        Column("as_of", "millis"),
    ),
    key=("district", "category", "day"),
    revision="revision",
    time_column="day",
    catalog=Catalog(
        title="Daily incident counts by district and category",
        description=(
            "Distinct incidents per district, common category and local day, plus a row with "
            "category all per district and day, each with a 28-day baseline and a spike flag "
            "when the count is improbably high for it (Poisson tail probability below 0.001 "
            "against the baseline's upper 95% confidence limit). Cells below 3 are published "
            "suppressed (count empty). Late reports correct earlier days with a higher "
            "revision; only the highest is kept."
        ),
        keywords=("public safety", "crime", "fire", "incidents", "statistics", "counts"),
        update_frequency="R/P1D",
        theme=("Public Safety",),
        fields={
            "district": Field("Police district or council district."),
            "category": Field("Common category, or all for every category together."),
            "day": Field("The city's local day (ISO date)."),
            "count": Field("Distinct incidents; empty when suppressed (fewer than 3)."),
            "suppressed": Field("1 when the count is below 3 and withheld."),
            "baseline": Field("Mean daily count of the 28 days before, where known."),
            "baseline_days": Field("Days behind the baseline (up to 28)."),
            "spike": Field("1 when the count is improbably high for the baseline."),
            "tail_probability": Field("Poisson probability of a count at least this high."),
            "revision": Field("1 when first published; higher after a late correction."),
            "as_of": Field("Stream time at which this revision was computed, UTC.", "UTC"),
        },
    ),
)

ANOMALIES = Dataset(
    name="anomalies",
    contract="anomaly",
    topic="anomalies",
    columns=(
        Column("station_id", "text"),
        Column("pollutant", "text"),
        Column("ts", "millis"),
        Column("kind", "text"),
        Column("sensor_id", "text", nullable=True),
        Column("score", "real", nullable=True),
        Column("value", "real", nullable=True),
        Column("unit", "text"),
        Column("expected_low", "real", nullable=True),
        Column("expected_high", "real", nullable=True),
        Column("detail", "text"),
    ),
    key=("station_id", "pollutant", "ts", "kind"),
    time_column="ts",
    station_column="station_id",
    catalog=Catalog(
        title="Air-quality anomalies: faulty readings, unusual air and silent sensors",
        description=(
            "One row per flag the stream's anomaly detector raised on a reading of a "
            "monitoring station, and per sensor gone silent. Faults (stuck: one value "
            "repeated longer than the series honestly repeats it; spike: an isolated jump "
            "that came straight back; out_of_range; sentinel: a missing-value code) are "
            "left out of the AQI. anomaly: a valid reading the detector found unusual "
            "(score at or above 0.6). stale: no reading of that pollutant for longer than "
            "the stale limit (2 hours by default) while the station kept reporting. "
            "disagrees_with_neighbours: a station's hourly mean far from the median of the "
            "stations around it at the same hour (ts: the hour's start; the expected range "
            "comes from the neighbours, the detail names them)."
        ),
        keywords=(
            "air quality",
            "anomaly detection",
            "data quality",
            "sensor faults",
            "stale sensors",
        ),
        update_frequency="R/PT1H",
        theme=("Environment", "Health"),
        fields={
            "station_id": Field("Identifier of the monitoring station (see the city's list)."),
            "pollutant": Field("pm25, pm10, o3, no2, so2 or co."),
            "ts": Field(
                "Event time of the flagged reading, UTC; for stale, when the silence passed "
                "the limit; for disagrees_with_neighbours, the start of the hour.",
                "UTC",
            ),
            "kind": Field(
                "out_of_range, sentinel, stuck, spike, anomaly, stale or disagrees_with_neighbours."
            ),
            "sensor_id": Field("The sensor that sent the reading, where known."),
            "score": Field("Anomaly score of the reading, 0 to 1; empty for stale."),
            "value": Field(
                "The reading in EPA units; for stale, the last reading before the silence."
            ),
            "unit": Field("EPA unit of value and the expected range."),
            "expected_low": Field("Low end of the expected range; empty while learning."),
            "expected_high": Field("High end of the expected range; empty while learning."),
            "detail": Field("Why, in a few words."),
        },
    ),
)

DATASETS: dict[str, Dataset] = {
    ds.name: ds for ds in (AQI_HOURLY, READINGS, AQI_DAILY, INCIDENTS, INCIDENT_COUNTS, ANOMALIES)
}
"""Every dataset of the store, by name. A new dataset is its `Dataset` above (with its
`Catalog` and, where it applies, `time_column`, `coordinates`, `station_column`), one entry
here, ONE migration step in `sinks._migrations.MIGRATIONS` (both backends), and its
contract in schemas/. See the `sinks` package docstring for the checklist."""


def get_dataset(name: str) -> Dataset:
    """The dataset called `name`; `StoreError` lists the known ones."""
    try:
        return DATASETS[name]
    except KeyError:
        msg = f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}"
        raise StoreError(msg) from None
