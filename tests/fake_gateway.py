"""A fake DingTalk Stream gateway: `connections/open` plus the WebSocket, on a local aiohttp app.

It speaks the wire format of dingtalk-protocol.md section 6 and builds its frames with the
official `dingtalk-stream` package's classes, so it does not share code with responder.transport.stream.
Usage (any test):

    gateway = FakeGateway()
    server = await aiohttp_server(gateway.app)
    api_base = str(server.make_url(""))          # pass as StreamClient(api_base=...)
    conn = await gateway.next_connection()
    ack = await conn.push_callback(EXAMPLE_BODY)  # returns the client's ACK (already checked)
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web
from dingtalk_stream.frames import AckMessage, CallbackMessage, Headers, SystemMessage

BOT_TOPIC = "/v1.0/im/bot/messages/get"
CLIENT_ID = "dingTESTCLIENTID"
CLIENT_SECRET = "test-client-secret-not-real"
WAIT_S = 5.0


def bot_body(msg_id: str = "msgTESTmsgTESTmsgTEST==", text: str = " 部署 prod") -> dict[str, Any]:
    """A bot message body shaped like the official sample (dingtalk-protocol.md section 9)."""
    return {
        "conversationId": "cidTEST0000000000000000000==",
        "chatbotUserId": "$:LWCP_v1:$BOTbotBOTbotBOTbot",
        "msgId": msg_id,
        "senderNick": "张三",
        "isAdmin": False,
        "senderStaffId": "user123",
        "sessionWebhookExpiredTime": 1700005399000,
        "createAt": 1699999999000,
        "conversationType": "2",
        "senderId": "$:LWCP_v1:$SENDERsenderSENDER==",
        "conversationTitle": "机器人测试群",
        "isInAtList": True,
        "sessionWebhook": "https://oapi.dingtalk.com/robot/sendBySession?session=0123456789abcdef",
        "text": {"content": text},
        "robotCode": "dingTESTROBOTCODE",
        "msgtype": "text",
    }


class GatewayProtocolError(AssertionError):
    """The client sent something the real gateway would not accept."""


@dataclass
class Registration:
    """One `connections/open` call as the gateway saw it."""

    body: dict[str, Any]
    headers: Mapping[str, str]
    status: int
    ticket: str | None = None


def make_headers(message_id: str, topic: str, **extra: str) -> Headers:
    headers = Headers()
    headers.app_id = "test-app-id"
    headers.connection_id = "test-connection-id"
    headers.content_type = Headers.CONTENT_TYPE_APPLICATION_JSON
    headers.message_id = message_id
    headers.topic = topic
    headers.time = 1690362102194
    headers.extensions.update(extra)
    return headers


def make_frame(frame_type: str, headers: Headers, data: str) -> dict[str, Any]:
    """A gateway frame; `data` is a JSON string inside the JSON, as on the real wire."""
    return {"specVersion": "1.0", "type": frame_type, "headers": headers.to_dict(), "data": data}


def callback_frame(body: Mapping[str, Any] | str, message_id: str, topic: str = BOT_TOPIC) -> dict:
    data = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
    return make_frame(CallbackMessage.TYPE, make_headers(message_id, topic), data)


def system_frame(topic: str, data: Mapping[str, Any], message_id: str) -> dict[str, Any]:
    return make_frame(SystemMessage.TYPE, make_headers(message_id, topic), json.dumps(data))


def check_ack(ack: Mapping[str, Any], message_id: str) -> None:
    """Raise GatewayProtocolError unless `ack` is a well-formed ACK for `message_id`."""
    expected_keys = set(AckMessage().to_dict())
    if set(ack) != expected_keys:
        raise GatewayProtocolError(f"ACK keys {sorted(ack)} != {sorted(expected_keys)}")
    if not isinstance(ack["code"], int) or not isinstance(ack["data"], str):
        raise GatewayProtocolError(f"ACK code must be int and data a JSON string: {ack}")
    json.loads(ack["data"])
    headers = Headers.from_dict(ack["headers"])
    if headers.message_id != message_id:
        raise GatewayProtocolError(f"ACK messageId {headers.message_id!r} != {message_id!r}")
    if headers.content_type != Headers.CONTENT_TYPE_APPLICATION_JSON:
        raise GatewayProtocolError(f"ACK contentType {headers.content_type!r}")


class GatewayConnection:
    """The server side of one client WebSocket."""

    def __init__(self, ticket: str, ws: web.WebSocketResponse, request: web.Request) -> None:
        self.ticket = ticket
        self.ws = ws
        self._request = request
        self.received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.pings = 0
        self.closed = asyncio.Event()
        self._ids = (f"{ticket[:8]}_{n}" for n in itertools.count())

    def new_message_id(self) -> str:
        return next(self._ids)

    async def send(self, frame: Mapping[str, Any]) -> None:
        await self.ws.send_str(json.dumps(frame, ensure_ascii=False))

    async def next_received(self, timeout: float = WAIT_S) -> dict[str, Any]:
        return await asyncio.wait_for(self.received.get(), timeout)

    async def request(self, frame: Mapping[str, Any]) -> dict[str, Any]:
        """Send a frame and return the client's ACK for it (checked for form and messageId)."""
        await self.send(frame)
        ack = await self.next_received()
        check_ack(ack, frame["headers"]["messageId"])
        return ack

    async def push_callback(
        self,
        body: Mapping[str, Any] | str,
        *,
        message_id: str | None = None,
        topic: str = BOT_TOPIC,
    ) -> dict[str, Any]:
        return await self.request(callback_frame(body, message_id or self.new_message_id(), topic))

    async def ping(self, opaque: str) -> dict[str, Any]:
        return await self.request(system_frame("ping", {"opaque": opaque}, self.new_message_id()))

    async def send_disconnect(self, reason: str = "persistent connection is timeout") -> None:
        await self.send(system_frame("disconnect", {"reason": reason}, self.new_message_id()))

    async def close(self, code: int = 1001) -> None:
        """A clean close handshake initiated by the gateway."""
        await self.ws.close(code=code)

    def abort(self) -> None:
        """Drop the TCP connection without a close handshake, as a crashed gateway would."""
        transport = self._request.transport
        if transport is not None:
            transport.abort()


