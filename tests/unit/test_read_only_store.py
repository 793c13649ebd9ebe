"""The API's store is read-only: it creates, migrates and writes nothing, so the API can log
in as a database user that may only read (the write path, the sinks, as another).

`store_url` (tests/conftest.py) is a fresh SQLite file or a fresh PostgreSQL database.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from sinks.exceptions import StoreError
from sinks.store import open_store
from tests.unit.test_api import Client
from tests.unit.test_store import aqi


def test_a_read_only_store_reads_what_the_writer_wrote_and_writes_nothing(store_url: str) -> None:
    with open_store(store_url) as writer:
        writer.write_batch({"aqi_hourly": [aqi("dongsi", 1), aqi("dongsi", 2)]})
    with open_store(store_url, read_only=True) as reader:
        assert reader.count("aqi_hourly") == 2
        assert [row["station_id"] for row in reader.fetch("aqi_hourly")] == ["dongsi"] * 2
        with pytest.raises(StoreError, match="read-only"):
            reader.write_batch({"aqi_hourly": [aqi("tiantan", 1)]})
        assert reader.count("aqi_hourly") == 2


def test_before_a_writer_creates_the_store_reads_fail_then_succeed(store_url: str) -> None:
    with open_store(store_url, read_only=True) as reader:
        with pytest.raises(StoreError):
            reader.count("aqi_hourly")
        if store_url.startswith("sqlite:///"):  # not even the file was created
            assert not Path(store_url.removeprefix("sqlite:///")).exists()
        with open_store(store_url) as writer:  # the sink starts and creates the schema
            writer.write_batch({"aqi_hourly": [aqi("dongsi", 1)]})
        assert reader.count("aqi_hourly") == 1


def test_a_schema_newer_than_the_code_is_refused_read_only_too(store_url: str) -> None:
    from sinks import _migrations

    with open_store(store_url):
        pass
    newer = _migrations.schema_version() + 1
    if store_url.startswith("sqlite:///"):
        import sqlite3

        with sqlite3.connect(store_url.removeprefix("sqlite:///")) as db:
            db.execute("INSERT INTO schema_version VALUES (?, 'later')", (newer,))
    else:
        with psycopg.connect(store_url, autocommit=True) as db:
            db.execute("INSERT INTO schema_version VALUES (%s, 'later')", (newer,))
    with pytest.raises(StoreError, match="newer"):
        open_store(store_url, read_only=True)


@pytest.fixture
def select_only_url(postgres_url: str) -> Iterator[str]:
    """The test database (its schema made by a writer) and a role that may only SELECT."""
    with open_store(postgres_url) as writer:
        writer.write_batch({"aqi_hourly": [aqi("dongsi", 1)]})
    role = f"reader_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'reader-pw'")
        admin.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
        admin.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
    parts = urlsplit(postgres_url)
    yield parts._replace(netloc=f"{role}:reader-pw@{parts.hostname}:{parts.port}").geturl()
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f"DROP OWNED BY {role}")
        admin.execute(f"DROP ROLE {role}")


def test_the_api_serves_as_a_postgresql_user_that_may_only_select(select_only_url: str) -> None:
    from sinks.api import ApiServer, Site

    with pytest.raises(StoreError, match="permission denied"):
        open_store(select_only_url)  # a writer's open (it migrates) is refused to this user
    with (
        open_store(select_only_url, read_only=True) as store,
        ApiServer(store, Site()) as server,
    ):
        client = Client(server.url)
        assert client.records("aqi_hourly")["count"] == 1
        assert client.get("/data.json").status == 200


def test_a_read_only_postgresql_session_cannot_write_even_as_a_writer(postgres_url: str) -> None:
    with open_store(postgres_url) as writer:
        writer.write_batch({"aqi_hourly": [aqi("dongsi", 1)]})
    with open_store(postgres_url, read_only=True) as reader:
        session = reader._reader()  # the connection the API's reads use
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            session.execute("DELETE FROM aqi_hourly")
        assert reader.count("aqi_hourly") == 1
