"""What the public API refuses before any handler runs, and the headers every answer gets.

The API is read-only and public, so anything else is refused cheaply and early:

- methods other than GET and HEAD: 405, with ``Allow: GET, HEAD``;
- a URL (path and query) longer than `Limits.max_url_bytes`: 414;
- a request body (``Content-Length`` above 0, or ``Transfer-Encoding``): 413, unread;
- more than `Limits.max_query_params` query parameters: 400;
- more requests from one client than `RateLimit` allows (a token bucket per client
  address; IPv6 clients per /64, the block one subscriber usually holds): 429 with
  ``Retry-After`` (whole seconds until a request would be allowed).

Request lines and headers beyond aiohttp's own limits (8,190 bytes a line, 128 header
fields) and requests that are not HTTP are refused by aiohttp's parser with a 400 before
they get here; those are logged as one line (`HTTP_LOG`), not a traceback each, and answer
with the same ``Server: civicstream`` as everything else (`hide_server_version`).

A client's address is the connection's peer; behind a reverse proxy listed in
`Limits.trusted_proxies` it is the last address of ``X-Forwarded-For`` that is not one of
those proxies.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from aiohttp import web, web_response
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Middleware

__all__ = [
    "HTTP_LOG",
    "SERVER",
    "Limits",
    "RateLimit",
    "TokenBuckets",
    "guard_middleware",
    "hide_server_version",
    "security_headers",
]

SERVER = "civicstream"
"""The Server header of every answer: no software versions for a scanner to match."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

READ_METHODS = frozenset({"GET", "HEAD"})
_RATE = re.compile(
    r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*(?:burst\s+(\d+))?\s*$",
    re.IGNORECASE,
)
_PER_SECONDS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60}
_PER_SECONDS |= {"h": 3600, "hour": 3600}
DEFAULT_RATE_LIMIT = "20/s burst 40"


@dataclass(frozen=True)
class RateLimit:
    """`rate` requests per second on average, `burst` at once (the bucket's size)."""

    rate: float
    burst: int

    @classmethod
    def parse(cls, text: str, *, name: str = "CIVIC_API_RATE_LIMIT") -> RateLimit | None:
        """``20/s``, ``20/s burst 40``, ``600/min burst 100``, ``off`` (None: no limit).

        Without ``burst`` the bucket holds one second's worth (at least 1).
        """
        if text.strip().lower() in ("off", "none", "0", ""):
            return None
        match = _RATE.match(text)
        if match is None:
            msg = f"{name}={text!r} is not a rate such as '20/s burst 40', '600/min' or 'off'"
            raise ValueError(msg)
        rate = float(match.group(1)) / _PER_SECONDS[match.group(2).lower()]
        burst = int(match.group(3)) if match.group(3) else max(1, math.ceil(rate))
        if rate <= 0 or burst < 1:
            msg = f"{name}={text!r}: the rate and the burst must be above 0"
            raise ValueError(msg)
        return cls(rate, burst)

    def __str__(self) -> str:
        return f"{self.rate:g}/s burst {self.burst}"


@dataclass(frozen=True)
class Limits:
    """The API's request limits (see the module docstring); `rate` None: no rate limit."""

    max_url_bytes: int = 2048
    max_query_params: int = 64
    rate: RateLimit | None = None
    trusted_proxies: tuple[Network, ...] = ()
    max_clients: int = 100_000
    """Token buckets kept at most; beyond that the least recently seen are forgotten."""


@dataclass
class TokenBuckets:
    """One token bucket per client key: it refills at `limit.rate` up to `limit.burst`,
    and a request takes one token. Thread-safe; memory bounded by `max_clients`."""

    limit: RateLimit
    max_clients: int = 100_000
    clock: Callable[[], float] = time.monotonic
    _buckets: OrderedDict[str, tuple[float, float]] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, key: str) -> float:
        """0 if `key` may go ahead now (a token is taken), else the seconds until it may."""
        now = self.clock()
        with self._lock:
            tokens, then = self._buckets.pop(key, (float(self.limit.burst), now))
            tokens = min(float(self.limit.burst), tokens + (now - then) * self.limit.rate)
            wait = 0.0
            if tokens >= 1:
                tokens -= 1
            else:
                wait = (1 - tokens) / self.limit.rate
            self._buckets[key] = (tokens, now)  # most recently seen last
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
            return wait

    def __len__(self) -> int:
        return len(self._buckets)


