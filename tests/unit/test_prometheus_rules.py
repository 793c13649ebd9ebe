"""deploy/prometheus: promtool checks the configuration, the rules and every alert's tests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from civicstream.monitoring import JOBS

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
TEST_FILES = sorted((PROMETHEUS / "tests").glob("*.yml"))


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing: `make test` installs Debian's prometheus package")
    return found


def run(promtool: str, *args: str | Path) -> str:
    done = subprocess.run(
        [promtool, *map(str, args)], capture_output=True, text=True, cwd=PROMETHEUS, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def alerts() -> list[dict]:
    return [
        rule
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def test_the_demo_scrape_configuration_is_valid_and_loads_every_rule_file(promtool):
    out = run(promtool, "check", "config", PROMETHEUS / "prometheus.yml")
    assert f"{len(RULE_FILES)} rule files found" in out


def test_the_rule_files_are_valid(promtool):
    run(promtool, "check", "rules", *RULE_FILES)


def test_promtool_unit_tests_of_the_alerts_pass(promtool):
    assert TEST_FILES
    out = run(promtool, "test", "rules", *TEST_FILES)
    assert "SUCCESS" in out


def test_every_alert_the_issue_asks_for_exists_with_a_summary_a_runbook_and_a_severity():
    found = {rule["alert"]: rule for rule in alerts()}
    assert set(found) >= {
        "CivicstreamPipelineDown",
        "CivicstreamConsumerLagGrowing",
        "CivicstreamEventTimeLagHigh",
        "CivicstreamDeadLetterRateHigh",
        "CivicstreamSinkFailing",
        "CivicstreamSensorStale",
        "CivicstreamAirUnhealthy",
    }
    for name, rule in found.items():
        assert rule["annotations"]["summary"].strip(), name
        assert len(rule["annotations"]["runbook"].split()) >= 8, name
        assert rule["labels"]["severity"] in {"critical", "warning"}, name


def test_every_alert_is_unit_tested_both_firing_and_not_firing():
    cases: dict[str, set[bool]] = {}
    for path in TEST_FILES:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                cases.setdefault(case["alertname"], set()).add(bool(case.get("exp_alerts")))
    for rule in alerts():
        assert cases.get(rule["alert"]) == {True, False}, rule["alert"]


def test_the_demo_configuration_uses_the_job_names_the_code_scrapes_under():
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert {job["job_name"] for job in config["scrape_configs"]} == set(JOBS.values())
