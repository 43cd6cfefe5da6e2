"""HTTP hardening: compressed bodies, slow bodies, idle connections, the connection cap."""

from __future__ import annotations

import asyncio
import errno
import gzip
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from responder.transport.site import CappedSite, ConnectionCap, DescriptorAlarm, bind
from tests.conftest import ClientFactory, RulesWriter, Sink, signed_headers

RULES = """
dingtalk:
  app_secret: ${DINGTALK_APP_SECRET}
  session_webhook_origins: ["ORIGIN"]
rules:
  - name: echo
    keywords: [echo]
    msgtype: text
    body: "{{ text }}"
"""


@pytest.fixture
def rules_path(write_rules: RulesWriter, sink: Sink) -> Path:
    return write_rules(RULES.replace("ORIGIN", sink.origin))


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "GZIP", "x-unknown"])
async def test_compressed_bodies_are_refused_not_inflated(
    encoding: str, rules_path: Path, sink: Sink, make_client: ClientFactory
) -> None:
    client = await make_client(rules_path)
    bomb = gzip.compress(b" " * 10_000_000)  # 10 MB of spaces in ~10 KB
    headers = {**signed_headers(), "Content-Encoding": encoding}
    response = await client.post("/dingtalk/callback", data=bomb, headers=headers)
    assert response.status == 415
    assert "Content-Encoding" in (await response.json())["reason"]


async def test_an_encoding_the_parser_does_not_know_is_a_400(
    rules_path: Path, sink: Sink, make_client: ClientFactory
) -> None:
    # aiohttp's parser refuses `br` itself when Brotli is not installed: still 4xx, never inflated.
    client = await make_client(rules_path)
    headers = {**signed_headers(), "Content-Encoding": "br"}
    response = await client.post("/dingtalk/callback", data=b"\x0b\x02\x80", headers=headers)
    assert response.status in (400, 415)


async def test_a_body_that_never_finishes_gets_408(
    rules_path: Path, sink: Sink, make_client: ClientFactory
) -> None:
    client = await make_client(rules_path, body_timeout_s=0.2)
    assert client.server is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
    head = "".join(f"{k}: {v}\r\n" for k, v in signed_headers().items())
    writer.write(
        f"POST /dingtalk/callback HTTP/1.1\r\nHost: x\r\n{head}Content-Length: 500\r\n\r\n{{".encode()
    )
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 10)
    assert status_line.startswith(b"HTTP/1.1 408")
    writer.close()


@pytest.fixture
async def capped_server() -> AsyncIterator[tuple[int, ConnectionCap]]:
    async def ok(request: web.Request) -> web.Response:
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/", ok)
    runner = web.AppRunner(app, keepalive_timeout=0.3)
    await runner.setup()
    cap = ConnectionCap(2)
    sock = bind("127.0.0.1", 0)
    await CappedSite(runner, sock, cap).start()
    yield sock.getsockname()[1], cap
    await runner.cleanup()


async def test_connections_over_the_cap_get_503_and_are_closed(
    capped_server: tuple[int, ConnectionCap],
) -> None:
    port, cap = capped_server
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answer = await asyncio.wait_for(reader.read(), 10)
    assert answer.startswith(b"HTTP/1.1 503")
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"] == "overloaded"
    assert cap.refused == 1
    # A held connection still works.
    held_reader, held_writer = held[0]
    held_writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await asyncio.wait_for(held_reader.readline(), 10)).startswith(b"HTTP/1.1 200")
    for _, w in [*held, (reader, writer)]:
        w.close()


@pytest.mark.parametrize("payload", [b"", b"GET / HTTP/1.1\r\nHost: x\r\n"])
async def test_idle_and_half_sent_connections_are_closed(
    payload: bytes, capped_server: tuple[int, ConnectionCap]
) -> None:
    port, cap = capped_server
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 10) == b""  # closed by the server
    writer.close()
    while cap.open:  # the slot is given back
        await asyncio.sleep(0.01)


def test_running_out_of_descriptors_is_one_line_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    alarm = DescriptorAlarm(interval_s=10, clock=lambda: now[0])
    loop = asyncio.new_event_loop()
    try:
        for _ in range(1000):  # what a flood of accepts looks like to asyncio
            alarm.handle(
                loop, {"message": "socket.accept() out of system resource", "exception": OSError(24, "x")}
            )
        now[0] = 11
        alarm.handle(loop, {"message": "again", "exception": OSError(errno.EMFILE, "Too many open files")})
    finally:
        loop.close()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "descriptors_exhausted error=EMFILE repeats=0 (new connections wait until some close)",
        "descriptors_exhausted error=EMFILE repeats=999 (new connections wait until some close)",
    ]
    assert "Traceback" not in caplog.text


def test_other_loop_errors_still_reach_the_default_handler(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.new_event_loop()
    try:
        DescriptorAlarm().handle(loop, {"message": "something else", "exception": ValueError("boom")})
    finally:
        loop.close()
    assert "something else" in caplog.text
