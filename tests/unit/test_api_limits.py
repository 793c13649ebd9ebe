"""The public API protects itself: read-only, no oversize or malformed requests, a rate
limit per client, safe headers on every answer — over HTTP on loopback, like a scanner
or a misbehaving client would meet it."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request

from civicstream.commands import api_limits
from civicstream.settings import ConfigError, Settings
from sinks.api import ApiServer, Limits, RateLimit, Site
from sinks.api._guard import TokenBuckets, client_key
from sinks.store import open_store
from tests.unit.test_api import Client, Reply
from tests.unit.test_store import aqi

SAFE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Server": "civicstream",
}


@pytest.fixture(scope="module")
def store() -> Iterator[Any]:
    with open_store("sqlite:///:memory:") as store:
        store.write_batch({"aqi_hourly": [aqi("dongsi", hour) for hour in range(3)]})
        yield store


@pytest.fixture(scope="module")
def client(store: Any) -> Iterator[Client]:
    with ApiServer(store, Site()) as server:
        yield Client(server.url)


def raw_request(url: str, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are (what urllib would not send) and read the whole answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(data)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    return int(status_line.split()[1]), headers, body


def _json_error(reply: Reply, status: int) -> str:
    assert reply.status == status, reply.body
    body = reply.json()
    assert body["status"] == status
    return str(body["message"])


# --- read-only ------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"])
@pytest.mark.parametrize("path", ["/api/datasets", "/api/datasets/aqi_hourly/records", "/"])
def test_only_get_and_head_are_answered(client: Client, method: str, path: str) -> None:
    reply = client.get(path, method=method)
    assert "read-only" in _json_error(reply, 405)
    assert reply.headers["Allow"] == "GET, HEAD"


def test_head_answers_like_get_without_a_body(client: Client) -> None:
    head = client.get("/api/datasets/aqi_hourly/records", method="HEAD")
    get = client.get("/api/datasets/aqi_hourly/records")
    assert (head.status, head.body) == (200, b"")
    assert head.headers["Content-Type"] == get.headers["Content-Type"]


# --- oversize and malformed requests --------------------------------------------------------


def test_a_url_longer_than_the_limit_is_414(client: Client) -> None:
    reply = client.get("/api/datasets/aqi_hourly/records", {"station_id": "x" * 2100})
    assert "at most 2,048 are served" in _json_error(reply, 414)
    under = client.get("/api/datasets/aqi_hourly/records", {"station_id": "x" * 1900})
    assert under.status == 200


def test_a_request_line_beyond_the_http_parser_limit_is_refused_without_naming_the_software(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="civicstream.api.http")
    status, headers, _ = raw_request(
        client.url, b"GET /api/datasets?" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    assert status == 400
    assert headers["Server"] == "civicstream"
    too_many = b"".join(b"X-H%d: 1\r\n" % n for n in range(200))
    status, headers, _ = raw_request(
        client.url, b"GET /api/datasets HTTP/1.1\r\nHost: x\r\n" + too_many + b"\r\n"
    )
    assert (status, headers["Server"]) == (400, "civicstream")
    refusals = [r for r in caplog.records if r.name == "civicstream.api.http"]
    assert [r.levelname for r in refusals] == ["INFO", "INFO"]  # one line each
    assert all(r.exc_info is None and "malformed" in r.getMessage() for r in refusals)


@pytest.mark.parametrize(
    "framing",
    [
        b"Content-Length: 11\r\n\r\nhello world",
        b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ],
    ids=["content-length", "chunked"],
)
def test_a_request_body_is_refused_unread(client: Client, framing: bytes) -> None:
    status, headers, body = raw_request(
        client.url, b"GET /api/datasets HTTP/1.1\r\nHost: x\r\n" + framing
    )
    assert status == 413
    assert json.loads(body)["error"] == "content_too_large"
    assert headers["Connection"] == "close"


def test_too_many_query_parameters_are_refused(client: Client) -> None:
    params = [("station_id", f"s{n}") for n in range(65)]
    reply = client.get("/api/datasets/aqi_hourly/records", params)
    assert "65 query parameters; at most 64" in _json_error(reply, 400)
    assert client.get("/api/datasets/aqi_hourly/records", params[:64]).status == 200


def test_page_sizes_are_capped(client: Client) -> None:
    reply = client.get("/api/datasets/aqi_hourly/records", {"limit": "10001"})
    assert "limit" in _json_error(reply, 400)
    assert client.records("aqi_hourly", {"limit": "10000"})["limit"] == 10_000
    assert client.records("aqi_hourly")["limit"] == 100  # the default page


# --- safe headers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status", "api"),
    [
        ("/api/datasets", 200, True),
        ("/api/datasets/aqi_hourly/records?format=csv", 200, True),
        ("/data.json", 200, True),
        ("/api/datasets/nothing", 404, True),
        ("/", 200, False),
        ("/static/page.js", 200, False),
        ("/metrics", 200, False),
    ],
)
def test_every_answer_carries_the_safe_headers(
    client: Client, path: str, status: int, api: bool
) -> None:
    reply = client.get(path)
    assert reply.status == status
    for name, value in SAFE_HEADERS.items():
        assert reply.headers[name] == value, name
    assert "frame-ancestors 'none'" in reply.headers["Content-Security-Policy"]
    assert reply.headers["Cross-Origin-Resource-Policy"] == (
        "cross-origin" if api else "same-origin"
    )
    assert "aiohttp" not in str(reply.headers) and "Python" not in str(reply.headers)


def test_the_page_keeps_its_own_content_security_policy(client: Client) -> None:
    policy = client.get("/").headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy


# --- rate limit -----------------------------------------------------------------------------


def test_a_client_over_its_rate_gets_429_with_retry_after(store: Any) -> None:
    # 1 request a minute, 3 at once: the 4th is refused for about a minute
    with ApiServer(store, Site(), limits=Limits(rate=RateLimit(1 / 60, 3))) as server:
        client = Client(server.url)
        assert [client.get("/api/datasets").status for _ in range(3)] == [200] * 3
        reply = client.get("/api/datasets/aqi_hourly/records")
        assert "too many requests" in _json_error(reply, 429)
        assert 55 <= int(reply.headers["Retry-After"]) <= 60
        assert reply.headers["Server"] == "civicstream"


def test_each_client_has_its_own_bucket_that_refills_at_the_rate() -> None:
    now = [0.0]
    buckets = TokenBuckets(RateLimit(rate=2.0, burst=4), clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(4)] == [0.0] * 4
    assert buckets.take("a") == pytest.approx(0.5)  # one token comes every 0.5 s
    assert buckets.take("b") == 0.0  # another client is not held up
    now[0] = 0.5
    assert buckets.take("a") == 0.0
    assert buckets.take("a") == pytest.approx(0.5)
    now[0] = 100.0  # idle: full again, never more than the burst
    assert [buckets.take("a") for _ in range(5)] == [0.0] * 4 + [pytest.approx(0.5)]


def test_the_buckets_forget_the_least_recently_seen_clients_beyond_their_cap() -> None:
    buckets = TokenBuckets(RateLimit(rate=1.0, burst=1), max_clients=3, clock=lambda: 0.0)
    for key in ("a", "b", "c", "a", "d"):
        buckets.take(key)
    assert len(buckets) == 3
    assert buckets.take("a") > 0  # still remembered: seen after b
    assert buckets.take("b") == 0.0  # forgotten: a fresh bucket


def _request(peer: str, forwarded: str | None = None) -> Any:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    request = make_mocked_request("GET", "/api/datasets", headers=headers)
    request._cache["remote"] = peer  # what the transport would report
    return request


def test_clients_are_told_apart_by_address_ipv6_by_its_64_block() -> None:
    assert client_key(_request("192.0.2.7"), ()) == "192.0.2.7"
    assert client_key(_request("2001:db8:1:2:aaaa::1"), ()) == "2001:db8:1:2::/64"
    assert client_key(_request("2001:db8:1:2:bbbb::9"), ()) == "2001:db8:1:2::/64"


def test_x_forwarded_for_counts_only_behind_a_trusted_proxy() -> None:
    import ipaddress

    proxies = (ipaddress.ip_network("10.0.0.0/8"),)
    spoofed = _request("192.0.2.7", "198.51.100.1")
    assert client_key(spoofed, proxies) == "192.0.2.7"  # not a proxy: its header is ignored
    proxied = _request("10.1.2.3", "198.51.100.1, 203.0.113.5, 10.9.9.9")
    assert client_key(proxied, proxies) == "203.0.113.5"  # the last hop before our proxies


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20/s burst 40", RateLimit(20.0, 40)),
        ("600/min", RateLimit(10.0, 10)),
        ("120/m burst 5", RateLimit(2.0, 5)),
        ("1/h", RateLimit(1 / 3600, 1)),
        ("off", None),
    ],
)
def test_the_rate_limit_setting(text: str, expected: RateLimit | None) -> None:
    assert RateLimit.parse(text) == expected


def test_serve_limits_each_client_by_default_and_refuses_a_bad_setting() -> None:
    limits = api_limits(Settings())
    assert limits.rate == RateLimit(20.0, 40)
    assert api_limits(Settings(api_rate_limit="off")).rate is None
    with pytest.raises(ConfigError, match="CIVIC_API_RATE_LIMIT='fast'"):
        api_limits(Settings(api_rate_limit="fast"))
    with pytest.raises(ConfigError, match="CIVIC_API_TRUSTED_PROXIES"):
        api_limits(Settings(api_trusted_proxies=("not-an-address",)))
    env = Settings.from_env({"CIVIC_API_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.1"})
    assert [str(p) for p in api_limits(env).trusted_proxies] == ["10.0.0.0/8", "192.0.2.1/32"]
