"""The open-data store: idempotent upserts, deterministic rows, one transaction per batch.

Every behaviour test runs on each backend: SQLite in memory, a SQLite file, and a real
PostgreSQL server (a database of its own per test; see tests/conftest.py)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import schemas
from sinks import _migrations
from sinks.exceptions import InvalidRecord, StoreError, UnsupportedStoreURL
from sinks.store import Store, default_store_url, open_store

H0 = datetime(2026, 1, 1, 2, tzinfo=UTC)


def aqi(station: str = "dongsi", hour: int = 0, **changes: Any) -> dict[str, Any]:
    """An hourly AQI record exactly as `schemas.decode` returns it."""
    record: dict[str, Any] = {
        "station_id": station,
        "hour_start": H0 + timedelta(hours=hour),
        "aqi": 57,
        "category": "Moderate",
        "main_pollutant": "pm25_nowcast",
        "sub_indices": {"pm25_nowcast": 57, "o3_8h": 20, "no2_1h": 9},
        "concentrations": {"pm25_nowcast": 12.3, "o3_8h": 0.031, "no2_1h": 9.0},
        "hourly_means": {"pm25": 12.25, "o3": 0.0305},
        "reading_count": 12,
        "reason": None,
        "aqi_version": "EPA-454/B-24-002",
    }
    record.update(changes)
    return schemas.decode(schemas.encode("aqi_hourly", record))


def reading(
    station: str = "dongsi", pollutant: str = "pm25", minute: int = 0, **changes: Any
) -> dict[str, Any]:
    """An enriched reading exactly as `schemas.decode` returns it."""
    ts = H0 + timedelta(minutes=minute, milliseconds=123)
    record: dict[str, Any] = {
        "station_id": station,
        "sensor_id": f"{station}-{pollutant}-1",
        "pollutant": pollutant,
        "ts": ts,
        "hour_start": ts.replace(minute=0, second=0, microsecond=0),
        "value": 12.5,
        "unit": "ug/m3",
        "value_epa": 12.5,
        "unit_epa": "ug/m3",
        "mean_1h": 11.75,
        "mean_8h": None,
        "mean_24h": None,
        "lat": 39.929,
        "lon": 116.417,
        "flags": ["spike", "calibration_due"],
        "anomaly_score": 0.1,
    }
    record.update(changes)
    return schemas.decode(schemas.encode("enriched_reading", record))


def daily(station: str = "dongsi", day: int = 1, **changes: Any) -> dict[str, Any]:
    """A daily AQI record exactly as `schemas.decode` returns it."""
    from datetime import date

    record: dict[str, Any] = {
        "station_id": station,
        "day": date(2013, 3, day),
        "day_start": datetime(2013, 2, 28, 16, tzinfo=UTC) + timedelta(days=day - 1),
        "utc_offset_minutes": 480,
        "revision": 0,
        "aqi": 102,
        "category": "Unhealthy for Sensitive Groups",
        "main_pollutant": "pm25_24h",
        "sub_indices": {"pm25_24h": 102},
        "concentrations": {"pm25_24h": 35.9},
        "completeness": {"pm25_24h": 24, "o3_8h": 12},
        "reasons": {"o3": "incomplete_day"},
        "reason": None,
        "health_message": "People with heart or lung disease, …",
        "aqi_version": "EPA-454/B-24-002",
    }
    record.update(changes)
    return schemas.decode(schemas.encode("aqi_daily", record))


def incident(incident_id: str = "sfpd-1", **changes: Any) -> dict[str, Any]:
    """A published incident exactly as `schemas.decode` returns it."""
    record: dict[str, Any] = {
        "incident_id": incident_id,
        "source": "sfpd",
        "revision": 1,
        "category": "property",
        "source_category": "Larceny Theft",
        "source_subcategory": None,
        "description": "Theft, From Locked Vehicle, >$950",
        "offence_codes": ["06244"],
        "source_categories": ["Larceny Theft"],
        "occurred_at": datetime(2018, 12, 19, 21, 30, tzinfo=UTC),
        "day": "2018-12-19",
        "reported_at": datetime(2018, 12, 20, 1, 5, tzinfo=UTC),
        "district": "Mission",
        "address": "1200 BLOCK OF VALENCIA ST",
        "lat": 37.7531,
        "lon": -122.4208,
        "location_withheld": False,
        "status": "Open or Active",
    }
    record.update(changes)
    return schemas.decode(schemas.encode("incident_published", record))


def incident_count(district: str = "Mission", day: int = 19, **changes: Any) -> dict[str, Any]:
    """A daily incident count exactly as `schemas.decode` returns it."""
    record: dict[str, Any] = {
        "district": district,
        "category": "all",
        "day": f"2018-12-{day:02d}",
        "count": 41,
        "suppressed": False,
        "baseline": 38.25,
        "baseline_days": 28,
        "spike": False,
        "tail_probability": 0.31,
        "revision": 1,
        "as_of": datetime(2018, 12, day + 3, 8, tzinfo=UTC),
    }
    record.update(changes)
    return schemas.decode(schemas.encode("incident_count", record))


def anomaly(station: str = "dongsi", hour: int = 3, kind: str = "stuck") -> dict[str, Any]:
    """An anomaly event exactly as `schemas.decode` returns it."""
    record: dict[str, Any] = {
        "station_id": station,
        "sensor_id": None,
        "pollutant": "pm25",
        "ts": datetime(2026, 1, 1, hour, tzinfo=UTC),
        "kind": kind,
        "score": 0.1,
        "value": 35.0,
        "unit": "ug/m3",
        "expected_low": 10.0,
        "expected_high": 60.0,
        "detail": "35 12 times in a row",
    }
    return schemas.decode(schemas.encode("anomaly", record))


@pytest.fixture(params=["memory", "file", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
    elif request.param == "memory":
        url = "sqlite:///:memory:"
    else:
        url = f"sqlite:///{tmp_path}/s.db"
    with open_store(url) as opened:
        yield opened


def snapshot(store: Store) -> dict[str, list[dict[str, Any]]]:
    return {name: store.fetch(name) for name in ("aqi_hourly", "readings")}


# --- opening --------------------------------------------------------------------------------


def test_default_url_is_a_file_under_data() -> None:
    assert default_store_url() == "sqlite:///data/civicstream.db"


def test_relative_url_creates_parent_folders_under_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with open_store("sqlite:///deep/er/civic.db") as store:
        store.write_batch({"aqi_hourly": [aqi()]})
    assert (tmp_path / "deep" / "er" / "civic.db").is_file()


def test_absolute_url_with_four_slashes(tmp_path: Path) -> None:
    path = tmp_path / "abs" / "civic.db"
    with open_store(f"sqlite:///{path}") as store:
        assert store.count("aqi_hourly") == 0
    assert str(path).startswith("/")
    assert path.is_file()


def test_file_store_is_wal_and_synchronous_full(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path}/s.db") as store:
        assert isinstance(store, Store)
        db = store._conn()  # type: ignore[attr-defined]
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("mysql://localhost/civic", "unsupported store URL"),
        ("data/civicstream.db", "unsupported store URL"),
        ("sqlite://relative.db", "malformed sqlite store URL"),
        ("sqlite:///", "without a path"),
        ("sqlite:///x.db?mode=ro", "options are not supported"),
    ],
)
def test_unsupported_urls_are_refused_clearly(url: str, match: str) -> None:
    with pytest.raises(UnsupportedStoreURL, match=match):
        open_store(url)


def test_reopening_is_idempotent_and_records_the_schema_version(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    with open_store(url) as store:
        store.write_batch({"aqi_hourly": [aqi()], "readings": [reading()]})
    with open_store(url) as store:
        assert store.count("aqi_hourly") == 1
        assert store.count("readings") == 1
    db = sqlite3.connect(tmp_path / "s.db")
    versions = [row[0] for row in db.execute("SELECT version FROM schema_version")]
    assert versions == [version for version, _ in _migrations.MIGRATIONS]
    db.close()


def test_a_version_1_store_is_migrated_in_place_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
    )
    for operation in _migrations.MIGRATIONS[0][1]:
        for statement in _migrations.render(operation, "sqlite"):
            db.execute(statement)
    db.execute("INSERT INTO schema_version VALUES (1, '2026-01-01T00:00:00+00:00')")
    db.execute(
        "INSERT INTO aqi_hourly VALUES ('dongsi', '2026-01-01T02:00:00Z', 57, 'Moderate', "
        "'pm25_nowcast', '{}', '{}', '{}', 3, NULL, 'EPA-454/B-24-002')"
    )
    db.commit()
    db.close()
    with open_store(f"sqlite:///{path}") as store:
        (row,) = store.fetch("aqi_hourly")
        assert (row["aqi"], row["health_message"]) == (57, None)
        store.write_batch({"aqi_daily": [daily()]})
        assert store.count("aqi_daily") == 1


def test_a_store_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    open_store(url).close()
    db = sqlite3.connect(tmp_path / "s.db")
    db.execute("INSERT INTO schema_version VALUES (99, '2030-01-01T00:00:00+00:00')")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="schema version 99"):
        open_store(url)


# --- upserts --------------------------------------------------------------------------------


def test_writing_the_same_batch_twice_is_a_no_op(store: Store) -> None:
    batch_aqi = [aqi(hour=h) for h in range(3)] + [aqi("guanyuan", h) for h in range(3)]
    batch_readings = [reading(pollutant=p, minute=m) for p in ("pm25", "o3") for m in (0, 5)]
    store.write_batch({"aqi_hourly": batch_aqi, "readings": batch_readings})
    first = snapshot(store)
    store.write_batch({"aqi_hourly": batch_aqi, "readings": batch_readings})
    assert snapshot(store) == first
    assert store.count("aqi_hourly") == 6
    assert store.count("readings") == 4


def test_a_later_record_for_the_same_key_replaces_the_earlier(store: Store) -> None:
    store.write_batch({"aqi_hourly": [aqi(aqi=57)], "readings": [reading(value=12.5, flags=[])]})
    store.write_batch(
        {
            "aqi_hourly": [
                aqi(aqi=None, category=None, main_pollutant=None, reason="insufficient_data")
            ],
            "readings": [reading(value=99.0, sensor_id=None, flags=["spike"])],
        }
    )
    (row,) = store.fetch("aqi_hourly")
    assert (row["aqi"], row["category"], row["reason"]) == (None, None, "insufficient_data")
    (r,) = store.fetch("readings")
    assert (r["value"], r["sensor_id"], r["flags"]) == (99.0, None, '["spike"]')


def test_within_a_batch_the_last_record_of_a_key_wins(store: Store) -> None:
    store.write_batch(
        {
            "aqi_hourly": [aqi(aqi=1), aqi(hour=1, aqi=5), aqi(aqi=2), aqi(aqi=3)],
            "readings": [reading(value=1.0), reading(value=2.0)],
        }
    )
    assert [row["aqi"] for row in store.fetch("aqi_hourly")] == [3, 5]
    assert [row["value"] for row in store.fetch("readings")] == [2.0]


def test_an_empty_batch_writes_nothing(store: Store) -> None:
    store.write_batch({})
    store.write_batch({})
    assert store.count("aqi_hourly") == store.count("readings") == 0


# --- serialisation --------------------------------------------------------------------------


def test_aqi_row_is_rendered_exactly(store: Store) -> None:
    store.write_batch({"aqi_hourly": [aqi()]})
    assert store.fetch("aqi_hourly") == [
        {
            "station_id": "dongsi",
            "hour_start": "2026-01-01T02:00:00Z",
            "aqi": 57,
            "category": "Moderate",
            "main_pollutant": "pm25_nowcast",
            "sub_indices": '{"no2_1h":9,"o3_8h":20,"pm25_nowcast":57}',
            "concentrations": '{"no2_1h":9.0,"o3_8h":0.031,"pm25_nowcast":12.3}',
            "hourly_means": '{"o3":0.0305,"pm25":12.25}',
            "reading_count": 12,
            "reason": None,
            "aqi_version": "EPA-454/B-24-002",
            "health_message": None,
            "excluded_count": 0,
        }
    ]


def test_reading_row_is_rendered_exactly(store: Store) -> None:
    store.write_batch({"readings": [reading(minute=7)]})
    assert store.fetch("readings") == [
        {
            "station_id": "dongsi",
            "pollutant": "pm25",
            "ts": "2026-01-01T02:07:00.123Z",
            "hour_start": "2026-01-01T02:00:00Z",
            "sensor_id": "dongsi-pm25-1",
            "value": 12.5,
            "unit": "ug/m3",
            "value_epa": 12.5,
            "unit_epa": "ug/m3",
            "mean_1h": 11.75,
            "mean_8h": None,
            "mean_24h": None,
            "lat": 39.929,
            "lon": 116.417,
            "flags": '["spike","calibration_due"]',
            "anomaly_score": 0.1,
            "correction": None,
        }
    ]


def test_json_columns_do_not_depend_on_insertion_order(store: Store) -> None:
    one = aqi(sub_indices={"a": 1, "b": 2, "c": 3}, concentrations={"x": 0.1, "y": 1e-7})
    other = aqi(
        station="other", sub_indices={"c": 3, "a": 1, "b": 2}, concentrations={"y": 1e-7, "x": 0.1}
    )
    store.write_batch({"aqi_hourly": [one, other]})
    rows = store.fetch("aqi_hourly")
    assert rows[0]["sub_indices"] == rows[1]["sub_indices"] == '{"a":1,"b":2,"c":3}'
    # floats are written as Python's repr: they read back to the same double
    assert rows[0]["concentrations"] == '{"x":0.1,"y":1e-07}'
    assert json.loads(rows[0]["concentrations"]) == {"x": 0.1, "y": 1e-7}


def test_timestamps_in_other_zones_are_stored_as_utc(store: Store) -> None:
    beijing = timezone(timedelta(hours=8))
    record = reading()
    record["ts"] = datetime(2026, 1, 1, 10, 7, 0, 123000, tzinfo=beijing)
    record["hour_start"] = datetime(2026, 1, 1, 10, tzinfo=beijing)
    store.write_batch({"readings": [record]})
    (row,) = store.fetch("readings")
    assert (row["ts"], row["hour_start"]) == ("2026-01-01T02:07:00.123Z", "2026-01-01T02:00:00Z")


def test_iso_text_sorts_in_time_order(store: Store) -> None:
    minutes = [59, 0, 30, 1]
    store.write_batch({"readings": [reading(minute=m) for m in minutes]})
    stamps = [row["ts"] for row in store.fetch("readings", order_by=["ts"])]
    assert stamps == sorted(stamps)
    assert [int(s[14:16]) for s in stamps] == sorted(minutes)


def test_a_timestamp_seen_before_is_stored_as_the_same_text() -> None:
    """The sink remembers the text of recent timestamps (most repeat): more distinct
    ones than it keeps, each twice, every text is still the timestamp's own."""
    from sinks._datasets import READINGS

    start = datetime(2026, 1, 1, tzinfo=UTC)
    moments = [start + timedelta(minutes=m, milliseconds=m % 1000) for m in range(5000)]
    for _ in range(2):
        for moment in moments:
            row = READINGS.to_row(reading() | {"ts": moment, "hour_start": start})
            ts, hour = (READINGS.column_names.index(name) for name in ("ts", "hour_start"))
            assert row[ts] == moment.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"
            assert row[hour] == "2026-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"ts": datetime(2026, 1, 1, 2)}, "naive datetime"),  # noqa: DTZ001 - on purpose
        ({"value": float("nan")}, "finite"),
        ({"value_epa": float("inf")}, "finite"),
        ({"flags": ["ok", float("nan")]}, "JSON"),
        ({"pollutant": 25}, "expected a string"),
        ({"hour_start": H0 + timedelta(milliseconds=1)}, "whole second"),
    ],
)
def test_records_that_cannot_be_rows_are_refused_before_writing(
    store: Store, changes: dict[str, Any], match: str
) -> None:
    bad = {**reading(minute=1), **changes}
    with pytest.raises(InvalidRecord, match=match):
        store.write_batch({"aqi_hourly": [aqi()], "readings": [reading(), bad]})
    assert snapshot(store) == {"aqi_hourly": [], "readings": []}


