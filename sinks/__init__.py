"""Sinks: the open-data store and the worker that fills it from Kafka."""

from sinks.store import Store, open_store

__all__ = ["Store", "open_store"]