def client_key(request: web.Request, trusted: Sequence[Network]) -> str:
    """Who a request counts against: the peer address (behind trusted proxies, the first
    untrusted address of X-Forwarded-For from the right); IPv6 by its /64."""
    address = _address(request.remote)
    if address is not None and trusted and any(address in net for net in trusted):
        forwarded = ",".join(request.headers.getall("X-Forwarded-For", []))
        for hop in reversed([part.strip() for part in forwarded.split(",") if part.strip()]):
            candidate = _address(hop)
            if candidate is None:
                break
            address = candidate
            if not any(candidate in net for net in trusted):
                break
    if address is None:
        return request.remote or "unknown"
    if address.version == 6:
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class _MalformedRequests(logging.Filter):
    """aiohttp logs every request its parser refuses with a traceback at ERROR, so a
    scanner could fill the log: one line at INFO instead (real server errors unchanged)."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError) and 400 <= (error.code or 0) < 500:
            remote = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.msg = "refused a malformed request from %s: %s (%d)"
            record.args = (remote, type(error).__name__, error.code)
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


HTTP_LOG = logging.getLogger("civicstream.api.http")
"""The logger of aiohttp's connection handling for the API (``handler_args``)."""
HTTP_LOG.addFilter(_MalformedRequests())


def hide_server_version() -> None:
    """Answer ``Server: civicstream`` also where no application code runs: the 400s of
    aiohttp's HTTP parser take the module's default, which names Python, aiohttp and their
    versions. (Application answers set the header in `security_headers`.)"""
    web_response.SERVER_SOFTWARE = SERVER  # type: ignore[attr-defined]


def _address(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address((text or "").strip("[]"))
    except ValueError:
        return None


def _refuse(status: int, error: str, message: str, **headers: str) -> web.Response:
    response = web.json_response(
        {"status": status, "error": error, "message": message},
        status=status,
        dumps=lambda value: json.dumps(value, ensure_ascii=False),
    )
    response.headers.update(headers)
    response.force_close()  # whatever else the client sent on this connection is not read
    return response


def guard_middleware(limits: Limits, buckets: TokenBuckets | None = None) -> Middleware:
    """Refuse what the API does not serve (module docstring), before any handler runs."""
    if buckets is None and limits.rate is not None:
        buckets = TokenBuckets(limits.rate, limits.max_clients)

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method not in READ_METHODS:
            return _refuse(
                405,
                "method_not_allowed",
                f"{request.method} is not allowed: this API is read-only (GET, HEAD)",
                Allow="GET, HEAD",
            )
        url_bytes = len(request.raw_path.encode())
        if url_bytes > limits.max_url_bytes:
            return _refuse(
                414,
                "uri_too_long",
                f"the URL has {url_bytes:,} bytes; at most {limits.max_url_bytes:,} are served",
            )
        if (request.content_length or 0) > 0 or "Transfer-Encoding" in request.headers:
            return _refuse(413, "content_too_large", "a GET or HEAD request carries no body here")
        parameters = len(request.query)
        if parameters > limits.max_query_params:
            return _refuse(
                400,
                "bad_request",
                f"{parameters} query parameters; at most {limits.max_query_params} are accepted",
            )
        if buckets is not None:
            wait = buckets.take(client_key(request, limits.trusted_proxies))
            if wait > 0:
                seconds = max(1, math.ceil(wait))
                return _refuse(
                    429,
                    "too_many_requests",
                    f"too many requests from this address (limit {buckets.limit}); "
                    f"try again in {seconds} s",
                    **{"Retry-After": str(seconds)},
                )
        return await handler(request)

    return guard


def security_headers(request: web.Request, response: web.StreamResponse, *, api: bool) -> None:
    """Headers every answer carries (the page sets its own Content-Security-Policy)."""
    headers = response.headers
    headers["Server"] = SERVER  # aiohttp's default names itself and its version
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault(
        "Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
    )
    # Open data: any site may fetch the API's answers; the page and its assets are ours.
    headers.setdefault("Cross-Origin-Resource-Policy", "cross-origin" if api else "same-origin")
    if not api:
        headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
