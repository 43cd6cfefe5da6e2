"""Rendering kept per snapshot: a reply whose templates read only what the snapshot fixes (`rule`,
`bot`, and `rules` once the asker's visible rules are known) is rendered once per visible-rules
list. Each kept reply must be the very bytes a fresh rendering gives, for every asker."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from responder.dingtalk import Message, encode_reply, offline_message
from responder.rules.load import load_rules
from responder.rules.model import RuleSet
from tests.conftest import ROOT, offline

SCOPED = """\
rules:
  - {name: help, description: What I can do, keywords: [help], msgtype: markdown, title: Help,
     template: help.md.j2}
  - {name: deploy, description: Ship it, command: [deploy], scope: {admins_only: true}, msgtype: text,
     body: ok}
  - {name: ops, description: Ops corner, keywords: [ops], scope: {conversations: [cid-ops]},
     msgtype: text, body: ok}
  - {name: dm, description: Just us, keywords: [dm], scope: {chat: private}, msgtype: text, body: ok}
  - name: static
    keywords: [static]
    msgtype: actionCard
    title: "{{ bot.name }} card"
    body: "#### {{ rule.name }} [x](https://example.com)"
    button: {title: Go, url: "https://example.com/{{ rule.name }}"}
  - {name: moving, keywords: [moving], msgtype: text, body: "{{ text }} {{ now.year }}"}
  - {name: dice, keywords: [dice], msgtype: text, body: "{{ rules | random }}"}
"""


def askers() -> list[Message]:
    """Senders who see different lists of rules, each in turn, twice."""
    people = [
        dict(is_group=True, is_admin=False, conversation_id="cid-a", staff_id="u1", nick="甲"),
        dict(is_group=True, is_admin=True, conversation_id="cid-a", staff_id="u2", nick="乙"),
        dict(is_group=True, is_admin=False, conversation_id="cid-ops", staff_id="u3", nick="丙"),
        dict(is_group=False, is_admin=True, conversation_id="cid-dm", staff_id="u4", nick="丁"),
        dict(is_group=True, is_admin=False, conversation_id="cid-b", staff_id="", nick="outsider"),
    ]
    return [
        offline_message("help", msg_id=f"m{i}", created_ms=0, **person)  # type: ignore[arg-type]
        for i, person in enumerate(people * 2)
    ]


def fresh(ruleset: RuleSet) -> RuleSet:
    """The same snapshot with nothing kept: every reply rendered anew."""
    rules = tuple(
        dataclasses.replace(r, reply=dataclasses.replace(r.reply, stable=None)) for r in ruleset.rules
    )
    return dataclasses.replace(ruleset, rules=rules, matcher=type(ruleset.matcher)(rules))


async def encoded(ruleset: RuleSet, message: Message) -> dict[str, Any]:
    handled = await offline(message, ruleset)
    assert handled.reply is not None, handled.reason
    return encode_reply(handled.reply)


@pytest.fixture
def scoped(tmp_path: Path) -> RuleSet:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "help.md.j2").write_bytes((ROOT / "templates" / "help.md.j2").read_bytes())
    (tmp_path / "rules.yaml").write_text(SCOPED, encoding="utf-8")
    return load_rules(tmp_path / "rules.yaml", {})


async def test_help_kept_per_visible_rules_is_what_a_fresh_render_gives_every_asker(scoped: RuleSet) -> None:
    uncached = fresh(scoped)
    for message in askers():
        assert await encoded(scoped, message) == await encoded(uncached, message)
    help_rule = next(r for r in scoped.rules if r.name == "help")
    # One entry per distinct list: the plain member, the admin, the ops member, the admin in a 1:1.
    assert len(help_rule.reply.memo) == 4


async def test_every_bundled_rule_kept_or_not_gives_the_bytes_of_a_fresh_render() -> None:
    bundled = load_rules(ROOT / "rules.yaml", {})
    uncached = fresh(bundled)
    kept = [r.name for r in bundled.rules if r.reply.stable is not None]
    assert {"help", "hello", "about", "not-text"} <= set(kept)
    for text in ("help", "帮助", " ", "about", "what", "id"):
        for message in askers():
            asked = dataclasses.replace(message, text=text)
            for _ in range(2):  # the second time from the memo
                assert await encoded(bundled, asked) == await encoded(uncached, asked)


def test_only_replies_that_read_what_the_snapshot_fixes_are_kept(scoped: RuleSet) -> None:
    stable = {r.name: r.reply.stable for r in scoped.rules}
    assert stable["help"] is not None and stable["help"].reads_rules
    assert stable["static"] is not None and not stable["static"].reads_rules
    assert stable["moving"] is None  # text and now vary per message
    assert stable["dice"] is None  # `random` would be frozen


async def test_a_kept_card_carries_each_askers_own_mention(scoped: RuleSet) -> None:
    first, second = askers()[:2]
    one, two = await encoded(scoped, first), await encoded(scoped, second)
    assert one["markdown"]["text"].endswith("@u1") and two["markdown"]["text"].endswith("@u2")
    assert one["at"]["atUserIds"] == ["u1"] and two["at"]["atUserIds"] == ["u2"]
