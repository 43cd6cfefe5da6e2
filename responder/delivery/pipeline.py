"""The one path every accepted message takes, whatever its transport or reply mode.

    admit (overload) → claim msgId → match → scope → cooldown → source → render → budget → sink
    → settle → account

HTTP callbacks in both reply modes, Stream mode, the playground, `responder try` and rule examples
all call `Pipeline.start`; the reply mode chooses only the sink (the HTTP response body, or a POST
to the sessionWebhook). Every message `start` accepts ends exactly once as sent, skipped or
dropped: one `reply_*` log line and one count.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from responder.delivery.budget import OutboundBudget, SendBudget
from responder.delivery.claims import Claim, InMemoryLedger, MessageLedger
from responder.delivery.gate import Gate, GatePass
from responder.delivery.jobs import Job
from responder.delivery.late import RecordingSink, Speaking
from responder.delivery.sinks import ResponseSink, Route, Sink, Undeliverable
from responder.dingtalk import Message, Reply
from responder.engine.answer import (
    Answer,
    SourceAnswers,
    fetch_announcement_source,
    fetch_source,
    render_announcement,
    render_answer,
)
from responder.engine.cooldowns import CooldownCounters, Cooldowns
from responder.engine.matching import TELLABLE_REFUSALS, Choice, choose
from responder.engine.rendering import sender_mention
from responder.logs import quoted
from responder.metrics import Metrics
from responder.rules.model import Rule, RuleSet, Target
from responder.settings import AppOptions

log = logging.getLogger(__name__)

Snapshot = Callable[[], RuleSet]
Now = Callable[[], datetime.datetime]


def local_now() -> datetime.datetime:
    return datetime.datetime.now().astimezone()


@dataclass(frozen=True, slots=True)
class Handled:
    """How one message ended: `sent`, `skipped` or `dropped`, which rule, why, and the reply."""

    outcome: str
    rule: str | None
    reason: str
    reply: Reply | None = None
    render_error: str = ""
    retry: bool = False  # release the msgId, so DingTalk's redelivery is answered
    via: str = ""  # the channel that took (or refused) the reply, when it was not the sink's own


Work = Callable[[], Awaitable[Handled]]


@dataclass(slots=True)
class Guards:
    """The state the pipeline consults, shared across reloads: dedupe, cooldowns, DingTalk's send
    budget and the overload gate. The defaults live in this process; responder.state provides
    the Redis-backed ones several replicas share. The playground and offline runs get their own."""

    claims: MessageLedger = field(default_factory=InMemoryLedger)
    cooldowns: CooldownCounters = field(default_factory=Cooldowns)
    budget: SendBudget = field(default_factory=OutboundBudget)
    gate: Gate = field(default_factory=Gate)


def guards_for(options: AppOptions) -> Guards:
    """Fresh in-memory guards with the limits `options` asks for."""
    return Guards(
        budget=OutboundBudget(options.sends_per_window, options.send_window_s),
        gate=Gate(options.max_pending),
    )


class Pipeline:
    def __init__(
        self,
        snapshot: Snapshot,
        sources: SourceAnswers,
        guards: Guards,
        metrics: Metrics,
        *,
        now: Now = local_now,
    ) -> None:
        self._snapshot = snapshot
        self._sources = sources
        self._guards = guards
        self._metrics = metrics
        self._now = now
        self._tasks: set[asyncio.Task[Handled]] = set()

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def start(self, message: Message, sink: Sink) -> asyncio.Task[Handled] | None:
        """Admit `message` and handle it in a tracked task; None (logged as dropped) when too much
        is pending already. Nothing is claimed then, so DingTalk's redelivery can still be answered."""
        return self._begin(message.msg_id, sink.name, partial(self._answer, message, sink))

    def announce(self, job: Job, sink: Speaking) -> asyncio.Task[Handled] | None:
        """The same path for what responder says first (a schedule's slot, a push), to one target:
        admit, claim the job's key, source, render, budget, send, settle, account."""
        return self._begin(job.key, sink.name, partial(self._speak, job, sink))

    def _begin(self, key: str, via: str, work: Work) -> asyncio.Task[Handled] | None:
        started = time.monotonic()
        admitted = self._guards.gate.try_enter()  # admit
        if not admitted:
            self._account(key, via, Handled("dropped", None, "overloaded"), started)
            return None
        task = asyncio.get_running_loop().create_task(self._handle(key, via, work, admitted, started))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _handle(self, key: str, via: str, work: Work, admitted: GatePass, started: float) -> Handled:
        with admitted:
            claim = await self._guards.claims.claim(key)  # claim msgId
            if claim is not Claim.NEW:
                outcome = "dropped" if claim is Claim.OVERLOADED else "skipped"
                return self._account(key, via, Handled(outcome, None, f"duplicate_{claim.value}"), started)
            try:
                handled = await work()
            except asyncio.CancelledError:
                await self._guards.claims.release(key)
                self._account(key, via, Handled("dropped", None, "shutdown"), started)
                raise
            except Exception:
                log.exception("pipeline_failed msg_id=%s", quoted(key))
                handled = Handled("dropped", None, "internal_error")
            await self._settle(key, handled)
            return self._account(key, via, handled, started)

    async def _speak(self, job: Job, sink: Speaking) -> Handled:
        source = await fetch_announcement_source(job.announcement, self._sources)  # source
        answer = render_announcement(job.announcement, job.extra, source, self._now())  # render
        if answer.render_error:
            self._metrics.render_errors.labels(job.announcement.name).inc()
        return await self._send(job.target.budget_key, sink.to(job.target), answer)

    async def _answer(self, message: Message, sink: Sink) -> Handled:
        ruleset = self._snapshot()  # the message finishes on the snapshot it started with
        candidates = ruleset.matcher.candidates(message)  # match
        choice = choose(candidates, message, ruleset.told_refusals)  # scope
        if choice.refused is not None:
            return await self._deliver(message, sink, ruleset, refusal_notice(choice, message, ruleset))
        match = choice.match
        if match is None:
            return Handled("skipped", None, unanswered(ruleset.matcher.heard(message)))
        rule = match.rule
        notice = await self._cooldown(rule, message)  # cooldown
        if notice is not None:
            return await self._deliver(message, sink, ruleset, notice) if notice.reply else skipped(notice)
        source = await fetch_source(rule, match, self._sources)  # source
        answer = render_answer(rule, match, message, source, ruleset, self._now())  # render
        if answer.render_error:
            self._metrics.render_errors.labels(rule.name).inc()
        return await self._deliver(message, sink, ruleset, answer)

    async def _cooldown(self, rule: Rule, message: Message) -> Answer | None:
        """None if the rule may answer now; else its "slow down" notice (once per window) or silence."""
        cooldown = rule.cooldown
        if cooldown is None:
            return None
        key = cooldown.key_for(message)
        if await self._guards.cooldowns.check(rule.name, cooldown, key):
            return None
        if cooldown.reply and await self._guards.cooldowns.notice_due(rule.name, cooldown, key):
            mention = sender_mention(message) if rule.reply.at_sender else None
            return Answer(rule.name, Reply("text", cooldown.reply, mention=mention), "cooldown notice")
        return Answer(rule.name, None, "cooldown")

    async def _deliver(self, message: Message, sink: Sink, ruleset: RuleSet, answer: Answer) -> Handled:
        assert answer.reply is not None
        try:
            route = sink.route(message, ruleset)
        except Undeliverable as exc:
            # An expired session says nothing about the redelivery, which brings a fresh one.
            return dropped(answer, exc.reason, retry=exc.reason == "webhook_expired")
        return await self._send(message.conversation_id, route, answer)

    async def _send(self, conversation: str, route: Route, answer: Answer) -> Handled:
        """budget → sink: wait for a send slot (or go late), send, and say how it went."""
        assert answer.reply is not None
        budget = self._guards.budget
        slot = await budget.acquire(conversation, route.deadline)  # budget
        if not slot and route.late is not None:  # no slot while this channel lasts: go late
            route.on_late()
            route = route.late
            slot = await budget.acquire(conversation, route.deadline)
        if not slot:
            return dropped(answer, "rate_limited")
        delivery = await route.send(answer.reply)  # sink
        via = delivery.via or route.via
        if delivery.throttled:
            await budget.backoff(conversation)
        if delivery.ok:
            return sent(answer, via)
        # Only a failure that certainly left nothing in the group may be tried again.
        retry = delivery.definite and not delivery.throttled
        return dropped(answer, delivery.reason, retry=retry, via=via)

    async def _settle(self, key: str, handled: Handled) -> None:
        """A delivery that definitely failed may succeed when DingTalk redelivers (with a fresh
        sessionWebhook), so its msgId is released; everything else is final."""
        if handled.retry:
            await self._guards.claims.release(key)
        else:
            await self._guards.claims.complete(key, handled.outcome)

    def _account(self, key: str, via: str, handled: Handled, started: float) -> Handled:
        latency_ms = (time.monotonic() - started) * 1000
        level = logging.WARNING if handled.outcome == "dropped" else logging.INFO
        log.log(
            level,
            "reply_%s msg_id=%s rule=%s reason=%s via=%s latency_ms=%.1f",
            handled.outcome,
            quoted(key),
            handled.rule,
            quoted(handled.reason, always=True),
            handled.via or via,
            latency_ms,
        )
        self._metrics.count_handled(handled.rule or "", handled.outcome)
        return handled

    async def wait_idle(self) -> None:
        """Return once every message started so far has been handled."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def drain(self, timeout_s: float) -> int:
        """Wait up to `timeout_s` for pending messages; cancel and log the rest. Returns how many."""
        if not self._tasks:
            return 0
        _, late = await asyncio.wait(set(self._tasks), timeout=timeout_s)
        for task in late:
            task.cancel()  # each logs its own reply_dropped reason='shutdown'
        if late:
            await asyncio.gather(*late, return_exceptions=True)
        return len(late)


async def answer_once(
    message: Message, ruleset: RuleSet, sources: SourceAnswers, *, now: Now = local_now
) -> tuple[Handled, dict[str, Any] | None]:
    """Answer one message through a pipeline of its own (fresh guards, its own metrics), as
    `responder try` and rule examples do. Returns how it ended and the reply JSON, if any."""
    sink = ResponseSink("offline")
    handling = Pipeline(lambda: ruleset, sources, Guards(), Metrics(), now=now).start(message, sink)
    assert handling is not None  # a fresh gate always admits
    return await handling, sink.body


async def announce_once(
    jobs: Sequence[Job], ruleset: RuleSet, sources: SourceAnswers, *, now: Now = local_now
) -> tuple[list[Handled], list[tuple[Target, dict[str, Any]]]]:
    """Say what `jobs` say through a pipeline of its own, offline (`responder try --push`,
    examples): how each ended, and what the OpenAPI would have been sent, per target."""
    sink = RecordingSink()
    pipeline = Pipeline(lambda: ruleset, sources, Guards(), Metrics(), now=now)
    started = [pipeline.announce(job, sink) for job in jobs]
    handled = [await task for task in started if task is not None]
    return handled, sink.sent


def refusal_notice(choice: Choice[Rule], message: Message, ruleset: RuleSet) -> Answer:
    """The plain-text "not for you here" a sender gets for a rule their scope refuses."""
    assert choice.refused is not None
    rule = choice.refused.rule
    text = ruleset.not_allowed[TELLABLE_REFUSALS[choice.refusal]]
    mention = sender_mention(message) if rule.reply.at_sender else None
    return Answer(rule.name, Reply("text", text, mention=mention), f"told: {choice.refusal}")


def sent(answer: Answer, via: str) -> Handled:
    return Handled("sent", answer.rule, answer.reason, answer.reply, answer.render_error, via=via)


def skipped(answer: Answer) -> Handled:
    return Handled("skipped", answer.rule, answer.reason, None, answer.render_error)


def dropped(answer: Answer, reason: str, *, retry: bool = False, via: str = "") -> Handled:
    return Handled("dropped", answer.rule, reason, answer.reply, answer.render_error, retry=retry, via=via)


def unanswered(heard: str | None) -> str:
    return "non-text message and no non_text rule" if heard is None else "no rule matched"
