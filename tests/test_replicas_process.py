"""Two replicas, one answer: real `responder serve` processes sharing one real redis-server.

Each test runs twice: as two separate processes (two pods), and as one `serve --workers 2` (two
workers on one port). The same msgId sent to both is answered once; 25 messages to one
conversation get at most 20 replies in the window; a cooldown set on one holds on the other; an
`every: 1s` schedule fires once per slot; and a Redis stopped mid-run costs no reply and no 5xx,
and is used again once it is back, with no restart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from tests.conftest import SECRET, RulesWriter, Sink, callback_body
from tests.fake_openapi import APP_KEY, APP_SECRET
from tests.redis_server import RedisServer
from tests.replicas import Replicas

pytestmark = pytest.mark.slow

RULES = """
dingtalk:
  app_secret: ${DINGTALK_APP_SECRET}
  session_webhook_origins: ["ORIGIN"]
EXTRA
state:
  backend: redis
  url: ${REDIS_URL}
rules:
  - {name: echo, command: [echo], msgtype: text, at_sender: false, body: "echo {{ args_text }}"}
  - name: ip
    keywords: [ip]
    cooldown: {seconds: 600, reply: "Slow down, please."}
    msgtype: text
    at_sender: false
    body: "203.0.113.7"
"""
SCHEDULES = """
schedules:
  - name: tick
    every: 1s
    to: [{conversation: cid-ops}]
    msgtype: text
    body: "tick {{ schedule.slot.isoformat() }}"
