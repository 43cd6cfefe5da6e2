"""The playground's JSON API: a typed try-request in, the engine's answer and explanation out.

Parsing is strict (unknown fields, wrong types and oversize input are refused with a reason), and
the answer comes from the same pipeline that serves real callbacks, with its own cooldowns, budget
and msgId ledger: trying a rule never uses up what a real group has, yet the third quick try of a
rule with a cooldown shows `cooldown` as a group would see it. A try marked `offline` answers data
sources from their rules' `fixture`s (as `responder try --offline`), so no source is called. No
HTML here.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from responder import keys
from responder.delivery.pipeline import Handled, Pipeline, guards_for
from responder.delivery.sinks import ResponseSink
from responder.dingtalk import Message, dumps, offline_message
from responder.engine.answer import Fixtures, LiveSources
from responder.engine.matching import Verdict
from responder.metrics import Metrics
from responder.rules.store import ReloadStatus

PIPELINE = web.AppKey("playground_pipeline", Pipeline)
OFFLINE_PIPELINE = web.AppKey("playground_offline_pipeline", Pipeline)

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024
MAX_TEXT_CHARS = 4000
MAX_NAME_CHARS = 64
CHATS = ("group", "private")
_FIELDS = frozenset({"text", "nick", "staff_id", "chat", "admin", "offline"})


class RequestError(ValueError):
    """The try-request is not something the playground accepts; the message says why."""

    def __init__(self, error: str, reason: str) -> None:
        super().__init__(reason)
        self.error = error
        self.reason = reason


@dataclass(frozen=True, slots=True)
class TryRequest:
    """One message typed into the playground, as a chosen sender in a chosen chat."""

    text: str
    nick: str = "Tester"
    staff_id: str = "tester"
    chat: str = "group"
    admin: bool = False
    offline: bool = False  # answer sources with each rule's fixture instead of calling them


def parse_try_request(body: bytes) -> TryRequest:
    """Decode and validate a try-request body. Raises RequestError naming the first problem."""
    if len(body) > MAX_BODY_BYTES:
        raise RequestError("too_large", f"body larger than {MAX_BODY_BYTES} bytes")
    try:
        payload = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise RequestError("bad_json", "body is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise RequestError("bad_json", f"malformed JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(payload, dict):
        raise RequestError("bad_json", "body must be a JSON object")
    return _request_from(payload)


def _request_from(payload: Mapping[str, Any]) -> TryRequest:
    unknown = sorted(set(payload) - _FIELDS)
    if unknown:
        raise RequestError("bad_field", f"unknown field {unknown[0]!r}")
    if "text" not in payload:
        raise RequestError("bad_field", "missing field 'text'")
    text = _string(payload, "text", MAX_TEXT_CHARS)
    if not text.strip():
        raise RequestError("bad_field", "field 'text' must not be blank")
    chat = _string(payload, "chat", len("private"), default="group")
    if chat not in CHATS:
        raise RequestError("bad_field", 'field \'chat\' must be "group" or "private"')
    admin = _boolean(payload, "admin")
    offline = _boolean(payload, "offline")
    nick = _string(payload, "nick", MAX_NAME_CHARS, default="Tester")
    staff_id = _string(payload, "staff_id", MAX_NAME_CHARS, default="tester")
    return TryRequest(text, nick, staff_id, chat, admin, offline)


def _boolean(payload: Mapping[str, Any], name: str) -> bool:
    value = payload.get(name, False)
    if not isinstance(value, bool):  # not 0/1 either: JSON has true and false
        raise RequestError("bad_field", f"field {name!r} must be a boolean")
    return value


def _string(payload: Mapping[str, Any], name: str, max_chars: int, *, default: str = "") -> str:
    value = payload.get(name, default)
    if not isinstance(value, str):
        raise RequestError("bad_field", f"field {name!r} must be a string")
    if len(value) > max_chars:
        raise RequestError("too_large", f"field {name!r} is longer than {max_chars} characters")
    return value


async def own_pipeline(app: web.Application) -> AsyncIterator[None]:
    """The playground's pipelines, live sources and fixtures, with guards and metrics of their own.

    The two share those guards, so switching to offline and back neither resets a cooldown nor
    answers a msgId twice: it changes only where source data comes from.
    """
    store = app[keys.STORE]
    guards, metrics = guards_for(app[keys.OPTIONS]), Metrics()
    app[PIPELINE] = Pipeline(lambda: store.current, LiveSources(app[keys.SOURCES]), guards, metrics)
    app[OFFLINE_PIPELINE] = Pipeline(lambda: store.current, Fixtures(), guards, metrics)
    yield
    await app[PIPELINE].drain(0)
    await app[OFFLINE_PIPELINE].drain(0)


_tries = itertools.count(1)


def message_for(request: TryRequest, now_ms: int) -> Message:
    """The message DingTalk would deliver for this request (same shape as `responder try`)."""
    is_group = request.chat == "group"
    return offline_message(
        request.text,
        msg_id=f"playground-{now_ms}-{next(_tries)}",
        conversation_id="cidPLAYGROUND" if is_group else "cidPLAYGROUNDPRIVATE",
        nick=request.nick,
        staff_id=request.staff_id,
        is_group=is_group,
        is_admin=request.admin,
        created_ms=now_ms,
    )


async def try_message(request: web.Request) -> web.Response:
    """POST /-/playground/api/try: answer a typed message without delivering anything."""
    if request.content_type != "application/json":
        return _refusal("unsupported_media_type", "send application/json", status=415)
    try:
        wanted = parse_try_request(await request.content.read(MAX_BODY_BYTES + 1))
    except RequestError as exc:
        return _refusal(exc.error, exc.reason)
    app = request.app
    store = app[keys.STORE]
    message = message_for(wanted, app[keys.OPTIONS].now_ms())
    # Explain on the snapshot the answer starts from; status read together so the page agrees.
    status, verdicts = store.status, store.current.matcher.explain(message)
    sink = ResponseSink("playground")
    handling = app[OFFLINE_PIPELINE if wanted.offline else PIPELINE].start(message, sink)
    if handling is None:
        return _refusal("overloaded", "too many tries in progress", status=503)
    return _json(result_body(await handling, sink.body, verdicts, status))


async def rules_status(request: web.Request) -> web.Response:
    """GET /-/playground/api/status: the rules generation and last reload, for the page header."""
    return _json(status_body(request.app[keys.STORE].status))


def result_body(
    handled: Handled, reply: Mapping[str, Any] | None, verdicts: list[Verdict], status: ReloadStatus
) -> dict[str, Any]:
    return {
        "rule": handled.rule,
        "reason": handled.reason,
        "outcome": handled.outcome,
        "render_error": handled.render_error,
        "reply": reply,
        "explain": [{"rule": v.rule, "matched": v.matched, "reason": v.reason} for v in verdicts],
        **status_body(status),
    }


def status_body(status: ReloadStatus) -> dict[str, Any]:
    return {
        "generation": status.generation,
        "reload": {
            "ok": status.last_ok,
            "error": status.last_error,
            "loaded_at": status.loaded_at,
            "last_attempt_at": status.last_attempt_at,
            "sha256": status.sha256,
        },
    }


def _json(body: Mapping[str, Any], status: int = 200) -> web.Response:
    return web.Response(
        body=dumps(body),
        status=status,
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def _refusal(error: str, reason: str, *, status: int = 400) -> web.Response:
    return _json({"error": error, "reason": reason}, status)
