"""Police and fire incident exports → the common raw incident row (JSON), in the order
the incidents became known.

- ``sfpd``: DataSF "Police Department Incident Reports: 2018 to Present" (wg3w-h783), one
  row per incident code; times are San Francisco local time without zone.
- ``pittsburgh-fire``: WPRDC "Fire Incidents in the City of Pittsburgh", one row per call;
  ``alarm_time`` is ISO local time without zone; the district is the city council district
  ("Council District 9"; none for calls outside them, such as Wilkinsburg), the geography
  residents know, and coarse enough to stand for the location of a withheld EMS call.

Local times get the source city's zone (from the city configuration). In the hour that a
daylight-saving change repeats, the first occurrence is taken; a time the change skips is
read with the offset before it. Rows are sent sorted by report time (else occurrence), then
incident and code, so late reports are late in the stream too; a row whose times cannot be
read is still sent, first, and the worker dead-letters it with its reason.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from civicstream.sources.base import SourceError, SourceRecord

__all__ = ["INCIDENT_FORMATS", "read_incidents", "read_pittsburgh_fire", "read_sfpd"]

_SFPD_TIME = re.compile(r"^(\d{4})/(\d\d)/(\d\d) (\d\d):(\d\d):(\d\d) ([AP]M)$")
_SFPD_EXTRA = (
    "Row ID",
    "Incident Number",
    "CAD Number",
    "Report Type Code",
    "Report Type Description",
    "Filed Online",
    "CNN",
    "Analysis Neighborhood",
    "Supervisor District",
)
_PITTSBURGH_EXTRA = (
    "alarms",
    "primary_unit",
    "census_tract",
    "neighborhood",
    "fire_zone",
    "ward",
    "tract",
    "public_works_division",
    "pli_division",
    "police_zone",
)
_MISSING = {"", "NA", "N/A", "NULL"}


def _value(row: dict[str, str], column: str) -> str | None:
    text = (row.get(column) or "").strip()
    return None if text.upper() in _MISSING else text


def _number(row: dict[str, str], column: str) -> float | None:
    text = _value(row, column)
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def _sfpd_time(text: str) -> datetime:
    """'2018/12/01 12:25:00 AM' as a naive local time (strptime is ten times slower)."""
    match = _SFPD_TIME.match(text)
    if match is None:
        msg = f"{text!r} is not an SFPD time"
        raise ValueError(msg)
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    if not 1 <= hour <= 12:
        msg = f"{text!r} has no 12-hour clock hour"
        raise ValueError(msg)
    hour = hour % 12 + (12 if match.group(7) == "PM" else 0)
    return datetime(year, month, day, hour, minute, second)  # noqa: DTZ001 - zone added next


def _local(text: str | None, zone: ZoneInfo, parse: Callable[[str], datetime]) -> datetime | None:
    if text is None:
        return None
    try:
        return parse(text).replace(tzinfo=zone)
    except ValueError:
        return None


def _council_district(row: dict[str, str]) -> str | None:
    number = _value(row, "council_district")
    return f"Council District {number}" if number is not None else None


def _record(body: dict[str, Any], known: datetime | None) -> SourceRecord:
    ts_ms = int(known.timestamp() * 1000) if known is not None else 0
    key = str(body["incident_id"]).encode()
    return SourceRecord(ts_ms, key, json.dumps(body, separators=(",", ":")).encode())


def _check_columns(path: Path, fields: list[str] | None, needed: set[str], what: str) -> None:
    missing = needed - set(fields or [])
    if missing:
        msg = f"{path}: not {what} (missing columns {sorted(missing)})"
        raise SourceError(msg)


def _sorted(records: list[tuple[tuple[Any, ...], SourceRecord]]) -> list[SourceRecord]:
    return [record for _, record in sorted(records, key=lambda pair: pair[0])]


def read_sfpd(path: Path, timezone: str = "America/Los_Angeles") -> list[SourceRecord]:
    """Every row of an SFPD incident export, in report-time order."""
    zone = ZoneInfo(timezone)

    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        _check_columns(
            path,
            list(reader.fieldnames or []),
            {"Incident ID", "Incident Datetime", "Report Datetime", "Incident Category"},
            "an SFPD incident export",
        )
        records = []
        for row in reader:
            occurred = _local(_value(row, "Incident Datetime"), zone, _sfpd_time)
            reported = _local(_value(row, "Report Datetime"), zone, _sfpd_time)
            body = {
                "incident_id": _value(row, "Incident ID"),
                "source": "sfpd",
                "offence_code": _value(row, "Incident Code"),
                "category": _value(row, "Incident Category"),
                "subcategory": _value(row, "Incident Subcategory"),
                "description": _value(row, "Incident Description"),
                "occurred_at": occurred.isoformat() if occurred else None,
                "reported_at": reported.isoformat() if reported else None,
                "address": _value(row, "Intersection"),
                "lat": _number(row, "Latitude"),
                "lon": _number(row, "Longitude"),
                "district": _value(row, "Police District"),
                "status": _value(row, "Resolution"),
                "extra": {c: v for c in _SFPD_EXTRA if (v := _value(row, c)) is not None},
            }
            known = reported or occurred
            ids = (body["incident_id"] or "", body["offence_code"] or "")
            order = (known is not None, known, *ids)
            records.append((order, _record(body, known)))
    return _sorted(records)


def read_pittsburgh_fire(path: Path, timezone: str = "America/New_York") -> list[SourceRecord]:
    """Every row of the Pittsburgh fire incident export, in alarm-time order."""
    zone = ZoneInfo(timezone)
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        _check_columns(
            path,
            list(reader.fieldnames or []),
            {"call_no", "incident_type", "type_description", "alarm_time", "fire_zone"},
            "a Pittsburgh fire incident export",
        )
        records = []
        for row in reader:
            alarm = _local(_value(row, "alarm_time"), zone, datetime.fromisoformat)
            body = {
                "incident_id": _value(row, "call_no"),
                "source": "pittsburgh-fire",
                "offence_code": _value(row, "incident_type"),
                "category": _value(row, "type_description"),
                "occurred_at": alarm.isoformat() if alarm else None,
                "address": _value(row, "address"),
                "lat": _number(row, "latitude"),
                "lon": _number(row, "longitude"),
                "district": _council_district(row),
                "extra": {c: v for c in _PITTSBURGH_EXTRA if (v := _value(row, c)) is not None},
            }
            order = (alarm is not None, alarm, body["incident_id"] or "")
            records.append((order, _record(body, alarm)))
    return _sorted(records)


INCIDENT_FORMATS: dict[str, Callable[[Path, str], list[SourceRecord]]] = {
    "sfpd": read_sfpd,
    "pittsburgh-fire": read_pittsburgh_fire,
}
"""`replay-file --format` name → reader; the name is also the source in the rows."""


def read_incidents(
    paths: list[Path],
    source: str,
    timezone: str,
    since_ms: int | None = None,
    until_ms: int | None = None,
) -> Iterator[SourceRecord]:
    """The rows of every file of one format, each file in the order its rows became known,
    within [since, until) of that order (rows without a time are always sent)."""
    reader = INCIDENT_FORMATS[source]
    for path in paths:
        if not path.is_file():
            msg = f"{path}: no such file"
            raise SourceError(msg)
        for record in reader(path, timezone):
            if record.ts_ms and since_ms is not None and record.ts_ms < since_ms:
                continue
            if record.ts_ms and until_ms is not None and record.ts_ms >= until_ms:
                continue
            yield record
