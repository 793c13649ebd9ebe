"""The project's own Kafka broker (deploy/local-kafka/localkafka.py), importable by path.

localkafka.py is standard-library only so that it runs before any venv exists; it is not
part of a package, so the demo, the benchmarks and the test session load it through here.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

__all__ = ["LOCAL_KAFKA", "load_local_kafka"]

LOCAL_KAFKA = Path(__file__).resolve().parents[1] / "deploy" / "local-kafka" / "localkafka.py"
_MODULE_NAME = "civicstream_localkafka"


def load_local_kafka() -> ModuleType:
    """The localkafka module (loaded once)."""
    if _MODULE_NAME in sys.modules:
        return sys.modules[_MODULE_NAME]
    spec = importlib.util.spec_from_file_location(_MODULE_NAME, LOCAL_KAFKA)
    if spec is None or spec.loader is None:
        msg = f"cannot import {LOCAL_KAFKA}"
        raise ImportError(msg)
    module = importlib.util.module_from_spec(spec)
    sys.modules[_MODULE_NAME] = module  # dataclasses look their module up while built
    spec.loader.exec_module(module)
    return module
