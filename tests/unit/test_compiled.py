"""The compiled hot path: the same bytes as its Python sources, and never stale."""

from __future__ import annotations

import hashlib
import importlib.machinery
import json
import subprocess
import sys
from pathlib import Path

import pytest

from civicstream.compiled import MODULES, ROOT, StaleBuild, compiled_modules, ensure_fresh

# Runs the step over Beijing's first three days (12 stations, ~5,000 readings) in batches
# of 500, and the neighbour check over its hourly records, and prints a digest of every
# output and every saved state. With "python", the
# step's modules are imported from their .py sources even where a compiled build exists.
STEP_DIGEST = """
import hashlib, importlib.util, sys
from civicstream.compiled import MODULES, ROOT

class Sources:
    def find_spec(self, name, path=None, target=None):
        if name in MODULES:
            source = ROOT.joinpath(*name.split(".")).with_suffix(".py")
            return importlib.util.spec_from_file_location(name, source)
        return None

if sys.argv[1] == "python":
    sys.meta_path.insert(0, Sources())
from bench.throughput import _DictStates, workload
from schemas import Topics
from streams.air_quality import AirQualityPipeline, SourceRecord
from streams.time import HourlyWindows
import streams.station

from streams.neighbourhood import AreaPlan, NeighbourConfig, NeighbourPipeline

records = workload("beijing", 3, 0)
source = [SourceRecord("raw", 0, i, r.key, r.value) for i, r in enumerate(records)]
stations = sorted({r.key.decode() for r in records})
# A line of stations 3 km apart: each has neighbours, so every hour is judged.
line = {s: (39.9 + 0.027 * n, 116.4) for n, s in enumerate(stations)}
plan = AreaPlan.of(line, NeighbourConfig())
pipeline = AirQualityPipeline(Topics(), HourlyWindows(600_000))
neighbours = NeighbourPipeline(Topics(), plan)
states, areas, digest = _DictStates(), _DictStates(), hashlib.sha256()
area_offset = 0
for start in range(0, len(source), 500):
    result = pipeline.process(source[start : start + 500], states)
    states.update((u.station_id, u.data) for u in result.state_updates)
    rekeyed = plan.rekey(result.hourly, Topics())
    area_records = [
        SourceRecord("area", 0, area_offset + i, o.key, o.value) for i, o in enumerate(rekeyed)
    ]
    area_offset += len(rekeyed)
    judged = neighbours.process(area_records, areas)
    areas.update((u.station_id, u.data) for u in judged.state_updates)
    for output in [*result.outputs, *rekeyed, *judged.outputs]:
        digest.update(output.topic.encode() + (output.key or b"") + output.value)
    for update in [*result.state_updates, *judged.state_updates]:
        digest.update(update.station_id.encode() + update.data)
print(len(source), streams.station.__file__.endswith(".py"), digest.hexdigest())
"""


def step_digest(modules: str) -> tuple[int, bool, str]:
    done = subprocess.run(
        [sys.executable, "-c", STEP_DIGEST, modules],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    count, from_source, digest = done.stdout.split()
    return int(count), from_source == "True", digest


def test_the_compiled_step_gives_the_bytes_of_its_python_sources() -> None:
    count, from_source, python_digest = step_digest("python")
    assert count > 5_000 and from_source
    _, from_source, build_digest = step_digest("build")
    assert from_source == (not compiled_modules())  # the build in place, when there is one
    assert build_digest == python_digest


def fake_tree(tmp_path: Path, recorded: dict[str, str] | None) -> Path:
    """A checkout with the step's sources, station.py compiled, and a manifest."""
    for module in MODULES:
        source = tmp_path.joinpath(*module.split(".")).with_suffix(".py")
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text(f"# {module}\n")
    station = tmp_path / "streams" / "station.py"
    station.with_suffix(importlib.machinery.EXTENSION_SUFFIXES[0]).write_bytes(b"\x7fELF")
    if recorded is not None:
        (tmp_path / "build").mkdir()
        (tmp_path / "build" / "compiled.json").write_text(json.dumps(recorded))
    return tmp_path


def test_a_compiled_module_whose_source_changed_is_refused_with_the_fix(tmp_path: Path) -> None:
    root = fake_tree(tmp_path, {"streams.station": hashlib.sha256(b"# old\n").hexdigest()})
    with pytest.raises(StaleBuild, match=r"streams/station\.py changed .*`make compiled`"):
        ensure_fresh(root)


def test_a_compiled_module_no_longer_listed_is_refused(tmp_path: Path) -> None:
    root = fake_tree(
        tmp_path, {"streams.station": hashlib.sha256(b"# streams.station\n").hexdigest()}
    )
    (root / "streams" / "old.py").write_text("")
    (root / "streams" / "old.py").with_suffix(importlib.machinery.EXTENSION_SUFFIXES[0]).touch()
    with pytest.raises(StaleBuild, match=r"streams/old\.py"):
        ensure_fresh(root)


def test_a_build_without_its_manifest_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StaleBuild, match=r"streams/station\.py"):
        ensure_fresh(fake_tree(tmp_path, None))


def test_a_build_of_the_current_sources_and_no_build_at_all_both_run(tmp_path: Path) -> None:
    current = hashlib.sha256(b"# streams.station\n").hexdigest()
    ensure_fresh(fake_tree(tmp_path / "built", {"streams.station": current}))
    pure = tmp_path / "pure"
    for module in MODULES:
        source = pure.joinpath(*module.split(".")).with_suffix(".py")
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text("")
    ensure_fresh(pure)


def test_the_command_line_refuses_a_stale_build(tmp_path: Path, monkeypatch) -> None:
    import civicstream.cli as cli

    def stale() -> None:
        raise StaleBuild("streams/station.py changed after it was compiled")

    monkeypatch.setattr(cli, "ensure_fresh", stale)
    assert cli.main(["worker"]) == 2


def test_a_judged_reading_keeps_every_field_but_the_verdicts() -> None:
    """`judged` builds the reading field by field (dataclasses.replace is slow compiled):
    a field added to AcceptedReading and not copied there would be lost here."""
    import dataclasses
    from decimal import Decimal

    from processors.anomaly import Verdict
    from streams.station import AcceptedReading

    reading = AcceptedReading(
        pollutant="pm25",
        ts_ms=1,
        sensor_id="a",
        value=Decimal("9.1"),
        unit="ug/m3",
        value_epa=Decimal("9.1"),
        lat=1.0,
        lon=2.0,
        correction="epa-2021",
    )
    verdict = Verdict(0.0, 9.1, 7.5, frozenset({"stuck", "anomaly"}), (1.0, 2.0), "why")
    judged = reading.judged(verdict)
    from_verdict = {"flags": ("anomaly", "stuck"), "score": 7.5, "expected": (1.0, 2.0)}
    from_verdict["detail"] = "why"
    for field in dataclasses.fields(AcceptedReading):
        expected = from_verdict.get(field.name, getattr(reading, field.name))
        assert getattr(judged, field.name) == expected, field.name
