"""A real HTTP server speaking the CKAN DataStore Action API, for the CKAN sink's tests.

It implements the request and response shapes documented for CKAN 2.9–2.11
(``ckanext.datastore.logic.action``): ``POST /api/3/action/datastore_create``,
``datastore_upsert`` and ``datastore_search``, JSON bodies, ``Authorization: <token>``,
answers ``{"help": …, "success": true, "result": …}`` or ``{"success": false, "error":
{"__type": …, …}}`` with HTTP 409 (validation), 403 (authorisation) and 404 (not found).
Tables live in memory, keyed by their primary key as the DataStore's PostgreSQL table is.
`fail_next` makes the next requests answer HTTP 503, as an overloaded portal does.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_TYPES = {"text", "int", "float", "numeric", "timestamp", "json", "bool", "date"}


class _Answer(Exception):
    def __init__(self, status: int, error: dict[str, Any]) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


def _validation(**fields: list[str]) -> _Answer:
    return _Answer(409, {"__type": "Validation Error", **fields})


@dataclass
class Table:
    fields: list[dict[str, str]]
    primary_key: list[str]
    rows: dict[tuple[Any, ...], dict[str, Any]] = field(default_factory=dict)


@dataclass
class Portal:
    """The portal's state: known resources, DataStore tables, the requests it saw."""

    token: str
    resources: set[str]
    tables: dict[str, Table] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    fail_next: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, action: str, authorization: str | None, body: dict[str, Any]) -> Any:
        with self.lock:
            self.requests.append((action, body))
            if self.fail_next > 0:
                self.fail_next -= 1
                raise _Answer(503, {"__type": "Service Unavailable", "message": "try later"})
            if authorization != self.token:
                raise _Answer(403, {"__type": "Authorization Error", "message": "Access denied"})
            handler = getattr(self, f"_{action}", None)
            if handler is None:
                raise _Answer(400, {"__type": "Bad Request", "message": f"no action {action}"})
            return handler(body)

    def _resource(self, body: dict[str, Any]) -> str:
        resource_id = body.get("resource_id")
        if not isinstance(resource_id, str) or not resource_id:
            raise _validation(resource_id=["Missing value"])
        if resource_id not in self.resources:
            raise _Answer(
                404, {"__type": "Not Found Error", "message": f"Not found: Resource {resource_id}"}
            )
        return resource_id

    def _datastore_create(self, body: dict[str, Any]) -> dict[str, Any]:
        resource_id = self._resource(body)
        fields = body.get("fields", [])
        for spec in fields:
            if spec.get("type", "text") not in _TYPES:
                raise _validation(fields=[f"invalid type {spec.get('type')!r}"])
        names = [spec["id"] for spec in fields]
        primary_key = body.get("primary_key", [])
        if isinstance(primary_key, str):
            primary_key = [name.strip() for name in primary_key.split(",")]
        missing = [name for name in primary_key if name not in names]
        if missing:
            raise _validation(primary_key=[f"unknown fields {missing}"])
        table = self.tables.get(resource_id)
        if table is None:
            self.tables[resource_id] = Table(fields, primary_key)
        else:  # calling again alters the table: fields are added, the key replaced
            known = {spec["id"] for spec in table.fields}
            table.fields += [spec for spec in fields if spec["id"] not in known]
            table.primary_key = primary_key
        return {"resource_id": resource_id, "fields": fields, "primary_key": primary_key}

    def _datastore_upsert(self, body: dict[str, Any]) -> dict[str, Any]:
        resource_id = self._resource(body)
        table = self.tables.get(resource_id)
        if table is None:
            raise _Answer(
                404, {"__type": "Not Found Error", "message": f"Resource {resource_id} not found"}
            )
        method = body.get("method", "upsert")
        if method != "upsert" or not table.primary_key:
            raise _validation(method=["upsert needs a primary key"])
        types = {spec["id"]: spec.get("type", "text") for spec in table.fields}
        checked = []
        for record in body.get("records", []):
            unknown = sorted(set(record) - set(types))
            if unknown:
                raise _validation(records=[f"fields {unknown} do not exist"])
            if any(record.get(name) is None for name in table.primary_key):
                raise _validation(records=[f"fields {table.primary_key} are missing"])
            for name, value in record.items():
                _check_type(name, types[name], value)
            checked.append(record)
        for record in checked:  # one transaction: all or nothing
            key = tuple(record[name] for name in table.primary_key)
            table.rows[key] = {**table.rows.get(key, {}), **record}
        return {"resource_id": resource_id, "method": method}

    def _datastore_search(self, body: dict[str, Any]) -> dict[str, Any]:
        resource_id = self._resource(body)
        table = self.tables[resource_id]
        limit = int(body.get("limit", 100))
        offset = int(body.get("offset", 0))
        rows = [table.rows[key] for key in sorted(table.rows)]
        return {
            "resource_id": resource_id,
            "fields": table.fields,
            "records": rows[offset : offset + limit],
            "total": len(rows),
            "limit": limit,
            "offset": offset,
        }


def _check_type(name: str, kind: str, value: Any) -> None:
    if value is None:
        return
    ok = {
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "float": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "text": lambda v: isinstance(v, str),
        "timestamp": lambda v: isinstance(v, str) and _is_iso(v),
        "json": lambda v: isinstance(v, dict | list),
    }.get(kind, lambda v: True)(value)
    if not ok:
        raise _validation(records=[f"invalid input for {kind} field {name}: {value!r}"])


def _is_iso(text: str) -> bool:
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _handler(portal: Portal) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            prefix = "/api/3/action/"
            if not self.path.startswith(prefix):
                self._send(404, {"success": False, "error": {"__type": "Not Found Error"}})
                return
            action = self.path[len(prefix) :]
            length = int(self.headers.get("Content-Length", "0"))
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
                result = portal.handle(action, self.headers.get("Authorization"), body)
            except _Answer as answer:
                self._send(answer.status, {"success": False, "error": answer.error})
            except ValueError:
                self._send(400, {"success": False, "error": {"__type": "Bad Request"}})
            else:
                self._send(
                    200,
                    {
                        "help": f"/api/3/action/help_show?name={action}",
                        "success": True,
                        "result": result,
                    },
                )

        def _send(self, status: int, answer: dict[str, Any]) -> None:
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json;charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the tests look at `Portal.requests`."""

    return Handler


@contextmanager
def running_portal(token: str, resources: set[str]) -> Iterator[tuple[str, Portal]]:
    """A portal on a free loopback port: (base URL, its state), stopped afterwards."""
    portal = Portal(token=token, resources=resources)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(portal))
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", portal
    finally:
        server.shutdown()
        server.server_close()
