"""Reading raw air-quality input: JSON from sensor gateways, or Avro single-object.

Parsing checks structure only (fields, types, timestamps); whether a pollutant, unit or
value makes sense is the domain's call (processors.validation).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from schemas.codec import decode_as, encode, is_avro
from schemas.exceptions import InvalidInput, Reason, SchemaError

__all__ = [
    "MAX_RAW_BYTES",
    "RawReading",
    "parse_raw_reading",
    "parse_timestamp_ms",
    "reading_to_avro",
]

MAX_RAW_BYTES = 64 * 1024
"""The largest raw message parsed (a reading is about 200 bytes). Larger ones are
dead-lettered as ``too_large`` with their original bytes, unparsed: the raw topics accept
at most `schemas.topics.MAX_MESSAGE_BYTES`, and the dead-letter topic has room for that."""
_MAX_ID_LENGTH = 128
_MAX_TS_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# Not frozen: a frozen dataclass sets each field through object.__setattr__ (2-3x slower
# to build, and one is built per reading). Treated as a value all the same: never mutated.
# Its __init__ is written out: the one dataclasses generates runs interpreted even in the
# compiled build (mypyc compiles only what the class body holds).
@dataclass(slots=True, init=False)
class RawReading:
    """One structurally valid raw sample; `value` keeps the exact decimal text sent.

    Low-cost PurpleAir sensors also send both laser channels' PM2.5 (CF=1, µg/m³) and the
    relative humidity (%), the inputs of EPA's correction; other sensors leave them None.
    """

    station_id: str
    sensor_id: str | None
    pollutant: str
    value: Decimal
    unit: str
    ts_ms: int
    lat: float | None
    lon: float | None
    channel_a: Decimal | None = None
    channel_b: Decimal | None = None
    relative_humidity: Decimal | None = None

    def __init__(
        self,
        station_id: str,
        sensor_id: str | None,
        pollutant: str,
        value: Decimal,
        unit: str,
        ts_ms: int,
        lat: float | None,
        lon: float | None,
        channel_a: Decimal | None = None,
        channel_b: Decimal | None = None,
        relative_humidity: Decimal | None = None,
    ) -> None:
        self.station_id = station_id
        self.sensor_id = sensor_id
        self.pollutant = pollutant
        self.value = value
        self.unit = unit
        self.ts_ms = ts_ms
        self.lat = lat
        self.lon = lon
        self.channel_a = channel_a
        self.channel_b = channel_b
        self.relative_humidity = relative_humidity


def _reject_constant(token: str) -> Any:
    raise InvalidInput(Reason.INVALID_VALUE, f"{token} is not a concentration")


# One decoder for every message (json.loads with options builds a new one per call).
_JSON = json.JSONDecoder(parse_float=Decimal, parse_constant=_reject_constant)


def parse_timestamp_ms(value: Any) -> int:
    """Epoch milliseconds from an ISO 8601 string with offset, or from epoch milliseconds."""
    if isinstance(value, bool):
        raise InvalidInput(Reason.INVALID_TIMESTAMP, "ts must be ISO 8601 or epoch milliseconds")
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidInput(Reason.INVALID_TIMESTAMP, "ts has no time zone")
        millis = (value - _EPOCH) // timedelta(milliseconds=1)  # exact, no float
    elif isinstance(value, int):
        millis = value
    elif isinstance(value, str):
        known = _ISO_MILLIS.get(value)
        if known is not None:
            return known
        millis = _iso_millis(value)
    else:
        raise InvalidInput(Reason.INVALID_TIMESTAMP, "ts must be ISO 8601 or epoch milliseconds")
    if not 0 <= millis <= _MAX_TS_MS:
        raise InvalidInput(Reason.INVALID_TIMESTAMP, f"ts {value!r} is outside 1970..9999")
    return millis


_ISO_MILLIS: Final[dict[str, int]] = {}
"""Recently parsed ISO texts → their epoch milliseconds: the readings of one hour (every
pollutant of every station) share a timestamp text."""
_ISO_MILLIS_MAX: Final = 4096


def _iso_millis(value: str) -> int:
    """Parse an ISO 8601 text with offset; remember it when it is in range."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(Reason.INVALID_TIMESTAMP, f"ts {value!r} is not ISO 8601") from None
    if parsed.tzinfo is None:
        raise InvalidInput(
            Reason.INVALID_TIMESTAMP, f"ts {value!r} has no UTC offset; event time needs a zone"
        )
    millis = (parsed - _EPOCH) // timedelta(milliseconds=1)
    if 0 <= millis <= _MAX_TS_MS:
        if len(_ISO_MILLIS) >= _ISO_MILLIS_MAX:
            _ISO_MILLIS.clear()
        _ISO_MILLIS[value] = millis
    return millis


