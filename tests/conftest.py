"""Shared fixtures.

``kafka_bootstrap`` is the bootstrap address of a real Kafka broker. It is session-scoped
and lazy: the broker starts only when the first test that asks for it runs, so unit-only
runs never start Java. Set ``CIVIC_TEST_KAFKA_BOOTSTRAP=host:port`` to use a broker that is
already running (e.g. the one from ``make kafka-up``) instead.

``sasl_kafka`` is a second broker, SASL_SSL only (SCRAM-SHA-512, a test CA), also lazy.

``postgres_server`` is the same for PostgreSQL: a throwaway server (deploy/local-postgres)
started on first use, once per session; ``CIVIC_TEST_POSTGRES_URL`` names an existing
server instead (a URL of a database of a role that may create databases).
``store_url`` gives each test a fresh, empty store on every backend (parametrised).
"""

from __future__ import annotations

import os
import re
import secrets
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest

from civicstream.compiled import StaleBuild, ensure_fresh
from civicstream.localbroker import load_local_kafka, load_local_postgres

ROOT = Path(__file__).resolve().parents[1]
BOOTSTRAP_ENV = "CIVIC_TEST_KAFKA_BOOTSTRAP"
POSTGRES_ENV = "CIVIC_TEST_POSTGRES_URL"
BACKENDS = ("sqlite", "postgresql")


def pytest_configure(config: pytest.Config) -> None:
    try:  # a compiled module older than its source would test the old code
        ensure_fresh()
    except StaleBuild as error:
        pytest.exit(str(error), returncode=2)
    # kafka-python 3.0 loads its protocol schemas with the deprecated importlib.resources API.
    for api in ("read_text", "open_text"):
        config.addinivalue_line("filterwarnings", f"ignore:{api} is deprecated:DeprecationWarning")


@pytest.fixture(scope="session")
def localkafka() -> ModuleType:
    """The localkafka module, for tests that run brokers of their own (restarts, crashes)."""
    return load_local_kafka()


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``host:port`` of a Kafka broker for the whole session, started on first use."""
    external = os.environ.get(BOOTSTRAP_ENV, "").strip()
    if external:
        yield external
        return
    localkafka = load_local_kafka()
    port, controller_port = localkafka.free_ports(2)
    broker = localkafka.start(tmp_path_factory.mktemp("kafka"), port, controller_port)
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


SASL_USERS = ("civic-worker", "civic-sink", "civic-archive", "civic-ops")
"""The SCRAM users of the session's SASL_SSL broker: one per process role."""


@pytest.fixture(scope="session")
def sasl_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A second broker for the session whose only client listener is SASL_SSL
    (SCRAM-SHA-512; a test CA made with openssl in its data dir; users `SASL_USERS` with
    random passwords). Started on first use, even when CIVIC_TEST_KAFKA_BOOTSTRAP names
    the plaintext broker; ``handle.client_env(user)`` gives a client's CIVIC_KAFKA_*."""
    localkafka = load_local_kafka()
    port, controller_port = localkafka.free_ports(2)
    users = {user: secrets.token_urlsafe(18) for user in SASL_USERS}
    broker = localkafka.start(
        tmp_path_factory.mktemp("kafka-sasl"), port, controller_port, sasl_users=users
    )
    try:
        yield broker
    finally:
        broker.stop()


class TopicPrefix(str):
    """A test's unique prefix (``t-<test>-<uuid8>.``) that is also a factory of names.

    ``topic_prefix("readings")`` -> ``t-test-roundtrip-3f2a9c1e.readings``;
    ``topic_prefix()``, ``str(topic_prefix)`` and ``f"{topic_prefix}x"`` give the bare prefix.
    """

    __slots__ = ()

    def __call__(self, name: str = "") -> str:
        return f"{self}{name}"


@pytest.fixture
def topic_prefix(request: pytest.FixtureRequest) -> TopicPrefix:
    """Unique topic (and group) name prefix for this test; call it to make names."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40]
    return TopicPrefix(f"t-{slug}-{uuid.uuid4().hex[:8]}.")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """URL of a database on a PostgreSQL server for the session, started on first use."""
    external = os.environ.get(POSTGRES_ENV, "").strip()
    if external:
        yield external
        return
    server = load_local_postgres().start()
    try:
        yield server.url("postgres")
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_database(postgres_server: str) -> Iterator[Callable[[], str]]:
    """A factory of new, empty databases on the session's server (URLs); all are dropped
    when the session ends."""
    import psycopg

    created: list[str] = []

    def create() -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(postgres_server, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        return urlsplit(postgres_server)._replace(path=f"/{name}").geturl()

    yield create
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        for name in created:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url(postgres_database: Callable[[], str]) -> str:
    """A new, empty database of its own for this test."""
    return postgres_database()


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of a fresh, empty store: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store.db"
    return str(request.getfixturevalue("postgres_url"))
