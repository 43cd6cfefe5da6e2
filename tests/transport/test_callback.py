"""Signed callbacks through the real app to a local fake sessionWebhook."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from responder import keys
from tests.conftest import (
    EXAMPLE_CALLBACK,
    REPO,
    SECRET,
    ClientFactory,
    RulesWriter,
    Sink,
    callback_body,
    pipeline,
    signed_headers,
)

RULES = """
dingtalk:
  app_secret: ${DINGTALK_APP_SECRET}
  session_webhook_origins: ["ORIGIN"]
rules:
  - name: echo
    keywords: [echo, 回声]
    msgtype: text
    body: "you said {{ text }} as {{ sender.nick }}"
  - name: md
    keywords: [md]
    msgtype: markdown
    title: Title {{ sender.nick }}
    body: "#### Hello {{ sender.nick }}"
  - name: link
    keywords: [link]
    msgtype: link
    title: A link
    body: Summary
    url: https://example.com/a
    picture: https://example.com/p.png
  - name: card
    keywords: [card]
    msgtype: actionCard
    title: Card
    body: "### body"
    button: {title: Open, url: https://example.com/open}
  - name: cards
    keywords: [cards]
    msgtype: actionCard
    title: Cards
    body: "### two"
    button_orientation: horizontal
    buttons:
      - {title: A, url: "https://a.example/"}
      - {title: B, url: "https://b.example/"}
  - name: feed
    keywords: [feed]
    msgtype: feedCard
    links:
      - {title: One, url: "https://a.example/", picture: "https://img.example/1.png"}
      - {title: "Two {{ sender.nick }}", url: "https://b.example/", picture: "https://img.example/2.png"}
  - name: deploy
    command: [部署, deploy]
    msgtype: text
    body: "收到：{{ text }}"
  - name: group-only
    keywords: [g]
    scope: {chat: group}
    msgtype: text
    body: group
  - name: private-only
    keywords: [p]
    scope: {chat: private}
    msgtype: text
    body: private
  - name: listed-conversation
    keywords: [c]
    scope: {conversations: [cidALLOWED]}
    msgtype: text
    body: conversation
  - name: listed-sender
    keywords: [s]
    scope: {senders: [boss]}
    msgtype: text
    body: sender
  - name: admins
    keywords: [a]
    scope: {admins_only: true}
    msgtype: text
    body: admin
  - name: quiet
    keywords: [quiet]
    at_sender: false
    msgtype: text
    body: shh
  - name: fallback
    fallback: true
    msgtype: text
    body: "fallback: {{ text }}"
  - name: pictures
    non_text: true
    msgtype: text
    body: no pictures please
"""


@pytest.fixture
def rules_path(write_rules: RulesWriter, sink: Sink) -> Path:
    return write_rules(RULES.replace("ORIGIN", sink.origin))


async def post(client: Any, body: Any, headers: dict[str, str] | None = None) -> Any:
    data = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    return await client.post("/dingtalk/callback", data=data, headers=headers or signed_headers())


async def roundtrip(client: Any, sink: Sink, text: str | None, **fields: Any) -> dict[str, Any]:
    response = await post(client, callback_body(text, webhook=sink.webhook(), **fields))
    assert response.status == 200
    assert await response.json() == {}
    received = await sink.next()
    assert received["path"] == "/robot/sendBySession"
    assert received["headers"]["Content-Type"] == "application/json; charset=utf-8"
    return received["json"]


EXPECTED = {
    "echo": {
        "msgtype": "text",
        "text": {"content": "@user123 you said echo as 张三"},
        "at": {"atUserIds": ["user123"], "isAtAll": False},
    },
    "md": {
        "msgtype": "markdown",
        "markdown": {"title": "Title 张三", "text": "#### Hello 张三\n\n@user123"},
        "at": {"atUserIds": ["user123"], "isAtAll": False},
    },
    "link": {
        "msgtype": "link",
        "link": {
            "title": "A link",
            "text": "Summary",
            "messageUrl": "https://example.com/a",
            "picUrl": "https://example.com/p.png",
        },
    },
    "card": {
        "msgtype": "actionCard",
        "actionCard": {
            "title": "Card",
            "text": "### body",
            "btnOrientation": "0",
            "singleTitle": "Open",
            "singleURL": "https://example.com/open",
        },
    },
    "cards": {
        "msgtype": "actionCard",
        "actionCard": {
            "title": "Cards",
            "text": "### two",
            "btnOrientation": "1",
            "btns": [
                {"title": "A", "actionURL": "https://a.example/"},
                {"title": "B", "actionURL": "https://b.example/"},
            ],
        },
    },
    "feed": {
        "msgtype": "feedCard",
        "feedCard": {
            "links": [
                {"title": "One", "messageURL": "https://a.example/", "picURL": "https://img.example/1.png"},
                {
                    "title": "Two 张三",
                    "messageURL": "https://b.example/",
                    "picURL": "https://img.example/2.png",
                },
            ]
        },
    },
}


@pytest.mark.parametrize("keyword", sorted(EXPECTED))
async def test_every_message_type_is_delivered_exactly(
    keyword: str, rules_path: Path, sink: Sink, make_client: ClientFactory
) -> None:
    client = await make_client(rules_path)
    assert await roundtrip(client, sink, f" {keyword}") == EXPECTED[keyword]


async def test_protocol_sheet_example_gets_the_documented_reply(
    rules_path: Path, sink: Sink, make_client: ClientFactory
) -> None:
    # Section 9 of the protocol sheet: secret row 4, timestamp 1700000000000, text " 部署 prod".
    client = await make_client(rules_path, clock=lambda: 1_700_000_000.0)
    body = dict(EXAMPLE_CALLBACK, sessionWebhook=sink.webhook())
    headers = {"timestamp": "1700000000000", "sign": "KsoFTIyez6XP7Xk+URCpKByr+cUY1U4i6z1Dah3Uw9Q="}
    response = await post(client, body, {**headers, "Content-Type": "application/json; charset=utf-8"})
    assert response.status == 200
    received = await sink.next()
    assert received["json"] == {
        "msgtype": "text",
        "text": {"content": "@user123 收到：部署 prod"},
        "at": {"atUserIds": ["user123"], "isAtAll": False},
    }


async def test_private_chat_reply_has_no_mention(
    rules_path: Path, sink: Sink, make_client: ClientFactory
) -> None:
    client = await make_client(rules_path)
    reply = await roundtrip(client, sink, "echo", conversationType="1")
    assert reply == {"msgtype": "text", "text": {"content": "you said echo as 张三"}}


async def test_sender_without_staff_id_is_mentioned_by_nick(
    rules_path: Path, sink: Sink, make_client: ClientFactory
) -> None:
    client = await make_client(rules_path)
    reply = await roundtrip(client, sink, "echo", senderStaffId="")
    assert reply == {"msgtype": "text", "text": {"content": "@张三 you said echo as 张三"}}


async def test_at_sender_can_be_switched_off(
    rules_path: Path, sink: Sink, make_client: ClientFactory
) -> None:
    client = await make_client(rules_path)
    assert await roundtrip(client, sink, "quiet") == {"msgtype": "text", "text": {"content": "shh"}}


@pytest.mark.parametrize(
    ("text", "fields", "expected"),
    [
        ("g", {"conversationType": "2"}, "group"),
        ("g", {}, "This works in group chats only."),  # who or where: the sender is told
        ("p", {}, "private"),
        ("p", {"conversationType": "2"}, "This works in a private chat with me only."),
        ("c", {"conversationId": "cidALLOWED"}, "conversation"),
        ("c", {}, "fallback: c"),  # another group's rule stays invisible
        ("s", {"senderStaffId": "boss"}, "sender"),
        ("s", {}, "fallback: s"),
        ("a", {"isAdmin": True}, "admin"),
        ("a", {}, "Sorry, only organisation admins may use this."),
    ],
)
async def test_scopes_admit_tell_or_pass_to_fallback(
    text: str, fields: dict[str, Any], expected: str, rules_path: Path, sink: Sink, make_client: ClientFactory
) -> None:
    client = await make_client(rules_path)
    reply = await roundtrip(client, sink, text, **{"conversationType": "1", **fields})
    assert reply["text"]["content"].removeprefix("@user123 ") == expected


async def test_fallback_answers_unknown_words(
    rules_path: Path, sink: Sink, make_client: ClientFactory
) -> None:
    client = await make_client(rules_path)
    reply = await roundtrip(client, sink, "  what\u3000is   this ", conversationType="1")
    assert reply["text"]["content"] == "fallback: what is this"


@pytest.mark.parametrize("msgtype", ["picture", "richText", "audio", "file", "video"])
async def test_non_text_messages_get_the_non_text_rule(
    msgtype: str, rules_path: Path, sink: Sink, make_client: ClientFactory
) -> None:
    client = await make_client(rules_path)
    reply = await roundtrip(
        client, sink, None, msgtype=msgtype, content={"downloadCode": "x"}, conversationType="1"
    )
    assert reply == {"msgtype": "text", "text": {"content": "no pictures please"}}


async def test_non_text_without_a_rule_is_silent(
    write_rules: RulesWriter, sink: Sink, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_rules(RULES.replace("ORIGIN", sink.origin).split("  - name: pictures")[0])
    client = await make_client(path)
    caplog.set_level(logging.INFO)
    response = await post(client, callback_body(None, webhook=sink.webhook(), msgtype="picture", content={}))
    assert response.status == 200
    await pipeline(client).wait_idle()
    assert sink.count == 0
    assert "reply_skipped" in caplog.text and "non-text" in caplog.text


@pytest.mark.parametrize(
    "payload", ["{{7*7}}", "{{ ''.__class__.__mro__ }}", "{% for x in range(9) %}x{% endfor %}"]
)
async def test_template_syntax_in_text_and_nick_comes_back_literally(
    payload: str, rules_path: Path, sink: Sink, make_client: ClientFactory
) -> None:
    client = await make_client(rules_path)
    reply = await roundtrip(client, sink, f"hello {payload}", senderNick=payload, conversationType="1")
    assert reply["text"]["content"] == f"fallback: hello {payload}"
    reply = await roundtrip(client, sink, "echo", senderNick=payload, conversationType="1")
    assert reply["text"]["content"] == f"you said echo as {payload}"


# --- authentication -------------------------------------------------------------------------


def _headers(**overrides: str | None) -> dict[str, str]:
    headers = signed_headers()
    for name, value in overrides.items():
        if value is None:
            headers.pop(name)
        else:
            headers[name] = value
    return headers


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        (lambda: _headers(timestamp=None), "missing_header"),
        (lambda: _headers(sign=None), "missing_header"),
        (lambda: _headers(timestamp="12345"), "malformed_timestamp"),
        (lambda: _headers(timestamp="１７００００００００００００"), "malformed_timestamp"),
        (lambda: signed_headers(timestamp=1_000_000_000_000), "timestamp_expired"),
        (lambda: signed_headers(timestamp=4_000_000_000_000), "timestamp_in_future"),
        (lambda: signed_headers(secret="wrong secret"), "bad_signature"),
        (lambda: _headers(sign="not base64 at all"), "bad_signature"),
    ],
)
async def test_bad_signatures_get_401_and_nothing_is_sent(
    headers: Any,
    reason: str,
    rules_path: Path,
    sink: Sink,
    make_client: ClientFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = await make_client(rules_path)
    response = await post(client, callback_body("echo", webhook=sink.webhook()), headers())
    assert response.status == 401
    assert await response.json() == {
        "error": "unauthorized",
        "reason": "missing or invalid timestamp/sign headers",
    }
    assert f"auth_rejected reason={reason}" in caplog.text
    await pipeline(client).wait_idle()
    assert sink.count == 0
    exposition = client.app[keys.METRICS].exposition().decode()
    assert f'responder_auth_failures_total{{reason="{reason}"}} 1.0' in exposition


async def test_signature_is_checked_before_the_body_is_read(
    rules_path: Path, make_client: ClientFactory
) -> None:
    client = await make_client(rules_path)
    # A body that is far too large and not JSON: a bad signature must still win.
    response = await post(client, b"x" * 200_000, signed_headers(secret="wrong"))
    assert response.status == 401


async def test_any_of_several_secrets_is_accepted(
    write_rules: RulesWriter, sink: Sink, make_client: ClientFactory
) -> None:
    rules = RULES.replace("ORIGIN", sink.origin).replace(
        "app_secret: ${DINGTALK_APP_SECRET}", 'app_secret: ["${NEW_SECRET}", "${DINGTALK_APP_SECRET}"]'
    )
    client = await make_client(write_rules(rules), {"NEW_SECRET": "new-secret"})
    for secret in ("new-secret", SECRET):
        response = await post(client, callback_body("echo", webhook=sink.webhook()), signed_headers(secret))
        assert response.status == 200
        await sink.next()
    response = await post(client, callback_body("echo", webhook=sink.webhook()), signed_headers("old"))
    assert response.status == 401


# --- bad requests -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "status", "reason"),
    [
        (b"{}", "text/plain", 415, "application/json"),
        (b"{}", "application/json; charset=latin-1", 415, "UTF-8"),
        (b"{}", "application/x-www-form-urlencoded", 415, "application/json"),
        (b"{not json", "application/json", 400, "malformed JSON"),
        (b'{"msgtype": "text", "text": {"content": "\xff"}}', "application/json", 400, "not UTF-8"),
        (b"[" * 5000 + b"]" * 5000, "application/json", 400, "nested"),
        (b"[1, 2]", "application/json", 400, "JSON object"),
        (b"x" * 70_000, "application/json", 413, "larger than 65536"),
    ],
)
async def test_bad_bodies_get_4xx_with_a_reason(
    body: bytes, content_type: str, status: int, reason: str, rules_path: Path, make_client: ClientFactory
) -> None:
    client = await make_client(rules_path)
    headers = {**signed_headers(), "Content-Type": content_type}
    response = await post(client, body, headers)
    assert response.status == status
    answer = await response.json()
    assert reason in answer["reason"]


async def test_chunked_oversized_body_is_413(rules_path: Path, make_client: ClientFactory) -> None:
    client = await make_client(rules_path)

    async def chunks() -> Any:
        for _ in range(40):
            yield b"x" * 4096

    response = await client.post("/dingtalk/callback", data=chunks(), headers=signed_headers())
    assert response.status == 413


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("msgId", 5),
        ("msgtype", None),
        ("conversationType", 2),
        ("conversationType", "3"),
        ("isAdmin", "yes"),
        ("sessionWebhookExpiredTime", "soon"),
        ("text", "not an object"),
        ("senderNick", ["a"]),
    ],
)
async def test_wrong_field_types_are_400(
    field: str, value: Any, rules_path: Path, sink: Sink, make_client: ClientFactory
) -> None:
    client = await make_client(rules_path)
    body = callback_body("echo", webhook=sink.webhook())
    if value is None:
        del body[field]
    else:
        body[field] = value
    response = await post(client, body)
    assert response.status == 400
    assert field in (await response.json())["reason"]


async def test_unknown_fields_are_ignored(rules_path: Path, sink: Sink, make_client: ClientFactory) -> None:
    client = await make_client(rules_path)
    reply = await roundtrip(
        client, sink, "echo", conversationType="1", senderPlatform="Win", newThing={"a": [1]}
    )
    assert reply["text"]["content"] == "you said echo as 张三"


# --- the sessionWebhook allow-list ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("webhook", "reason"),
    [
        ("TRAP/robot/sendBySession?session=abc", "origin_not_allowed"),
        ("https://oapi.dingtalk.com.evil.example/robot/sendBySession?session=abc", "origin_not_allowed"),
        ("https://oapi.dingtalk.com@127.0.0.1:TRAPPORT/robot/sendBySession?session=abc", "userinfo"),
        ("SINK@127.0.0.1:TRAPPORT/robot/sendBySession?session=abc", "userinfo"),
        ("SINK/robot/other?session=abc", "path_not_allowed"),
        ("SINK/robot/sendBySession/../../x?session=abc", "path_not_allowed"),
        ("ftp://127.0.0.1/robot/sendBySession", "not_absolute_http"),
        ("/robot/sendBySession?session=abc", "not_absolute_http"),
        ("", "missing"),
    ],
)
async def test_webhook_outside_the_allow_list_is_never_contacted(
    webhook: str,
    reason: str,
    rules_path: Path,
    sink: Sink,
    trap: Sink,
    make_client: ClientFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert trap.server is not None
    webhook = (
        webhook.replace("TRAPPORT", str(trap.server.port))
        .replace("TRAP", trap.origin)
        .replace("SINK", sink.origin)
    )
    client = await make_client(rules_path)
    caplog.set_level(logging.INFO)
    response = await post(
        client, callback_body("echo", webhook=webhook) | ({} if webhook else {"sessionWebhook": ""})
    )
    assert response.status == 200
    await pipeline(client).wait_idle()
    assert (sink.count, trap.count) == (0, 0)
    assert f"webhook_{reason}" in caplog.text
    assert "session=abc" not in caplog.text


async def test_expired_webhook_is_not_contacted(
    rules_path: Path, sink: Sink, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    client = await make_client(rules_path)
    body = callback_body("echo", webhook=sink.webhook(), sessionWebhookExpiredTime=1_600_000_000_000)
    assert (await post(client, body)).status == 200
    await pipeline(client).wait_idle()
    assert sink.count == 0
    assert "webhook_expired" in caplog.text


async def test_errcode_in_a_200_answer_counts_as_dropped(
    rules_path: Path, sink: Sink, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    sink.answer = {"errcode": 300001, "errmsg": "session 不存在"}
    client = await make_client(rules_path)
    await roundtrip(client, sink, "echo")
    await pipeline(client).wait_idle()
    assert "reply_dropped" in caplog.text and "errcode_300001" in caplog.text


# --- reply in the response body, dev mode -------------------------------------------------------


async def test_reply_in_the_response_body(
    write_rules: RulesWriter, sink: Sink, make_client: ClientFactory
) -> None:
    rules = RULES.replace("ORIGIN", sink.origin).replace(
        "  session_webhook_origins", "  reply: response\n  session_webhook_origins"
    )
    client = await make_client(write_rules(rules))
    response = await post(client, callback_body("card", webhook=sink.webhook()))
    assert response.status == 200
    assert await response.json() == EXPECTED["card"]
    await pipeline(client).wait_idle()
    assert sink.count == 0


async def test_dev_mode_without_secret_accepts_unsigned(
    write_rules: RulesWriter, sink: Sink, make_client: ClientFactory
) -> None:
    rules = RULES.replace("ORIGIN", sink.origin).replace(
        "app_secret: ${DINGTALK_APP_SECRET}", 'app_secret: ""'
    )
    client = await make_client(write_rules(rules), dev=True)
    response = await post(
        client, callback_body("echo", webhook=sink.webhook()), {"Content-Type": "application/json"}
    )
    assert response.status == 200
    await sink.next()


async def test_without_dev_a_missing_secret_rejects_everything(
    write_rules: RulesWriter, sink: Sink, make_client: ClientFactory
) -> None:
    rules = RULES.replace("ORIGIN", sink.origin).replace(
        "app_secret: ${DINGTALK_APP_SECRET}", 'app_secret: ""'
    )
    client = await make_client(write_rules(rules))
    response = await post(client, callback_body("echo", webhook=sink.webhook()))
    assert response.status == 401


@pytest.mark.parametrize(
    ("text", "fields", "flags"),
    [
        ("echo", {"conversationType": "1"}, ["--private"]),
        ("md", {}, []),
        ("cards", {"isAdmin": True}, ["--admin"]),
        ("a", {"isAdmin": True, "conversationType": "1"}, ["--admin", "--private"]),
    ],
)
async def test_try_prints_exactly_what_the_server_sends(
    text: str,
    fields: dict[str, Any],
    flags: list[str],
    rules_path: Path,
    sink: Sink,
    make_client: ClientFactory,
) -> None:
    who = {"senderNick": "李四", "senderStaffId": "lisi"}
    client = await make_client(rules_path)
    response = await post(client, callback_body(text, webhook=sink.webhook(), **who, **fields))
    assert response.status == 200
    sent = (await sink.next())["raw"]
    argv = ["try", "--config", str(rules_path), "--nick", "李四", "--staff-id", "lisi", *flags, text]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "responder",
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO), "DINGTALK_APP_SECRET": SECRET},
    )
    printed, _ = await proc.communicate()
    assert proc.returncode == 0
    assert printed == sent + b"\n"
