"""The hot path compiled to C with mypyc, and the check that it is not stale.

The worker's air-quality step (parse, validate, detect, close hours, AQI, daily AQI, the
Avro writers) and the sink's record-to-row conversion are plain, strictly typed Python.
mypyc compiles those same modules to C extensions that import in their place: the Beijing
month runs its step in ~64 µs per reading instead of ~102 µs, with byte-equal outputs and
states (`make bench`; the whole test suite runs on the compiled build), and the sink
converts a record in about a tenth less time.

`make compiled` (a prerequisite of `make run`, `make test` and `make bench`) builds them
in place, beside their sources, and records each source's hash in build/compiled.json.
A compiled module whose source changed afterwards would silently run the old code, so
every civicstream command and the test session refuse to start while one is stale:
rebuild (`make compiled`) or remove the build (`make uncompiled`) to run the sources.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import json
import sys
from pathlib import Path

__all__ = ["MODULES", "StaleBuild", "build", "compiled_modules", "ensure_fresh", "remove"]

ROOT = Path(__file__).resolve().parents[1]
GROUP = "streams._compiled"
"""mypyc's shared library for the modules below: streams/_compiled__mypyc.*.so."""

MODULES: tuple[str, ...] = (
    "processors._bands",
    "processors._context",
    "processors.anomaly",
    "processors.aqi",
    "processors.daily",
    "processors.exceptions",
    "processors.health",
    "processors.neighbours",
    "processors.rolling",
    "processors.units",
    "processors.validation",
    "schemas._reader",
    "schemas._writer",
    "schemas.raw",
    "sinks._datasets",
    "streams.air_quality",
    "streams.neighbourhood",
    "streams.station",
    "streams.time",
)
"""The air-quality step's modules (with the Avro writers), the neighbour check's, and the
sink's Avro readers and dataset conversions (sinks._datasets)."""


class StaleBuild(RuntimeError):
    """A compiled module no longer matches its source."""


def _source(module: str, root: Path) -> Path:
    return root.joinpath(*module.split(".")).with_suffix(".py")


def _extensions(module: str, root: Path) -> list[Path]:
    source = _source(module, root)
    suffixes = importlib.machinery.EXTENSION_SUFFIXES
    return [
        source.with_suffix(suffix) for suffix in suffixes if source.with_suffix(suffix).exists()
    ]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


PACKAGES = ("processors", "schemas", "sinks", "streams")
"""Where compiled modules may lie: all of them are checked, not only those in MODULES, so
that the build of a module no longer listed (an older checkout) cannot run unnoticed."""


def compiled_modules(root: Path = ROOT) -> list[str]:
    """The modules that import as compiled extensions for this interpreter."""
    return [
        f"{package}.{source.stem}"
        for package in PACKAGES
        for source in sorted((root / package).glob("*.py"))
        if _extensions(f"{package}.{source.stem}", root)
    ]


def stale_sources(root: Path = ROOT) -> list[Path]:
    """Sources of compiled modules that changed since they were compiled (or whose
    build has no record of them)."""
    manifest = root / "build" / "compiled.json"
    compiled = compiled_modules(root)
    if not compiled:
        return []
    try:
        recorded = json.loads(manifest.read_text())
    except (OSError, ValueError):
        recorded = {}
    return [
        _source(module, root)
        for module in compiled
        if recorded.get(module) != _digest(_source(module, root))
    ]


def ensure_fresh(root: Path = ROOT) -> None:
    """Raise StaleBuild, naming the files and the fix, if a compiled module is stale."""
    stale = stale_sources(root)
    if stale:
        names = ", ".join(str(path.relative_to(root)) for path in stale)
        msg = (
            f"{names} changed after it was compiled, so the compiled build would run "
            "the old code: run `make compiled` to rebuild it, or `make uncompiled` to run "
            "the Python sources"
        )
        raise StaleBuild(msg)


def remove(root: Path = ROOT) -> list[Path]:
    """Delete the compiled extensions and the manifest: the sources run as Python."""
    removed = [path for module in compiled_modules(root) for path in _extensions(module, root)]
    package, name = GROUP.rsplit(".", 1)
    removed += list(root.joinpath(*package.split(".")).glob(f"{name}__mypyc.*"))
    for path in removed:
        path.unlink()
    (root / "build" / "compiled.json").unlink(missing_ok=True)
    return removed


def build(root: Path = ROOT) -> None:
    """Compile MODULES in place with mypyc and record their sources' hashes."""
    from mypyc.build import mypycify
    from setuptools import setup

    sources = [str(_source(module, root).relative_to(root)) for module in MODULES]
    digests = {module: _digest(_source(module, root)) for module in MODULES}
    extensions = mypycify(sources, opt_level="3", group_name=GROUP, target_dir="build/mypyc")
    setup(
        name="civicstream-compiled",
        ext_modules=extensions,
        script_args=["build_ext", "--inplace", "--build-temp", "build/mypyc-temp", "--quiet"],
    )
    manifest = root / "build" / "compiled.json"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps(digests, indent=1, sort_keys=True) + "\n")


def main(argv: list[str]) -> int:
    """`python -m civicstream.compiled build|remove|check` (the Makefile's targets)."""
    command = argv[0] if argv else "check"
    if command == "build":
        import os

        os.chdir(ROOT)  # mypyc writes its C files and setuptools its objects under build/
        build()
        print(f"compiled {len(compiled_modules())} modules of the hot path (mypyc)")
        return 0
    if command == "remove":
        removed = remove()
        print(f"removed {len(removed)} compiled files; the hot path runs as Python")
        return 0
    if command == "check":
        try:
            ensure_fresh()
        except StaleBuild as error:
            print(f"civicstream: {error}", file=sys.stderr)
            return 2
        count = len(compiled_modules())
        print(f"{count} of {len(MODULES)} hot-path modules compiled" if count else "not compiled")
        return 0
    print("usage: python -m civicstream.compiled build|remove|check", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
