"""Where a reply goes: the only part of the pipeline the reply mode chooses.

A sink checks where a message's reply may go (`route`), which also says how long the reply may
wait for DingTalk's send budget, then sends it (`Route.send`). What differs per channel lives in
the sink: the wire encoding, how the sender is @-mentioned and the size cap. `ResponseSink`
keeps the reply for the HTTP response body (`reply: response`, the playground, `responder try`)
and never waits for the budget: an HTTP answer cannot be late. The sessionWebhook sink is in
`webhook`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from responder.dingtalk import Message, Reply, encode_reply
from responder.rules.model import RuleSet

ERRCODE_THROTTLED = 130101


class Undeliverable(Exception):
    """There is nowhere this reply may go; `reason` is the short code that gets logged."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Delivery:
    """The result of one send: ok, or a short reason (never the URL or session token).

    `definite` is for a failure: True only when the channel knows nothing reached DingTalk
    (refused before sending, connection refused, a 4xx), so sending again cannot duplicate.
    False means "may have been sent" (a timeout or reset after the request was written, a 5xx)
    and is what every sink that cannot tell says.
    """

    ok: bool
    reason: str = ""
    errcode: int | None = None
    definite: bool = False
    via: str = ""  # the channel that took the reply, when not the route's own (a fallback)

    @property
    def throttled(self) -> bool:
        return self.errcode == ERRCODE_THROTTLED


@dataclass(frozen=True, slots=True)
class Route:
    """Where one reply will go, and how it says it went (`via`). `deadline` (time.monotonic)
    bounds its wait for a send slot. `late` is where the reply goes instead when no slot comes
    in time or the route's session is gone (DingTalk's OpenAPI), if anywhere; `on_late` is told
    when it does (an HTTP request can then be answered at once)."""

    deadline: float
    send: Callable[[Reply], Awaitable[Delivery]]
    via: str
    late: Route | None = None
    on_late: Callable[[], None] = lambda: None


class LateRoutes(Protocol):
    """Where replies go when their own channel cannot take them any more (the OpenAPI)."""

    def route(self, message: Message, ruleset: RuleSet) -> Route: ...


def late_route(late: LateRoutes | None, message: Message, ruleset: RuleSet) -> Route | None:
    """The late route for `message`, if `dingtalk.late_reply` asks for one and it can be used."""
    if late is None or ruleset.dingtalk.policy.late_reply != "openapi":
        return None
    try:
        return late.route(message, ruleset)
    except Undeliverable:
        return None


class Sink(Protocol):
    @property
    def name(self) -> str:
        """How the `reply_*` log line says the reply went (`via=`)."""
        ...

    def route(self, message: Message, ruleset: RuleSet) -> Route:
        """Where `message`'s reply may go; raises Undeliverable naming why not."""
        ...


class ResponseSink:
    """Holds the encoded reply for whoever answers the HTTP request (one sink per request).

    A reply with no send slot now goes `late` (the OpenAPI) if it may: the request is then
    answered `{}` at once, and the reply follows when DingTalk's budget allows.
    """

    def __init__(self, name: str = "response", late: LateRoutes | None = None) -> None:
        self._name = name
        self._late = late
        self._decided = asyncio.Event()
        self.body: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self._name

    def route(self, message: Message, ruleset: RuleSet) -> Route:
        late = late_route(self._late, message, ruleset)
        return Route(time.monotonic(), self._keep, self._name, late, on_late=self._decided.set)

    async def answer(self, handling: asyncio.Future[Any]) -> dict[str, Any] | None:
        """The body for the HTTP response, as soon as it is known (the message may go on late)."""
        handling.add_done_callback(lambda _: self._decided.set())  # no reply at all decides too
        await self._decided.wait()
        return self.body

    async def _keep(self, reply: Reply) -> Delivery:
        self.body = encode_reply(reply)
        self._decided.set()
        return Delivery(True)
