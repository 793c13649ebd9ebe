"""Dependencies point one way: streams → processors, schemas, telemetry, kafkaconf; sinks →
schemas, telemetry, kafkaconf; Faust and Kafka stay at the edges; metrics never reach
processors/; kafkaconf (Kafka security settings) imports nothing of the project."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# package -> project packages and frameworks it must never import
FORBIDDEN = {
    "processors": {
        *("streams", "sinks", "schemas", "civicstream", "telemetry"),
        *("faust", "kafka", "aiokafka", "prometheus_client"),
    },
    "schemas": {
        *("streams", "sinks", "processors", "civicstream", "telemetry"),
        *("faust", "kafka", "aiokafka", "prometheus_client"),
    },
    "sinks": {"streams", "processors", "civicstream", "faust", "aiokafka"},
    "streams": {"sinks", "civicstream"},
    # the metrics every process shares: prometheus-client only
    "telemetry": {
        *("streams", "sinks", "processors", "schemas", "civicstream"),
        *("faust", "kafka", "aiokafka"),
    },
    # Kafka client security settings, used by every layer: the standard library only
    "kafkaconf": {
        *("streams", "sinks", "processors", "schemas", "civicstream", "telemetry"),
        *("faust", "kafka", "aiokafka", "prometheus_client"),
    },
}


def _imports(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize(
    "path",
    [p for package in FORBIDDEN for p in sorted((ROOT / package).rglob("*.py"))],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_module_respects_the_dependency_direction(path: Path) -> None:
    package = path.relative_to(ROOT).parts[0]
    assert not _imports(path) & FORBIDDEN[package]


def test_only_the_worker_module_imports_faust() -> None:
    importers = sorted(
        str(p.relative_to(ROOT)) for p in (ROOT / "streams").rglob("*.py") if "faust" in _imports(p)
    )
    assert importers == ["streams/app.py"]
