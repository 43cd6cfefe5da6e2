"""The one pipeline in `reply: response` mode: the same dedupe, cooldowns, overload gate, budget and
accounting as the sessionWebhook mode (tests/delivery/test_exactly_once.py), with the reply in the body."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from responder.engine.answer import RENDER_FAILED_TEXT
from tests.conftest import ClientFactory, RulesWriter, Sink, callback_body, pipeline, signed_headers

RULES = """
dingtalk:
  app_secret: ${DINGTALK_APP_SECRET}
  reply: response
sources:
  slow:
    kind: http
    url: SLOW/slow
    timeout_s: 10
rules:
  - name: echo
    command: [echo]
    msgtype: text
    at_sender: false
    body: "{{ args_text }}"
  - name: ip
    keywords: [ip]
    cooldown: {seconds: 600, max: 2, reply: "Slow down, please."}
    msgtype: text
    body: "203.0.113.7"
  - name: quiet
    keywords: [quiet]
    cooldown: {per: conversation, seconds: 600}
    msgtype: text
    body: "shh"
  - name: wait
    keywords: [wait]
    source: slow
    msgtype: text
    body: "{{ source.ok }}"
  - name: loop
    keywords: [loop]
    msgtype: text
    body: "{% macro again() %}{{ again() }}{% endmacro %}{{ again() }}"
"""


@pytest.fixture
def rules_path(write_rules: RulesWriter, sink: Sink) -> Path:
    return write_rules(RULES.replace("SLOW", sink.origin))


async def answer(client: TestClient, body: dict[str, Any]) -> tuple[int, Any]:
    response = await client.post(
        "/dingtalk/callback", data=json.dumps(body).encode(), headers=signed_headers()
    )
    return response.status, await response.json()


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if re.match(r"reply_(sent|skipped|dropped) ", r.getMessage())
    ]


def outcomes(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [line.split(" ", 1)[0].removeprefix("reply_") for line in lines(caplog)]


async def test_the_reply_is_the_response_body_and_is_logged_once(
    rules_path: Path, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    client = await make_client(rules_path)
    status, body = await answer(client, callback_body("echo hello"))
    assert (status, body) == (200, {"msgtype": "text", "text": {"content": "hello"}})
    assert outcomes(caplog) == ["sent"]
    assert "via=response" in lines(caplog)[0]


async def test_a_redelivered_msgid_gets_an_empty_answer_and_no_second_reply(
    rules_path: Path, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    client = await make_client(rules_path)
    body = callback_body("echo once")
    replies = [await answer(client, body) for _ in range(3)]
    assert replies == [(200, {"msgtype": "text", "text": {"content": "once"}}), (200, {}), (200, {})]
    assert outcomes(caplog) == ["sent", "skipped", "skipped"]
    assert "duplicate_done" in caplog.text


async def test_a_cooldown_holds_and_says_slow_down_once(
    rules_path: Path, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    client = await make_client(rules_path)
    texts = []
    for _ in range(5):
        status, body = await answer(client, callback_body("ip"))
        assert status == 200
        texts.append(body.get("text", {}).get("content"))
    assert texts == [
        "@user123 203.0.113.7",
        "@user123 203.0.113.7",
        "@user123 Slow down, please.",
        None,
        None,
    ]
    assert outcomes(caplog) == ["sent", "sent", "sent", "skipped", "skipped"]


async def test_a_silent_cooldown_answers_empty(rules_path: Path, make_client: ClientFactory) -> None:
    client = await make_client(rules_path)
    assert (await answer(client, callback_body("quiet")))[1]["text"]["content"] == "@user123 shh"
    assert await answer(client, callback_body("quiet", senderStaffId="other")) == (200, {})


async def test_overload_answers_503_and_the_redelivery_is_answered_later(
    rules_path: Path, sink: Sink, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    sink.hold = release = asyncio.Event()  # the `slow` source waits until released
    client = await make_client(rules_path, max_pending=1)
    slow = asyncio.create_task(answer(client, callback_body("wait")))
    await asyncio.wait_for(sink.arrived.wait(), 5)
    refused = callback_body("echo later")
    status, body = await answer(client, refused)
    assert (status, body["error"]) == (503, "overloaded")
    release.set()
    assert (await slow)[0] == 200
    assert await answer(client, refused) == (200, {"msgtype": "text", "text": {"content": "later"}})
    assert outcomes(caplog) == ["dropped", "sent", "sent"]
    assert "reason='overloaded'" in lines(caplog)[0]


async def test_no_send_slot_answers_empty_at_once_and_is_logged_rate_limited(
    rules_path: Path, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    client = await make_client(rules_path, sends_per_window=2, send_window_s=60)
    answers = [await answer(client, callback_body(f"echo {i}")) for i in range(3)]
    assert [body for _, body in answers] == [
        {"msgtype": "text", "text": {"content": "0"}},
        {"msgtype": "text", "text": {"content": "1"}},
        {},
    ]
    assert outcomes(caplog) == ["sent", "sent", "dropped"]
    assert "reason='rate_limited'" in lines(caplog)[2]


async def test_a_recursive_template_is_the_apology_not_a_500(
    rules_path: Path, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    client = await make_client(rules_path)
    status, body = await answer(client, callback_body("loop"))
    assert (status, body) == (200, {"msgtype": "text", "text": {"content": RENDER_FAILED_TEXT}})
    assert "render_failed rule=loop" in caplog.text
    assert outcomes(caplog) == ["sent"]
    exposition = pipeline(client)._metrics.exposition().decode()
    assert 'responder_render_errors_total{rule="loop"} 1.0' in exposition


async def test_every_message_ends_in_exactly_one_line_and_one_count(
    rules_path: Path, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    client = await make_client(rules_path)
    said = ["echo a", "ip", "ip", "ip", "ip", "nothing matches this", "loop"]
    bodies = [callback_body(text) for text in said]
    bodies.append(bodies[0])  # a redelivery
    for body in bodies:
        await answer(client, body)
    await pipeline(client).wait_idle()
    assert len(lines(caplog)) == len(bodies)
    assert sorted(outcomes(caplog)) == ["sent"] * 5 + ["skipped"] * 3
    exposition = pipeline(client)._metrics.exposition().decode()
    assert 'responder_messages_total{outcome="sent"} 5.0' in exposition
    assert 'responder_messages_total{outcome="skipped"} 3.0' in exposition
