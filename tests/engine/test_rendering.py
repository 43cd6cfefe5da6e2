"""From a matched rule to the reply JSON: the five message types in the protocol sheet's exact shape
(section 4), @-mentioning the sender, the Jinja2 sandbox, graceful render failures, the 20,000-byte
limit and the generated help. Rules are loaded from YAML and answered through the offline pipeline."""

from __future__ import annotations

import datetime
import shutil
from pathlib import Path
from typing import Any

import pytest

from responder.dingtalk import (
    MAX_REPLY_BYTES,
    TRUNCATION_MARKER,
    Button,
    FeedLink,
    Message,
    Reply,
    dumps,
    encode_reply,
)
from responder.engine.answer import RENDER_FAILED_TEXT
from responder.rules.load import load_rules
from responder.rules.model import RuleSet
from tests.conftest import offline

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime.datetime(2024, 5, 17, 9, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=8)))

_TYPES = """\
rules:
  - name: deploy
    keywords: deploy
    msgtype: text
    body: 部署完成
  - name: build
    keywords: build
    msgtype: markdown
    title: 构建结果
    body: |
      #### 构建成功
      > 耗时 42s
  - name: news
    keywords: news
    msgtype: link
    title: 时代的火车向前开
    body: 摘要…
    url: https://www.dingtalk.com/
    picture: https://img.example/{{ rule.name }}.png
  - name: read
    keywords: read
    msgtype: actionCard
    title: 标题
    body: "### markdown 正文"
    button: {title: 阅读全文, url: "https://www.dingtalk.com/"}
  - name: vote
    keywords: vote
    msgtype: actionCard
    title: 标题
    body: "### markdown 正文"
    buttons:
      - {title: 内容不错, url: "https://a.example/"}
      - {title: 不感兴趣, url: "https://b.example/"}
  - name: side-by-side
    keywords: side
    msgtype: actionCard
    title: 标题
    body: 正文
    button_orientation: horizontal
    buttons:
      - {title: "Yes {{ sender.nick }}", url: "https://a.example/?q={{ text }}"}
      - {title: "No", url: "https://b.example/"}
  - name: feed
    keywords: feed
    msgtype: feedCard
    links:
      - {title: 条目1, url: "https://a.example/", picture: "https://img.example/1.png"}
      - {title: 条目2, url: "https://b.example/", picture: "https://img.example/2.png"}
  - name: quiet
    keywords: quiet
    msgtype: text
    at_sender: false
    body: shh
  - name: echo
    keywords: echo
    msgtype: text
    body: "{{ now.year }} {{ conversation.type }} {{ sender.is_admin }} {{ rule.name }}"
"""


def ruleset_from(tmp_path: Path, text: str, templates: dict[str, str] | None = None) -> RuleSet:
    for name, content in (templates or {}).items():
        target = tmp_path / "templates" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    # content= skips only the settle-and-reread of the file (covered by test_loader), not the checks.
    return load_rules(path, {}, content=path.read_bytes())


@pytest.fixture
def types(tmp_path: Path) -> RuleSet:
    return ruleset_from(tmp_path, _TYPES)


def message(text: str, *, group: bool = True, nick: str = "张三", staff_id: str = "user123") -> Message:
    return Message(
        msg_id="msg1",
        msgtype="text",
        text=text,
        conversation_id="cidGROUP",
        is_group=group,
        conversation_title="test group" if group else "",
        sender_nick=nick,
        sender_staff_id=staff_id,
        sender_id="$:LWCP_v1:$sender",
        is_admin=False,
        session_webhook="https://oapi.dingtalk.com/robot/sendBySession?session=0",
        session_webhook_expires_ms=None,
        created_ms=None,
        robot_code="",
    )


async def reply_json(ruleset: RuleSet, msg: Message) -> dict[str, Any]:
    outcome = await offline(msg, ruleset, now=lambda: NOW)
    assert outcome.reply is not None, outcome.reason
    return encode_reply(outcome.reply)


async def test_text_reply_in_group_mentions_sender(types: RuleSet) -> None:
    assert await reply_json(types, message("deploy")) == {
        "msgtype": "text",
        "text": {"content": "@user123 部署完成"},
        "at": {"atUserIds": ["user123"], "isAtAll": False},
    }


