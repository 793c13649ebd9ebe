"""Both store backends: one schema from one list of migrations, the same stored text, the
same reads; PostgreSQL specifics (COPY batches, collation, concurrent first opens).

`store_url` (tests/conftest.py) is a fresh SQLite file or a fresh database on the test
session's real PostgreSQL server.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from sinks import _migrations
from sinks._datasets import DATASETS, Column, Dataset
from sinks._migrations import AddColumn, CreateIndex, CreateTable, Sql, render
from sinks._postgres import PostgreSQLStore
from sinks._query import parse_records_query
from sinks.exceptions import StoreError
from sinks.store import DatasetStatus, Store, open_store
from tests.unit.test_store import H0, anomaly, aqi, daily, incident, incident_count, reading

SQL_TYPES = {
    "sqlite": {
        "text": "TEXT",
        "int": "INTEGER",
        "real": "REAL",
        "hour": "TEXT",
        "millis": "TEXT",
        "date": "TEXT",
        "json": "TEXT",
        "bool": "INTEGER",
    },
    "postgresql": {
        "text": "text",
        "int": "bigint",
        "real": "double precision",
        "hour": "text",
        "millis": "text",
        "date": "text",
        "json": "text",
        "bool": "bigint",
    },
}


def table_columns(store_url: str, table: str) -> list[tuple[str, str, bool]]:
    """(name, type, nullable) of a table's columns, in order, as the database reports them."""
    if store_url.startswith("sqlite"):
        with sqlite3.connect(store_url.removeprefix("sqlite:///")) as db:
            rows = db.execute(f"PRAGMA table_info({table})").fetchall()
        return [(row[1], row[2], not row[3]) for row in rows]
    with psycopg.connect(store_url) as db:
        rows = db.execute(
            "SELECT column_name, data_type, is_nullable = 'YES' FROM information_schema.columns "
            "WHERE table_name = %s ORDER BY ordinal_position",
            (table,),
        ).fetchall()
    return [(name, kind, nullable) for name, kind, nullable in rows]


def primary_key(store_url: str, table: str) -> list[str]:
    if store_url.startswith("sqlite"):
        with sqlite3.connect(store_url.removeprefix("sqlite:///")) as db:
            rows = db.execute(f"PRAGMA table_info({table})").fetchall()
        return [row[1] for row in sorted(rows, key=lambda r: r[5]) if row[5]]
    with psycopg.connect(store_url) as db:
        rows = db.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
            "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary "
            "ORDER BY array_position(i.indkey, a.attnum)",
            (table,),
        ).fetchall()
    return [row[0] for row in rows]


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with open_store(store_url) as opened:
        yield opened


# --- schema ---------------------------------------------------------------------------------


def test_the_migrations_give_every_dataset_exactly_its_columns_and_key(store_url: str) -> None:
    open_store(store_url).close()
    backend = "sqlite" if store_url.startswith("sqlite") else "postgresql"
    for ds in DATASETS.values():
        expected = [(c.name, SQL_TYPES[backend][c.kind], c.nullable) for c in ds.columns]
        assert table_columns(store_url, ds.name) == expected, ds.name
        assert primary_key(store_url, ds.name) == list(ds.key), ds.name


def test_every_step_renders_for_both_backends() -> None:
    for _version, operations in _migrations.MIGRATIONS:
        for operation in operations:
            assert render(operation, "sqlite")
            assert render(operation, "postgresql")
    versions = [version for version, _ in _migrations.MIGRATIONS]
    assert versions == list(range(1, len(versions) + 1))


def test_rendering_of_each_operation() -> None:
    table = CreateTable(
        "t", (Column("k", "text"), Column("n", "int", nullable=True), Column("x", "real")), ("k",)
    )
    assert render(table, "sqlite") == (
        "CREATE TABLE t (\n    k TEXT NOT NULL,\n    n INTEGER,\n    x REAL NOT NULL,\n"
        "    PRIMARY KEY (k)\n)",
    )
    assert render(table, "postgresql") == (
        'CREATE TABLE t (\n    k TEXT COLLATE "C" NOT NULL,\n    n BIGINT,\n'
        "    x DOUBLE PRECISION NOT NULL,\n    PRIMARY KEY (k)\n)",
    )
    assert render(AddColumn("t", Column("m", "json", nullable=True)), "postgresql") == (
        'ALTER TABLE t ADD COLUMN m TEXT COLLATE "C"',
    )
    assert render(CreateIndex("t_n", "t", ("n", "k")), "sqlite") == (
        "CREATE INDEX t_n ON t (n, k)",
    )
    assert render(Sql(("a",), ("b",)), "postgresql") == ("b",)
    with pytest.raises(ValueError, match="must be nullable"):
        render(AddColumn("t", Column("m", "int")), "sqlite")


