"""Publishing to a CKAN DataStore: the requests CKAN documents, retries, idempotent upserts.

The portal is a real HTTP server on loopback speaking CKAN's Action API (tests/ckan_portal.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import schemas
from sinks._datasets import AQI_HOURLY
from sinks.ckan import CkanClient, CkanError, CkanTarget, ckan_fields
from sinks.store import open_store
from tests.ckan_portal import Portal, running_portal

TOKEN = "s3cret-token"
H0 = datetime(2026, 1, 1, tzinfo=UTC)


def aqi(station: str, hour: int, value: int = 42) -> dict[str, Any]:
    record = {
        "station_id": station,
        "hour_start": H0 + timedelta(hours=hour),
        "aqi": value,
        "category": "Good",
        "main_pollutant": "pm25_nowcast",
        "sub_indices": {"pm25_nowcast": value},
        "concentrations": {"pm25_nowcast": 10.1},
        "hourly_means": {"pm25": 10.15},
        "reading_count": 12,
        "reason": None,
        "aqi_version": "EPA-454/B-24-002",
    }
    return schemas.decode(schemas.encode("aqi_hourly", record))


@pytest.fixture
def portal() -> Iterator[tuple[str, Portal]]:
    with running_portal(TOKEN, {"res-aqi", "res-readings"}) as running:
        yield running


def target(url: str, *, chunk_size: int = 500, token: str | None = TOKEN) -> CkanTarget:
    client = CkanClient(url, token, retry_for_s=5.0, backoff_s=0.01)
    return CkanTarget(client, {"aqi_hourly": "res-aqi"}, chunk_size=chunk_size)


def test_the_first_batch_creates_the_table_keyed_like_the_dataset_then_upserts(
    portal: tuple[str, Portal],
) -> None:
    url, state = portal
    target(url).write_batch({"aqi_hourly": [aqi("dongsi", 0), aqi("dongsi", 1)]})
    actions = [action for action, _ in state.requests]
    assert actions == ["datastore_create", "datastore_upsert"]
    create = state.requests[0][1]
    assert create["primary_key"] == ["station_id", "hour_start"]
    assert create["fields"] == ckan_fields(AQI_HOURLY)
    assert {"id": "sub_indices", "type": "json"} in create["fields"]
    assert {"id": "hour_start", "type": "timestamp"} in create["fields"]
    assert state.requests[1][1]["method"] == "upsert"
    assert len(state.tables["res-aqi"].rows) == 2


def test_published_rows_equal_the_open_data_store_rows(portal: tuple[str, Portal]) -> None:
    url, state = portal
    records = [aqi(s, h, 10 * h) for s in ("dongsi", "tiantan") for h in range(4)]
    target(url).write_batch({"aqi_hourly": records})
    with open_store("sqlite:///:memory:") as store:
        store.write_batch({"aqi_hourly": records})
        stored = store.fetch("aqi_hourly")
    published = [state.tables["res-aqi"].rows[key] for key in sorted(state.tables["res-aqi"].rows)]
    for row in stored:  # JSON columns go to CKAN as JSON, everything else as stored
        for name in ("sub_indices", "concentrations", "hourly_means"):
            row[name] = json.loads(row[name])
    assert published == stored


def test_writing_a_batch_twice_leaves_the_same_rows(portal: tuple[str, Portal]) -> None:
    url, state = portal
    batch = {"aqi_hourly": [aqi("dongsi", h) for h in range(3)]}
    publisher = target(url)
    publisher.write_batch(batch)
    first = dict(state.tables["res-aqi"].rows)
    publisher.write_batch(batch)
    assert state.tables["res-aqi"].rows == first
    creates = [action for action, _ in state.requests if action == "datastore_create"]
    assert len(creates) == 1  # once per resource and process


def test_a_later_record_of_a_key_in_one_batch_wins(portal: tuple[str, Portal]) -> None:
    url, state = portal
    target(url).write_batch({"aqi_hourly": [aqi("dongsi", 0, 10), aqi("dongsi", 0, 99)]})
    (row,) = state.tables["res-aqi"].rows.values()
    assert row["aqi"] == 99


def test_large_batches_go_in_chunks(portal: tuple[str, Portal]) -> None:
    url, state = portal
    target(url, chunk_size=4).write_batch({"aqi_hourly": [aqi("dongsi", h) for h in range(10)]})
    upserts = [body for action, body in state.requests if action == "datastore_upsert"]
    assert [len(body["records"]) for body in upserts] == [4, 4, 2]
    assert len(state.tables["res-aqi"].rows) == 10


def test_an_overloaded_portal_is_retried_until_it_answers(portal: tuple[str, Portal]) -> None:
    url, state = portal
    state.fail_next = 3
    target(url).write_batch({"aqi_hourly": [aqi("dongsi", 0)]})
    assert len(state.tables["res-aqi"].rows) == 1
    assert len(state.requests) == 3 + 2


def test_a_portal_down_longer_than_the_retry_budget_fails_the_batch(
    portal: tuple[str, Portal],
) -> None:
    url, state = portal
    state.fail_next = 10_000
    client = CkanClient(url, TOKEN, retry_for_s=0.2, backoff_s=0.01)
    with pytest.raises(CkanError, match="HTTP 503") as raised:
        CkanTarget(client, {"aqi_hourly": "res-aqi"}).write_batch({"aqi_hourly": [aqi("d", 0)]})
    assert raised.value.retryable


def test_a_wrong_token_is_refused_once_and_not_retried(portal: tuple[str, Portal]) -> None:
    url, state = portal
    with pytest.raises(CkanError, match=r"HTTP 403.*Authorization Error") as raised:
        target(url, token="wrong").write_batch({"aqi_hourly": [aqi("dongsi", 0)]})
    assert not raised.value.retryable
    assert len(state.requests) == 1


def test_an_unknown_resource_is_reported_with_ckans_reason(portal: tuple[str, Portal]) -> None:
    url, _ = portal
    client = CkanClient(url, TOKEN, retry_for_s=1.0)
    publisher = CkanTarget(client, {"aqi_hourly": "no-such-resource"})
    with pytest.raises(CkanError, match=r"HTTP 404.*Not found: Resource no-such-resource"):
        publisher.write_batch({"aqi_hourly": [aqi("dongsi", 0)]})


def test_a_portal_that_cannot_be_reached_is_a_retryable_error() -> None:
    client = CkanClient("http://127.0.0.1:9", TOKEN, retry_for_s=0.0)
    with pytest.raises(CkanError) as raised:
        client.action("datastore_search", {"resource_id": "x"})
    assert raised.value.retryable


def test_the_token_never_appears_in_the_clients_repr() -> None:
    assert TOKEN not in repr(CkanClient("http://portal.example", TOKEN))


def test_a_dataset_without_a_configured_resource_is_an_error(portal: tuple[str, Portal]) -> None:
    url, _ = portal
    with pytest.raises(Exception, match="no CKAN resource configured"):
        target(url).write_batch({"readings": [{"station_id": "x"}]})
