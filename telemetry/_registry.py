"""Registries, metric sets and the /metrics endpoint."""

from __future__ import annotations

import threading
import weakref
from typing import Any, Self

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    start_http_server,
)

__all__ = ["MetricSet", "metric_names", "new_registry", "serve"]

# Counters and histograms otherwise export a `_created` series each: twice the series for
# nothing Prometheus uses (it detects counter resets itself).
disable_created_metrics()  # type: ignore[no-untyped-call]

_SETS: weakref.WeakKeyDictionary[CollectorRegistry, dict[type, Any]] = weakref.WeakKeyDictionary()
_SETS_LOCK = threading.RLock()

_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count"),
    "info": ("_info",),
}


class MetricSet:
    """A group of metrics registered once per registry; get it with ``Cls.of(registry)``.

    Subclasses create their collectors in ``__init__(self, registry)``.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    @classmethod
    def of(cls, registry: CollectorRegistry | None = None) -> Self:
        """This set on `registry` (default: the process's global registry), made on first use."""
        registry = REGISTRY if registry is None else registry
        with _SETS_LOCK:
            sets = _SETS.setdefault(registry, {})
            found = sets.get(cls)
            if found is None:
                found = sets[cls] = cls(registry)
            return found


def new_registry() -> CollectorRegistry:
    """A fresh registry with the process, platform and GC collectors, like the global one."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def serve(port: int, registry: CollectorRegistry | None = None, addr: str = "0.0.0.0") -> None:
    """Serve ``/metrics`` of `registry` on `port` from a daemon thread.

    A thread of its own keeps scrapes answering while the event loop or a batch is busy:
    a stalled pipeline shows as growing lag, not as a target that is down.
    """
    start_http_server(port, addr=addr, registry=REGISTRY if registry is None else registry)


def metric_names(registry: CollectorRegistry) -> set[str]:
    """Every sample name `registry` can export, whether or not a sample exists yet."""
    names: set[str] = set()
    for family in registry.collect():
        names.add(family.name)
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ()))
    return names