def test_concurrent_first_opens_apply_each_step_once(store_url: str) -> None:
    errors: list[BaseException] = []

    def open_and_close() -> None:
        try:
            open_store(store_url).close()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=open_and_close) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with open_store(store_url) as store:
        versions = [row[0] for row in store._read("SELECT version FROM schema_version", ())]  # type: ignore[attr-defined]
    assert versions == [version for version, _ in _migrations.MIGRATIONS]


def test_a_postgresql_store_newer_than_the_code_is_refused(postgres_url: str) -> None:
    open_store(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute("INSERT INTO schema_version VALUES (99, '2030-01-01T00:00:00Z')")
    with pytest.raises(StoreError, match="schema version 99"):
        open_store(postgres_url)


def test_an_unreachable_postgresql_server_is_a_clear_error_without_the_password() -> None:
    with pytest.raises(StoreError, match="cannot open PostgreSQL store") as caught:
        open_store("postgresql://civic:s3cret@127.0.0.1:1/civic?connect_timeout=2")
    assert "s3cret" not in str(caught.value)
    assert "civic:***@" in str(caught.value)


# --- the same text on every backend ---------------------------------------------------------


def varied_batch() -> dict[str, list[dict[str, Any]]]:
    return {
        "aqi_hourly": [
            aqi("dongsi", 0),
            aqi("Ωmega-站", 1, aqi=None, category=None, main_pollutant=None, reason="no_index"),
            aqi("guanyuan", 2, concentrations={"pm25_nowcast": 0.1 + 0.2, "co_8h": 1e-300}),
        ],
        "readings": [
            reading(minute=1, value=1 / 3, value_epa=2.0**-1074, lat=None, lon=None),
            reading("tiantan", "o3", 2, value=123456789.123456789, unit="ppb", flags=[]),
            reading(minute=3, mean_8h=-0.0, anomaly_score=0.999999999999),
        ],
        "aqi_daily": [
            daily(),
            daily("Ωmega-站", 2, aqi=None, category=None, main_pollutant=None, reason="x"),
            daily(day=3, revision=2, concentrations={"pm25_24h": 0.1 + 0.2}),
        ],
        "incidents": [
            incident(),
            incident("sfpd-2", address=None, lat=None, lon=None, location_withheld=True),
            incident("pgh-3", source="pittsburgh-fire", reported_at=None, offence_codes=[]),
        ],
        "incident_counts": [
            incident_count(),
            incident_count("Bayview", 20, count=None, suppressed=True, baseline=None),
            incident_count(day=21, spike=True, tail_probability=2.7e-5, revision=3),
        ],
        "anomalies": [anomaly(), anomaly("Ωmega-站", 4, "stale"), anomaly(hour=5, kind="spike")],
    }


def test_every_backend_stores_the_same_text_for_the_same_records(postgres_url: str) -> None:
    with open_store("sqlite:///:memory:") as sqlite_store, open_store(postgres_url) as pg_store:
        for store in (sqlite_store, pg_store):
            store.write_batch(varied_batch())
        for name in DATASETS:
            assert pg_store.fetch(name) == sqlite_store.fetch(name), name
            rows = pg_store.fetch(name)
            expected = sorted(
                (DATASETS[name].to_row(r) for r in varied_batch()[name]),
                key=DATASETS[name].key_of,
            )
            assert [tuple(row.values()) for row in rows] == expected


def test_copy_and_executemany_batches_store_the_same_rows(postgres_database: Any) -> None:
    batch = {
        "aqi_hourly": [aqi(f"s{n % 7}", n) for n in range(60)],
        "readings": [reading(minute=m, value=m / 7) for m in range(60)],
    }
    with (
        PostgreSQLStore(postgres_database(), copy_threshold=1) as copied,
        PostgreSQLStore(postgres_database(), copy_threshold=10**9) as inserted,
    ):
        for store in (copied, inserted):
            store.write_batch(batch)
            store.write_batch(batch)  # the upsert path of each: nothing changes
            store.write_batch({"aqi_hourly": [aqi("s1", 1, aqi=499)]})
        for name in DATASETS:
            assert copied.fetch(name) == inserted.fetch(name)
        assert (
            copied.fetch("aqi_hourly", {"station_id": "s1", "hour_start": H0 + timedelta(hours=1)})[
                0
            ]["aqi"]
            == 499
        )


def test_text_sorts_bytewise_even_in_a_database_with_a_natural_language_collation(
    postgres_server: str,
) -> None:
    name = "t_icu_collation"
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.execute(
            f"CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' "
            "LOCALE 'C'"
        )
    url = postgres_server.rsplit("/", 1)[0] + f"/{name}"
    stations = ["b", "B", "a", "_x", "Z", "ä"]
    try:
        with open_store(url) as pg_store, open_store("sqlite:///:memory:") as sqlite_store:
            for store in (pg_store, sqlite_store):
                store.write_batch({"aqi_hourly": [aqi(s) for s in stations]})
            order = [row["station_id"] for row in pg_store.fetch("aqi_hourly")]
            assert order == [row["station_id"] for row in sqlite_store.fetch("aqi_hourly")]
            assert order == sorted(stations, key=lambda s: s.encode())
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# --- revisions ------------------------------------------------------------------------------

CORRECTED = Dataset(
    name="corrected",
    contract="aqi_hourly",
    topic="aqi_hourly",
    columns=(Column("station_id", "text"), Column("aqi", "int"), Column("revision", "int")),
    key=("station_id",),
    revision="revision",
)


@pytest.fixture
def revised_store(store_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    """A store with one more dataset, one that carries a revision."""
    step = (
        _migrations.schema_version() + 1,
        (CreateTable("corrected", CORRECTED.columns, CORRECTED.key),),
    )
    monkeypatch.setattr(_migrations, "MIGRATIONS", (*_migrations.MIGRATIONS, step))
    monkeypatch.setitem(DATASETS, "corrected", CORRECTED)
    with open_store(store_url) as opened:
        yield opened


def test_the_highest_revision_wins_whatever_the_arrival_order(revised_store: Store) -> None:
    def row(station: str, value: int, revision: int) -> dict[str, Any]:
        return {"station_id": station, "aqi": value, "revision": revision}

    revised_store.write_batch({"corrected": [row("a", 10, 2), row("b", 20, 1)]})
    revised_store.write_batch({"corrected": [row("a", 11, 1), row("b", 21, 3)]})  # a: older
    revised_store.write_batch({"corrected": [row("a", 12, 2)]})  # an equal revision replaces
    # within one batch too: the highest revision, not the last record
    revised_store.write_batch({"corrected": [row("c", 30, 5), row("c", 31, 4)]})
    assert revised_store.fetch("corrected") == [
        {"station_id": "a", "aqi": 12, "revision": 2},
        {"station_id": "b", "aqi": 21, "revision": 3},
        {"station_id": "c", "aqi": 30, "revision": 5},
    ]


# --- status ---------------------------------------------------------------------------------


def test_status_tracks_last_write_and_the_time_span(store: Store) -> None:
    assert store.statuses() == {name: DatasetStatus(None, None, None) for name in DATASETS}
    store.write_batch({"aqi_hourly": [aqi(hour=5), aqi(hour=3)]})
    first = store.statuses()["aqi_hourly"]
    assert (first.first_time, first.last_time) == ("2026-01-01T05:00:00Z", "2026-01-01T07:00:00Z")
    assert first.modified is not None and first.modified.endswith("Z")
    assert store.statuses()["readings"] == DatasetStatus(None, None, None)
    store.write_batch({"aqi_hourly": [aqi(hour=1)]})
    store.write_batch({"aqi_hourly": [aqi(hour=9)], "readings": [reading(minute=2)]})
    after = store.statuses()
    assert (after["aqi_hourly"].first_time, after["aqi_hourly"].last_time) == (
        "2026-01-01T03:00:00Z",
        "2026-01-01T11:00:00Z",
    )
    assert after["aqi_hourly"].modified >= first.modified  # type: ignore[operator]
    assert after["readings"].first_time == after["readings"].last_time == "2026-01-01T02:02:00.123Z"


def test_a_failed_batch_changes_no_status(store: Store) -> None:
    with pytest.raises(StoreError):
        store.write_batch({"readings": [{**reading(), "unit": None}]})
    assert store.statuses()["readings"] == DatasetStatus(None, None, None)


def test_migrating_an_old_store_backfills_the_status(tmp_path: Any) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:  # a store as version 1 left it
        db.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TEXT)")
        db.execute("INSERT INTO schema_version VALUES (1, '2026-01-01T00:00:00+00:00')")
        for operation in _migrations.MIGRATIONS[0][1]:
            for statement in render(operation, "sqlite"):
                db.execute(statement)
        row = DATASETS["aqi_hourly"].to_row(aqi(hour=4))[:11]  # the columns of version 1
        db.execute(f"INSERT INTO aqi_hourly VALUES ({', '.join('?' for _ in row)})", row)
    with open_store(f"sqlite:///{path}") as store:
        assert store.statuses()["aqi_hourly"] == DatasetStatus(
            None, "2026-01-01T06:00:00Z", "2026-01-01T06:00:00Z"
        )
        assert store.count("aqi_hourly") == 1


# --- reads ----------------------------------------------------------------------------------


def test_latest_gives_each_stations_newest_row(store: Store) -> None:
    store.write_batch(
        {"aqi_hourly": [aqi(s, h) for s in ("a", "b", "c") for h in range(4)] + [aqi("b", 9)]}
    )
    latest = store.latest("aqi_hourly", "station_id", "hour_start")
    assert [(row[0], row[1]) for row in latest] == [
        ("a", "2026-01-01T05:00:00Z"),
        ("b", "2026-01-01T11:00:00Z"),
        ("c", "2026-01-01T05:00:00Z"),
    ]
    with open_store("sqlite:///:memory:") as empty:
        assert empty.latest("aqi_hourly", "station_id", "hour_start") == []


@pytest.mark.parametrize(
    "sort", ["", "-ts", "mean_8h", "-mean_8h,ts", "sensor_id,-value", "-lat,station_id"]
)
def test_cursor_pages_walk_every_row_once_in_order(store: Store, sort: str) -> None:
    """Keyset paging, also on nullable columns with NULLs (first ascending, last descending)."""
    records = [
        reading(
            station,
            pollutant,
            minute,
            value=float(minute % 5),
            mean_8h=None if minute % 3 == 0 else float(minute % 4),
            sensor_id=None if minute % 4 == 0 else f"s{minute % 2}",
            lat=None if station == "b" else 39.9,
        )
        for station in ("a", "b")
        for pollutant in ("pm25", "o3")
        for minute in range(12)
    ]
    store.write_batch({"readings": records})
    params = [("sort", sort)] if sort else []
    everything = store.records(
        parse_records_query(DATASETS["readings"], [*params, ("limit", "1000")])
    )
    assert len(everything) == 48
    query = parse_records_query(DATASETS["readings"], [*params, ("limit", "5")])
    walked: list[Any] = []
    while True:
        page = store.records(query)
        walked.extend(page)
        if len(page) < 5:
            break
        query = query.next_page(page[-1])
    assert walked == everything
    # and a cursor made for the API round-trips to the same next page
    first = store.records(parse_records_query(DATASETS["readings"], [*params, ("limit", "5")]))
    cursor = parse_records_query(DATASETS["readings"], [*params, ("limit", "5")]).cursor_after(
        first[-1]
    )
    again = parse_records_query(DATASETS["readings"], [*params, ("limit", "5"), ("cursor", cursor)])
    assert store.records(again) == everything[5:10]


def test_stream_reads_in_chunks_and_can_stop_early(store: Store) -> None:
    store.write_batch({"readings": [reading(minute=m) for m in range(25)]})
    query = parse_records_query(DATASETS["readings"], [], paged=False)
    chunks = list(store.stream(query, chunk_rows=10))
    assert [len(chunk) for chunk in chunks] == [10, 10, 5]
    assert [row for chunk in chunks for row in chunk] == store.records(
        parse_records_query(DATASETS["readings"], [("limit", "100")])
    )
    partial = store.stream(query, chunk_rows=10)
    assert len(next(partial)) == 10
    partial.close()  # type: ignore[attr-defined]
    assert store.count("readings") == 25  # the store is still usable
