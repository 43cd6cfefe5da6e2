"""POST a reply to the message's sessionWebhook, but only to an allowed origin and path.

The sessionWebhook comes from the request body, which the callback signature does not cover, so it
is untrusted: a URL that fails the allow-list is never connected to.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from responder.dingtalk import dumps

SESSION_PATH = "/robot/sendBySession"
MAX_ANSWER_BYTES = 64 * 1024
ERRCODE_THROTTLED = 130101


class WebhookRejected(Exception):
    """The sessionWebhook is not one we may contact."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Delivery:
    """The result of one POST: ok, or a short reason (never the URL or session token)."""

    ok: bool
    reason: str = ""
    errcode: int | None = None


def check_session_webhook(url: str, origins: Sequence[str], expires_ms: int | None, now_ms: int) -> URL:
    """The parsed URL if it may be used. Raises WebhookRejected naming the reason."""
    if not url:
        raise WebhookRejected("missing")
    try:
        parsed = URL(url)
        port = parsed.port
    except ValueError:
        raise WebhookRejected("unparsable") from None
    if not parsed.is_absolute() or parsed.scheme not in ("http", "https"):
        raise WebhookRejected("not_absolute_http")
    if parsed.user is not None or parsed.password is not None or "@" in (parsed.raw_authority or ""):
        raise WebhookRejected("userinfo")
    if _origin(parsed.scheme, parsed.host or "", port) not in {_parse_origin(o) for o in origins}:
        raise WebhookRejected("origin_not_allowed")
    if parsed.path != SESSION_PATH or parsed.fragment:
        raise WebhookRejected("path_not_allowed")
    if expires_ms is not None and expires_ms <= now_ms:
        raise WebhookRejected("expired")
    return parsed


def _origin(scheme: str, host: str, port: int | None) -> tuple[str, str, int | None]:
    return scheme.lower(), host.lower().rstrip("."), port


def _parse_origin(origin: str) -> tuple[str, str, int | None]:
    parsed = URL(origin)
    return _origin(parsed.scheme, parsed.host or "", parsed.port)


async def post_reply(
    session: aiohttp.ClientSession, url: URL, body: Mapping[str, Any], timeout_s: float
) -> Delivery:
    """POST `body`; success means HTTP 200 with errcode 0. Never follows redirects."""
    try:
        async with session.post(
            url,
            data=dumps(body),
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "Accept": "application/json",
            },
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as response:
            if response.status != 200:
                return Delivery(False, f"http_{response.status}")
            return _read_errcode(await response.content.read(MAX_ANSWER_BYTES))
    except TimeoutError:
        return Delivery(False, "timeout")
    except (aiohttp.ClientError, asyncio.IncompleteReadError, OSError) as exc:
        return Delivery(False, f"connection_error:{type(exc).__name__}")


def _read_errcode(raw: bytes) -> Delivery:
    try:
        answer = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return Delivery(False, "bad_answer")
    errcode = answer.get("errcode") if isinstance(answer, dict) else None
    if errcode == 0:
        return Delivery(True, errcode=0)
    if isinstance(errcode, int):
        return Delivery(False, f"errcode_{errcode}", errcode)
    return Delivery(False, "bad_answer")