async def test_markdown_reply_in_group_ends_with_mention(types: RuleSet) -> None:
    assert await reply_json(types, message("build")) == {
        "msgtype": "markdown",
        "markdown": {"title": "构建结果", "text": "#### 构建成功\n> 耗时 42s\n\n@user123"},
        "at": {"atUserIds": ["user123"], "isAtAll": False},
    }


async def test_link_reply_shape(types: RuleSet) -> None:
    assert await reply_json(types, message("news")) == {
        "msgtype": "link",
        "link": {
            "title": "时代的火车向前开",
            "text": "摘要…",
            "messageUrl": "https://www.dingtalk.com/",
            "picUrl": "https://img.example/news.png",
        },
    }


async def test_action_card_single_button_shape(types: RuleSet) -> None:
    assert await reply_json(types, message("read")) == {
        "msgtype": "actionCard",
        "actionCard": {
            "title": "标题",
            "text": "### markdown 正文",
            "btnOrientation": "0",
            "singleTitle": "阅读全文",
            "singleURL": "https://www.dingtalk.com/",
        },
    }


async def test_action_card_buttons_shape(types: RuleSet) -> None:
    assert await reply_json(types, message("vote")) == {
        "msgtype": "actionCard",
        "actionCard": {
            "title": "标题",
            "text": "### markdown 正文",
            "btnOrientation": "0",
            "btns": [
                {"title": "内容不错", "actionURL": "https://a.example/"},
                {"title": "不感兴趣", "actionURL": "https://b.example/"},
            ],
        },
    }


async def test_action_card_horizontal_buttons_are_rendered_templates(types: RuleSet) -> None:
    card = (await reply_json(types, message("side")))["actionCard"]
    assert card["btnOrientation"] == "1"
    assert card["btns"] == [
        {"title": "Yes 张三", "actionURL": "https://a.example/?q=side"},
        {"title": "No", "actionURL": "https://b.example/"},
    ]


async def test_feed_card_shape(types: RuleSet) -> None:
    assert await reply_json(types, message("feed")) == {
        "msgtype": "feedCard",
        "feedCard": {
            "links": [
                {"title": "条目1", "messageURL": "https://a.example/", "picURL": "https://img.example/1.png"},
                {"title": "条目2", "messageURL": "https://b.example/", "picURL": "https://img.example/2.png"},
            ]
        },
    }


async def test_template_context_values(types: RuleSet) -> None:
    body = await reply_json(types, message("echo", group=False))
    assert body["text"]["content"] == "2024 private False echo"


async def test_missing_staff_id_mentions_nick_as_plain_text(types: RuleSet) -> None:
    text = await reply_json(types, message("deploy", staff_id=""))
    assert text == {"msgtype": "text", "text": {"content": "@张三 部署完成"}}
    markdown = await reply_json(types, message("build", staff_id=""))
    assert markdown["markdown"]["text"].endswith("\n\n@张三")
    assert "at" not in markdown


@pytest.mark.parametrize("word", ["deploy", "build"])
async def test_private_chat_reply_has_no_mention(types: RuleSet, word: str) -> None:
    body = await reply_json(types, message(word, group=False))
    assert "at" not in body
    assert "@" not in dumps(body).decode()


async def test_at_sender_false_leaves_out_the_mention(types: RuleSet) -> None:
    assert await reply_json(types, message("quiet")) == {"msgtype": "text", "text": {"content": "shh"}}


async def test_at_sender_default_can_be_switched_off(tmp_path: Path) -> None:
    rules = "defaults: {at_sender: false}\nrules:\n  - {name: d, keywords: d, msgtype: text, body: done}\n"
    assert await reply_json(ruleset_from(tmp_path, rules), message("d")) == {
        "msgtype": "text",
        "text": {"content": "done"},
    }


@pytest.mark.parametrize("word", ["news", "read", "feed"])
async def test_cards_never_carry_at(types: RuleSet, word: str) -> None:
    assert "at" not in await reply_json(types, message(word))


INJECTIONS = [
    "{{7*7}}",
    "{{ ''.__class__.__mro__ }}",
    "{% for x in range(10**9) %}x{% endfor %}",
    "{{ config }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{% raw %}",
]


@pytest.mark.parametrize("payload", INJECTIONS)
async def test_message_text_and_nick_are_data_never_template(tmp_path: Path, payload: str) -> None:
    rules = (
        "rules:\n  - name: echo\n    command: echo\n    msgtype: text\n    at_sender: false\n"
        "    body: '{{ args_text }} | {{ sender.nick }}'\n"
    )
    body = await reply_json(ruleset_from(tmp_path, rules), message(f"echo {payload}", nick=payload))
    assert body["text"]["content"] == f"{payload} | {payload}"