# --- transactions ---------------------------------------------------------------------------


def test_a_failure_mid_batch_leaves_both_datasets_unchanged(store: Store) -> None:
    store.write_batch({"aqi_hourly": [aqi(aqi=1)], "readings": [reading(value=1.0)]})
    before = snapshot(store)
    violates_not_null = {**reading(minute=9), "value": None}
    with pytest.raises(StoreError, match="rolled back"):
        # aqi_hourly is written first in the transaction, the readings fail on their 3rd row
        store.write_batch(
            {
                "aqi_hourly": [aqi(aqi=2), aqi(hour=1)],
                "readings": [
                    reading(value=2.0),
                    reading(minute=5),
                    violates_not_null,
                    reading(minute=10),
                ],
            }
        )
    assert snapshot(store) == before
    # the store is usable after the rollback
    store.write_batch({"aqi_hourly": [aqi(aqi=3)]})
    assert [row["aqi"] for row in store.fetch("aqi_hourly")] == [3]


def test_a_reader_never_sees_half_a_batch(store_url: str) -> None:
    with open_store(store_url) as writer, open_store(store_url) as reader:
        writer.write_batch(
            {
                "aqi_hourly": [aqi(hour=h) for h in range(5)],
                "readings": [reading(minute=m) for m in range(5)],
            }
        )
        with pytest.raises(StoreError):
            writer.write_batch(
                {"aqi_hourly": [aqi(hour=9)], "readings": [{**reading(minute=30), "unit": None}]}
            )
        assert reader.count("aqi_hourly") == 5
        assert reader.count("readings") == 5


