"""Where a reply goes: the only part of the pipeline the reply mode chooses.

A sink checks where a message's reply may go (`route`), which also says how long the reply may
wait for DingTalk's send budget, then sends it (`Route.send`). What differs per channel lives in
the sink: the wire encoding, how the sender is @-mentioned and the size cap. `ResponseSink`
keeps the reply for the HTTP response body (`reply: response`, the playground, `responder try`)
and never waits for the budget: an HTTP answer cannot be late. The sessionWebhook sink is in
`webhook`.
"""

from __future__ import annotations

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

    @property
    def throttled(self) -> bool:
        return self.errcode == ERRCODE_THROTTLED


@dataclass(frozen=True, slots=True)
class Route:
    """Where one reply will go: `deadline` (time.monotonic) bounds its wait for a send slot."""

    deadline: float
    send: Callable[[Reply], Awaitable[Delivery]]


class Sink(Protocol):
    @property
    def name(self) -> str:
        """How the `reply_*` log line says the reply went (`via=`)."""
        ...

    def route(self, message: Message, ruleset: RuleSet) -> Route:
        """Where `message`'s reply may go; raises Undeliverable naming why not."""
        ...


class ResponseSink:
    """Holds the encoded reply for whoever answers the HTTP request (one sink per request)."""

    def __init__(self, name: str = "response") -> None:
        self._name = name
        self.body: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self._name

    def route(self, message: Message, ruleset: RuleSet) -> Route:
        return Route(deadline=time.monotonic(), send=self._keep)

    async def _keep(self, reply: Reply) -> Delivery:
        self.body = encode_reply(reply)
        return Delivery(True)
