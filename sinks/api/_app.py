"""The HTTP API and the residents' page: aiohttp handlers over a `Store`.

Read-only and async: every store call runs in a small thread pool (SQLite and psycopg
are blocking), so a slow export never holds up the event loop. Downloads stream: rows
come from the store in chunks (a server-side cursor on PostgreSQL) and go out as chunked
HTTP, so memory stays flat whatever the size of the dataset.

Errors are JSON ``{"status", "error", "message"}``: 400 for a bad parameter (the message
names the parameter and why), 404 for an unknown dataset or path, 503 when the store
cannot answer; what the API refuses before a handler runs (other methods, oversize
requests, too many requests from one client) is in `sinks.api._guard`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from aiohttp import web
from prometheus_client import CollectorRegistry

from sinks._datasets import DATASETS, Dataset
from sinks._query import RecordQuery, parse_records_query
from sinks.api._catalog import data_json, dataset_json
from sinks.api._formats import FORMATS, RowEncoder
from sinks.api._guard import (
    HTTP_LOG,
    Limits,
    guard_middleware,
    hide_server_version,
    security_headers,
)
from sinks.api._metrics import ApiMetrics, metrics_middleware
from sinks.api._openapi import openapi
from sinks.api._site import Site
from sinks.exceptions import InvalidQuery, StoreError
from sinks.store import Row, Store

__all__ = ["STATIC_DIR", "create_app"]

log = logging.getLogger("civicstream.api")

STATIC_DIR = Path(__file__).resolve().parent / "static"
T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

AQI_DATASET = "aqi_hourly"
COUNT_TTL_S = 5.0
NO_INDEX_COLOR = ("#d9d9d9", "#000000")


def _error(status: int, error: str, message: str) -> web.Response:
    return web.json_response(
        {"status": status, "error": error, "message": message},
        status=status,
        dumps=lambda value: json.dumps(value, ensure_ascii=False),
    )


def _is_api(request: web.Request) -> bool:
    return request.path.startswith("/api/") or request.path == "/data.json"


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except InvalidQuery as error:
        return _error(400, "bad_request", str(error))
    except web.HTTPException as error:
        if not _is_api(request) or error.status < 400:
            raise
        return _error(error.status, error.reason.lower().replace(" ", "_"), error.text or "")
    except StoreError as error:
        log.warning("store error on %s: %s", request.path, error)
        return _error(503, "store_unavailable", str(error))


class Api:
    """The handlers, bound to one store and one city."""

    def __init__(
        self,
        store: Store,
        site: Site,
        *,
        chunk_rows: int = 2000,
        threads: int = 4,
        registry: CollectorRegistry | None = None,
        limits: Limits | None = None,
    ):
        self._registry = registry
        self.limits = Limits() if limits is None else limits
        self.store = store
        self.site = site
        self.chunk_rows = chunk_rows
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="civic-store")
        self._places = site.station_points()
        self._counts: dict[str, tuple[float, int]] = {}
        self._openapi = json.dumps(openapi(DATASETS, f"{site.city} open data API"))
        self._csp = self._content_security_policy()

    def _content_security_policy(self) -> str:
        """Everything from this server; map tiles also from the configured tile host."""
        images = "'self' data:"
        if self.site.map_tiles:
            parts = urlsplit(self.site.map_tiles)
            host = parts.netloc
            if host.startswith("{s}."):  # Leaflet's subdomain placeholder
                host = "*." + host.removeprefix("{s}.")
            images += f" {parts.scheme}://{host}"
        return (
            "default-src 'self'; img-src " + images + "; style-src 'self'; "
            "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
        )

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, function, *args)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _base(self, request: web.Request) -> str:
        if self.site.public_url:
            return self.site.public_url.rstrip("/")
        return f"{request.scheme}://{request.host}"

    def _dataset(self, request: web.Request) -> Dataset:
        name = request.match_info["name"]
        ds = DATASETS.get(name)
        if ds is None:
            known = ", ".join(DATASETS)
            raise web.HTTPNotFound(text=f"no dataset {name!r}; the datasets are {known}")
        return ds

    async def _count(self, name: str) -> int:
        cached = self._counts.get(name)
        now = time.monotonic()
        if cached is not None and now - cached[0] < COUNT_TTL_S:
            return cached[1]
        rows = await self._run(self.store.count, name)
        self._counts[name] = (now, rows)
        return rows

    # --- pages and documents ----------------------------------------------------------------

    async def index(self, request: web.Request) -> web.StreamResponse:
        response = web.FileResponse(STATIC_DIR / "index.html")
        response.headers["Cache-Control"] = "no-cache"
        response.headers["Content-Security-Policy"] = self._csp
        return response

    async def openapi(self, request: web.Request) -> web.Response:
        return web.Response(text=self._openapi, content_type="application/json")

    async def data_json(self, request: web.Request) -> web.Response:
        statuses = await self._run(self.store.statuses)
        migrated_at = await self._run(self.store.migrated_at)
        body = data_json(DATASETS, statuses, self.site, self._base(request), migrated_at)
        return web.json_response(body, dumps=lambda v: json.dumps(v, ensure_ascii=False))

    async def datasets(self, request: web.Request) -> web.Response:
        statuses = await self._run(self.store.statuses)
        base = self._base(request)
        items = [
            dataset_json(ds, statuses[name], base, await self._count(name))
            for name, ds in DATASETS.items()
        ]
        return web.json_response({"datasets": items})

    async def dataset(self, request: web.Request) -> web.Response:
        ds = self._dataset(request)
        statuses = await self._run(self.store.statuses)
        body = dataset_json(ds, statuses[ds.name], self._base(request), await self._count(ds.name))
        return web.json_response(body, dumps=lambda v: json.dumps(v, ensure_ascii=False))

    # --- records ------------------------------------------------------------------------------

    async def records(self, request: web.Request) -> web.StreamResponse:
        ds = self._dataset(request)
        formats = request.query.getall("format", ["json"])
        if len(formats) > 1:
            msg = "parameter 'format' is given more than once"
            raise InvalidQuery(msg)
        name = formats[0]
        encoder = RowEncoder(ds, self._places)
        if name != "json" and name not in FORMATS:
            choices = ", ".join(["json", *FORMATS])
            msg = f"format: {name!r} is not one of {choices}"
            raise InvalidQuery(msg)
        if name == "geojson" and not encoder.has_geometry:
            msg = f"format: {ds.name} has no coordinates, so no GeoJSON"
            raise InvalidQuery(msg)
        query = parse_records_query(
            ds,
            list(request.query.items()),
            stations=self._places,
            paged=name == "json",
            ignore=("format",),
        )
        if name == "json":
            return await self._page(request, query, encoder)
        return await self._download(request, query, encoder, name)

    async def _page(
        self, request: web.Request, query: RecordQuery, encoder: RowEncoder
    ) -> web.Response:
        assert query.limit is not None
        rows = await self._run(self.store.records, replace(query, limit=query.limit + 1))
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        next_cursor = next_url = None
        if more:
            next_cursor = query.cursor_after(rows[-1])
            if "offset" in request.query:
                url = request.rel_url.update_query(offset=str(query.offset + query.limit))
            else:
                url = request.rel_url.update_query(cursor=next_cursor)
            next_url = str(url)
        head = {
            "dataset": query.dataset.name,
            "limit": query.limit,
            "offset": query.offset,
            "count": len(rows),
            "next_cursor": next_cursor,
            "next": next_url,
        }
        body = (
            json.dumps(head)[:-1]
            + ',"records":['
            + ",\n".join(encoder.json(row) for row in rows)
            + "]}"
        )
        return web.Response(text=body, content_type="application/json")

    async def _download(
        self, request: web.Request, query: RecordQuery, encoder: RowEncoder, name: str
    ) -> web.StreamResponse:
        fmt = FORMATS[name]
        chunks: Iterator[list[Row]] = self.store.stream(query, self.chunk_rows)
        first = [True]

        def next_bytes() -> bytes | None:
            """The next chunk, fetched and encoded in a worker thread (off the event loop)."""
            rows = next(chunks, None)
            if rows is None:
                return None
            text = fmt.chunk(encoder, rows, first[0])
            first[0] = False
            return text.encode()

        try:
            # The first chunk before the headers: a store that cannot answer gets a 503.
            data = await self._run(next_bytes)
            response = web.StreamResponse(
                headers={
                    "Content-Type": f"{fmt.media_type}; charset=utf-8",
                    "Content-Disposition": (
                        f'attachment; filename="{query.dataset.name}.{fmt.suffix}"'
                    ),
                }
            )
            await response.prepare(request)
            await response.write(fmt.start(encoder).encode())
            while data is not None:
                await response.write(data)
                data = await self._run(next_bytes)
            if fmt.end:
                await response.write(fmt.end.encode())
            await response.write_eof()
            return response
        finally:
            await self._run(_close, chunks)

    # --- air quality now ----------------------------------------------------------------------

    async def air_quality_now(self, request: web.Request) -> web.Response:
        ds = DATASETS[AQI_DATASET]
        rows = await self._run(self.store.latest, ds.name, "station_id", "hour_start")
        stations = [self._station_now(ds, row) for row in rows]
        stations.sort(key=lambda item: (str(item["name"]).lower(), str(item["station_id"])))
        body = {
            "city": self.site.city,
            "timezone": self.site.timezone,
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "poll_seconds": self.site.poll_seconds,
            "map": {"tiles": self.site.map_tiles, "attribution": self.site.map_attribution},
            "categories": [category.as_json() for category in self.site.categories],
            "stations": stations,
        }
        return web.json_response(body, dumps=lambda v: json.dumps(v, ensure_ascii=False))

    def _station_now(self, ds: Dataset, row: Row) -> dict[str, Any]:
        item: dict[str, Any] = {}
        for column, value in zip(ds.columns, row, strict=True):
            item[column.name] = json.loads(value) if column.kind == "json" and value else value
        place = self.site.stations.get(item["station_id"])
        item["name"] = place.name if place else item["station_id"]
        item["lat"] = place.lat if place else None
        item["lon"] = place.lon if place else None
        category = self.site.category(item.get("category"))
        if category is not None:
            item["color"], item["text_color"] = category.color, category.text_color
            item["guidance"] = category.guidance
        else:
            item["color"], item["text_color"] = NO_INDEX_COLOR
            reason = item.get("reason") or "no data"
            item["guidance"] = f"No index for this hour ({str(reason).replace('_', ' ')})."
        return item

    # --- the application ----------------------------------------------------------------------

    def application(self) -> web.Application:
        metrics = ApiMetrics.of(self._registry)
        hide_server_version()
        app = web.Application(
            middlewares=[metrics_middleware(metrics), guard_middleware(self.limits), _errors],
            handler_args={"logger": HTTP_LOG},
        )
        app.router.add_get("/metrics", metrics.page)
        app.router.add_get("/", self.index)
        app.router.add_get("/data.json", self.data_json)
        app.router.add_get("/api/openapi.json", self.openapi)
        app.router.add_get("/api/datasets", self.datasets)
        app.router.add_get("/api/datasets/{name}", self.dataset)
        app.router.add_get("/api/datasets/{name}/records", self.records)
        app.router.add_get("/api/air-quality/now", self.air_quality_now)
        app.router.add_static("/static/", STATIC_DIR, append_version=False)
        app.on_response_prepare.append(_headers)

        async def shutdown(_app: web.Application) -> None:
            self.close()

        app.on_cleanup.append(shutdown)
        return app


def _close(chunks: Iterator[list[Row]]) -> None:
    close = getattr(chunks, "close", None)
    if close is not None:
        close()


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    """Open data: any site may read the API (no credentials are involved); and the safe
    headers of `sinks.api._guard.security_headers` on every answer."""
    api = _is_api(request)
    if api:
        response.headers["Access-Control-Allow-Origin"] = "*"
    security_headers(request, response, api=api)


def create_app(store: Store, site: Site, **options: Any) -> web.Application:
    """The aiohttp application serving `store` for `site` (the caller closes the store)."""
    return Api(store, site, **options).application()
