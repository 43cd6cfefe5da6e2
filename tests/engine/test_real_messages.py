"""Messages as people really send them: a bare @-mention, rich text with a screenshot, voice,
quoted replies, and message types nobody has seen yet. Bodies are shaped like DingTalk's
(shared/dingtalk-protocol.md section 2, and captures in public bot projects)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from responder.dingtalk import Quoted, parse_message
from responder.rules.load import load_rules
from responder.rules.model import RuleSet
from tests.conftest import (
    EXAMPLE_CALLBACK,
    ClientFactory,
    RulesWriter,
    callback_body,
    offline,
    signed_headers,
)

RULES = """
defaults:
  voice_as_text: VOICE
rules:
  - name: help
    keywords: [help, 帮助]
    msgtype: text
    at_sender: false
    body: >-
      help{% if spoken %} (heard){% endif %}{% for p in parts if p.type == 'picture'
      %} pic:{{ p.download_code }}{% endfor %}
  - name: bare
    empty: true
    msgtype: text
    at_sender: false
    body: "bare{% if quoted %} quoting: {{ quoted.text }}{% endif %}"
  - name: echo
    command: [echo]
    msgtype: text
    at_sender: false
    body: "{{ args_text }}{% if quoted %} / {{ quoted.type }}: {{ quoted.text }}{% endif %}"
  - name: pictures
    non_text: true
    msgtype: text
    at_sender: false
    body: "a {{ message_type }}"
  - name: unknown
    fallback: true
    msgtype: text
    at_sender: false
    body: "what?"
