"""Late answers still arrive: a reply whose sessionWebhook has expired, is gone, or that waited
past it for DingTalk's budget goes through the robot OpenAPI (a local fake), exactly once."""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import ClientFactory, RulesWriter, Sink, callback_body, pipeline, signed_headers
from tests.fake_openapi import APP_KEY, APP_SECRET

RULES = """
dingtalk:
  app_secret: ${DINGTALK_APP_SECRET}
  session_webhook_origins: ["ORIGIN"]
  client_id: ${CLIENT_ID}
  client_secret: ${CLIENT_SECRET}
  api_base: API
  reply: REPLY
  LATE
rules:
  - name: echo
    command: [echo]
    msgtype: markdown
    title: Echo
    body: "#### {{ args_text }}"
  - name: feed
    keywords: [feed]
    msgtype: feedCard
    links:
      - {title: one, url: "https://example.com/1", picture: "https://example.com/1.png"}
"""
ENV = {"CLIENT_ID": APP_KEY, "CLIENT_SECRET": APP_SECRET}


@pytest.fixture
def client_for(write_rules: RulesWriter, sink: Sink, openapi: Any, make_client: ClientFactory) -> Any:
    async def make(reply: str = "session_webhook", late: str = "", **options: Any) -> TestClient:
        text = RULES.replace("ORIGIN", sink.origin).replace("API", openapi.base).replace("REPLY", reply)
        path: Path = write_rules(text.replace("LATE", f"late_reply: {late}" if late else ""))
        return await make_client(path, ENV, **options)

    return make


async def post(client: TestClient, body: dict[str, Any]) -> tuple[int, Any]:
    response = await client.post(
        "/dingtalk/callback", data=json.dumps(body).encode(), headers=signed_headers()
    )
    return response.status, await response.json()


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if re.match(r"reply_\w+ ", r.getMessage())]


def expired() -> int:
    return int(time.time() * 1000) - 1000


async def test_a_redelivery_after_the_session_ended_is_answered_once_through_the_openapi(
    client_for: Any, sink: Sink, openapi: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    client = await client_for()
    body = callback_body("echo late", webhook=sink.webhook(), sessionWebhookExpiredTime=expired())
    assert await post(client, body) == (200, {})
    await pipeline(client).wait_idle()
    assert await post(client, body) == (200, {})  # DingTalk's redelivery
    await pipeline(client).wait_idle()
    assert sink.count == 0
    (send,) = openapi.sends
    assert send.body["openConversationId"] == body["conversationId"]
    assert send.body["robotCode"] == APP_KEY
    # No @-mention through the OpenAPI: the sender's name is written instead.
    assert (send.body["msgKey"], send.msg_param) == (
        "sampleMarkdown",
        {"title": "Echo", "text": "#### late\n\n@张三"},
    )
    assert [line.split(" ", 1)[0] for line in lines(caplog)] == ["reply_sent", "reply_skipped"]
    assert "via=openapi" in lines(caplog)[0]


async def test_a_session_gone_before_its_expiry_falls_back_once(
    client_for: Any, sink: Sink, openapi: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    sink.answer = {"errcode": 300001, "errmsg": "session 不存在"}
    client = await client_for()
    assert await post(client, callback_body("echo hi", webhook=sink.webhook())) == (200, {})
    await pipeline(client).wait_idle()
    assert sink.count == 1 and len(openapi.sends) == 1
    assert "reply_sent" in lines(caplog)[0] and "via=openapi" in lines(caplog)[0]


async def test_a_private_chat_is_answered_to_the_senders_staff_id(
    client_for: Any, sink: Sink, openapi: Any
) -> None:
    client = await client_for()
    body = callback_body(
        "echo hi", webhook=sink.webhook(), conversationType="1", sessionWebhookExpiredTime=expired()
    )
    await post(client, body)
    await pipeline(client).wait_idle()
    (send,) = openapi.sends
    assert send.body["userIds"] == ["user123"] and send.msg_param["text"] == "#### hi"


async def test_with_late_reply_drop_an_expired_session_is_dropped(
    client_for: Any, sink: Sink, openapi: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    client = await client_for(late="drop")
    await post(client, callback_body("echo x", webhook=sink.webhook(), sessionWebhookExpiredTime=expired()))
    await pipeline(client).wait_idle()
    assert openapi.sends == [] and "reason='webhook_expired'" in lines(caplog)[0]


async def test_a_late_reply_the_openapi_cannot_carry_is_dropped_with_its_reason(
    client_for: Any, sink: Sink, openapi: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    client = await client_for()
    await post(client, callback_body("feed", webhook=sink.webhook(), sessionWebhookExpiredTime=expired()))
    await pipeline(client).wait_idle()
    assert openapi.sends == []
    assert "reply_dropped" in lines(caplog)[0] and "openapi_unsendable" in lines(caplog)[0]


async def test_a_reply_that_waits_past_its_session_for_the_budget_goes_late_and_counts_against_it(
    client_for: Any, sink: Sink, openapi: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    client = await client_for(sends_per_window=1, send_window_s=1.5)
    soon = int(time.time() * 1000) + 5_500  # less than the 5 s margin after the next free slot
    await post(client, callback_body("echo first", webhook=sink.webhook()))
    await post(client, callback_body("echo second", webhook=sink.webhook(), sessionWebhookExpiredTime=soon))
    await pipeline(client).wait_idle()
    assert sink.count == 1 and len(openapi.sends) == 1
    assert openapi.sends[0].msg_param["text"].startswith("#### second")


async def test_in_response_mode_a_reply_without_a_slot_answers_at_once_and_follows_late(
    client_for: Any, sink: Sink, openapi: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    client = await client_for(reply="response", sends_per_window=1, send_window_s=1.0)
    first = await post(client, callback_body("echo one"))
    assert first[1]["markdown"]["text"].startswith("#### one")
    started = time.monotonic()
    assert await post(client, callback_body("echo two")) == (200, {})
    assert time.monotonic() - started < 0.9  # never waits for the budget
    await pipeline(client).wait_idle()
    (send,) = openapi.sends
    assert send.msg_param["text"].startswith("#### two")
    assert [line.split(" ", 1)[0] for line in lines(caplog)] == ["reply_sent", "reply_sent"]
    assert "via=openapi" in lines(caplog)[1]
