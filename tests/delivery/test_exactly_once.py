"""Exactly once, throttling and overload through the real app, with a misbehaving sessionWebhook."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from responder import keys
from tests.conftest import ClientFactory, RulesWriter, Sink, callback_body, pipeline, signed_headers

RULES = """
dingtalk:
  app_secret: ${DINGTALK_APP_SECRET}
  session_webhook_origins: ["ORIGIN"]
  webhook_timeout_s: 0.5
rules:
  - name: echo
    keywords: [echo]
    msgtype: text
    at_sender: false
    body: "echo"
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
  - name: global
    keywords: [global]
    cooldown: {per: global, seconds: 600}
    msgtype: text
    body: "once"
"""


@pytest.fixture
def rules_path(write_rules: RulesWriter, sink: Sink) -> Path:
    return write_rules(RULES.replace("ORIGIN", sink.origin))


async def post(client: Any, body: dict[str, Any]) -> int:
    response = await client.post(
        "/dingtalk/callback", data=json.dumps(body).encode(), headers=signed_headers()
    )
    return int(response.status)


def outcomes(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [m.group(1) for r in caplog.records if (m := re.match(r"reply_(\w+) ", r.getMessage()))]


async def test_a_redelivered_message_is_answered_once(
    rules_path: Path, sink: Sink, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    client = await make_client(rules_path)
    body = callback_body("echo", webhook=sink.webhook())
    assert await post(client, body) == 200
    await pipeline(client).wait_idle()
    assert await post(client, body) == 200  # DingTalk's redelivery, about a minute later
    await pipeline(client).wait_idle()
    assert sink.count == 1
    assert outcomes(caplog) == ["sent", "skipped"]
    assert "duplicate_done" in caplog.text


async def test_a_duplicate_of_a_message_in_flight_is_skipped(
    rules_path: Path, sink: Sink, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    sink.hold = release = asyncio.Event()
    client = await make_client(rules_path)
    body = callback_body("echo", webhook=sink.webhook())
    assert await post(client, body) == 200
    await asyncio.wait_for(sink.arrived.wait(), 5)
    assert await post(client, body) == 200
    release.set()
    await pipeline(client).wait_idle()
    assert sink.count == 1
    assert sorted(outcomes(caplog)) == ["sent", "skipped"]
    assert "duplicate_in_flight" in caplog.text


@pytest.mark.parametrize(
    ("answer", "reason"),
    [({"errcode": 300001, "errmsg": "session 不存在"}, "errcode_300001"), (None, "http_404")],
)
async def test_a_definite_failure_lets_the_redelivery_try_again(
    answer: dict[str, Any] | None,
    reason: str,
    rules_path: Path,
    sink: Sink,
    make_client: ClientFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    client = await make_client(rules_path)
    body = callback_body("echo", webhook=sink.webhook())
    if answer is None:  # a path the sink does not serve: DingTalk's 404 for a bad session URL
        body["sessionWebhook"] = sink.webhook().replace("?", "?missing=1&")
        sink.status = 404
    else:
        sink.answer = answer
    assert await post(client, body) == 200
    await pipeline(client).wait_idle()
    sink.answer, sink.status = {"errcode": 0, "errmsg": "ok"}, 200
    assert await post(client, {**body, "sessionWebhook": sink.webhook()}) == 200
    await pipeline(client).wait_idle()
    assert outcomes(caplog) == ["dropped", "sent"]
    assert f"reason='{reason}'" in caplog.text


@pytest.mark.parametrize("failure", ["timeout", "http_502"])
async def test_an_ambiguous_failure_is_final_because_the_reply_may_be_in_the_group(
    failure: str, rules_path: Path, sink: Sink, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    if failure == "timeout":
        sink.hold = asyncio.Event()  # never set: the POST was written, no answer (timeout 0.5 s)
    else:
        sink.status = 502
    client = await make_client(rules_path)
    body = callback_body("echo", webhook=sink.webhook())
    assert await post(client, body) == 200
    await pipeline(client).wait_idle()
    sink.hold, sink.status = None, 200
    assert await post(client, body) == 200  # DingTalk's redelivery
    await pipeline(client).wait_idle()
    assert outcomes(caplog) == ["dropped", "skipped"]
    assert f"reason='ambiguous_{failure}'" in caplog.text
    assert sink.arrivals == 1


async def test_the_reply_timeout_starts_when_the_request_is_written_not_in_the_pool_queue(
    write_rules: RulesWriter, sink: Sink, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    path = write_rules(
        RULES.replace("ORIGIN", sink.origin).replace("webhook_timeout_s: 0.5", "webhook_timeout_s: 3")
    )
    sink.hold = release = asyncio.Event()
    client = await make_client(path)
    for i in range(250):  # more than the source pool (100), each in a conversation of its own
        assert (
            await post(client, callback_body("echo", webhook=sink.webhook(), conversationId=f"c{i}")) == 200
        )
    deadline = time.monotonic() + 20
    while sink.arrivals < 250:  # every reply is on the wire before any is answered
        assert time.monotonic() < deadline, sink.arrivals
        await asyncio.sleep(0.01)  # polling under a deadline
    release.set()
    await pipeline(client).wait_idle()
    assert outcomes(caplog).count("sent") == 250


async def test_cooldown_per_sender_answers_then_says_slow_down_once(
    rules_path: Path, sink: Sink, make_client: ClientFactory
) -> None:
    client = await make_client(rules_path)
    for _ in range(5):
        assert await post(client, callback_body("ip", webhook=sink.webhook())) == 200
        await pipeline(client).wait_idle()
    texts = [(await sink.next())["json"]["text"]["content"] for _ in range(sink.count)]
    assert texts == ["@user123 203.0.113.7", "@user123 203.0.113.7", "@user123 Slow down, please."]
    # Another sender has a counter of their own.
    await post(client, callback_body("ip", webhook=sink.webhook(), senderStaffId="other"))
    await pipeline(client).wait_idle()
    assert (await sink.next())["json"]["text"]["content"] == "@other 203.0.113.7"


@pytest.mark.parametrize(
    ("word", "second_fields"), [("quiet", {"senderStaffId": "b"}), ("global", {"conversationId": "cidB"})]
)
async def test_cooldown_without_reply_is_silent(
    word: str,
    second_fields: dict[str, str],
    rules_path: Path,
    sink: Sink,
    make_client: ClientFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    client = await make_client(rules_path)
    await post(client, callback_body(word, webhook=sink.webhook()))
    await post(client, callback_body(word, webhook=sink.webhook(), **second_fields))
    await pipeline(client).wait_idle()
    assert sink.count == 1
    assert sorted(outcomes(caplog)) == ["sent", "skipped"]
    assert "reason='cooldown'" in caplog.text


async def test_outbound_budget_per_conversation_drops_what_cannot_be_sent_in_time(
    rules_path: Path, sink: Sink, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    client = await make_client(rules_path, sends_per_window=3, send_window_s=60)
    soon = int(time.time() * 1000) + 10_000  # the sessionWebhook expires before a slot frees up
    for _ in range(5):
        await post(client, callback_body("echo", webhook=sink.webhook(), sessionWebhookExpiredTime=soon))
    await post(client, callback_body("echo", webhook=sink.webhook(), conversationId="cidOTHER"))
    await pipeline(client).wait_idle()
    assert sink.count == 4  # 3 in the busy conversation, 1 in the other
    assert outcomes(caplog).count("dropped") == 2
    assert caplog.text.count("reason='rate_limited'") == 2


async def test_errcode_130101_backs_the_conversation_off(
    rules_path: Path, sink: Sink, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    sink.answer = {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"}
    client = await make_client(rules_path)
    soon = int(time.time() * 1000) + 30_000
    await post(client, callback_body("echo", webhook=sink.webhook(), sessionWebhookExpiredTime=soon))
    await pipeline(client).wait_idle()
    await post(client, callback_body("echo", webhook=sink.webhook(), sessionWebhookExpiredTime=soon))
    await pipeline(client).wait_idle()
    assert sink.count == 1  # the second reply is not even attempted during the backoff
    assert "errcode_130101" in caplog.text and "reason='rate_limited'" in caplog.text
    assert "outbound_backoff_started" in caplog.text


async def test_overload_answers_503_and_claims_nothing(
    rules_path: Path, sink: Sink, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    sink.hold = release = asyncio.Event()
    client = await make_client(rules_path, max_pending=2)
    first = [callback_body("echo", webhook=sink.webhook(), conversationId=f"c{i}") for i in range(2)]
    for body in first:
        assert await post(client, body) == 200
    refused = callback_body("echo", webhook=sink.webhook(), conversationId="c3")
    response = await client.post(
        "/dingtalk/callback", data=json.dumps(refused).encode(), headers=signed_headers()
    )
    assert response.status == 503
    assert (await response.json())["error"] == "overloaded"
    release.set()
    await pipeline(client).wait_idle()
    assert await post(client, refused) == 200  # DingTalk's redelivery is answered, once there is room
    await pipeline(client).wait_idle()
    assert sink.count == 3
    assert "reason='overloaded'" in caplog.text
    assert (await client.get("/-/healthy")).status == 200


class FlakySink:
    """A sessionWebhook that fails in every way DingTalk's can: 5xx, hangs, resets, 130101."""

    def __init__(self) -> None:
        self.calls = 0
        self.delivered: list[str] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.calls += 1
        text = (await request.json())["text"]["content"]
        mode = self.calls % 5
        if mode == 1:
            return web.Response(status=502)
        if mode == 2:
            await asyncio.Event().wait()  # hangs: the client gives up after webhook_timeout_s
        if mode == 3:
            assert request.transport is not None
            request.transport.abort()
            return web.Response()
        if mode == 4:
            return web.json_response({"errcode": 130101, "errmsg": "send too fast"})
        self.delivered.append(text)
        return web.json_response({"errcode": 0, "errmsg": "ok"})


