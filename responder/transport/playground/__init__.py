"""The development playground: a page that shows what the robot would answer, as DingTalk shows it.

`add_playground` mounts the page, its three static files and the JSON API on a dev-mode app. It
refuses production apps, and every route answers loopback clients addressed by a loopback name
only, so the page cannot be reached from the network or through DNS rebinding.
"""

from __future__ import annotations

import logging
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler

from responder import keys
from responder.logs import quoted
from responder.transport.loopback import is_loopback
from responder.transport.playground import api

log = logging.getLogger(__name__)

PREFIX = "/-/playground"
STATIC_DIR = Path(__file__).parent / "static"
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: http: https:; script-src 'self'; "
    "style-src 'self'; connect-src 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
# The only files served: nothing else under static/ (or outside it) is reachable.
STATIC_FILES = {
    "playground.js": "text/javascript",
    "playground.css": "text/css",
}


class PlaygroundRefused(RuntimeError):
    """The playground was asked onto an app that is not in development mode."""


def add_playground(app: web.Application) -> None:
    """Add the playground routes under /-/playground/. Raises PlaygroundRefused unless dev is on."""
    if not app[keys.OPTIONS].dev:
        raise PlaygroundRefused("the playground is only available with serve --dev")
    app.cleanup_ctx.append(api.own_pipeline)
    app.router.add_get(PREFIX, _local_only(_to_page))
    app.router.add_get(f"{PREFIX}/", _local_only(_page))
    app.router.add_get(PREFIX + "/static/{name}", _local_only(_static))
    app.router.add_post(f"{PREFIX}/api/try", _local_only(api.try_message))
    app.router.add_get(f"{PREFIX}/api/status", _local_only(api.rules_status))
    log.info("playground_mounted path=%s/", PREFIX)


def _local_only(handler: Handler) -> Handler:
    async def guarded(request: web.Request) -> web.StreamResponse:
        if not (is_loopback(request.remote) and is_loopback(request.url.host)):
            log.warning("playground_refused remote=%s host=%s", request.remote, quoted(request.host))
            raise web.HTTPForbidden(text="the playground answers loopback requests only")
        return await handler(request)

    return guarded


async def _to_page(request: web.Request) -> web.Response:
    raise web.HTTPPermanentRedirect(f"{PREFIX}/")


async def _page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html", headers=_headers("text/html; charset=utf-8"))


async def _static(request: web.Request) -> web.FileResponse:
    name = request.match_info["name"]
    if name not in STATIC_FILES:
        raise web.HTTPNotFound()
    return web.FileResponse(STATIC_DIR / name, headers=_headers(f"{STATIC_FILES[name]}; charset=utf-8"))


def _headers(content_type: str) -> dict[str, str]:
    return {**SECURITY_HEADERS, "Content-Type": content_type}


__all__ = ["PREFIX", "PlaygroundRefused", "add_playground"]
