"""HTTP handlers: translate between HTTP and the domain, nothing more."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import StreamReader, web
from aiohttp.typedefs import Handler

from responder import keys
from responder.delivery.sinks import ResponseSink
from responder.dingtalk import MessageError, SignatureError, dumps, parse_message, verify_signature
from responder.logs import quoted

log = logging.getLogger(__name__)

UNAUTHORIZED = {"error": "unauthorized", "reason": "missing or invalid timestamp/sign headers"}
OVERLOADED = {"error": "overloaded", "reason": "too many replies pending"}


async def callback(request: web.Request) -> web.Response:
    app = request.app
    policy = app[keys.STORE].current.dingtalk.policy
    options = app[keys.OPTIONS]
    if policy.app_secrets or not options.dev:
        try:
            verify_signature(
                request.headers, policy.app_secrets, options.now_ms(), policy.timestamp_window_ms
            )
        except SignatureError as exc:
            app[keys.METRICS].auth_failures.labels(exc.reason).inc()
            held = app[keys.LOG_THROTTLE].allow(f"auth_rejected:{exc.reason}")
            if held is not None:  # every refusal is counted; the log gets one line per 10 s
                log.warning("auth_rejected reason=%s remote=%s repeats=%d", exc.reason, request.remote, held)
            return web.json_response(UNAUTHORIZED, status=401)
    message = parse_message(await read_json_body(request, options.max_body_bytes))
    sink = ResponseSink(late=app.get(keys.OPENAPI)) if policy.reply == "response" else app[keys.WEBHOOK]
    handling = app[keys.PIPELINE].start(message, sink)
    if handling is None:
        # Not claimed, so a redelivery by DingTalk can still be answered once we have room.
        return web.json_response(OVERLOADED, status=503)
    if isinstance(sink, ResponseSink):
        body = await sink.answer(handling)  # a reply that goes late leaves `{}` here at once
        return web.Response(body=dumps(body or {}), content_type="application/json")
    return web.json_response({})


async def read_json_body(request: web.Request, limit: int) -> bytes:
    """The body of a JSON request, refused (415, 413, 408, 400) with a reason when it is not one."""
    if request.headers.get("Content-Encoding", "identity").lower() != "identity":
        raise web.HTTPUnsupportedMediaType(
            text=_error("unsupported_media_type", "compressed bodies (Content-Encoding) are not accepted"),
            content_type="application/json",
        )
    if request.content_type != "application/json" or (request.charset or "utf-8").lower() != "utf-8":
        raise web.HTTPUnsupportedMediaType(
            text=_error("unsupported_media_type", "send application/json in UTF-8"),
            content_type="application/json",
        )
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    # A body aiohttp has buffered whole cannot be slow: no timer to arm and cancel for it.
    timeout_s = None if request.content.is_eof() else request.app[keys.OPTIONS].body_timeout_s
    try:
        async with asyncio.timeout(timeout_s):
            return await _read_capped(request.content, limit)
    except TimeoutError:
        raise web.HTTPRequestTimeout(
            text=_error("timeout", "the body did not arrive in time"), content_type="application/json"
        ) from None
    except ConnectionResetError:  # the client hung up mid-body: its problem, not a 500
        raise web.HTTPBadRequest(
            text=_error("bad_request", "the connection closed before the body ended"),
            content_type="application/json",
        ) from None


async def _read_capped(content: StreamReader, limit: int) -> bytes:
    body = bytearray()
    while chunk := await content.read(limit + 1 - len(body)):
        body += chunk
        if len(body) > limit:
            raise _too_large(limit)
    return bytes(body)


def _too_large(limit: int) -> web.HTTPRequestEntityTooLarge:
    return web.HTTPRequestEntityTooLarge(
        max_size=limit,
        actual_size=limit + 1,
        text=_error("too_large", f"body larger than {limit} bytes"),
        content_type="application/json",
    )


def _error(error: str, reason: str) -> str:
    return dumps({"error": error, "reason": reason}).decode()


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bad input is a 4xx with a reason; anything unexpected is a logged 500 (always a bug)."""
    metrics = request.app[keys.METRICS]
    try:
        response = await handler(request)
    except MessageError as exc:
        response = web.json_response({"error": "bad_request", "reason": str(exc)}, status=400)
    except web.HTTPException as exc:
        metrics.count_request(exc.status)
        raise
    except Exception:
        log.exception("request_failed path=%s", quoted(request.path))
        response = web.json_response({"error": "internal_error"}, status=500)
    metrics.count_request(response.status)
    return response
