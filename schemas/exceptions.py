"""Errors raised by the contracts layer, and the dead-letter reason codes (a contract)."""

from enum import StrEnum

__all__ = ["InvalidInput", "Reason", "SchemaError"]


class Reason(StrEnum):
    """Why an input went to the dead-letter topic. The values are part of the contract."""

    TOO_LARGE = "too_large"  # above schemas.raw.MAX_RAW_BYTES
    INVALID_ENCODING = "invalid_encoding"
    INVALID_JSON = "invalid_json"
    INVALID_AVRO = "invalid_avro"
    MISSING_FIELD = "missing_field"
    INVALID_FIELD = "invalid_field"
    WRONG_KEY = "wrong_key"
    UNKNOWN_POLLUTANT = "unknown_pollutant"
    UNKNOWN_UNIT = "unknown_unit"
    INVALID_VALUE = "invalid_value"
    INVALID_TIMESTAMP = "invalid_timestamp"
    LATE = "late"
    DUPLICATE = "duplicate"
    UNPROCESSABLE = "unprocessable"  # an unexpected error; the detail names it


class SchemaError(ValueError):
    """A message does not match any contract this project knows."""


class InvalidInput(ValueError):
    """Raw input that cannot become a reading; `reason` is the dead-letter reason code."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
