"""The callback port's connection limits, as a real `responder serve` process applies them:
keep-alive and half-sent-header deadlines, the connection cap, and a small descriptor limit."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from tests.conftest import SECRET, RulesWriter, Sink, callback_body, signed_headers
from tests.process import ServerProcess

pytestmark = pytest.mark.slow

ENV = {"DINGTALK_APP_SECRET": SECRET}
RULES = """
dingtalk:
  app_secret: ${DINGTALK_APP_SECRET}
  session_webhook_origins: ["ORIGIN"]
rules:
  - name: echo
    keywords: [echo]
    msgtype: text
    at_sender: false
    body: "echo"
"""
# Partial requests that never finish their headers, and connections that never send anything.
HALF_SENT = [b"", b"POST /dingtalk/callback HTTP/1.1\r\nHost: x\r\n", b"GET / HTTP/1.1\r\nX-A: 1", b"P"]


@pytest.fixture
def rules_path(write_rules: RulesWriter, sink: Sink) -> Path:
    return write_rules(RULES.replace("ORIGIN", sink.origin))


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def address(server: ServerProcess) -> tuple[str, int]:
    url = URL(server.url)
    assert url.host is not None and url.port is not None
    return url.host, url.port


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def open_half_sent(server: ServerProcess, count: int) -> list[Connection]:
    connections = []
    for i in range(count):
        reader, writer = await asyncio.open_connection(*address(server))
        writer.write(HALF_SENT[i % len(HALF_SENT)])
        connections.append((reader, writer))
    return connections


async def callback(session: aiohttp.ClientSession, server: ServerProcess, sink: Sink) -> int:
    body = json.dumps(callback_body("echo", webhook=sink.webhook()))
    async with session.post(server.url + "/dingtalk/callback", data=body, headers=signed_headers()) as r:
        return r.status


async def test_the_default_limits_are_applied_and_announced(rules_path: Path) -> None:
    server = await ServerProcess.start(rules_path, environ=ENV)
    try:
        found = await server.wait_for_line(r"max_connections=(\d+) keepalive_timeout_s=(\S+)")
        assert found.group(2) == "15"
        assert int(found.group(1)) == 1024 or int(found.group(1)) >= 16  # lowered only by ulimit -n
    finally:
        assert await server.stop() == 0


async def test_idle_and_half_sent_connections_are_closed_at_the_keepalive_deadline(
    rules_path: Path,
) -> None:
    server = await ServerProcess.start(rules_path, "--keepalive-timeout", "1.5", environ=ENV)
    try:
        opened = time.monotonic()
        connections = await open_half_sent(server, len(HALF_SENT))
        async with asyncio.timeout(10):
            answers = [await reader.read() for reader, _ in connections]
        elapsed = time.monotonic() - opened
        assert all(a == b"" or re.match(rb"HTTP/1\.[01] 4\d\d ", a) for a in answers), answers
        assert 1.0 <= elapsed < 5.0, elapsed  # the documented deadline, not sooner and not an hour
        for _, writer in connections:
            writer.close()
    finally:
        assert await server.stop() == 0


async def test_over_the_cap_new_connections_get_503_while_the_admin_port_answers(
    rules_path: Path, sink: Sink, session: aiohttp.ClientSession
) -> None:
    server = await ServerProcess.start(
        rules_path, "--max-connections", "16", "--keepalive-timeout", "2", environ=ENV
    )
    try:
        held = await open_half_sent(server, 16)
        assert await callback(session, server, sink) == 503
        assert (await server.get(session, "/-/healthy"))[0] == 200
        for reader, writer in held:  # once the deadline has closed them, callbacks are answered again
            assert await asyncio.wait_for(reader.read(), 10) == b""
            writer.close()
        assert await callback(session, server, sink) == 200
        assert (await sink.next())["json"] == {"msgtype": "text", "text": {"content": "echo"}}
    finally:
        assert await server.stop() == 0


async def test_a_small_descriptor_limit_lowers_the_cap_and_never_floods_the_log(
    rules_path: Path, sink: Sink, session: aiohttp.ClientSession
) -> None:
    server = await ServerProcess.start(
        rules_path, "--keepalive-timeout", "3", environ=ENV, max_open_files=256
    )
    try:
        found = await server.wait_for_line(r"max_connections=(\d+)")
        assert int(found.group(1)) == 128  # 256 descriptors, less those kept for everything else
        held = await open_half_sent(server, 300)
        assert (await server.get(session, "/-/healthy"))[0] == 200
        assert await callback(session, server, sink) == 503
        for _, writer in held:
            writer.close()
        deadline = time.monotonic() + 15
        while await callback(session, server, sink) != 200:
            assert time.monotonic() < deadline, server.output[-2000:]
            await asyncio.sleep(0.2)  # polling under a deadline for the held connections to be reaped
        assert "Traceback" not in server.output
        assert server.output.count("connection_refused") <= 2
    finally:
        assert await server.stop() == 0
