"""public_ip against a local IP echo service that misbehaves on purpose."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from responder.metrics import Metrics
from responder.sources import SourceCall, SourceConfigError, SourceHub, compile_source
from responder.sources.public_ip import parse_ip, retry_after_s

CALL = SourceCall()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class IpService:
    """An IP echo service with one path per way of misbehaving; counts hits per path."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.broken = False

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/{mode}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        mode = request.match_info["mode"]
        self.hits[mode] += 1
        if self.broken:
            return web.Response(status=500)
        return await MODES[mode](request)


async def _hang(request: web.Request) -> web.StreamResponse:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def _huge(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse()
    await resp.prepare(request)
    chunk = b"1" * 65536
    try:
        for _ in range(160):  # 10 MiB, chunked: no Content-Length to refuse early
            await resp.write(chunk)
    except (ConnectionError, RuntimeError):
        pass
    return resp


def _text(body: str, status: int = 200, **headers: str) -> Callable[..., Any]:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(text=body, status=status, headers=headers)

    return handler


MODES: dict[str, Callable[..., Any]] = {
    "ok": _text("203.0.113.7\n"),
    "ok2": _text("198.51.100.9"),
    "v6": _text("2001:db8::1\n"),
    "html": _text("<html><body>203.0.113.7</body></html>"),
    "empty": _text(""),
    "two": _text("203.0.113.7 198.51.100.9"),
    "garbage": _text("not an ip"),
    "err500": _text("boom: internal detail", status=500),
    "limited": _text("slow down", status=429, **{"Retry-After": "120"}),
    "redirect": _text("", status=302, Location="http://127.0.0.1:1/ok"),
    "hang": _hang,
    "huge": _huge,
}


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def hub(session: aiohttp.ClientSession, clock: FakeClock) -> AsyncIterator[SourceHub]:
    h = SourceHub(session, metrics=Metrics(), clock=clock)
    yield h
    await h.close()


@pytest.fixture
def service() -> IpService:
    return IpService()


@pytest.fixture
async def server(aiohttp_server: Any, service: IpService) -> TestServer:
    return await aiohttp_server(service.app())


def spec_for(server: TestServer, *modes: str, **extra: Any) -> Any:
    providers = [str(server.make_url(f"/{m}")) for m in modes]
    return compile_source("ip", {"kind": "public_ip", "providers": providers, **extra})


def refused_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/ip"


async def test_answer_is_the_validated_address(hub: SourceHub, server: TestServer) -> None:
    result = await hub.fetch(spec_for(server, "ok"), CALL)
    assert result.ok and not result.stale
    assert result.data == {"ip": "203.0.113.7", "family": "ipv4"}


@pytest.mark.parametrize(
    ("mode", "family", "code"),
    [
        ("html", "ipv4", "bad_response"),
        ("empty", "ipv4", "bad_response"),
        ("two", "ipv4", "bad_response"),
        ("garbage", "ipv4", "bad_response"),
        ("v6", "ipv4", "bad_response"),
        ("ok", "ipv6", "bad_response"),
        ("err500", "ipv4", "bad_status"),
        ("redirect", "ipv4", "bad_status"),
        ("huge", "ipv4", "too_large"),
    ],
)
async def test_bad_answers_are_refused_with_a_code(
    hub: SourceHub, server: TestServer, mode: str, family: str, code: str
) -> None:
    result = await hub.fetch(spec_for(server, mode, family=family), CALL)
    assert not result.ok
    assert result.error == code
    assert result.data is None


async def test_ipv6_family_accepts_ipv6_and_any_accepts_both(hub: SourceHub, server: TestServer) -> None:
    v6 = await hub.fetch(spec_for(server, "v6", family="ipv6"), CALL)
    any_v4 = await hub.fetch(spec_for(server, "ok", family="any"), CALL)
    assert v6.data == {"ip": "2001:db8::1", "family": "ipv6"}
    assert any_v4.data == {"ip": "203.0.113.7", "family": "ipv4"}


async def test_providers_are_tried_in_order_until_one_answers(
    hub: SourceHub, server: TestServer, service: IpService
) -> None:
    result = await hub.fetch(spec_for(server, "err500", "html", "ok", "ok2"), CALL)
    assert result.data["ip"] == "203.0.113.7"
    assert service.hits == Counter({"err500": 1, "html": 1, "ok": 1})


async def test_connection_refused_falls_through_to_next_provider(hub: SourceHub, server: TestServer) -> None:
    spec = compile_source(
        "ip", {"kind": "public_ip", "providers": [refused_url(), str(server.make_url("/ok"))]}
    )
    result = await hub.fetch(spec, CALL)
    assert result.ok and result.data["ip"] == "203.0.113.7"


async def test_connection_refused_alone_is_unavailable(hub: SourceHub) -> None:
    spec = compile_source("ip", {"kind": "public_ip", "providers": [refused_url()]})
    result = await hub.fetch(spec, CALL)
    assert (result.ok, result.error) == (False, "unavailable")


async def test_reset_mid_body_is_unavailable(hub: SourceHub) -> None:
    async def half_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n203.0.")
        await writer.drain()
        writer.transport.abort()

    raw = await asyncio.start_server(half_answer, "127.0.0.1", 0)
    port = raw.sockets[0].getsockname()[1]
    try:
        spec = compile_source("ip", {"kind": "public_ip", "providers": [f"http://127.0.0.1:{port}/"]})
        result = await hub.fetch(spec, CALL)
    finally:
        raw.close()
        await raw.wait_closed()
    assert (result.ok, result.error) == (False, "unavailable")


async def test_hanging_provider_gives_timeout_within_the_deadline(hub: SourceHub, server: TestServer) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await hub.fetch(spec_for(server, "hang", timeout_s=0.2), CALL)
    elapsed = loop.time() - started
    assert (result.ok, result.error) == (False, "timeout")
    assert elapsed + 0.01 >= 0.2
    assert elapsed < 0.2 * 5


async def test_hanging_first_provider_leaves_time_for_the_next(hub: SourceHub, server: TestServer) -> None:
    result = await hub.fetch(spec_for(server, "hang", "ok", timeout_s=0.4), CALL)
    assert result.ok and result.data["ip"] == "203.0.113.7"


async def test_concurrent_calls_share_one_upstream_request(
    hub: SourceHub, server: TestServer, service: IpService
) -> None:
    spec = spec_for(server, "ok", cache_ttl_s=0)  # no cache: only single-flight can dedupe
    results = await asyncio.gather(*(hub.fetch(spec, CALL) for _ in range(200)))
    assert service.hits["ok"] == 1
    assert all(r.ok and r.data["ip"] == "203.0.113.7" for r in results)


async def test_answer_is_cached_until_ttl_expires(
    hub: SourceHub, server: TestServer, service: IpService, clock: FakeClock
) -> None:
    spec = spec_for(server, "ok", cache_ttl_s=60)
    await hub.fetch(spec, CALL)
    clock.now += 59
    cached = await hub.fetch(spec, CALL)
    assert service.hits["ok"] == 1
    assert cached.age_s == 59 and not cached.stale
    clock.now += 2
    await hub.fetch(spec, CALL)
    assert service.hits["ok"] == 2


async def test_stale_value_served_when_all_providers_fail(
    hub: SourceHub, server: TestServer, service: IpService, clock: FakeClock
) -> None:
    spec = spec_for(server, "ok", "ok2", cache_ttl_s=60)
    await hub.fetch(spec, CALL)
    service.broken = True
    clock.now += 61
    result = await hub.fetch(spec, CALL)
    assert result.ok and result.stale
    assert result.data == {"ip": "203.0.113.7", "family": "ipv4"}
    assert result.age_s == 61
    assert result.error == "bad_status"
    assert service.hits == Counter({"ok": 2, "ok2": 1})


async def test_cache_survives_a_recompile_of_the_same_config(
    hub: SourceHub, server: TestServer, service: IpService
) -> None:
    await hub.fetch(spec_for(server, "ok"), CALL)
    await hub.fetch(spec_for(server, "ok"), CALL)
    await hub.fetch(spec_for(server, "ok", cache_ttl_s=30), CALL)
    assert service.hits["ok"] == 2


async def test_rate_limited_provider_is_skipped_until_retry_after(
    hub: SourceHub, server: TestServer, service: IpService, clock: FakeClock
) -> None:
    spec = spec_for(server, "limited", "ok", cache_ttl_s=0)
    assert (await hub.fetch(spec, CALL)).ok
    clock.now += 119
    assert (await hub.fetch(spec, CALL)).ok
    assert service.hits == Counter({"limited": 1, "ok": 2})
    clock.now += 2
    await hub.fetch(spec, CALL)
    assert service.hits["limited"] == 2


async def test_metrics_count_calls_and_cache_hits(session: aiohttp.ClientSession, server: TestServer) -> None:
    metrics = Metrics()
    hub = SourceHub(session, metrics=metrics)
    spec = spec_for(server, "ok")
    await hub.fetch(spec, CALL)
    await hub.fetch(spec, CALL)
    await hub.fetch(spec_for(server, "html"), CALL)
    await hub.close()
    sample = metrics.registry.get_sample_value
    assert sample("responder_source_calls_total", {"source": "ip", "result": "ok"}) == 2
    assert sample("responder_source_calls_total", {"source": "ip", "result": "bad_response"}) == 1
    assert sample("responder_source_cache_hits_total", {"source": "ip"}) == 1
    assert sample("responder_source_latency_seconds_count", {"source": "ip"}) == 3


@pytest.mark.parametrize(
    "provider", ["ftp://example.com/ip", "https://user:pw@example.com/ip", "https:///ip"]
)
def test_unusable_provider_url_is_a_config_error(provider: str) -> None:
    with pytest.raises(SourceConfigError) as info:
        compile_source("ip", {"kind": "public_ip", "providers": ["https://ok.example", provider]})
    assert info.value.path == ("providers", 1)


def test_default_providers_follow_the_family() -> None:
    v4 = compile_source("ip", {"kind": "public_ip"})
    v6 = compile_source("ip", {"kind": "public_ip", "family": "ipv6"})
    assert "https://api.ipify.org" in v4.providers  # type: ignore[attr-defined]
    assert all("6" in p for p in v6.providers)  # type: ignore[attr-defined]
    assert v4.deadline_s == 3 and v4.kind == "public_ip"


def test_key_changes_with_config_and_name_only() -> None:
    a = compile_source("ip", {"kind": "public_ip"})
    assert a.key == compile_source("ip", {"kind": "public_ip"}).key
    assert a.key != compile_source("ip2", {"kind": "public_ip"}).key
    assert a.key != compile_source("ip", {"kind": "public_ip", "cache_ttl_s": 5}).key


@pytest.mark.parametrize("body", [b" 203.0.113.7 \r\n", b"\n203.0.113.7"])
def test_whitespace_around_the_address_is_fine(body: bytes) -> None:
    assert parse_ip(body, "ipv4")["ip"] == "203.0.113.7"


@pytest.mark.parametrize("body", [b"fe80::1%eth0", b"\xff\xfe", b"0x7f000001", b"203.0.113.7/32"])
def test_odd_addresses_are_refused(body: bytes) -> None:
    with pytest.raises(Exception, match="bad_response"):
        parse_ip(body, "any")


def test_retry_after_accepts_seconds_and_dates() -> None:
    assert retry_after_s("120") == 120
    assert retry_after_s(None) == 60
    assert retry_after_s("soon") == 60
    assert retry_after_s("999999") == 3600
    assert retry_after_s("Thu, 01 Jan 1970 00:02:00 GMT", now=60) == 60
