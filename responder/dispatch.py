"""The path of one accepted message after the transport: claim, answer, deliver, account.

Both transports (HTTP callbacks and Stream mode) hand parsed messages to `Dispatcher.submit`;
the work runs in tracked background tasks so shutdown can wait for them. Every message that
`submit` accepts ends exactly once as sent, skipped or dropped: one log line and one count.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from responder import bot
from responder.delivery import ERRCODE_THROTTLED, WebhookRejected, check_session_webhook, post_reply
from responder.dingtalk import Message, Reply, encode_reply
from responder.ledger import Claim, InMemoryLedger, MessageLedger
from responder.matching import Match
from responder.metrics import Metrics
from responder.rules import RuleSet
from responder.store import RuleStore
from responder.throttle import Cooldowns, Gate, GatePass, OutboundBudget, monotonic_deadline

log = logging.getLogger(__name__)

DEFAULT_MAX_PENDING = 1000
NO_EXPIRY_WAIT_S = 60.0


@dataclass(frozen=True, slots=True)
class Handled:
    outcome: str  # sent, skipped or dropped
    rule: str | None
    reason: str


@dataclass(slots=True)
class Limits:
    """Runtime guards, shared across reloads: dedupe, cooldowns, DingTalk's send budget, overload."""

    ledger: MessageLedger = field(default_factory=InMemoryLedger)
    cooldowns: Cooldowns = field(default_factory=Cooldowns)
    budget: OutboundBudget = field(default_factory=OutboundBudget)
    gate: Gate = field(default_factory=lambda: Gate(DEFAULT_MAX_PENDING))


