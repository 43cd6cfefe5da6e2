"""The fake gateway itself: the official SDK client works with it; tickets are single-use."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote_plus

import aiohttp
import pytest
import websockets
from dingtalk_stream import ChatbotHandler, ChatbotMessage, Credential, DingTalkStreamClient
from dingtalk_stream.frames import AckMessage, CallbackMessage

from tests.fake_gateway import (
    CLIENT_ID,
    CLIENT_SECRET,
    FakeGateway,
    GatewayProtocolError,
    bot_body,
    callback_frame,
    check_ack,
)


class RecordingChatbot(ChatbotHandler):
    def __init__(self) -> None:
        super().__init__()
        self.received: list[ChatbotMessage] = []

    async def process(self, callback: CallbackMessage) -> tuple[int, str]:
        self.received.append(ChatbotMessage.from_dict(callback.data))
        return AckMessage.STATUS_OK, "OK"


async def test_official_sdk_client_registers_and_acks_through_the_fake_gateway(
    aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = FakeGateway()
    server = await aiohttp_server(gateway.app)
    register_url = str(server.make_url("/v1.0/gateway/connections/open"))
    monkeypatch.setattr(DingTalkStreamClient, "OPEN_CONNECTION_API", register_url)
    monkeypatch.setattr(DingTalkStreamClient, "get_host_ip", lambda self: "127.0.0.1")
    sdk = DingTalkStreamClient(Credential(CLIENT_ID, CLIENT_SECRET))
    chatbot = RecordingChatbot()
    sdk.register_callback_handler(ChatbotMessage.TOPIC, chatbot)
    # The SDK registers with blocking `requests`; keep it off the loop serving the gateway.
    connection = await asyncio.to_thread(sdk.open_connection)
    uri = f"{connection['endpoint']}?ticket={quote_plus(connection['ticket'])}"
    async with websockets.connect(uri) as ws:
        sdk.websocket = ws
        conn = await gateway.next_connection()
        await conn.send(callback_frame(bot_body(), "sdk_1"))
        await sdk.route_message(json.loads(await ws.recv()))
        ack = await conn.next_received()
    check_ack(ack, "sdk_1")
    assert chatbot.received[0].text.content == " 部署 prod"
    assert gateway.registrations[0].body["clientId"] == CLIENT_ID


async def register(session: aiohttp.ClientSession, base: str, secret: str) -> aiohttp.ClientResponse:
    body = {
        "clientId": CLIENT_ID,
        "clientSecret": secret,
        "subscriptions": [{"type": "CALLBACK", "topic": "/v1.0/im/bot/messages/get"}],
    }
    headers = {"Accept": "application/json"}
    async with session.post(f"{base}/v1.0/gateway/connections/open", json=body, headers=headers) as r:
        await r.read()
        return r


async def test_gateway_rejects_a_reused_ticket(aiohttp_server: Any) -> None:
    gateway = FakeGateway()
    server = await aiohttp_server(gateway.app)
    async with aiohttp.ClientSession() as session:
        await register(session, str(server.make_url("")), CLIENT_SECRET)
        url = server.make_url("/connect").with_query(ticket=gateway.tickets[0])
        async with session.ws_connect(url):
            await gateway.next_connection()
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await session.ws_connect(url)
    assert info.value.status == 401
    assert gateway.rejected_tickets == gateway.tickets


async def test_gateway_rejects_wrong_credentials(aiohttp_server: Any) -> None:
    gateway = FakeGateway()
    server = await aiohttp_server(gateway.app)
    async with aiohttp.ClientSession() as session:
        response = await register(session, str(server.make_url("")), "not-the-secret")
    assert response.status == 401
    assert gateway.tickets == []


def test_check_ack_refuses_a_wrong_message_id() -> None:
    ack = {"code": 200, "headers": {"messageId": "a"}, "message": "OK", "data": "{}"}
    with pytest.raises(GatewayProtocolError, match="messageId"):
        check_ack(ack, "b")
