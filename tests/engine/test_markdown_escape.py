"""Markdown is data too: a message, a nick or a data source never becomes the robot's own link,
image or heading; a template vouches for a value with `| markdown`; URL fields take only the
schemes DingTalk opens."""

from __future__ import annotations

from pathlib import Path

import pytest

from responder.dingtalk import encode_reply, offline_message
from responder.engine import markdown
from responder.engine.answer import RENDER_FAILED_TEXT
from responder.engine.markdown import escape_markdown
from responder.rules.load import load_rules
from responder.rules.model import RuleSet
from tests.conftest import offline

RULES = """
sources:
  report: {kind: time}
rules:
  - name: md
    command: [md]
    msgtype: markdown
    title: "{{ args_text }}"
    at_sender: false
    body: "#### You said\\n{{ args_text }} (from {{ sender.nick }})"
  - name: trusted
    command: [trusted]
    msgtype: markdown
    title: t
    at_sender: false
    body: "{{ args_text | markdown }}"
  - name: plain
    command: [plain]
    msgtype: text
    at_sender: false
    body: "{{ args_text }}"
  - name: card
    command: [card]
    msgtype: actionCard
    title: "{{ args_text }}"
    body: "{{ args_text }}"
    button: {title: "{{ args_text }}", url: "{{ args[0] }}"}
  - name: go
    command: [go]
    msgtype: link
    title: go
    body: go
    url: "{{ args[0] }}"
  - name: feed
    command: [feed]
    msgtype: feedCard
    links:
      - title: "{{ args_text }}"
        url: "https://example.com/{{ args[0] | urlencode }}"
        picture: "{{ args[1] }}"
"""
PHISHING = "[领取奖金](https://evil.example/login)"
IMAGE = "![](https://evil.example/pixel.png)"


@pytest.fixture
def ruleset(tmp_path: Path) -> RuleSet:
    (tmp_path / "templates").mkdir()
    (tmp_path / "rules.yaml").write_text(RULES, encoding="utf-8")
    return load_rules(tmp_path / "rules.yaml", {})


async def reply(ruleset: RuleSet, text: str, nick: str = "Tester") -> dict:  # type: ignore[type-arg]
    message = offline_message(text, msg_id="m", conversation_id="c", nick=nick, staff_id="s", is_group=False)
    handled = await offline(message, ruleset)
    assert handled.reply is not None, handled.reason
    return encode_reply(handled.reply)


def no_markdown(text: str) -> bool:
    return "](" not in text and "![" not in text and "://" not in text and "[" not in text


@pytest.mark.parametrize("said", [PHISHING, IMAGE, "# 标题 **粗体** <font color=red>红</font> `code` > 引用"])
async def test_message_text_in_a_markdown_reply_shows_its_characters_but_no_syntax(
    ruleset: RuleSet, said: str
) -> None:
    body = await reply(ruleset, f"md {said}")
    text = body["markdown"]["text"]
    assert text.startswith("#### You said\n")  # the template's own markdown stays markdown
    echoed = text.removeprefix("#### You said\n")
    assert no_markdown(echoed) and not any(c in echoed for c in "*#<>`")
    assert "领取奖金" in echoed or "pixel.png" in echoed or "标题" in echoed  # still readable
    assert no_markdown(body["markdown"]["title"])


async def test_a_nick_is_data_too(ruleset: RuleSet) -> None:
    body = await reply(ruleset, "md hi", nick=PHISHING)
    assert no_markdown(body["markdown"]["text"].split("(from ", 1)[1])


async def test_a_trusted_value_keeps_its_markdown(ruleset: RuleSet) -> None:
    assert (await reply(ruleset, f"trusted {PHISHING}"))["markdown"]["text"] == PHISHING


async def test_text_replies_are_not_markdown_and_are_left_alone(ruleset: RuleSet) -> None:
    assert (await reply(ruleset, f"plain {PHISHING}"))["text"]["content"] == PHISHING


async def test_action_card_text_and_button_title_are_escaped_but_the_url_is_kept(ruleset: RuleSet) -> None:
    card = (await reply(ruleset, "card https://example.com/a_b#c"))["actionCard"]
    assert "://" not in card["text"] and "_" not in card["singleTitle"]
    assert card["singleURL"] == "https://example.com/a_b#c"


@pytest.mark.parametrize(
    "url",
    [
        "https://www.dingtalk.com/",
        "http://a.example/x",
        "dingtalk://dingtalkclient/page/link?url=x",
        "dtmd://dingtalkclient/sendMessage?content=help",
    ],
)
async def test_url_fields_take_http_and_dingtalk_in_app_links(ruleset: RuleSet, url: str) -> None:
    assert (await reply(ruleset, f"go {url}"))["link"]["messageUrl"] == url


@pytest.mark.parametrize(
    "url", ["javascript:alert(1)", "file:///etc/passwd", "data:text/html,x", "ftp://x/y"]
)
async def test_other_schemes_in_a_url_field_are_the_apology(ruleset: RuleSet, url: str) -> None:
    message = offline_message(
        f"go {url}", msg_id="m", conversation_id="c", nick="n", staff_id="s", is_group=False
    )
    handled = await offline(message, ruleset)
    assert handled.reply is not None and handled.reply.text == RENDER_FAILED_TEXT
    assert "a URL must be http(s), dingtalk:// or dtmd://" in handled.render_error


async def test_a_picture_may_be_a_dingtalk_media_id(ruleset: RuleSet) -> None:
    links = (await reply(ruleset, "feed x @lADPDe7s2aFmOfBzc"))["feedCard"]["links"]
    assert links[0]["picURL"] == "@lADPDe7s2aFmOfBzc"


def test_the_escape_keeps_every_letter_and_is_idempotent() -> None:
    text = "a_b [c](d://e) *f* #g <h> `i` ~j~ |k| \\l 中文"
    escaped = escape_markdown(text)
    assert escape_markdown(escaped) == escaped
    assert [c for c in escaped if c.isalnum()] == [c for c in text if c.isalnum()]


@pytest.mark.parametrize(
    ("url", "title", "printed"),
    [
        ("https://ci.example/run/1", "Open", "[Open](https://ci.example/run/1)"),
        (
            "http://p:9090/graph?g0.expr=rate(x[5m])",
            "graph",
            "[graph](http://p:9090/graph?g0.expr=rate%28x%5B5m%5D%29)",
        ),
        (
            "https://e.example/a b",
            "[x](https://evil)\nnext",
            "[［x］(https:\u200b//evil) next](https://e.example/a%20b)",
        ),
        (
            "dtmd://dingtalkclient/sendMessage?content=hi",
            "Say hi",
            "[Say hi](dtmd://dingtalkclient/sendMessage?content=hi)",
        ),
        ("javascript:alert(1)", "click", "click"),
        ("file:///etc/passwd", None, "file:\u200b///etc/passwd"),
        ("https://", "t", "t"),
    ],
)
def test_the_link_filter_links_only_urls_that_may_be_linked(
    url: str, title: str | None, printed: str
) -> None:
    assert markdown.link(url, title) == printed
    assert isinstance(markdown.link(url, title), markdown.TrustedMarkdown)
