"""Reading raw incident input: the common incident row or a source heartbeat, JSON or Avro.

Parsing checks structure only (fields, types, times); which source, category or district
a row names is the stream's and the city configuration's call.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from schemas.codec import decode_as, encode, is_avro
from schemas.exceptions import InvalidInput, Reason, SchemaError
from schemas.raw import parse_timestamp_ms

__all__ = [
    "IncidentHeartbeat",
    "RawIncident",
    "heartbeat_to_json",
    "incident_to_avro",
    "parse_raw_incident",
]

_MAX_ID = 128
_MAX_TEXT = 1000
_MAX_EXTRA = 200


@dataclass(frozen=True, slots=True)
class RawIncident:
    """One structurally valid incident row (times in UTC epoch milliseconds)."""

    incident_id: str
    source: str
    offence_code: str | None
    category: str | None
    subcategory: str | None
    description: str | None
    occurred_ms: int
    reported_ms: int | None
    address: str | None
    lat: float | None
    lon: float | None
    district: str | None
    status: str | None
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def known_ms(self) -> int:
        """When the incident became known: its report time, else its occurrence."""
        if self.reported_ms is None:
            return self.occurred_ms
        return max(self.reported_ms, self.occurred_ms)


@dataclass(frozen=True, slots=True)
class IncidentHeartbeat:
    """A source has sent everything it knew up to `ts_ms`."""

    source: str
    ts_ms: int


def _text(record: Mapping[str, Any], name: str, *, limit: int = _MAX_TEXT) -> str | None:
    value = record.get(name)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # codes sent as numbers, e.g. NFIRS 111
    if not isinstance(value, str) or len(value) > limit:
        msg = f"{name} must be a string of at most {limit} characters"
        raise InvalidInput(Reason.INVALID_FIELD, msg)
    value = value.strip()
    if not value:
        return None
    if not value.isprintable():
        raise InvalidInput(Reason.INVALID_FIELD, f"{name} has control characters")
    return value


def _required(record: Mapping[str, Any], name: str) -> str:
    if record.get(name) is None:
        raise InvalidInput(Reason.MISSING_FIELD, f"{name} is missing")
    value = _text(record, name, limit=_MAX_ID)
    if value is None:
        raise InvalidInput(Reason.MISSING_FIELD, f"{name} is empty")
    return value


def _time(record: Mapping[str, Any], name: str, *, required: bool) -> int | None:
    value = record.get(name)
    if value is None or value == "":
        if required:
            raise InvalidInput(Reason.MISSING_FIELD, f"{name} is missing")
        return None
    try:
        return parse_timestamp_ms(value)
    except InvalidInput as error:
        raise InvalidInput(error.reason, f"{name}: {error.detail}") from None


def _coordinate(record: Mapping[str, Any], name: str, limit: int) -> float | None:
    value = record.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise InvalidInput(Reason.INVALID_FIELD, f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except OverflowError:  # an integer beyond any float (JSON allows 400 digits)
        raise InvalidInput(Reason.INVALID_FIELD, f"{name} is out of range") from None
    if not -limit <= number <= limit:  # NaN fails too
        raise InvalidInput(Reason.INVALID_FIELD, f"{name} {value} is out of range")
    return number


def _extra(record: Mapping[str, Any]) -> dict[str, str]:
    value = record.get("extra")
    if value is None:
        return {}
    if not isinstance(value, Mapping) or len(value) > _MAX_EXTRA:
        raise InvalidInput(Reason.INVALID_FIELD, "extra must be an object of strings")
    extra: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise InvalidInput(Reason.INVALID_FIELD, "extra keys must be strings")
        if isinstance(item, int | float | Decimal) and not isinstance(item, bool):
            item = str(item)
        if item is None:
            continue
        if not isinstance(item, str) or len(item) > _MAX_TEXT:
            raise InvalidInput(Reason.INVALID_FIELD, f"extra[{key!r}] must be a string")
        extra[key] = item
    return extra


def _incident(record: Mapping[str, Any]) -> RawIncident:
    incident_id = _required(record, "incident_id")
    source = _required(record, "source")
    occurred = _time(record, "occurred_at", required=True)
    assert occurred is not None
    offence_code = _text(record, "offence_code", limit=_MAX_ID)
    category = _text(record, "category")
    if category is None and offence_code is None:
        raise InvalidInput(Reason.MISSING_FIELD, "an incident row needs a category or a code")
    lat = _coordinate(record, "lat", 90)
    lon = _coordinate(record, "lon", 180)
    if (lat is None) != (lon is None):
        raise InvalidInput(Reason.INVALID_FIELD, "lat and lon come together or not at all")
    return RawIncident(
        incident_id=incident_id,
        source=source,
        offence_code=offence_code,
        category=category,
        subcategory=_text(record, "subcategory"),
        description=_text(record, "description"),
        occurred_ms=occurred,
        reported_ms=_time(record, "reported_at", required=False),
        address=_text(record, "address"),
        lat=lat,
        lon=lon,
        district=_text(record, "district", limit=_MAX_ID),
        status=_text(record, "status"),
        extra=_extra(record),
    )


def _heartbeat(record: Mapping[str, Any]) -> IncidentHeartbeat:
    ts = _time(record, "heartbeat", required=True)
    assert ts is not None
    return IncidentHeartbeat(_required(record, "source"), ts)


def parse_raw_incident(data: bytes) -> RawIncident | IncidentHeartbeat:
    """Parse one raw message value; raises InvalidInput with a dead-letter reason."""
    if is_avro(data):
        try:
            name, record = decode_as(data)
        except SchemaError as error:
            raise InvalidInput(Reason.INVALID_AVRO, str(error)) from None
        if name == "raw_incident":
            return _incident(record)
        if name == "incident_heartbeat":
            return _heartbeat(record)
        raise InvalidInput(Reason.INVALID_AVRO, f"expected a raw_incident, got {name}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidInput(Reason.INVALID_ENCODING, f"not UTF-8 and not Avro: {error}") from None
    try:
        record = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise InvalidInput(Reason.INVALID_JSON, f"not valid JSON: {error}") from None
    if not isinstance(record, dict):
        raise InvalidInput(Reason.INVALID_JSON, "an incident must be a JSON object")
    if "heartbeat" in record:
        return _heartbeat(record)
    return _incident(record)


def incident_to_avro(incident: RawIncident) -> bytes:
    """The Avro single-object form of an incident row."""
    return encode(
        "raw_incident",
        {
            "incident_id": incident.incident_id,
            "source": incident.source,
            "offence_code": incident.offence_code,
            "category": incident.category,
            "subcategory": incident.subcategory,
            "description": incident.description,
            "occurred_at": incident.occurred_ms,
            "reported_at": incident.reported_ms,
            "address": incident.address,
            "lat": incident.lat,
            "lon": incident.lon,
            "district": incident.district,
            "status": incident.status,
            "extra": dict(incident.extra),
        },
    )


def heartbeat_to_json(source: str, ts_ms: int) -> bytes:
    """A heartbeat as JSON (epoch milliseconds)."""
    return json.dumps({"source": source, "heartbeat": ts_ms}).encode()
