"""Replay namespaces, the order a replay sends in, and comparing datasets."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from civicstream.cli import main
from civicstream.diff import compare_stores
from civicstream.namespaces import (
    namespace_prefix,
    namespace_store_url,
    resolve_store_url,
)
from civicstream.replay import merged
from civicstream.settings import ConfigError, Settings
from sinks._archive_files import ArchivedRecord
from sinks._datasets import DATASETS
from sinks.store import open_store

T0 = 1_767_225_600_000


def test_a_namespace_has_its_own_topics_groups_and_store_beside_the_live_ones():
    assert namespace_prefix("", "2013") == "replay-2013."
    assert namespace_prefix("city1.", "fix-7") == "city1.replay-fix-7."
    live = "sqlite:///data/civicstream.db"
    assert namespace_store_url(live, "2013") == "sqlite:///data/civicstream.replay-2013.db"
    assert namespace_store_url("sqlite:////var/x.db", "a") == "sqlite:////var/x.replay-a.db"
    settings = Settings(store_url=live)
    assert resolve_store_url(settings, "live") == live
    assert resolve_store_url(settings, "sqlite:///other.db") == "sqlite:///other.db"


@pytest.mark.parametrize("name", ["live", "", "a b", "../x", "x" * 65])
def test_a_namespace_name_is_short_plain_and_not_live(name):
    with pytest.raises(ConfigError):
        namespace_prefix("", name)


def test_a_store_without_a_namespace_rule_needs_an_explicit_url():
    with pytest.raises(ConfigError):
        namespace_store_url("postgresql://db/civic", "a")


def record(partition: int, offset: int, event_ms: int | None) -> ArchivedRecord:
    return ArchivedRecord("t", partition, offset, b"k", b"v", (), event_ms, 99 * T0)


def test_a_replay_keeps_each_partition_in_source_order_and_interleaves_by_event_time():
    streams = {
        ("t", 0): iter([record(0, 0, T0), record(0, 1, T0 + 30), record(0, 2, T0 + 10)]),
        ("t", 1): iter([record(1, 0, T0 + 20), record(1, 1, None), record(1, 2, T0 + 40)]),
    }
    order = [(r.partition, r.offset) for _, r in merged(streams)]
    assert order == [(0, 0), (1, 0), (1, 1), (0, 1), (0, 2), (1, 2)]
    # the late reading (0, 2) stays after (0, 1); the unreadable (1, 1) keeps its place


def _store(path, rows):
    url = f"sqlite:///{path}"
    with open_store(url) as store:
        store.write_batch({"aqi_hourly": rows})
    return url


def hour(station: str, h: int, aqi: int | None = 50, category: str = "Good") -> dict:
    return {
        "station_id": station,
        "hour_start": datetime.fromtimestamp((T0 + h * 3_600_000) / 1000, tz=UTC),
        "aqi": aqi,
        "category": category,
        "main_pollutant": "pm25_nowcast",
        "sub_indices": {},
        "concentrations": {},
        "hourly_means": {},
        "reading_count": 1,
        "reason": None,
        "aqi_version": "EPA-454/B-24-002",
    }


def test_diff_finds_rows_only_in_one_store_and_names_the_changed_columns(tmp_path):
    a = _store(tmp_path / "a.db", [hour("s1", 0), hour("s1", 1), hour("s2", 0)])
    b = _store(tmp_path / "b.db", [hour("s1", 0), hour("s1", 1, 51, "Moderate"), hour("s3", 0)])
    by_name = {diff.name: diff for diff in compare_stores(a, b)}
    assert set(by_name) == set(DATASETS)  # every dataset of the store, new ones included
    aqi, readings = by_name["aqi_hourly"], by_name["readings"]
    assert aqi.only_a == [("s2", "2026-01-01T00:00:00Z")]
    assert aqi.only_b == [("s3", "2026-01-01T00:00:00Z")]
    assert aqi.changed == [(("s1", "2026-01-01T01:00:00Z"), ("aqi", "category"))]
    assert readings.equal and (readings.rows_a, readings.rows_b) == (0, 0)
    [quiet] = compare_stores(a, b, datasets={"aqi_hourly"}, ignore={"aqi", "category"})
    assert quiet.changed == []


def test_diff_datasets_exits_0_when_equal_1_when_different_2_without_a_store(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CIVIC_STORE_URL", "sqlite:///live.db")
    _store(tmp_path / "live.db", [hour("s1", 0)])
    _store(tmp_path / "live.replay-same.db", [hour("s1", 0)])
    _store(tmp_path / "live.replay-other.db", [hour("s1", 0, 7)])
    assert main(["diff-datasets", "live", "same"]) == 0
    assert re.search(r"^aqi_hourly +equal +1 rows$", capsys.readouterr().out, re.MULTILINE)
    assert main(["diff-datasets", "live", "other"]) == 1
    out = capsys.readouterr().out
    assert re.search(r"^aqi_hourly +DIFFERENT +0 only in A, 0 only in B, 1 changed", out, re.M)
    assert "  changed: station_id=s1 hour_start=2026-01-01T00:00:00Z  (aqi)" in out
    assert main(["diff-datasets", "live", "missing"]) == 2
    assert not (tmp_path / "live.replay-missing.db").exists()


def test_the_worker_batch_size_is_a_setting():
    assert Settings.from_env({}).batch_max == 2000
    assert Settings.from_env({"CIVIC_BATCH_MAX": "7"}).batch_max == 7
    with pytest.raises(ConfigError):
        Settings.from_env({"CIVIC_BATCH_MAX": "0"})


def test_a_store_that_sorts_keys_its_own_way_is_compared_all_the_same(tmp_path, monkeypatch):
    import civicstream.diff as diff_module

    a = _store(tmp_path / "a.db", [hour("s1", 0), hour("s2", 0), hour("s3", 0, 7)])
    b = _store(tmp_path / "b.db", [hour("s3", 0), hour("s1", 0), hour("s4", 0)])
    streamed = compare_stores(a, b)

    def unordered(store, ds):
        raise diff_module._Unordered
        yield  # a generator, like the real one

    monkeypatch.setattr(diff_module, "_sorted_rows", unordered)
    assert compare_stores(a, b) == streamed
    assert (streamed[0].only_a, streamed[0].only_b) == (
        [("s2", "2026-01-01T00:00:00Z")],
        [("s4", "2026-01-01T00:00:00Z")],
    )
    assert streamed[0].changed == [(("s3", "2026-01-01T00:00:00Z"), ("aqi",))]
