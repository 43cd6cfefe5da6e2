"""The path of one accepted message after the transport: answer, then deliver, then account.

Both transports (HTTP callbacks and Stream mode) hand parsed messages to `Dispatcher.submit`;
the work runs in tracked background tasks so shutdown can wait for them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from responder import bot
from responder.delivery import WebhookRejected, check_session_webhook, post_reply
from responder.dingtalk import Message, encode_reply
from responder.metrics import Metrics
from responder.store import RuleStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Handled:
    outcome: str  # sent, skipped or dropped
    rule: str | None
    reason: str


class Dispatcher:
    def __init__(
        self,
        store: RuleStore,
        session: aiohttp.ClientSession,
        fetch: bot.Fetch,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._session = session
        self._fetch = fetch
        self._metrics = metrics
        self._clock = clock
        self._tasks: set[asyncio.Task[Handled]] = set()

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def submit(self, message: Message) -> asyncio.Task[Handled]:
        task = asyncio.get_running_loop().create_task(self.handle(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def answer(self, message: Message) -> bot.Outcome:
        """Answer without delivering (reply: response, try, playground)."""
        return await bot.answer(message, self._store.current, self._fetch)

    async def handle(self, message: Message) -> Handled:
        started = time.monotonic()
        ruleset = self._store.current  # this message finishes on the snapshot it started with
        outcome = await bot.answer(message, ruleset, self._fetch)
        if outcome.render_error:
            self._metrics.render_errors.labels(outcome.rule).inc()
        if outcome.reply is None:
            return self._account(message, Handled("skipped", outcome.rule, outcome.reason), started)
        try:
            url = check_session_webhook(
                message.session_webhook,
                ruleset.dingtalk.session_webhook_origins,
                message.session_webhook_expires_ms,
                int(self._clock() * 1000),
            )
        except WebhookRejected as exc:
            return self._account(message, Handled("dropped", outcome.rule, f"webhook_{exc.reason}"), started)
        body = encode_reply(outcome.reply)
        delivery = await post_reply(self._session, url, body, ruleset.dingtalk.webhook_timeout_s)
        result = (
            Handled("sent", outcome.rule, outcome.reason)
            if delivery.ok
            else Handled("dropped", outcome.rule, delivery.reason)
        )
        return self._account(message, result, started)

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
            task.cancel()
            log.warning("reply_dropped reason=shutdown")
        if late:
            await asyncio.gather(*late, return_exceptions=True)
        return len(late)
