"""One short chaos run in the test suite: SIGKILLs and broker restarts change no open data.

The long version (more input, more kills, a longer window) is `make chaos SEED=n`.
"""

from __future__ import annotations

import pytest

from tests.chaos.harness import SHORT, plan, run_chaos

pytestmark = pytest.mark.integration

SEED = 7


def test_the_schedule_is_a_function_of_the_seed_alone():
    assert plan(SEED, SHORT) == plan(SEED, SHORT)
    assert plan(SEED, SHORT) != plan(SEED + 1, SHORT)
    kills = [action for action in plan(SEED, SHORT) if action.kind == "kill"]
    assert len(kills) >= 10
    assert {action.target for action in kills} == {"worker", "sink", "archive"}
    brokers = [action.target for action in plan(SEED, SHORT) if action.kind == "broker"]
    assert brokers == ["SIGTERM", "SIGKILL"]


def test_killed_processes_and_restarted_brokers_publish_what_a_clean_run_does(tmp_path):
    report = run_chaos(SEED, SHORT, tmp_path / "chaos", say=print)
    print(report.summary())
    assert report.total_kills >= 10
    assert len(report.broker_restarts) == 2
    assert report.differing == {} and report.differences == 0
    assert report.rows["aqi_hourly"] > 400 and report.rows["incidents"] > 1000
    assert report.dead_letter_differences == 0
    assert report.raw_records == report.archived
    assert (report.archive_duplicates, report.archive_lost, report.archive_altered) == (0, 0, 0)