@dataclass
class FakeGateway:
    """Registers clients, issues single-use tickets, and exposes each WebSocket to the test."""

    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET
    answer_pings: bool = True
    reject_next_ticket: bool = False
    """Refuse the next WebSocket upgrade as if its ticket had expired."""
    fail_registrations: list[int] = field(default_factory=list)
    """Statuses to answer the next registrations with, consumed front first."""
    registrations: list[Registration] = field(default_factory=list)
    connections: list[GatewayConnection] = field(default_factory=list)
    rejected_tickets: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._issued: set[str] = set()
        self._used: set[str] = set()
        self._handed_out = 0
        self._changed = asyncio.Condition()
        self.app = web.Application()
        self.app.router.add_post("/v1.0/gateway/connections/open", self._open)
        self.app.router.add_get("/connect", self._connect)

    @property
    def tickets(self) -> list[str]:
        return [r.ticket for r in self.registrations if r.ticket]

    async def wait_for(self, predicate: Any, timeout: float = WAIT_S) -> None:
        """Wait until `predicate()` holds; re-checked whenever the gateway's state changes."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(predicate)

    async def next_connection(self, timeout: float = WAIT_S) -> GatewayConnection:
        """The first connection not yet returned by this method."""
        self._handed_out += 1
        index = self._handed_out
        await self.wait_for(lambda: len(self.connections) >= index, timeout)
        return self.connections[index - 1]

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _open(self, request: web.Request) -> web.Response:
        body = await request.json()
        status, answer = self._answer_registration(request, body)
        registration = Registration(body, dict(request.headers), status, answer.get("ticket"))
        self.registrations.append(registration)
        await self._notify()
        return web.json_response(answer, status=status)

    def _answer_registration(self, request: web.Request, body: Any) -> tuple[int, dict]:
        if self.fail_registrations:
            return self.fail_registrations.pop(0), {"code": "Injected", "message": "failure"}
        if "application/json" not in request.headers.get("Accept", ""):
            return 406, {"code": "NotAcceptable", "message": "send Accept: application/json"}
        if not isinstance(body, dict) or (body.get("clientId"), body.get("clientSecret")) != (
            self.client_id,
            self.client_secret,
        ):
            return 401, {"code": "InvalidAuthentication", "message": "bad clientId/secret"}
        if {"type": "CALLBACK", "topic": BOT_TOPIC} not in body.get("subscriptions", []):
            return 400, {"code": "InvalidSubscription", "message": "no bot topic"}
        ticket = str(uuid.uuid4())
        self._issued.add(ticket)
        endpoint = request.url.with_path("/connect").with_query(None)
        endpoint = endpoint.with_scheme("wss" if endpoint.scheme == "https" else "ws")
        return 200, {"endpoint": str(endpoint), "ticket": ticket}

    async def _connect(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        expired, self.reject_next_ticket = self.reject_next_ticket, False
        if expired or ticket not in self._issued or ticket in self._used:
            self.rejected_tickets.append(ticket)
            await self._notify()
            raise web.HTTPUnauthorized(text="ticket unknown or already used")
        self._used.add(ticket)
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        connection = GatewayConnection(ticket, ws, request)
        self.connections.append(connection)
        await self._notify()
        try:
            await self._read(connection)
        finally:
            connection.closed.set()
            await self._notify()
        return ws

    async def _read(self, connection: GatewayConnection) -> None:
        async for msg in connection.ws:
            if msg.type is WSMsgType.TEXT:
                await connection.received.put(json.loads(msg.data))
            elif msg.type is WSMsgType.PING:
                connection.pings += 1
                if self.answer_pings:
                    await connection.ws.pong(msg.data)
                await self._notify()
