"""The sessionWebhook sink: POST each reply to its message's sessionWebhook, but only to an
allowed origin and path. The URL comes from the request body, which the callback signature does
not cover, so it is untrusted: a URL that fails the allow-list is never connected to.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from yarl import URL

from responder.delivery.budget import monotonic_deadline
from responder.delivery.sinks import Delivery, LateRoutes, Route, Undeliverable, late_route
from responder.dingtalk import Message, Reply, dumps, encode_reply
from responder.rules.model import RuleSet

SESSION_PATH = "/robot/sendBySession"
CONNECT_TIMEOUT_S = 10.0  # waiting for a pooled connection, or opening one
REPLY_CONNECTIONS = 256  # the reply pool's size; sources have their own
MAX_ANSWER_BYTES = 64 * 1024
# A message without an expiry (Stream mode always has one) may wait this long for a send slot.
NO_EXPIRY_WAIT_S = 60.0
ERRCODE_SESSION_GONE = 300001


class WebhookSink:
    """POSTs replies to each message's sessionWebhook (one per app; the session is shared)."""

    name = "session_webhook"

    def __init__(
        self,
        session: aiohttp.ClientSession,
        clock: Callable[[], float] = time.time,
        late: LateRoutes | None = None,
    ) -> None:
        self._session = session
        self._clock = clock
        self._late = late

    def route(self, message: Message, ruleset: RuleSet) -> Route:
        policy = ruleset.dingtalk.policy
        now_ms = int(self._clock() * 1000)
        late = late_route(self._late, message, ruleset)
        try:
            url = check_session_webhook(
                message.session_webhook,
                policy.session_webhook_origins,
                message.session_webhook_expires_ms,
                now_ms,
            )
        except Undeliverable as exc:
            if exc.reason == "webhook_expired" and late is not None:
                return late  # e.g. DingTalk's redelivery, after the session ended
            raise

        async def send(reply: Reply) -> Delivery:
            delivery = await post_reply(self._session, url, encode_reply(reply), policy.webhook_timeout_s)
            if delivery.errcode == ERRCODE_SESSION_GONE and late is not None:
                return await late.send(reply)  # the session ended before its stated expiry: once
            return delivery

        return Route(send_deadline(message, now_ms), send, self.name, late)


def send_deadline(message: Message, now_ms: int) -> float:
    """The latest moment, on the budget's clock, a queued reply may still be sent."""
    if message.session_webhook_expires_ms is None:
        return time.monotonic() + NO_EXPIRY_WAIT_S
    return monotonic_deadline(message.session_webhook_expires_ms, now_ms, time.monotonic())


def check_session_webhook(url: str, origins: tuple[str, ...], expires_ms: int | None, now_ms: int) -> URL:
    """The parsed URL if it may be used. Raises Undeliverable naming the reason."""
    if not url:
        raise Undeliverable("webhook_missing")
    try:
        parsed = URL(url)
        port = parsed.port
    except ValueError:
        raise Undeliverable("webhook_unparsable") from None
    if not parsed.is_absolute() or parsed.scheme not in ("http", "https"):
        raise Undeliverable("webhook_not_absolute_http")
    if parsed.user is not None or parsed.password is not None or "@" in (parsed.raw_authority or ""):
        raise Undeliverable("webhook_userinfo")
    if _origin(parsed.scheme, parsed.host or "", port) not in _allowed_origins(origins):
        raise Undeliverable("webhook_origin_not_allowed")
    if parsed.path != SESSION_PATH or parsed.fragment:
        raise Undeliverable("webhook_path_not_allowed")
    if expires_ms is not None and expires_ms <= now_ms:
        raise Undeliverable("webhook_expired")
    return parsed


def _origin(scheme: str, host: str, port: int | None) -> tuple[str, str, int | None]:
    return scheme.lower(), host.lower().rstrip("."), port


@functools.lru_cache(maxsize=8)  # one entry per snapshot's policy: parsed once, not per reply
def _allowed_origins(origins: tuple[str, ...]) -> frozenset[tuple[str, str, int | None]]:
    return frozenset(_parse_origin(origin) for origin in origins)


def _parse_origin(origin: str) -> tuple[str, str, int | None]:
    parsed = URL(origin)
    return _origin(parsed.scheme, parsed.host or "", parsed.port)


async def post_reply(
    session: aiohttp.ClientSession, url: URL, body: dict[str, Any], timeout_s: float
) -> Delivery:
    """POST `body`; success means HTTP 200 with errcode 0. Never follows redirects.

    `timeout_s` counts from when the request is on the wire; getting a connection (a pooled one,
    or a new one) has its own CONNECT_TIMEOUT_S. A failure is *definite* when DingTalk cannot have
    the reply (no connection, a 4xx, an errcode), and *ambiguous* when it may (a timeout or a reset
    after the request was written, a 5xx, an unreadable answer): a redelivery is then not
    answered again, because the reply may already be in the group.
    """
    timeout = aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT_S, sock_read=timeout_s)
    try:
        async with session.post(
            url,
            data=dumps(body),
            headers={"Content-Type": "application/json; charset=utf-8", "Accept": "application/json"},
            allow_redirects=False,
            timeout=timeout,
        ) as response:
            if response.status >= 500:
                return ambiguous(f"http_{response.status}")
            if response.status != 200:
                return Delivery(False, f"http_{response.status}", definite=True)
            return _read_errcode(await response.content.read(MAX_ANSWER_BYTES))
    except aiohttp.ConnectionTimeoutError:
        return Delivery(False, "connect_timeout", definite=True)
    except aiohttp.ClientConnectorError as exc:
        return Delivery(False, f"connection_error:{type(exc).__name__}", definite=True)
    except TimeoutError:
        return ambiguous("timeout")
    except (aiohttp.ClientError, asyncio.IncompleteReadError, OSError) as exc:
        return ambiguous(f"connection_lost:{type(exc).__name__}")


def ambiguous(reason: str) -> Delivery:
    return Delivery(False, f"ambiguous_{reason}")


def _read_errcode(raw: bytes) -> Delivery:
    try:
        answer = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return ambiguous("bad_answer")
    errcode = answer.get("errcode") if isinstance(answer, dict) else None
    if errcode == 0:
        return Delivery(True, errcode=0)
    if isinstance(errcode, int):
        return Delivery(False, f"errcode_{errcode}", errcode, definite=True)
    return ambiguous("bad_answer")
