"""Two apps (two replicas in one test process) on one real Redis, through the real pipeline:
a redelivery landing on the other replica is skipped, a cooldown holds on both, and /-/status
shows the backend."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from responder import keys
from tests.conftest import ClientFactory, RulesWriter, Sink, callback_body, pipeline, signed_headers
from tests.redis_server import RedisServer

RULES = """
dingtalk:
  app_secret: ${DINGTALK_APP_SECRET}
  session_webhook_origins: ["ORIGIN"]
state:
  backend: redis
  url: ${REDIS_URL}
rules:
  - {name: echo, keywords: [echo], msgtype: text, at_sender: false, body: echo}
  - name: ip
    keywords: [ip]
    cooldown: {seconds: 600, reply: "Slow down, please."}
    msgtype: text
    at_sender: false
    body: "203.0.113.7"
"""


@pytest.fixture
async def replicas(
    write_rules: RulesWriter, sink: Sink, redis_server: RedisServer, make_client: ClientFactory
) -> tuple[TestClient, TestClient]:
    path: Path = write_rules(RULES.replace("ORIGIN", sink.origin))
    environ = {"REDIS_URL": redis_server.url}
    return await make_client(path, environ), await make_client(path, environ)


async def post(client: TestClient, body: dict[str, Any]) -> None:
    response = await client.post("/dingtalk/callback", data=json.dumps(body), headers=signed_headers())
    assert response.status == 200
    await pipeline(client).wait_idle()


async def test_a_redelivery_to_the_other_replica_is_not_answered_again(
    replicas: tuple[TestClient, TestClient], sink: Sink
) -> None:
    a, b = replicas
    body = callback_body("echo", webhook=sink.webhook())
    await post(a, body)
    await post(b, body)
    await post(a, body)
    assert sink.count == 1


async def test_a_cooldown_on_one_replica_holds_on_the_other(
    replicas: tuple[TestClient, TestClient], sink: Sink
) -> None:
    a, b = replicas
    for client in (a, b, a, b):
        await post(client, callback_body("ip", webhook=sink.webhook()))
    texts = [(await sink.next())["json"]["text"]["content"] for _ in range(sink.count)]
    assert texts == ["203.0.113.7", "Slow down, please."]


async def test_status_shows_the_shared_backend_without_its_password(
    write_rules: RulesWriter, sink: Sink, tmp_path: Path, make_client: ClientFactory
) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    server = await RedisServer.start(folder, password="s3cr3t-redis-pass")
    try:
        path = write_rules(RULES.replace("ORIGIN", sink.origin))
        client = await make_client(path, {"REDIS_URL": server.url})
        state = client.app[keys.STATUS_SECTIONS]["state"]()
        assert state["backend"] == "redis" and state["reachable"] is True
        assert state["url"] == f"redis://127.0.0.1:{server.port}/0"
        assert "s3cr3t" not in json.dumps(state)
        await post(client, callback_body("echo", webhook=sink.webhook()))
        assert sink.count == 1
    finally:
        await server.close()


async def test_a_wrong_password_falls_back_to_memory_and_says_why(
    write_rules: RulesWriter, sink: Sink, tmp_path: Path, make_client: ClientFactory
) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    server = await RedisServer.start(folder, password="the-right-password")
    try:
        path = write_rules(RULES.replace("ORIGIN", sink.origin))
        url = f"redis://:the-wrong-password@127.0.0.1:{server.port}/0"
        client = await make_client(path, {"REDIS_URL": url})
        state = client.app[keys.STATUS_SECTIONS]["state"]()
        assert state["reachable"] is False and "AuthenticationError" in state["last_error"]
        await post(client, callback_body("echo", webhook=sink.webhook()))
        assert sink.count == 1  # answering beats silence
    finally:
        await server.close()