"""


def rules(tmp_path: Path, voice: bool = True) -> RuleSet:
    path = tmp_path / "rules.yaml"
    (tmp_path / "templates").mkdir(exist_ok=True)
    path.write_text(RULES.replace("VOICE", "true" if voice else "false"), encoding="utf-8")
    return load_rules(path, {})


def body(**fields: Any) -> dict[str, Any]:
    raw = copy.deepcopy(EXAMPLE_CALLBACK)
    raw.pop("text")
    raw.update(fields)
    return raw


async def answer(ruleset: RuleSet, raw: dict[str, Any]) -> str | None:
    handled = await offline(parse_message(json.dumps(raw).encode()), ruleset)
    return None if handled.reply is None else handled.reply.text


@pytest.mark.parametrize("content", [" ", "", "  \u3000 ", "@机器人 "])
async def test_a_bare_mention_gets_the_empty_rule(tmp_path: Path, content: str) -> None:
    assert await answer(rules(tmp_path), body(msgtype="text", text={"content": content})) == "bare"


async def test_without_an_empty_rule_a_bare_mention_goes_to_the_fallback(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    (tmp_path / "templates").mkdir()
    path.write_text("rules:\n  - {name: f, fallback: true, msgtype: text, body: fb}\n", encoding="utf-8")
    handled = await offline(
        parse_message(json.dumps(body(msgtype="text", text={"content": " "})).encode()), load_rules(path, {})
    )
    assert handled.rule == "f"


@pytest.mark.parametrize(
    ("content", "quoted_text"),
    [
        ("我们明天上线", "我们明天上线"),
        ({"text": "我们明天上线"}, "我们明天上线"),
        (
            {"richText": [{"text": "我们"}, {"type": "picture", "downloadCode": "d"}, {"text": "明天上线"}]},
            "我们 明天上线",
        ),
        ({"cardData": {"title": "a card"}}, ""),
    ],
)
async def test_a_quoted_reply_shows_the_quoted_text_to_templates_but_matches_only_what_was_typed(
    tmp_path: Path, content: Any, quoted_text: str
) -> None:
    replied = {"msgType": "text", "msgId": "msgOLD", "senderId": "$:LWCP_v1:$x", "content": content}
    raw = body(msgtype="text", text={"content": " echo ok", "isReplyMsg": True, "repliedMsg": replied})
    expected = f"ok / text: {quoted_text}" if quoted_text else "ok / text:"
    assert await answer(rules(tmp_path), raw) == expected
    # The quoted words never match: "help" only in the quote is not a help request.
    replied["content"] = "help"
    raw = body(msgtype="text", text={"content": " ", "isReplyMsg": True, "repliedMsg": replied})
    assert await answer(rules(tmp_path), raw) == "bare quoting: help"


async def test_rich_text_is_matched_by_its_text_and_templates_see_its_pictures(tmp_path: Path) -> None:
    parts = [
        {"text": "@机器人 help"},
        {"type": "picture", "downloadCode": "DL1", "pictureDownloadCode": "P1"},
    ]
    assert (
        await answer(rules(tmp_path), body(msgtype="richText", content={"richText": parts})) == "help pic:DL1"
    )


async def test_rich_text_with_only_pictures_goes_to_the_non_text_rule(tmp_path: Path) -> None:
    parts = [{"type": "picture", "downloadCode": "DL1"}, {"text": "  "}]
    assert (
        await answer(rules(tmp_path), body(msgtype="richText", content={"richText": parts})) == "a richText"
    )


async def test_voice_is_matched_by_its_transcription_and_templates_know_it_was_spoken(tmp_path: Path) -> None:
    audio = body(msgtype="audio", content={"downloadCode": "A1", "recognition": "帮助。"})
    assert await answer(rules(tmp_path), audio) == "help (heard)"


async def test_voice_is_not_text_when_voice_as_text_is_off(tmp_path: Path) -> None:
    audio = body(msgtype="audio", content={"downloadCode": "A1", "recognition": "帮助"})
    assert await answer(rules(tmp_path, voice=False), audio) == "a audio"


async def test_voice_without_a_transcription_is_not_text(tmp_path: Path) -> None:
    assert await answer(rules(tmp_path), body(msgtype="audio", content={"downloadCode": "A1"})) == "a audio"


def test_the_offline_message_of_each_kind_carries_what_the_wire_would() -> None:
    from responder.dingtalk import offline_message

    rich = offline_message("hi", msg_id="m", conversation_id="c", nick="n", staff_id="s", msgtype="richText")
    voice = offline_message("hi", msg_id="m", conversation_id="c", nick="n", staff_id="s", msgtype="audio")
    quoted = offline_message(
        "x", msg_id="m", conversation_id="c", nick="n", staff_id="s", quoted=Quoted("text", "q")
    )
    assert (rich.text, [p.kind for p in rich.parts]) == ("hi", ["text", "picture"])
    assert (voice.text, voice.spoken) == ("", "hi")
    assert quoted.quoted == Quoted("text", "q")


UNKNOWN_SHAPES = [
    {"msgtype": "unknownMsgType", "content": {"unknownMsgType": "暂不支持的消息"}},
    {"msgtype": "interactiveCard", "content": {"cardData": "{}"}},
    {"msgtype": "richText", "content": {"richText": "not a list"}},
    {"msgtype": "richText", "content": {"richText": [1, None, "x", {"type": "at", "atName": "bot"}]}},
    {"msgtype": "audio"},
    {"msgtype": "picture", "content": None},
]


@pytest.mark.parametrize("shape", UNKNOWN_SHAPES, ids=lambda s: s["msgtype"])
async def test_unknown_and_odd_message_types_never_fail_a_request(
    shape: dict[str, Any], write_rules: RulesWriter, make_client: ClientFactory
) -> None:
    path = write_rules(
        "dingtalk: {app_secret: '${DINGTALK_APP_SECRET}', reply: response}\n"
        "rules:\n  - {name: n, non_text: true, msgtype: text, at_sender: false, body: 'not text'}\n"
    )
    client = await make_client(path)
    raw = callback_body(None)
    raw.pop("text", None)
    raw.update(shape)
    response = await client.post(
        "/dingtalk/callback", data=json.dumps(raw).encode(), headers=signed_headers()
    )
    assert response.status in (200, 400), await response.text()
    if response.status == 400:  # only a body that is malformed by DingTalk's own shapes
        assert shape["msgtype"] == "richText" and shape["content"]["richText"] == "not a list"
    else:
        assert await response.json() == {"msgtype": "text", "text": {"content": "not text"}}
