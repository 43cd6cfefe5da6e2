"""A rule refused for who the sender is or where they are says so; rules for other groups or
people stay invisible; `help` lists only what the asker may use."""

from __future__ import annotations

from pathlib import Path

import pytest

from responder.dingtalk import offline_message
from responder.rules.load import load_rules
from responder.rules.model import RuleSet
from tests.conftest import offline

RULES = """
defaults:
  not_allowed: {private_only: ""}
rules:
  - name: reboot
    description: Restart the service
    keywords: [reboot]
    scope: {admins_only: true}
    msgtype: text
    at_sender: false
    body: rebooting
  - name: standup
    description: Post the stand-up
    keywords: [standup]
    scope: {chat: group}
    msgtype: text
    at_sender: false
    body: posting
  - name: secret
    description: A private thing
    keywords: [secret]
    scope: {chat: private}
    msgtype: text
    at_sender: false
    body: psst
  - name: ops
    description: The ops group's own
    keywords: [ops]
    scope: {conversations: [cidOPS]}
    msgtype: text
    at_sender: false
    body: ops only
  - name: help
    keywords: [help]
    msgtype: text
    at_sender: false
    body: "{% for r in rules %}{{ r.name }} {% endfor %}"
  - name: unknown
    fallback: true
    hidden: true
    msgtype: text
    at_sender: false
    body: "what?"
"""


@pytest.fixture
def ruleset(tmp_path: Path) -> RuleSet:
    (tmp_path / "templates").mkdir()
    (tmp_path / "rules.yaml").write_text(RULES, encoding="utf-8")
    return load_rules(tmp_path / "rules.yaml", {})


async def say(
    ruleset: RuleSet, text: str, *, admin: bool = False, group: bool = True, cid: str = "cidA"
) -> str:
    message = offline_message(
        text, msg_id="m", conversation_id=cid, nick="n", staff_id="s", is_group=group, is_admin=admin
    )
    handled = await offline(message, ruleset)
    assert handled.reply is not None, handled.reason
    return handled.reply.text


async def test_an_admins_only_rule_tells_a_non_admin(ruleset: RuleSet) -> None:
    assert await say(ruleset, "reboot") == "Sorry, only organisation admins may use this."
    assert await say(ruleset, "reboot", admin=True) == "rebooting"


async def test_a_group_only_rule_tells_a_private_chat(ruleset: RuleSet) -> None:
    assert await say(ruleset, "standup", group=False) == "This works in group chats only."


async def test_a_refusal_with_an_empty_text_stays_silent_and_falls_through(ruleset: RuleSet) -> None:
    assert await say(ruleset, "secret") == "what?"  # not_allowed.private_only is ""


async def test_another_groups_rule_is_invisible(ruleset: RuleSet) -> None:
    assert await say(ruleset, "ops") == "what?"
    assert await say(ruleset, "ops", cid="cidOPS") == "ops only"


async def test_help_lists_only_what_the_asker_may_use(ruleset: RuleSet) -> None:
    assert await say(ruleset, "help") == "standup help"
    assert await say(ruleset, "help", admin=True, cid="cidOPS") == "reboot standup ops help"
    assert await say(ruleset, "help", group=False) == "secret help"