# --- reading back ---------------------------------------------------------------------------


def test_fetch_filters_by_equality_with_record_values(store: Store) -> None:
    store.write_batch(
        {
            "aqi_hourly": [aqi(hour=h) for h in range(3)] + [aqi("guanyuan", 1)],
            "readings": [reading(sensor_id=None), reading(minute=1)],
        }
    )
    rows = store.fetch("aqi_hourly", where={"hour_start": H0 + timedelta(hours=1)})
    assert [row["station_id"] for row in rows] == ["dongsi", "guanyuan"]
    assert len(store.fetch("readings", where={"sensor_id": None})) == 1
    newest_first = store.fetch("aqi_hourly", {"station_id": "dongsi"}, order_by=["hour_start DESC"])
    assert newest_first[0]["hour_start"] == "2026-01-01T04:00:00Z"


def test_fetch_and_count_refuse_unknown_names(store: Store) -> None:
    with pytest.raises(StoreError, match="unknown dataset"):
        store.count("aqi_daily; DROP TABLE readings")
    with pytest.raises(StoreError, match="no column"):
        store.fetch("readings", where={"1=1 OR station_id": "x"})
    with pytest.raises(StoreError, match="no column"):
        store.fetch("readings", order_by=["random()"])


def test_a_closed_store_says_so(store_url: str) -> None:
    store = open_store(store_url)
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.count("readings")


