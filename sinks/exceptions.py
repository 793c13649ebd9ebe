"""Errors raised by the sinks: one family, so callers can catch `SinkError`."""

__all__ = ["InvalidQuery", "InvalidRecord", "SinkError", "StoreError", "UnsupportedStoreURL"]


class SinkError(Exception):
    """Base of every error the sinks raise on purpose."""


class StoreError(SinkError):
    """The open-data store refused or failed a request; nothing from it was written."""


class UnsupportedStoreURL(StoreError):
    """A store URL whose scheme (or form) no backend handles."""


class InvalidRecord(SinkError, ValueError):
    """A decoded record that cannot become a row (a naive datetime, a non-finite float...)."""


class InvalidQuery(StoreError, ValueError):
    """A read request that names an unknown field or gives a value the field cannot hold.

    The message says what is wrong and is meant for the requester (the API's 400 answer).
    """