class Dispatcher:
    def __init__(
        self,
        store: RuleStore,
        session: aiohttp.ClientSession,
        fetch: bot.Fetch,
        metrics: Metrics,
        *,
        limits: Limits | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._session = session
        self._fetch = fetch
        self._metrics = metrics
        self._limits = limits or Limits()
        self._clock = clock
        self._tasks: set[asyncio.Task[Handled]] = set()

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def submit(self, message: Message) -> asyncio.Task[Handled] | None:
        """Start handling `message`; None (logged as dropped) when too much is pending already."""
        admitted = self._limits.gate.try_enter()
        if not admitted:
            self._account(message, Handled("dropped", None, "overloaded"), time.monotonic())
            return None
        task = asyncio.get_running_loop().create_task(self._handle_admitted(message, admitted))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def answer(self, message: Message) -> bot.Outcome:
        """Answer without delivering (reply: response, the playground)."""
        return await bot.answer(message, self._store.current, self._fetch)

    async def _handle_admitted(self, message: Message, admitted: GatePass) -> Handled:
        with admitted:
            return await self.handle(message)

    async def handle(self, message: Message) -> Handled:
        started = time.monotonic()
        claim = await self._limits.ledger.claim(message.msg_id)
        if claim is not Claim.NEW:
            outcome = "dropped" if claim is Claim.OVERLOADED else "skipped"
            return self._account(message, Handled(outcome, None, f"duplicate_{claim.value}"), started)
        try:
            handled = await self._answer_and_deliver(message)
        except asyncio.CancelledError:
            await self._limits.ledger.release(message.msg_id)
            self._account(message, Handled("dropped", None, "shutdown"), started)
            raise
        await self._settle(message, handled)
        return self._account(message, handled, started)

    async def _settle(self, message: Message, handled: Handled) -> None:
        if handled.outcome == "dropped" and _worth_retrying(handled.reason):
            await self._limits.ledger.release(message.msg_id)
        else:
            await self._limits.ledger.complete(message.msg_id, handled.outcome)

    async def _answer_and_deliver(self, message: Message) -> Handled:
        ruleset = self._store.current  # this message finishes on the snapshot it started with
        match = ruleset.matcher.find(message)
        if match is None:
            return Handled("skipped", None, bot.unanswered(message).reason)
        outcome = await self._respond(match, message, ruleset)
        if outcome.reply is None:
            return Handled("skipped", outcome.rule, outcome.reason)
        return await self._deliver(message, ruleset, outcome)

    async def _respond(self, match: Match, message: Message, ruleset: RuleSet) -> bot.Outcome:
        rule = bot.rule_of(match)
        cooldown = rule.cooldown
        if cooldown is not None:
            key = cooldown.key_for(message)
            if not self._limits.cooldowns.check(rule.name, cooldown, key):
                if cooldown.reply and self._limits.cooldowns.notice_due(rule.name, cooldown, key):
                    notice = Reply(msgtype="text", text=cooldown.reply)
                    return bot.Outcome(rule.name, bot.mention(notice, message, rule), "cooldown notice")
                return bot.Outcome(rule.name, None, "cooldown")
        outcome = await bot.respond(match, message, ruleset, self._fetch)
        if outcome.render_error:
            self._metrics.render_errors.labels(rule.name).inc()
        return outcome

    async def _deliver(self, message: Message, ruleset: RuleSet, outcome: bot.Outcome) -> Handled:
        assert outcome.reply is not None
        now = self._clock()
        try:
            url = check_session_webhook(
                message.session_webhook,
                ruleset.dingtalk.session_webhook_origins,
                message.session_webhook_expires_ms,
                int(now * 1000),
            )
        except WebhookRejected as exc:
            return Handled("dropped", outcome.rule, f"webhook_{exc.reason}")
        if not await self._limits.budget.acquire(message.conversation_id, self._send_deadline(message, now)):
            return Handled("dropped", outcome.rule, "rate_limited")
        body = encode_reply(outcome.reply)
        delivery = await post_reply(self._session, url, body, ruleset.dingtalk.webhook_timeout_s)
        if delivery.errcode == ERRCODE_THROTTLED:
            self._limits.budget.backoff(message.conversation_id)
        if delivery.ok:
            return Handled("sent", outcome.rule, outcome.reason)
        return Handled("dropped", outcome.rule, delivery.reason)

    def _send_deadline(self, message: Message, now: float) -> float:
        """The latest moment, on the budget's clock, a queued reply may still be sent."""
        if message.session_webhook_expires_ms is None:
            return time.monotonic() + NO_EXPIRY_WAIT_S
        return monotonic_deadline(message.session_webhook_expires_ms, int(now * 1000), time.monotonic())

    def _account(self, message: Message, handled: Handled, started: float) -> Handled:
        latency_ms = (time.monotonic() - started) * 1000
        level = logging.WARNING if handled.outcome == "dropped" else logging.INFO
        log.log(
            level,
            "reply_%s msg_id=%s rule=%s reason=%r latency_ms=%.1f",
            handled.outcome,
            message.msg_id,
            handled.rule,
            handled.reason,
            latency_ms,
        )
        self._metrics.messages.labels(handled.outcome).inc()
        self._metrics.replies.labels(handled.rule or "", handled.outcome).inc()
        return handled

    async def wait_idle(self) -> None:
        """Return once every message submitted so far has been handled."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def drain(self, timeout_s: float) -> int:
        """Wait up to `timeout_s` for pending replies; cancel and log the rest. Returns how many."""
        if not self._tasks:
            return 0
        _, late = await asyncio.wait(set(self._tasks), timeout=timeout_s)
        for task in late:
            task.cancel()  # each logs its own reply_dropped reason='shutdown'
        if late:
            await asyncio.gather(*late, return_exceptions=True)
        return len(late)


def _worth_retrying(reason: str) -> bool:
    """A delivery that failed on the way may succeed when DingTalk redelivers (with a fresh
    sessionWebhook), so the msgId is released; throttling and refusals are final."""
    if reason == f"errcode_{ERRCODE_THROTTLED}":
        return False
    return reason.startswith(
        ("http_", "connection_error", "timeout", "bad_answer", "errcode_", "webhook_expired")
    )
