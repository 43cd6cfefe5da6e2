"""What the engine answers once a rule is chosen: its source's data, then its rendered reply.

No HTTP and no limits here: the pipeline calls `fetch_source` and `render_answer` in that order.
A failing source or template never raises; it becomes a graceful reply.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from responder.dingtalk import Message, Reply
from responder.engine.matching import Match
from responder.engine.rendering import (
    RenderError,
    announcement_context,
    build_context,
    render,
    sender_mention,
)
from responder.logs import quoted
from responder.rules.model import Announcement, Rule, RuleSet
from responder.sources import SourceHub
from responder.sources.base import SourceCall, SourceResult, SourceSpec

log = logging.getLogger(__name__)

RENDER_FAILED_TEXT = "Sorry, I could not put this reply together. The error has been logged."


@dataclass(frozen=True, slots=True)
class Answer:
    """The rule that answers, its reply (None: stay silent) and why."""

    rule: str
    reply: Reply | None
    reason: str
    render_error: str = ""


class Speaker(Protocol):
    """A rule, or an announcement: something with a source and a fixture for it."""

    @property
    def source(self) -> SourceSpec | None: ...

    @property
    def fixture(self) -> Any: ...


class SourceAnswers(Protocol):
    """Where a rule's `source:` data comes from: live sources, or each rule's `fixture`."""

    async def answer(self, speaker: Speaker, call: SourceCall) -> SourceResult: ...


class LiveSources:
    def __init__(self, hub: SourceHub) -> None:
        self._hub = hub

    async def answer(self, speaker: Speaker, call: SourceCall) -> SourceResult:
        assert speaker.source is not None
        return await self._hub.fetch(speaker.source, call)


class Fixtures:
    """Offline (`responder try --offline`, examples): a source answers with the rule's fixture."""

    async def answer(self, speaker: Speaker, call: SourceCall) -> SourceResult:
        if speaker.fixture is None:
            return SourceResult.failure("no_fixture")
        return SourceResult(ok=True, data=speaker.fixture)


async def fetch_source(rule: Rule, match: Match[Rule], sources: SourceAnswers) -> SourceResult | None:
    if rule.source is None:
        return None
    call = SourceCall(args=match.args, groups=dict(match.groups), text=match.text)
    return await sources.answer(rule, call)


async def fetch_announcement_source(
    announcement: Announcement, sources: SourceAnswers
) -> SourceResult | None:
    return None if announcement.source is None else await sources.answer(announcement, SourceCall())


def render_announcement(
    announcement: Announcement, extra: Mapping[str, Any], source: SourceResult | None, now: datetime.datetime
) -> Answer:
    """A schedule's or push's message: its templates see `now`, `source`, `bot` and `extra`
    (`schedule` or `payload`). Nobody is @-mentioned: it goes through the OpenAPI."""
    context = {**announcement_context(source, now), **extra}
    try:
        reply = render(announcement.reply, context, None)
    except RenderError as exc:
        error = quoted(exc, always=True)
        log.warning(
            "render_failed %s=%s reason=%s error=%s", announcement.kind, announcement.name, exc.reason, error
        )
        # The group still learns that an alert or a digest was due, and where to look.
        notice = f"{announcement.kind} {announcement.name!r} failed to render; the server log says why."
        return Answer(
            announcement.name, Reply(msgtype="text", text=notice), f"render failed: {exc}", str(exc)
        )
    return Answer(announcement.name, reply, announcement.kind)


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
        reply = render(rule.reply, context, sender_mention(message) if rule.reply.at_sender else None)
    except RenderError as exc:
        log.warning(
            "render_failed rule=%s reason=%s error=%s", rule.name, exc.reason, quoted(exc, always=True)
        )
        apology = Reply(msgtype="text", text=RENDER_FAILED_TEXT)
        return Answer(rule.name, apology, f"render failed: {exc}", str(exc))
    return Answer(rule.name, reply, match.reason)