"""
TOPOLOGIES = {"two_processes": 0, "two_workers": 2}


@pytest.fixture(params=list(TOPOLOGIES))
def workers(request: pytest.FixtureRequest) -> int:
    return TOPOLOGIES[request.param]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


Start = Callable[..., Awaitable[Replicas]]


@pytest.fixture
async def start(
    write_rules: RulesWriter, sink: Sink, redis_server: RedisServer, workers: int
) -> AsyncIterator[Start]:
    started: list[Replicas] = []

    async def start_(extra_dingtalk: str = "", schedules: str = "") -> Replicas:
        text = RULES.replace("ORIGIN", sink.origin).replace("EXTRA", extra_dingtalk) + schedules
        environ = {"DINGTALK_APP_SECRET": SECRET, "REDIS_URL": redis_server.url, **OPENAPI_ENV}
        replicas = await Replicas.start(write_rules(text), environ, workers=workers)
        started.append(replicas)
        return replicas

    yield start_
    for replicas in started:
        assert all(code == 0 for code in await replicas.stop())


OPENAPI_ENV = {"CLIENT_ID": APP_KEY, "CLIENT_SECRET": APP_SECRET}


def both_took_part(counts: dict[str, float], replicas: Replicas) -> bool:
    return len([v for v in counts.values() if v > 0]) == replicas.count


async def test_the_same_msgid_sent_to_both_gets_one_reply(
    start: Start, sink: Sink, session: aiohttp.ClientSession
) -> None:
    replicas = await start()
    body = callback_body("echo once", webhook=sink.webhook())
    statuses = await asyncio.gather(*(replicas.post(body) for _ in range(16)))
    assert statuses == [200] * 16
    counts = await replicas.settled(session, 16)
    assert both_took_part(counts, replicas), counts
    assert sink.count == 1
    assert (await sink.next())["json"]["text"]["content"] == "echo once"
    skipped = await replicas.per_replica(session, "responder_messages_total", outcome="skipped")
    assert sum(skipped.values()) == 15


async def test_25_messages_to_one_conversation_get_at_most_20_replies_in_the_window(
    start: Start, sink: Sink, session: aiohttp.ClientSession
) -> None:
    replicas = await start()
    # The sessionWebhook lasts 7 s, so a reply beyond the budget cannot wait for the next slot
    # (61 s away): it is refused at once and the test need not wait out the window.
    expires = int(time.time() * 1000) + 7000
    bodies = [
        callback_body(
            f"echo {i}", webhook=sink.webhook(), conversationId="cidBUSY", sessionWebhookExpiredTime=expires
        )
        for i in range(25)
    ]
    assert await asyncio.gather(*(replicas.post(body) for body in bodies)) == [200] * 25
    counts = await replicas.settled(session, 25)
    assert both_took_part(counts, replicas), counts
    assert sink.count == 20
    dropped = await replicas.per_replica(session, "responder_messages_total", outcome="dropped")
    assert sum(dropped.values()) == 5


async def test_a_cooldown_set_on_one_holds_on_the_other(
    start: Start, sink: Sink, session: aiohttp.ClientSession
) -> None:
    replicas = await start()
    for sent in range(1, 9):
        assert await replicas.post(callback_body("ip", webhook=sink.webhook())) == 200
        counts = await replicas.settled(session, sent)
    assert both_took_part(counts, replicas), counts
    texts = [(await sink.next())["json"]["text"]["content"] for _ in range(sink.count)]
    assert texts == ["203.0.113.7", "Slow down, please."]


async def test_an_every_second_schedule_fires_once_per_slot(
    start: Start, openapi: Any, session: aiohttp.ClientSession
) -> None:
    credentials = (
        f"  client_id: ${{CLIENT_ID}}\n  client_secret: ${{CLIENT_SECRET}}\n  api_base: {openapi.base}"
    )
    replicas = await start(credentials, SCHEDULES)
    await openapi.wait_for(lambda: len({s.msg_param["content"] for s in openapi.sends}) >= 5, timeout=20)
    statuses = await replicas.statuses(session)
    assert all(code == 0 for code in await replicas.stop())  # nothing more can fire
    slots = [s.msg_param["content"] for s in openapi.sends]
    assert len(slots) == len(set(slots)), sorted(slots)
    counts = [next(s for s in status["schedules"] if s["name"] == "tick")["counts"] for status in statuses]
    assert all(c.get("sent", 0) + c.get("not_ours", 0) > 0 for c in counts), counts  # both competed


async def test_redis_stopped_mid_run_costs_no_reply_and_is_used_again_once_back(
    start: Start, sink: Sink, session: aiohttp.ClientSession, redis_server: RedisServer
) -> None:
    replicas = await start()

    async def gauges() -> list[float]:
        return list((await replicas.per_replica(session, "responder_state_backend_up")).values())

    assert await gauges() == [1.0] * replicas.count
    await redis_server.stop()
    for i in range(12):
        assert await replicas.post(callback_body(f"echo down {i}", webhook=sink.webhook())) == 200
    counts = await replicas.settled(session, 12)
    assert sink.count == 12  # answering beats silence
    assert both_took_part(counts, replicas), counts

    async def all_down() -> bool:
        return await gauges() == [0.0] * replicas.count

    await replicas.wait_for(session, all_down, what="responder_state_backend_up 0")
    for status in await replicas.statuses(session):
        assert status["state"]["reachable"] is False
    for server in replicas.servers:
        assert (await server.get(session, "/-/ready"))[0] == 200
        assert server.output.count("state_backend_unavailable") == max(1, replicas.workers)
        # The URL came from ${REDIS_URL}: its host is shown, only a password would be hidden.
        assert f"url=redis://127.0.0.1:{redis_server.port}/0" in server.output

    await redis_server.start_again()

    async def all_up() -> bool:
        return await gauges() == [1.0] * replicas.count

    await replicas.wait_for(session, all_up, what="responder_state_backend_up 1")
    body = callback_body("echo shared again", webhook=sink.webhook())
    assert await asyncio.gather(*(replicas.post(body) for _ in range(16))) == [200] * 16
    await replicas.settled(session, 12 + 16)
    assert sink.count == 13
    for server in replicas.servers:
        assert "state_backend_recovered" in server.output
