"""Shared fixtures: signed callbacks, a fake sessionWebhook, rules files in tmp_path, app clients."""

from __future__ import annotations

import asyncio
import copy
import datetime
import json
import os
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from responder import dingtalk, keys
from responder.app import create_app
from responder.delivery.pipeline import Handled, answer_once, local_now
from responder.engine.answer import Fixtures
from responder.rules.load import load_rules
from responder.rules.model import RuleSet
from responder.rules.store import RuleStore
from responder.serve import HANDLER_OPTIONS
from responder.settings import AppOptions
from tests.fake_openapi import FakeOpenApi
from tests.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
# `RESPONDER_TEST_LOOP=uvloop pytest …` runs the tests on uvloop, the loop `serve` uses
# (tests/test_event_loop.py runs the core that way); the default is asyncio's own.
TEST_LOOP = os.environ.get("RESPONDER_TEST_LOOP", "asyncio")
if TEST_LOOP == "uvloop":
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
SECRET = "test-app-secret-not-real"
REPO = Path(__file__).resolve().parent.parent

EXAMPLE_CALLBACK: dict[str, Any] = {
    "conversationId": "cidTEST0000000000000000000==",
    "atUsers": [
        {"dingtalkId": "$:LWCP_v1:$BOTbotBOTbotBOTbot"},
        {"dingtalkId": "$:LWCP_v1:$USRusrUSRusrUSRusr", "staffId": "user123"},
    ],
    "chatbotCorpId": "dingTESTCORP0001",
    "chatbotUserId": "$:LWCP_v1:$BOTbotBOTbotBOTbot",
    "msgId": "msgTESTmsgTESTmsgTEST==",
    "senderNick": "张三",
    "isAdmin": False,
    "senderStaffId": "user123",
    "sessionWebhookExpiredTime": 1700005399000,
    "createAt": 1699999999000,
    "senderCorpId": "dingTESTCORP0001",
    "conversationType": "2",
    "senderId": "$:LWCP_v1:$SENDERsenderSENDER==",
    "conversationTitle": "机器人测试群",
    "isInAtList": True,
    "sessionWebhook": "https://oapi.dingtalk.com/robot/sendBySession?session=0123456789abcdef0123456789abcdef",
    "text": {"content": " 部署 prod"},
    "robotCode": "dingTESTROBOTCODE",
    "msgtype": "text",
}


def signed_headers(secret: str = SECRET, timestamp: int | None = None) -> dict[str, str]:
    ts = str(int(time.time() * 1000) if timestamp is None else timestamp)
    return {
        "timestamp": ts,
        "sign": dingtalk.sign(secret, ts),
        "Content-Type": "application/json; charset=utf-8",
    }


_msg_counter = iter(range(1, 10**9))


def callback_body(text: str | None = "ip", *, webhook: str = "", **fields: Any) -> dict[str, Any]:
    """The protocol sheet's example callback with a fresh msgId, live expiry and our webhook."""
    body = copy.deepcopy(EXAMPLE_CALLBACK)
    body["msgId"] = f"msgTEST{next(_msg_counter)}=="
    body["sessionWebhookExpiredTime"] = int(time.time() * 1000) + 5_400_000
    body["createAt"] = int(time.time() * 1000)
    if webhook:
        body["sessionWebhook"] = webhook
    if text is not None:
        body["text"] = {"content": text}
    body.update(fields)
    return body


@dataclass
class Sink:
    """A fake DingTalk sessionWebhook endpoint that records every request it receives."""

    server: TestServer | None = None
    received: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    answer: dict[str, Any] = field(default_factory=lambda: {"errcode": 0, "errmsg": "ok"})
    status: int = 200
    count: int = 0
    arrivals: int = 0  # requests that reached the handler, including those still held
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    hold: asyncio.Event | None = None  # when set, requests wait for it before being answered

    @property
    def origin(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.port}"

    def webhook(self, session: str = "0123456789abcdef0123456789abcdef") -> str:
        return f"{self.origin}/robot/sendBySession?session={session}"

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.arrivals += 1
        self.arrived.set()
        if self.hold is not None:
            await self.hold.wait()
        self.count += 1
        await self.received.put(
            {"path": request.path, "query": dict(request.query), "headers": dict(request.headers), "raw": raw}
        )
        return web.json_response(self.answer, status=self.status)

    async def next(self, timeout: float = 5.0) -> dict[str, Any]:
        item = await asyncio.wait_for(self.received.get(), timeout)
        item["json"] = json.loads(item["raw"])
        return item


async def _recording_server(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> Sink:
    recorder = Sink()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recorder.handle)
    recorder.server = await aiohttp_server(app)
    return recorder


@pytest.fixture
async def sink(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> Sink:
    """The fake DingTalk sessionWebhook that replies should reach."""
    return await _recording_server(aiohttp_server)


@pytest.fixture
async def trap(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> Sink:
    """A server that must never be contacted."""
    return await _recording_server(aiohttp_server)


@pytest.fixture
async def openapi(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> AsyncIterator[FakeOpenApi]:
    """DingTalk's OpenAPI as a local fake, served; a hanging send is let go at teardown."""
    fake = FakeOpenApi()
    server = await aiohttp_server(fake.app)
    fake.base = str(server.make_url("")).rstrip("/")
    yield fake
    fake.release()


@pytest.fixture
async def redis_server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    """Debian's real redis-server on a free loopback port; stopped (and its data gone) at teardown."""
    folder = tmp_path / "redis"
    folder.mkdir()
    server = await RedisServer.start(folder)
    yield server
    await server.close()


RulesWriter = Callable[..., Path]


@pytest.fixture
def write_rules(tmp_path: Path) -> RulesWriter:
    """Write rules.yaml (dedented) and templates into tmp_path; returns the rules path."""

    def write(text: str, templates: dict[str, str] | None = None, name: str = "rules.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        (tmp_path / "templates").mkdir(exist_ok=True)
        for template, content in (templates or {}).items():
            (tmp_path / "templates" / template).write_text(content, encoding="utf-8")
        return path

    return write


ClientFactory = Callable[..., Awaitable[TestClient]]


@pytest.fixture
def make_client(aiohttp_client: Callable[..., Awaitable[TestClient]]) -> ClientFactory:
    async def make(rules_path: Path, environ: dict[str, str] | None = None, **options: Any) -> TestClient:
        environ = {"DINGTALK_APP_SECRET": SECRET, **(environ or {})}
        store = RuleStore(load_rules(rules_path, environ), environ)
        app = create_app(store, AppOptions(**options))
        return await aiohttp_client(app, server_kwargs=HANDLER_OPTIONS)

    return make


async def offline(
    message: dingtalk.Message, ruleset: RuleSet, now: Callable[[], datetime.datetime] = local_now
) -> Handled:
    """Answer `message` the way `responder try --offline` does: the real pipeline, fixtures for sources."""
    handled, _ = await answer_once(message, ruleset, Fixtures(), now=now)
    return handled


def pipeline(client: TestClient) -> Any:
    return client.app[keys.PIPELINE]


async def eventually(predicate: Callable[[], Any], timeout: float = 5.0) -> None:
    """Poll `predicate` until it holds; a TimeoutError after `timeout` seconds fails the test."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)