@pytest.mark.parametrize("payload", INJECTIONS)
async def test_fallback_echo_of_text_is_literal(tmp_path: Path, payload: str) -> None:
    rules = "rules:\n  - {name: any, fallback: true, msgtype: text, at_sender: false, body: '{{ text }}'}\n"
    body = await reply_json(ruleset_from(tmp_path, rules), message(payload))
    assert body["text"]["content"] == payload


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ sender.__class__.__base__.__subclasses__() }}",
        "{{ '{0.__class__.__mro__}'.format(text) }}",
        "{% for x in range(10**9) %}x{% endfor %}",
        "{{ nope }}",
        "{{ sender.nope }}",
        "{{ source.data.ip }}",
        "{{ 1 / 0 }}",
        "{{ args[5] }}",
        "{% set x = rules.append(1) %}{{ x }}",
    ],
)
async def test_template_failure_becomes_graceful_reply(
    tmp_path: Path, template: str, caplog: pytest.LogCaptureFixture
) -> None:
    rules = "rules:\n  - name: bad\n    keywords: bad\n    msgtype: markdown\n    title: t\n"
    rules += f'    body: "{template}"\n'
    outcome = await offline(message("bad"), ruleset_from(tmp_path, rules), now=lambda: NOW)
    assert outcome.rule == "bad"
    assert outcome.reply == Reply(msgtype="text", text=RENDER_FAILED_TEXT)
    assert outcome.render_error
    assert "render_failed rule=bad" in caplog.text


async def test_failing_title_is_graceful_too(tmp_path: Path) -> None:
    rules = "rules:\n  - {name: bad, keywords: bad, msgtype: markdown, title: '{{ nope }}', body: ok}\n"
    outcome = await offline(message("bad"), ruleset_from(tmp_path, rules), now=lambda: NOW)
    assert outcome.reply == Reply(msgtype="text", text=RENDER_FAILED_TEXT)


def _assert_truncated(body: dict[str, Any], text: str) -> None:
    assert len(dumps(body)) <= MAX_REPLY_BYTES
    assert text.removesuffix("\n\n@user123").endswith(TRUNCATION_MARKER)  # the mention survives the cut
    assert len(text) > 1000


@pytest.mark.parametrize(
    ("filler", "count"),
    [
        ("好", 9000),
        ("x", 25_000),
        ("<", 25_000),
        ('"', 12_000),
        ("\\", 12_000),
        ('"', 25_000),
        ("\x01", 5000),
    ],
)
async def test_long_text_reply_is_truncated_with_marker(tmp_path: Path, filler: str, count: int) -> None:
    rules = (
        f"rules:\n  - {{name: long, command: long, msgtype: text, body: '{{{{ args_text * {count} }}}}'}}\n"
    )
    ruleset = ruleset_from(tmp_path, rules)
    outcome = await offline(message(f"long {filler}"), ruleset, now=lambda: NOW)
    assert outcome.reply is not None
    body = encode_reply(outcome.reply)
    _assert_truncated(body, body["text"]["content"])
    assert body["text"]["content"].startswith(f"@user123 {filler}")
    assert body["at"] == {"atUserIds": ["user123"], "isAtAll": False}


async def test_long_markdown_reply_is_truncated_with_marker(tmp_path: Path) -> None:
    rules = (
        "rules:\n  - {name: long, keywords: long, msgtype: markdown, title: T, body: \"{{ '好' * 9000 }}\"}\n"
    )
    body = await reply_json(ruleset_from(tmp_path, rules), message("long"))
    _assert_truncated(body, body["markdown"]["text"])
    assert body["markdown"]["title"] == "T"


async def test_long_action_card_is_truncated_with_marker(tmp_path: Path) -> None:
    rules = (
        "rules:\n  - name: long\n    keywords: long\n    msgtype: actionCard\n    title: T\n"
        "    body: \"{{ '好' * 9000 }}\"\n    button: {title: Open, url: 'https://a.example/'}\n"
    )
    body = await reply_json(ruleset_from(tmp_path, rules), message("long"))
    _assert_truncated(body, body["actionCard"]["text"])
    assert body["actionCard"]["singleURL"] == "https://a.example/"


