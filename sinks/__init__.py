"""Sinks: the open-data store and the worker that fills it from Kafka.

Errors are in `sinks.exceptions`; the store backends in `sinks.store`; the worker's
batch statistics and command line in `sinks.worker`. `SinkWorker` is imported on first
use, so readers of the store (API, CLI) do not load the Kafka client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sinks.store import Store, open_store

if TYPE_CHECKING:
    from sinks.worker import SinkWorker

__all__ = ["SinkWorker", "Store", "open_store"]


def __getattr__(name: str) -> Any:
    if name == "SinkWorker":
        from sinks.worker import SinkWorker

        return SinkWorker
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
