"""The http kind against local upstreams: answers, failures, redirects and steering attempts."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from responder.sources import SourceCall, SourceConfigError, SourceHub, compile_source


@dataclass
class Upstream:
    """Records every request it receives: method, raw path+query, Host header, headers, body."""

    seen: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:[\\s\\S]*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(
            {
                "method": request.method,
                "raw_path": request.raw_path,
                "host": request.host,
                "headers": dict(request.headers),
                "body": body,
            }
        )
        return await self.respond(request)

    async def respond(self, request: web.Request) -> web.StreamResponse:
        tail = request.match_info["tail"]
        if tail.startswith("hang"):
            await asyncio.Event().wait()
        if tail.startswith("err"):
            return web.Response(status=500, text="Traceback: secret internals")
        if tail.startswith("notjson"):
            return web.Response(text="{not json")
        if tail.startswith("big"):
            return web.Response(body=b"[" + b"1," * (5 * 1024 * 1024) + b"1]")
        if tail.startswith("chunked"):
            return await _chunked(request)
        if tail.startswith("go/"):
            raise web.HTTPFound(request.query["to"])
        return web.json_response({"path": request.raw_path, "items": [{"n": 1}, {"n": 2}]})


async def _chunked(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse()
    await resp.prepare(request)
    try:
        for _ in range(160):  # 10 MiB without a Content-Length
            await resp.write(b" " * 65536)
    except (ConnectionError, RuntimeError):
        pass
    return resp


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def hub(session: aiohttp.ClientSession) -> AsyncIterator[SourceHub]:
    h = SourceHub(session)
    yield h
    await h.close()


@pytest.fixture
def upstream() -> Upstream:
    return Upstream()


@pytest.fixture
def other() -> Upstream:
    return Upstream()


@pytest.fixture
async def server(aiohttp_server: Any, upstream: Upstream) -> TestServer:
    return await aiohttp_server(upstream.app())


@pytest.fixture
async def other_server(aiohttp_server: Any, other: Upstream) -> TestServer:
    return await aiohttp_server(other.app())


def origin(server: TestServer) -> str:
    return f"http://127.0.0.1:{server.port}"


def http_source(server: TestServer, path: str = "/api", **config: Any) -> Any:
    return compile_source("api", {"kind": "http", "url": origin(server) + path, **config})


async def test_json_answer_is_picked_with_jmespath(hub: SourceHub, server: TestServer) -> None:
    result = await hub.fetch(http_source(server, pick="items[].n"), SourceCall())
    assert result.ok and result.data == [1, 2]


async def test_pick_mapping_names_each_field(hub: SourceHub, server: TestServer) -> None:
    spec = http_source(server, pick={"first": "items[0].n", "count": "length(items)"})
    result = await hub.fetch(spec, SourceCall())
    assert result.data == {"first": 1, "count": 2}


async def test_text_response_is_returned_as_text(hub: SourceHub, server: TestServer) -> None:
    result = await hub.fetch(http_source(server, response="text"), SourceCall())
    assert result.ok and json.loads(result.data)["path"] == "/api"


async def test_post_sends_templated_json_and_configured_headers(
    hub: SourceHub, server: TestServer, upstream: Upstream
) -> None:
    spec = http_source(
        server,
        method="POST",
        json={"city": "{{ args[0] }}", "n": 3, "tags": ["{{ groups.kind }}"]},
        headers={"Authorization": "Bearer s3cret"},
    )
    call = SourceCall(args=("Hangzhou",), groups={"kind": "rain"})
    assert (await hub.fetch(spec, call)).ok
    [seen] = upstream.seen
    assert seen["method"] == "POST"
    assert json.loads(seen["body"]) == {"city": "Hangzhou", "n": 3, "tags": ["rain"]}
    assert seen["headers"]["Authorization"] == "Bearer s3cret"
    assert seen["headers"]["Content-Type"] == "application/json"


async def test_post_text_body_is_rendered(hub: SourceHub, server: TestServer, upstream: Upstream) -> None:
    spec = http_source(server, method="POST", body="q={{ text }}")
    assert (await hub.fetch(spec, SourceCall(text="hello"))).ok
    assert upstream.seen[0]["body"] == b"q=hello"


@pytest.mark.parametrize(
    ("path", "code"),
    [("/err", "bad_status"), ("/notjson", "bad_response"), ("/big", "too_large")],
)
async def test_upstream_failures_become_codes_without_upstream_text(
    hub: SourceHub, server: TestServer, path: str, code: str
) -> None:
    result = await hub.fetch(http_source(server, path), SourceCall())
    assert (result.ok, result.error, result.data) == (False, code, None)


async def test_endless_chunked_body_stops_at_max_bytes(hub: SourceHub, server: TestServer) -> None:
    result = await hub.fetch(http_source(server, "/chunked", max_bytes=1000), SourceCall())
    assert (result.ok, result.error) == (False, "too_large")


async def test_hanging_upstream_times_out_within_the_deadline(hub: SourceHub, server: TestServer) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await hub.fetch(http_source(server, "/hang", timeout_s=0.2), SourceCall())
    assert (result.ok, result.error) == (False, "timeout")
    assert loop.time() - started < 0.2 * 5


async def test_connection_refused_is_unavailable(hub: SourceHub) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    spec = compile_source("api", {"kind": "http", "url": f"http://127.0.0.1:{port}/x"})
    result = await hub.fetch(spec, SourceCall())
    assert (result.ok, result.error) == (False, "unavailable")


async def test_reset_mid_body_is_unavailable(aiohttp_raw_server: Any, hub: SourceHub) -> None:
    async def half_answer(request: web.BaseRequest) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": "1000"})
        await resp.prepare(request)
        await resp.write(b'{"partial": ')
        assert request.transport is not None
        request.transport.abort()
        return resp

    raw = await aiohttp_raw_server(half_answer)
    spec = compile_source("api", {"kind": "http", "url": str(raw.make_url("/x"))})
    result = await hub.fetch(spec, SourceCall())
    assert (result.ok, result.error) == (False, "unavailable")


STEERING_ARGS = [
    ("../admin", "/api/..%2Fadmin/info"),
    ("..", "/api/%2E%2E/info"),
    ("@evil.example", "/api/%40evil.example/info"),
    ("http://other", "/api/http%3A%2F%2Fother/info"),
    ("%2F", "/api/%252F/info"),
    ("a\r\nHost: evil", "/api/a%0D%0AHost%3A%20evil/info"),
    ("x?admin=1#f", "/api/x%3Fadmin%3D1%23f/info"),
]


@pytest.mark.parametrize(("arg", "raw_path"), STEERING_ARGS)
async def test_user_args_cannot_steer_the_request_elsewhere(
    hub: SourceHub,
    server: TestServer,
    other_server: TestServer,
    upstream: Upstream,
    other: Upstream,
    arg: str,
    raw_path: str,
) -> None:
    spec = http_source(server, "/api/{{ args[0] }}/info", query={"q": "{{ args[0] }}", "who": "{{ text }}"})
    other_origin = origin(other_server)
    call = SourceCall(args=(arg,), text=f"{other_origin} @127.0.0.1:{other_server.port}")
    result = await hub.fetch(spec, call)
    assert result.ok
    [seen] = upstream.seen
    assert seen["host"] == f"127.0.0.1:{server.port}"
    path, _, query = seen["raw_path"].partition("?")
    assert path == raw_path
    assert query.count("&") == 1 and query.startswith("q=")
    assert other.seen == []


async def test_redirect_is_refused_by_default(
    hub: SourceHub, server: TestServer, other_server: TestServer, other: Upstream
) -> None:
    spec = http_source(server, "/go/x", query={"to": origin(other_server) + "/stolen"})
    result = await hub.fetch(spec, SourceCall())
    assert (result.ok, result.error) == (False, "refused_redirect")
    assert other.seen == []


async def test_followed_redirect_stays_on_allowed_hosts(
    hub: SourceHub, server: TestServer, other_server: TestServer, other: Upstream
) -> None:
    to_other = {"to": origin(other_server) + "/stolen"}
    same = http_source(server, "/go/x", query={"to": "/landed"}, follow_redirects=True)
    elsewhere = http_source(server, "/go/x", query=to_other, follow_redirects=True)
    assert (await hub.fetch(same, SourceCall())).data["path"] == "/landed"
    assert (await hub.fetch(elsewhere, SourceCall())).error == "refused_redirect"
    assert other.seen == []


async def test_redirect_to_a_listed_host_is_followed(
    hub: SourceHub, server: TestServer, other_server: TestServer, other: Upstream
) -> None:
    spec = http_source(
        server,
        "/go/x",
        query={"to": origin(other_server) + "/ok"},
        follow_redirects=True,
        allowed_hosts=[f"127.0.0.1:{other_server.port}"],
    )
    assert (await hub.fetch(spec, SourceCall())).ok
    assert [s["raw_path"] for s in other.seen] == ["/ok"]


async def test_missing_arg_is_bad_input_and_sends_nothing(
    hub: SourceHub, server: TestServer, upstream: Upstream
) -> None:
    result = await hub.fetch(http_source(server, "/api/{{ args[0] }}"), SourceCall())
    assert (result.ok, result.error) == (False, "bad_input")
    assert upstream.seen == []


async def test_cache_is_per_rendered_request(hub: SourceHub, server: TestServer, upstream: Upstream) -> None:
    spec = http_source(server, "/api/{{ args[0] }}", cache_ttl_s=60)
    for city in ("a", "a", "b", "a"):
        assert (await hub.fetch(spec, SourceCall(args=(city,)))).ok
    assert [s["raw_path"] for s in upstream.seen] == ["/api/a", "/api/b"]


@pytest.mark.parametrize(
    ("config", "path"),
    [
        ({"url": "https://{{ args[0] }}.example.com/x"}, ("url",)),
        ({"url": "https://api.example.com/x?q={{ args[0] }}"}, ("url",)),
        ({"url": "https://api.example.com/{% if 1 %}x{% endif %}"}, ("url",)),
        ({"url": "https://user:pw@api.example.com/x"}, ("url",)),
        ({"url": "ftp://api.example.com/x"}, ("url",)),
        ({"url": "https://a.example/x", "query": {"q": "{{ argz }}"}}, ("query", "q")),
        ({"url": "https://a.example/x", "query": {"q": "{{ "}}, ("query", "q")),
        ({"url": "https://a.example/x", "pick": "items[?"}, ("pick",)),
        ({"url": "https://a.example/x", "pick": {"a": "[["}}, ("pick", "a")),
        ({"url": "https://a.example/x", "headers": {"X-A": "v\r\nX-B: 1"}}, ("headers", "X-A")),
        ({"url": "https://a.example/x", "headers": {"Host": "evil"}}, ("headers", "Host")),
        ({"url": "https://a.example/x", "json": {"a": 1}}, ("method",)),
        ({"url": "https://a.example/x", "response": "text", "pick": "a"}, ("pick",)),
    ],
)
def test_unsafe_or_broken_config_is_refused_at_load(config: dict[str, Any], path: tuple[str, ...]) -> None:
    with pytest.raises(SourceConfigError) as info:
        compile_source("api", {"kind": "http", **config})
    assert info.value.path == path