def test_a_batch_naming_an_unknown_dataset_is_refused_before_any_write(store: Store) -> None:
    with pytest.raises(StoreError, match="unknown dataset 'weather'"):
        store.write_batch({"aqi_hourly": [aqi()], "weather": [{"t": 1}]})
    assert store.count("aqi_hourly") == 0


# --- revisions: the daily AQI keeps its highest revision -------------------------------------


def _revision_and_aqi(store: Store) -> list[tuple[str, int, int]]:
    return [(r["day"], r["revision"], r["aqi"]) for r in store.fetch("aqi_daily")]


def test_daily_row_is_rendered_exactly(store: Store) -> None:
    store.write_batch({"aqi_daily": [daily()]})
    assert store.fetch("aqi_daily") == [
        {
            "station_id": "dongsi",
            "day": "2013-03-01",
            "day_start": "2013-02-28T16:00:00Z",
            "utc_offset_minutes": 480,
            "revision": 0,
            "aqi": 102,
            "category": "Unhealthy for Sensitive Groups",
            "main_pollutant": "pm25_24h",
            "sub_indices": '{"pm25_24h":102}',
            "concentrations": '{"pm25_24h":35.9}',
            "completeness": '{"o3_8h":12,"pm25_24h":24}',
            "reasons": '{"o3":"incomplete_day"}',
            "reason": None,
            "health_message": "People with heart or lung disease, …",
            "aqi_version": "EPA-454/B-24-002",
        }
    ]


