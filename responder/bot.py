"""The engine: one message in, at most one reply out. Match, then fetch the source, then render.

No HTTP here: transports (HTTP callbacks, Stream mode, `responder try`, the playground) all call
`answer` with a parsed Message and a snapshot, so they cannot disagree about a reply.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from responder.dingtalk import Message, Reply
from responder.matching import Match
from responder.rendering import RenderError, build_context, mention_sender, render
from responder.rules import Rule, RuleSet
from responder.sources.base import SourceCall, SourceResult, SourceSpec

log = logging.getLogger(__name__)

Fetch = Callable[[SourceSpec, SourceCall], Awaitable[SourceResult]]
RENDER_FAILED_TEXT = "Sorry, I could not put this reply together. The error has been logged."


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the engine decided: the rule (if any), the reply (if any) and why."""

    rule: str | None
    reply: Reply | None
    reason: str
    render_error: str = ""


async def answer(
    message: Message,
    ruleset: RuleSet,
    fetch: Fetch | None,
    now: Callable[[], datetime.datetime] = lambda: datetime.datetime.now().astimezone(),
) -> Outcome:
    """Match, then respond. Never raises for bad templates or failing sources: those become a
    graceful reply. With `fetch=None` (offline: `responder try --offline`, examples) a rule's
    source is answered by the rule's `fixture`.
    """
    match = ruleset.matcher.find(message)
    if match is None:
        return unanswered(message)
    return await respond(match, message, ruleset, fetch, now)


def unanswered(message: Message) -> Outcome:
    why = "non-text message and no non_text rule" if not message.is_text else "no rule matched"
    return Outcome(None, None, why)


async def respond(
    match: Match,
    message: Message,
    ruleset: RuleSet,
    fetch: Fetch | None,
    now: Callable[[], datetime.datetime] = lambda: datetime.datetime.now().astimezone(),
) -> Outcome:
    """Fetch the matched rule's source and render its reply."""
    rule = rule_of(match)
    source = await _fetch(rule, match, fetch)
    context = build_context(match, message, source, ruleset.catalogue, now())
    try:
        reply = render(rule.reply, context, message)
    except RenderError as exc:
        log.warning("render_failed rule=%s error=%s", rule.name, exc)
        fallback = Reply(msgtype="text", text=RENDER_FAILED_TEXT)
        return Outcome(rule.name, fallback, f"render failed: {exc}", render_error=str(exc))
    return Outcome(rule.name, reply, match.reason)


def mention(reply: Reply, message: Message, rule: Rule) -> Reply:
    """@ the sender the way the rule's own replies would."""
    return mention_sender(reply, message) if rule.reply.at_sender else reply


def rule_of(match: Match) -> Rule:
    assert isinstance(match.rule, Rule)
    return match.rule


async def _fetch(rule: Rule, match: Match, fetch: Fetch | None) -> SourceResult | None:
    if rule.source is None:
        return None
    if fetch is None:
        if rule.fixture is None:
            return SourceResult.failure("no_fixture")
        return SourceResult(ok=True, data=rule.fixture)
    call = SourceCall(args=match.args, groups=dict(match.groups), text=match.text)
    return await fetch(rule.source, call)
