"""What the engine answers once a rule is chosen: its source's data, then its rendered reply.

No HTTP and no limits here: the pipeline calls `fetch_source` and `render_answer` in that order.
A failing source or template never raises; it becomes a graceful reply.
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass
from typing import Protocol

from responder.dingtalk import Message, Reply
from responder.engine.matching import Match
from responder.engine.rendering import RenderError, build_context, render
from responder.logs import quoted
from responder.rules.model import Rule, RuleSet
from responder.sources import SourceHub
from responder.sources.base import SourceCall, SourceResult

log = logging.getLogger(__name__)

RENDER_FAILED_TEXT = "Sorry, I could not put this reply together. The error has been logged."


@dataclass(frozen=True, slots=True)
class Answer:
    """The rule that answers, its reply (None: stay silent) and why."""

    rule: str
    reply: Reply | None
    reason: str
    render_error: str = ""


class SourceAnswers(Protocol):
    """Where a rule's `source:` data comes from: live sources, or each rule's `fixture`."""

    async def answer(self, rule: Rule, call: SourceCall) -> SourceResult: ...


class LiveSources:
    def __init__(self, hub: SourceHub) -> None:
        self._hub = hub

    async def answer(self, rule: Rule, call: SourceCall) -> SourceResult:
        assert rule.source is not None
        return await self._hub.fetch(rule.source, call)


class Fixtures:
    """Offline (`responder try --offline`, examples): a source answers with the rule's fixture."""

    async def answer(self, rule: Rule, call: SourceCall) -> SourceResult:
        if rule.fixture is None:
            return SourceResult.failure("no_fixture")
        return SourceResult(ok=True, data=rule.fixture)


async def fetch_source(rule: Rule, match: Match[Rule], sources: SourceAnswers) -> SourceResult | None:
    if rule.source is None:
        return None
    call = SourceCall(args=match.args, groups=dict(match.groups), text=match.text)
    return await sources.answer(rule, call)


def render_answer(
    rule: Rule,
    match: Match[Rule],
    message: Message,
    source: SourceResult | None,
    ruleset: RuleSet,
    now: datetime.datetime,
) -> Answer:
    """Render the rule's reply; any failure (a template error, a sandbox refusal, recursion)
    becomes the apology, logged as render_failed."""
    context = build_context(match, message, source, ruleset.visible_rules(message), now)
    try:
        reply = render(rule.reply, context, message)
    except RenderError as exc:
        log.warning(
            "render_failed rule=%s reason=%s error=%s", rule.name, exc.reason, quoted(exc, always=True)
        )
        apology = Reply(msgtype="text", text=RENDER_FAILED_TEXT)
        return Answer(rule.name, apology, f"render failed: {exc}", str(exc))
    return Answer(rule.name, reply, match.reason)
