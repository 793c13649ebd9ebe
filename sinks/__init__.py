"""Sinks: the open-data store and the worker that fills it from Kafka.

Errors are in `sinks.exceptions`; the store backends in `sinks.store`; the worker's
batch statistics and command line in `sinks.worker`.
"""

from sinks.store import Store, open_store
from sinks.worker import SinkWorker

__all__ = ["SinkWorker", "Store", "open_store"]
