"""Publishing datasets to an existing CKAN portal's DataStore.

A city that already runs CKAN wants its live datasets there too. `CkanTarget` is a write
target for the sink worker (`sinks.worker.SinkWorker`): the same decode → dead letters →
write → offset commit loop as the open-data store, with the write going to CKAN:

1. once per resource and process, ``datastore_create`` with the dataset's fields and its
   natural key as ``primary_key`` (creating the table, or confirming an existing one);
2. ``datastore_upsert`` (``method: upsert``) in chunks of at most `chunk_size` records.

Upserts by primary key make a re-delivered batch a no-op, so offsets are committed only
after CKAN has answered every chunk with ``success: true``. CKAN has no transaction across
requests: a batch that fails half-way is retried as a whole, which the upserts absorb.
Datasets with a revision (corrected rows) arrive in revision order per key (one key lives
in one partition), so the last upsert is the highest revision.

Request and response shapes are those of the CKAN Action API (``POST /api/3/action/NAME``
with a JSON body, ``Authorization: <API token>``; answers ``{"success": true, "result": …}``
or ``{"success": false, "error": {"__type": …, "message": …}}`` with HTTP 409 for
validation, 403 for authorisation and 404 for unknown resources), as documented for the
DataStore extension in CKAN 2.9, 2.10 and 2.11.

Transient failures (connection errors, HTTP 429 and 5xx) are retried with capped
exponential backoff for up to `retry_for_s` seconds; a CKAN answer that says the request
itself is wrong (400, 403, 404, 409) is not retried.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sinks._datasets import Dataset, Kind, get_dataset
from sinks.exceptions import StoreError
from sinks.store import Row, rows_of

__all__ = ["CkanClient", "CkanError", "CkanTarget", "ckan_fields"]

log = logging.getLogger(__name__)

# How each stored column kind is typed in the CKAN DataStore (PostgreSQL types underneath).
_CKAN_TYPES: dict[Kind, str] = {
    "text": "text",
    "int": "int",
    "real": "float",
    "hour": "timestamp",
    "millis": "timestamp",
    "date": "date",
    "json": "json",
}

_RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


class CkanError(StoreError):
    """CKAN refused a request, or did not answer within the retry budget."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False):
        super().__init__(message)
        self.status = status
        self.retryable = retryable


def ckan_fields(ds: Dataset) -> list[dict[str, str]]:
    """The DataStore field list (``id``, ``type``) of a dataset, in column order."""
    return [{"id": column.name, "type": _CKAN_TYPES[column.kind]} for column in ds.columns]


@dataclass
class CkanClient:
    """A minimal CKAN Action API client: JSON in, ``result`` out, retries on transient errors.

    The token is sent as the ``Authorization`` header and never logged.
    """

    url: str
    token: str | None = None
    timeout_s: float = 30.0
    retry_for_s: float = 300.0
    backoff_s: float = 0.5
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/")

    def __repr__(self) -> str:  # keeps the token out of logs and tracebacks
        return f"CkanClient(url={self.url!r})"

    def action(self, name: str, payload: Mapping[str, Any]) -> Any:
        """POST one action and return its ``result``; `CkanError` when CKAN says no."""
        deadline = time.monotonic() + self.retry_for_s
        delay = self.backoff_s
        while True:
            try:
                return self._post(name, payload)
            except CkanError as error:
                if not error.retryable or time.monotonic() + delay > deadline:
                    raise
                log.warning("CKAN %s failed (%s); retrying in %.1f s", name, error, delay)
                self.sleep(delay)
                delay = min(delay * 2, 30.0)

    def _post(self, name: str, payload: Mapping[str, Any]) -> Any:
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        request = urllib.request.Request(
            f"{self.url}/api/3/action/{name}",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json; charset=utf-8"},
        )
        if self.token:
            request.add_header("Authorization", self.token)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as error:
            raise _http_error(name, error) from None
        except (OSError, ValueError) as error:  # refused, reset, timed out, not JSON
            msg = f"CKAN {name}: {type(error).__name__}: {error}"
            raise CkanError(msg, retryable=True) from error
        if not isinstance(answer, dict) or answer.get("success") is not True:
            msg = f"CKAN {name} did not succeed: {_describe(answer)}"
            raise CkanError(msg)
        return answer.get("result")


def _http_error(name: str, error: urllib.error.HTTPError) -> CkanError:
    try:
        detail = _describe(json.loads(error.read()))
    except ValueError:
        detail = error.reason
    return CkanError(
        f"CKAN {name}: HTTP {error.code}: {detail}",
        status=error.code,
        retryable=error.code in _RETRYABLE_STATUS,
    )


def _describe(answer: Any) -> str:
    """The error part of a CKAN answer, compactly."""
    if isinstance(answer, dict) and isinstance(answer.get("error"), dict):
        return json.dumps(answer["error"], sort_keys=True)[:500]
    return repr(answer)[:500]


def _ckan_value(kind: Kind, value: Any) -> Any:
    """A stored value as CKAN takes it: JSON columns as JSON, not as text."""
    if kind == "json" and value is not None:
        return json.loads(value)
    return value


class CkanTarget:
    """A sink write target: datasets upserted into CKAN DataStore resources.

    `resources` maps a dataset name to its CKAN resource id (the resource must exist; its
    DataStore table is created on first use).
    """

    def __init__(
        self, client: CkanClient, resources: Mapping[str, str], *, chunk_size: int = 500
    ) -> None:
        if chunk_size < 1:
            msg = f"chunk_size must be at least 1, got {chunk_size}"
            raise ValueError(msg)
        self._client = client
        self._resources = {get_dataset(name).name: rid for name, rid in resources.items()}
        self._chunk_size = chunk_size
        self._created: set[str] = set()

    @property
    def datasets(self) -> tuple[str, ...]:
        """The datasets this target publishes."""
        return tuple(self._resources)

    def write_batch(self, batches: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        """Upsert each dataset's records into its resource; raises `CkanError` on failure."""
        self.write_rows(rows_of(batches))

    def write_rows(self, rows: Mapping[str, Sequence[Row]]) -> None:
        """`write_batch` for records already converted by their dataset's `to_row`."""
        for name, converted in rows.items():
            if not converted:
                continue
            resource_id = self._resources.get(name)
            if resource_id is None:
                msg = f"dataset {name!r} has no CKAN resource configured"
                raise StoreError(msg)
            ds = get_dataset(name)
            self._ensure_table(ds, resource_id)
            records = self._records(ds, converted)
            for start in range(0, len(records), self._chunk_size):
                self._client.action(
                    "datastore_upsert",
                    {
                        "resource_id": resource_id,
                        "records": records[start : start + self._chunk_size],
                        "method": "upsert",
                        "force": True,
                    },
                )

    def _ensure_table(self, ds: Dataset, resource_id: str) -> None:
        if resource_id in self._created:
            return
        self._client.action(
            "datastore_create",
            {
                "resource_id": resource_id,
                "fields": ckan_fields(ds),
                "primary_key": list(ds.key),
                "force": True,
            },
        )
        self._created.add(resource_id)

    @staticmethod
    def _records(ds: Dataset, rows: Sequence[Row]) -> list[dict[str, Any]]:
        """CKAN records, one per natural key (the last, or highest revision, wins)."""
        kinds = [column.kind for column in ds.columns]
        return [
            {
                name: _ckan_value(kind, value)
                for name, kind, value in zip(ds.column_names, kinds, row, strict=True)
            }
            for row in ds.latest(rows)
        ]

    def close(self) -> None:
        """Nothing to release: every request is its own connection."""
