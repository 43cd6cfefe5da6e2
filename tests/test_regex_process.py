"""A real `responder serve` stays responsive when a group member sends a message crafted against a
regex that Python's re would backtrack on for ever: regex rules run on RE2."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from tests.conftest import SECRET, RulesWriter, Sink, callback_body, signed_headers
from tests.process import ServerProcess

pytestmark = pytest.mark.slow

ENV = {"DINGTALK_APP_SECRET": SECRET}
# Generous: the answers take milliseconds; Python's re needed 1.76 s for 26 a's, doubling with each
# further one, so for 40 it would not answer for days.
PROMPTLY_S = 5.0
HOSTILE = "a" * 40 + "!"


def rules_text(origin: str) -> str:
    return f"""
dingtalk:
  app_secret: ${{DINGTALK_APP_SECRET}}
  session_webhook_origins: ["{origin}"]
rules:
  - name: only-as
    regex: '^(a+)+$'
    msgtype: text
    at_sender: false
    body: only a
  - name: version
    keywords: [version]
    msgtype: text
    at_sender: false
    body: v1
  - name: unknown
    fallback: true
    msgtype: text
    at_sender: false
    body: what?
"""


async def post(session: aiohttp.ClientSession, server: ServerProcess, sink: Sink, text: str) -> None:
    body = json.dumps(callback_body(text, webhook=sink.webhook(), conversationType="1"))
    async with session.post(
        server.url + "/dingtalk/callback", data=body, headers=signed_headers()
    ) as response:
        assert response.status == 200


async def replies(sink: Sink, count: int) -> list[str]:
    return [str((await sink.next(PROMPTLY_S))["json"]["text"]["content"]) for _ in range(count)]


@pytest.fixture
async def session() -> aiohttp.ClientSession:
    async with aiohttp.ClientSession() as client:
        yield client


async def test_a_message_crafted_against_a_nested_repeat_does_not_stall_the_server(
    write_rules: RulesWriter, sink: Sink, session: aiohttp.ClientSession
) -> None:
    server = await ServerProcess.start(write_rules(rules_text(sink.origin)), environ=ENV)
    try:
        async with asyncio.timeout(PROMPTLY_S):
            await post(session, server, sink, HOSTILE)
        async with asyncio.timeout(PROMPTLY_S):
            code, _ = await server.get(session, "/-/healthy")
        assert code == 200
        async with asyncio.timeout(PROMPTLY_S):
            await post(session, server, sink, "version")
        # The hostile message matched nothing and got the fallback; the second got its answer.
        assert sorted(await replies(sink, 2)) == ["v1", "what?"]
        async with asyncio.timeout(PROMPTLY_S):
            await post(session, server, sink, "a" * 40)
        assert await replies(sink, 1) == ["only a"]
    finally:
        assert await server.stop() == 0