def test_a_higher_revision_replaces_the_row(store: Store) -> None:
    store.write_batch({"aqi_daily": [daily(revision=0, aqi=40)]})
    store.write_batch({"aqi_daily": [daily(revision=1, aqi=102)]})
    assert _revision_and_aqi(store) == [("2013-03-01", 1, 102)]


def test_a_lower_revision_never_replaces_a_higher_one_across_batches(store: Store) -> None:
    store.write_batch({"aqi_daily": [daily(revision=2, aqi=102)]})
    store.write_batch({"aqi_daily": [daily(revision=1, aqi=40)]})  # a late re-delivery
    store.write_batch({"aqi_daily": [daily(revision=0, aqi=30)]})
    assert _revision_and_aqi(store) == [("2013-03-01", 2, 102)]


def test_a_lower_revision_never_replaces_a_higher_one_within_a_batch(store: Store) -> None:
    store.write_batch(
        {
            "aqi_daily": [
                daily(revision=1, aqi=102),
                daily(revision=0, aqi=40),  # after the higher one in the same batch
                daily(day=2, revision=0, aqi=50),
                daily(day=2, revision=3, aqi=77),
                daily(day=2, revision=2, aqi=60),
            ]
        }
    )
    assert _revision_and_aqi(store) == [("2013-03-01", 1, 102), ("2013-03-02", 3, 77)]


def test_the_same_revision_again_is_idempotent(store: Store) -> None:
    batch = {"aqi_daily": [daily(revision=1), daily(day=2)]}
    store.write_batch(batch)
    first = store.fetch("aqi_daily")
    store.write_batch(batch)
    assert store.fetch("aqi_daily") == first
