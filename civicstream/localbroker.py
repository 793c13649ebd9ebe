"""The project's own servers for development and tests, importable by path.

deploy/local-kafka/localkafka.py (an Apache Kafka broker) and deploy/local-postgres/
localpg.py (a throwaway PostgreSQL server) are standard-library only so that they run
before any venv exists; they are not part of a package, so the demo, the benchmarks and
the test session load them through here.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

__all__ = ["LOCAL_KAFKA", "LOCAL_POSTGRES", "load_local_kafka", "load_local_postgres"]

_DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
LOCAL_KAFKA = _DEPLOY / "local-kafka" / "localkafka.py"
LOCAL_POSTGRES = _DEPLOY / "local-postgres" / "localpg.py"


def _load(path: Path, name: str) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        msg = f"cannot import {path}"
        raise ImportError(msg)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while built
    spec.loader.exec_module(module)
    return module


def load_local_kafka() -> ModuleType:
    """The localkafka module (loaded once)."""
    return _load(LOCAL_KAFKA, "civicstream_localkafka")


def load_local_postgres() -> ModuleType:
    """The localpg module (loaded once)."""
    return _load(LOCAL_POSTGRES, "civicstream_localpg")