def _text(record: dict[str, Any], field: str, *, required: bool) -> str | None:
    value = record.get(field)
    if value is None:
        if required:
            raise InvalidInput(Reason.MISSING_FIELD, f"{field} is missing")
        return None
    if (
        not isinstance(value, str)
        or not value.strip()
        or len(value) > _MAX_ID_LENGTH
        or not value.isprintable()
    ):
        raise InvalidInput(Reason.INVALID_FIELD, f"{field} must be a printable, non-empty string")
    return value


def _number(value: Any, field: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise InvalidInput(Reason.INVALID_VALUE, f"{field} must be a number, got {value!r}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(Reason.INVALID_VALUE, f"{field} is {value}")
        return Decimal(repr(value))
    if isinstance(value, Decimal) and not value.is_finite():
        raise InvalidInput(Reason.INVALID_VALUE, f"{field} is {value}")
    try:
        return Decimal(value)
    except InvalidOperation:  # pragma: no cover - ints and Decimals always convert
        raise InvalidInput(Reason.INVALID_VALUE, f"{field} is not a number") from None


def _optional_number(record: dict[str, Any], field: str) -> Decimal | None:
    value = record.get(field)
    return None if value is None else _number(value, field)


def _coordinate(record: dict[str, Any], field: str, limit: int) -> float | None:
    value = record.get(field)
    if value is None:
        return None
    number = _number(value, field)
    if abs(number) > limit:
        raise InvalidInput(Reason.INVALID_FIELD, f"{field} {number} is out of range")
    return float(number)


def _from_record(record: Any) -> RawReading:
    if not isinstance(record, dict):
        raise InvalidInput(Reason.INVALID_JSON, "a reading must be a JSON object")
    if "value" not in record or record["value"] is None:
        raise InvalidInput(Reason.MISSING_FIELD, "value is missing")
    if "ts" not in record or record["ts"] is None:
        raise InvalidInput(Reason.MISSING_FIELD, "ts is missing")
    station_id = _text(record, "station_id", required=True)
    pollutant = _text(record, "pollutant", required=True)
    unit = _text(record, "unit", required=True)
    assert station_id is not None and pollutant is not None and unit is not None
    return RawReading(
        station_id=station_id,
        sensor_id=_text(record, "sensor_id", required=False),
        pollutant=pollutant,
        value=_number(record["value"], "value"),
        unit=unit,
        ts_ms=parse_timestamp_ms(record["ts"]),
        lat=_coordinate(record, "lat", 90),
        lon=_coordinate(record, "lon", 180),
        channel_a=_optional_number(record, "channel_a"),
        channel_b=_optional_number(record, "channel_b"),
        relative_humidity=_optional_number(record, "relative_humidity"),
    )


def parse_raw_reading(data: bytes) -> RawReading:
    """Parse one raw message value; raises InvalidInput with a dead-letter reason."""
    if len(data) > MAX_RAW_BYTES:
        msg = f"{len(data)} bytes, above the {MAX_RAW_BYTES}-byte limit for a raw message"
        raise InvalidInput(Reason.TOO_LARGE, msg)
    if is_avro(data):
        try:
            name, record = decode_as(data)
        except SchemaError as error:
            raise InvalidInput(Reason.INVALID_AVRO, str(error)) from None
        if name != "raw_reading":
            raise InvalidInput(Reason.INVALID_AVRO, f"expected a raw_reading, got {name}")
        return _from_record(record)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidInput(Reason.INVALID_ENCODING, f"not UTF-8 and not Avro: {error}") from None
    try:
        parsed: Any = _JSON.decode(text)  # any JSON value: _from_record checks it
    except InvalidInput:
        raise
    except (ValueError, RecursionError) as error:
        raise InvalidInput(Reason.INVALID_JSON, f"not valid JSON: {error}") from None
    return _from_record(parsed)


def reading_to_avro(reading: RawReading) -> bytes:
    """The Avro single-object form of a raw reading (what `replay-file --format avro` sends)."""
    return encode(
        "raw_reading",
        {
            "station_id": reading.station_id,
            "sensor_id": reading.sensor_id,
            "pollutant": reading.pollutant,
            "value": float(reading.value),
            "unit": reading.unit,
            "ts": reading.ts_ms,
            "lat": reading.lat,
            "lon": reading.lon,
            "channel_a": _as_float(reading.channel_a),
            "channel_b": _as_float(reading.channel_b),
            "relative_humidity": _as_float(reading.relative_humidity),
        },
    )


def _as_float(value: Decimal | None) -> float | None:
    return None if value is None else float(value)
