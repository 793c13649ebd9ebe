"""Dashboards and rules use only metrics that exist, in valid PromQL, in EPA colours."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from processors import aqi
from sinks.metrics import SinkMetrics
from streams.metrics import WorkerMetrics
from telemetry import metric_names, new_registry

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
RULE_FILES = sorted((ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"))
# Series Prometheus itself makes: target health and the alerts' state.
PROMETHEUS_SERIES = {"up", "ALERTS"}


def load_generator():
    spec = importlib.util.spec_from_file_location("dashboards", GRAFANA / "dashboards.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATOR = load_generator()
BOARDS = {
    name: json.loads((GRAFANA / "dashboards" / name).read_text())
    for name in sorted(p.name for p in (GRAFANA / "dashboards").glob("*.json"))
}


def rules() -> list[dict]:
    return [
        rule
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def exported() -> set[str]:
    """What the processes export: from the metric definitions themselves, not a list."""
    registry = new_registry()  # + the process, platform and GC collectors
    WorkerMetrics.of(registry)
    SinkMetrics.of(registry)
    return metric_names(registry)


_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
    "atan2",
}


def grafana_free(expr: str) -> str:
    """The expression with Grafana's variables replaced by what Prometheus would see."""
    expr = re.sub(r"\$__(rate_interval|range|interval)", "5m", expr)
    return re.sub(r"\$\{?\w+\}?", "x", expr)


def names_in(expr: str) -> set[str]:
    """Metric names an expression selects (PromQL, or Grafana's label_values(metric, label))."""
    label_values = re.fullmatch(r"\s*label_values\(\s*([\w:]+)\s*,\s*\w+\s*\)\s*", expr)
    if label_values:
        return {label_values.group(1)}
    expr = grafana_free(expr)
    expr = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)  # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    tokens = re.findall(r"(?<![\w.:])([A-Za-z_:][\w:]*)(?![\w:]|\s*\()", expr)
    return {t for t in tokens if t.lower() not in _KEYWORDS}


def test_the_metric_name_finder_finds_metrics_and_nothing_else():
    expr = (
        "sum by (job, topic) "
        '(rate(civicstream_events_consumed_total{job=~"a.+"}[$__rate_interval]))'
        " / on (job) group_left () max without (le) (x:y:rate5m offset 5m) > bool 1e3"
    )
    assert names_in(expr) == {"civicstream_events_consumed_total", "x:y:rate5m"}
    assert names_in("label_values(civicstream_aqi, station)") == {"civicstream_aqi"}


def test_the_committed_dashboards_are_what_the_generator_writes():
    generated = GENERATOR.dashboards()
    assert set(generated) == set(BOARDS)
    for name, board in generated.items():
        assert GENERATOR.render(board) == (GRAFANA / "dashboards" / name).read_text(), (
            f"run .venv/bin/python deploy/grafana/dashboards.py ({name} is out of date)"
        )


@pytest.mark.parametrize("name", list(BOARDS))
def test_every_dashboard_expression_names_only_metrics_the_code_exports(name):
    known = exported() | {rule["record"] for rule in rules() if "record" in rule}
    known |= PROMETHEUS_SERIES
    expressions = list(GENERATOR.expressions(BOARDS[name]))
    assert len(expressions) >= 10
    for expr in expressions:
        found = names_in(expr)
        assert found, expr
        assert found <= known, f"{expr}: {found - known} not exported"


def test_every_rule_expression_names_only_metrics_the_code_exports():
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    known = exported() | recorded | PROMETHEUS_SERIES
    for rule in rules():
        found = names_in(rule["expr"])
        assert found and found <= known, f"{rule['expr']}: {found - known}"


def test_every_dashboard_expression_is_valid_promql(tmp_path):
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make test` installs Debian's prometheus package"
    exprs = sorted(
        {
            grafana_free(e)
            for board in BOARDS.values()
            for e in GENERATOR.expressions(board)
            if not e.startswith("label_values(")
        }
    )
    check = {
        "groups": [
            {
                "name": "dashboards",
                "rules": [{"record": f"dashboard:expr{i}", "expr": e} for i, e in enumerate(exprs)],
            }
        ]
    }
    path = tmp_path / "dashboard-exprs.yml"
    path.write_text(yaml.safe_dump(check))
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_panels_are_complete_and_inside_the_grid():
    for name, board in BOARDS.items():
        assert board["uid"] and board["title"]
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), name
        for item in board["panels"]:
            pos = item["gridPos"]
            assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, (name, item["title"])
            if item["type"] == "row":
                continue
            assert item["description"] and item["targets"], (name, item["title"])
            assert item["datasource"]["type"] == "prometheus"
            refs = [t["refId"] for t in item["targets"]]
            assert len(refs) == len(set(refs))


def test_the_aqi_panels_use_the_epa_category_colours_at_the_epa_breakpoints():
    board = BOARDS["air-quality.json"]
    aqi_panels = [p for p in board["panels"] if "civicstream_aqi{" in str(p.get("targets"))]
    assert {p["type"] for p in aqi_panels} >= {"timeseries", "state-timeline", "bargauge"}
    for item in aqi_panels:
        steps = item["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert [s["value"] for s in steps] == [None, 51, 101, 151, 201, 301]
        expected = ["#{:02x}{:02x}{:02x}".format(*aqi.CATEGORY_COLORS[c]) for c in aqi.CATEGORIES]
        assert [s["color"] for s in steps] == expected
        for low, category in zip((0, 51, 101, 151, 201, 301), aqi.CATEGORIES, strict=True):
            assert aqi.category(low) == category


def test_the_provisioning_files_point_grafana_at_the_dashboards_and_at_prometheus():
    source = yaml.safe_load((GRAFANA / "provisioning/datasources/civicstream.yml").read_text())
    assert source["datasources"][0]["type"] == "prometheus"
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/civicstream.yml").read_text())
    assert provider["providers"][0]["type"] == "file"
