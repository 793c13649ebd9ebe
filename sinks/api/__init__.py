"""The open-data API, the DCAT-US catalog and the residents' page, over any `Store`.

Routes (GET and HEAD only, read-only; JSON unless said otherwise; requests limited in
size and rate, see `sinks.api._guard`):

- ``/``: the residents' page (air quality now on a map and in a table);
- ``/data.json``: the DCAT-US 1.1 catalog;
- ``/api/openapi.json``: the OpenAPI 3.1 description;
- ``/api/datasets``, ``/api/datasets/{name}``: datasets with their data dictionaries;
- ``/api/datasets/{name}/records``: filters, sort, paging (`sinks._query` documents the
  parameters); ``format=csv|geojson|jsonl`` streams a download;
- ``/api/air-quality/now``: each station's latest hourly AQI with category, colour and
  health guidance.

`serve` runs it until interrupted; `ApiServer` runs it in a background thread (tests,
benchmarks). The city's details come in as a `Site` (``civicstream serve`` builds it).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from sinks.api._app import STATIC_DIR, create_app
from sinks.api._guard import DEFAULT_RATE_LIMIT, Limits, RateLimit
from sinks.api._site import Category, Place, Publisher, Site
from sinks.store import Store, open_store

__all__ = [
    "DEFAULT_RATE_LIMIT",
    "STATIC_DIR",
    "ApiServer",
    "Category",
    "Limits",
    "Place",
    "Publisher",
    "RateLimit",
    "Site",
    "create_app",
    "serve",
]


def serve(
    store_url: str,
    site: Site,
    host: str,
    port: int,
    *,
    access_log: bool = False,
    limits: Limits | None = None,
) -> None:
    """Serve the store at `store_url` on host:port until SIGINT/SIGTERM; the store is
    opened read-only (the API may log in as a database user that can only read)."""
    store = open_store(store_url, read_only=True)
    try:
        app = create_app(store, site, limits=limits)
        web.run_app(
            app,
            host=host,
            port=port,
            print=None,
            access_log=logging.getLogger("aiohttp.access") if access_log else None,
        )
    finally:
        store.close()


class ApiServer:
    """The API on 127.0.0.1 (a free port by default), in a thread of its own.

    ``with ApiServer(store, site) as server: urlopen(server.url + "/api/datasets")``
    """

    def __init__(
        self, store: Store, site: Site, host: str = "127.0.0.1", port: int = 0, **options: Any
    ):
        self._store = store
        self._site = site
        self._host = host
        self._port = port
        self._options = options
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="civic-api", daemon=True
        )
        self.url = ""

    def start(self) -> Self:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        self.url = future.result(timeout=30)
        return self

    async def _start(self) -> str:
        self._runner = web.AppRunner(
            create_app(self._store, self._site, **self._options), access_log=None
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=30)
            self._runner = None
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
        self._loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
