"""processors/ stays pure: standard library and itself only, no clock, every module says
what it exports."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import processors

PACKAGE = Path(processors.__file__).parent
MODULES = sorted(PACKAGE.glob("*.py"))
ALLOWED_ROOTS = {
    "__future__",
    "array",
    "collections",
    "contextlib",
    "dataclasses",
    "decimal",
    "math",
    "processors",
    "re",  # address patterns (privacy)
    "scipy",  # the Poisson tail of the spike test (incident_stats), k-d tree (neighbours)
    "struct",
    "types",
    "typing",
}


def _imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_module_imports_only_the_standard_library_it_needs(path: Path) -> None:
    assert _imported_roots(path) <= ALLOWED_ROOTS


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_module_declares_all_and_every_name_exists(path: Path) -> None:
    name = "processors" if path.stem == "__init__" else f"processors.{path.stem}"
    module = importlib.import_module(name)
    exported = module.__all__
    assert exported, name
    for attribute in exported:
        assert hasattr(module, attribute), f"{name}.{attribute}"


def test_package_root_exports_only_modules() -> None:
    assert processors.__all__ == [
        "anomaly",
        "aqi",
        "daily",
        "exceptions",
        "health",
        "incident_stats",
        "neighbours",
        "privacy",
        "purpleair",
        "rolling",
        "taxonomy",
        "units",
        "validation",
    ]