async def test_long_feed_card_drops_entries_from_the_end(tmp_path: Path) -> None:
    link = "      - {title: \"{{ '好' * 1500 }}\", url: 'https://a.example/%d', picture: 'https://i.example/p.png'}\n"
    rules = "rules:\n  - name: feed\n    keywords: feed\n    msgtype: feedCard\n    links:\n"
    rules += "".join(link % i for i in range(10))
    body = await reply_json(ruleset_from(tmp_path, rules), message("feed"))
    links = body["feedCard"]["links"]
    assert len(dumps(body)) <= MAX_REPLY_BYTES
    assert 1 <= len(links) < 10
    assert [x["messageURL"] for x in links] == [f"https://a.example/{i}" for i in range(len(links))]


def test_reply_within_limit_is_untouched() -> None:
    text = "好" * 6000
    assert encode_reply(Reply(msgtype="text", text=text)) == {"msgtype": "text", "text": {"content": text}}


@pytest.mark.parametrize(
    "reply",
    [
        Reply(msgtype="markdown", title="t" * 25_000, text="hi"),
        Reply(
            msgtype="actionCard",
            title="t",
            text="hi",
            buttons=(Button("b" * 3000, "https://a.example/"),) * 10,
        ),
        Reply(
            msgtype="feedCard", links=(FeedLink("x" * 25_000, "https://a.example/", "https://i.example/"),)
        ),
    ],
    ids=["markdown-title", "actioncard-buttons", "feedcard-one-link"],
)
def test_any_reply_is_kept_within_the_limit(reply: Reply) -> None:
    assert len(dumps(encode_reply(reply))) <= MAX_REPLY_BYTES


_HELP_RULES = """\
rules:
  - name: ip
    description: The server's public IPv4 address
    keywords: [ip, 公网ip]
    msgtype: text
    body: ip
  - name: weather
    description: Weather for a city
    command: [weather, 天气]
    msgtype: text
    body: weather
  - name: thanks
    description: Say thanks
    contains: 谢谢
    msgtype: text
    body: 不客气
  - name: secret
    description: Not for everyone
    keywords: xyzzy
    hidden: true
    msgtype: text
    body: nothing happens
  - name: help
    description: What I can do
    keywords: [help, 帮助]
    msgtype: markdown
    title: Help
    template: help.md.j2
"""


def reload(tmp_path: Path) -> RuleSet:
    path = tmp_path / "rules.yaml"
    return load_rules(path, {}, content=path.read_bytes())


@pytest.fixture
def help_rules(tmp_path: Path) -> RuleSet:
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    return ruleset_from(tmp_path, _HELP_RULES)


async def test_help_lists_every_visible_rule_with_its_words_and_description(help_rules: RuleSet) -> None:
    text = (await reply_json(help_rules, message("帮助", group=False)))["markdown"]["text"]
    for line in (
        "**ip / 公网ip**: The server's public IPv4 address",
        "**weather / 天气**: Weather for a city",
        "**谢谢**: Say thanks",
        "**help / 帮助**: What I can do",
    ):
        assert line in text
    assert "xyzzy" not in text
    assert "Not for everyone" not in text


async def test_help_follows_the_rules_file(tmp_path: Path, help_rules: RuleSet) -> None:
    (tmp_path / "rules.yaml").write_text(
        _HELP_RULES.replace("Weather for a city", "Forecast for a city"), encoding="utf-8"
    )
    text = (await reply_json(reload(tmp_path), message("help")))["markdown"]["text"]
    assert "Forecast for a city" in text
    assert "Weather for a city" not in text


async def test_help_lists_described_regex_rule(tmp_path: Path, help_rules: RuleSet) -> None:
    extra = "  - {name: release, description: Release to an env, regex: '^release', msgtype: text, body: r}\n"
    (tmp_path / "rules.yaml").write_text(_HELP_RULES + extra, encoding="utf-8")
    text = (await reply_json(reload(tmp_path), message("help")))["markdown"]["text"]
    assert "Release to an env" in text


async def test_bundled_help_lists_bundled_rules() -> None:
    ruleset = load_rules(ROOT / "rules.yaml", {})
    text = (await reply_json(ruleset, message("help", group=False)))["markdown"]["text"]
    assert "**ip / 公网ip / myip**: The server's public IPv4 address" in text
    assert "**about / 关于 / version**: About this robot" in text
    assert "Anything I did not understand" not in text