async def test_every_accepted_message_ends_exactly_once_under_faults(
    write_rules: RulesWriter,
    make_client: ClientFactory,
    aiohttp_server: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    flaky = FlakySink()
    app = web.Application()
    app.router.add_post("/robot/sendBySession", flaky.handle)
    server = await aiohttp_server(app)
    origin = f"http://127.0.0.1:{server.port}"
    client = await make_client(write_rules(RULES.replace("ORIGIN", origin)))
    webhook = f"{origin}/robot/sendBySession?session=x"
    bodies = [
        callback_body("echo", webhook=webhook, conversationId=f"c{i}", msgId=f"m{i}") for i in range(40)
    ]
    for _ in range(3):  # DingTalk redelivers everything, three times over
        await asyncio.gather(*(post(client, body) for body in bodies))
        await pipeline(client).wait_idle()
    accepted = len(outcomes(caplog))
    assert accepted == 120
    counts = {o: outcomes(caplog).count(o) for o in ("sent", "skipped", "dropped")}
    assert sum(counts.values()) == accepted
    assert counts["sent"] > 0 and counts["dropped"] > 0 and counts["skipped"] > 0
    exposition = client.app[keys.METRICS].exposition().decode()
    for outcome, count in counts.items():
        assert f'responder_messages_total{{outcome="{outcome}"}} {float(count)}' in exposition
    sent_ids = [
        r.getMessage().split("msg_id=")[1].split()[0]
        for r in caplog.records
        if r.getMessage().startswith("reply_sent")
    ]
    assert len(sent_ids) == len(set(sent_ids)) == len(flaky.delivered)  # never two replies to one message
