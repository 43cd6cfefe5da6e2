"""Stream mode through the real app: fake gateway in, local sessionWebhook out."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from responder import keys
from tests.conftest import ClientFactory, RulesWriter, Sink, pipeline
from tests.fake_gateway import CLIENT_ID, CLIENT_SECRET, FakeGateway, bot_body

RULES = """
dingtalk:
  mode: MODE
  client_id: ${DINGTALK_CLIENT_ID}
  client_secret: ${DINGTALK_CLIENT_SECRET}
  api_base: API_BASE
  session_webhook_origins: ["ORIGIN"]
rules:
  - name: deploy
    command: [部署]
    msgtype: text
    body: "收到：{{ text }}"
"""
ENV = {"DINGTALK_CLIENT_ID": CLIENT_ID, "DINGTALK_CLIENT_SECRET": CLIENT_SECRET}


@pytest.fixture
async def gateway(aiohttp_server) -> tuple[FakeGateway, str]:  # type: ignore[no-untyped-def]
    fake = FakeGateway()
    server = await aiohttp_server(fake.app)
    return fake, str(server.make_url("")).rstrip("/")


def rules(write_rules: RulesWriter, sink: Sink, api_base: str, mode: str = "stream") -> Path:
    text = RULES.replace("MODE", mode).replace("API_BASE", api_base).replace("ORIGIN", sink.origin)
    return write_rules(text)


def body(sink: Sink, msg_id: str) -> dict:  # type: ignore[type-arg]
    message = bot_body(msg_id=msg_id)
    message["sessionWebhook"] = sink.webhook()
    message["sessionWebhookExpiredTime"] = int(time.time() * 1000) + 600_000
    return message


async def test_stream_message_is_acked_and_answered_once(
    write_rules: RulesWriter, sink: Sink, make_client: ClientFactory, gateway: tuple[FakeGateway, str]
) -> None:
    fake, api_base = gateway
    client = await make_client(rules(write_rules, sink, api_base), ENV)
    connection = await fake.next_connection()
    ack = await connection.push_callback(body(sink, "msgSTREAM1=="), message_id="frame-1")
    assert ack["code"] == 200
    received = await sink.next()
    assert received["json"] == {
        "msgtype": "text",
        "text": {"content": "@user123 收到：部署 prod"},
        "at": {"atUserIds": ["user123"], "isAtAll": False},
    }
    # DingTalk redelivers the same frame (slow ACK, reconnect): ACKed again, never answered twice.
    await connection.push_callback(body(sink, "msgSTREAM1=="), message_id="frame-1")
    await connection.push_callback(body(sink, "msgSTREAM1=="), message_id="frame-2")
    await pipeline(client).wait_idle()
    assert sink.count == 1


async def test_ready_reflects_the_stream_connection(
    write_rules: RulesWriter, sink: Sink, make_client: ClientFactory, gateway: tuple[FakeGateway, str]
) -> None:
    fake, api_base = gateway
    fake.fail_registrations = [500] * 1000
    client = await make_client(rules(write_rules, sink, api_base), ENV)
    response = await client.get("/-/ready")
    assert response.status == 503
    assert (await response.json())["waiting_for"] == ["stream"]


async def test_stream_only_mode_has_no_http_callback(
    write_rules: RulesWriter, sink: Sink, make_client: ClientFactory, gateway: tuple[FakeGateway, str]
) -> None:
    _, api_base = gateway
    client = await make_client(rules(write_rules, sink, api_base), ENV)
    assert (await client.post("/dingtalk/callback", data=b"{}")).status == 404
    assert "stream" in client.app[keys.READINESS]


async def test_both_modes_at_once(
    write_rules: RulesWriter, sink: Sink, make_client: ClientFactory, gateway: tuple[FakeGateway, str]
) -> None:
    fake, api_base = gateway
    client = await make_client(rules(write_rules, sink, api_base, mode="both"), ENV)
    connection = await fake.next_connection()
    await connection.push_callback(body(sink, "msgBOTH1=="))
    await sink.next()
    response = await client.get("/-/ready")
    assert response.status == 200
