"""The admin endpoints: health, readiness, status, metrics and the optional reload trigger.

They live on a separate port (default 127.0.0.1:9180) because the callback port faces the
internet: status and metrics reveal rule names, hashes and errors, and reload must never be public.
/-/healthy and /-/ready are also on the callback port for load balancers in front of it.
"""

from __future__ import annotations

from aiohttp import web

from responder import keys
from responder.metrics import CONTENT_TYPE
from responder.rules.store import Reloader
from responder.transport.loopback import is_loopback

RELOADER = web.AppKey("reloader", Reloader)


def create_admin_app(main: web.Application, reloader: Reloader | None = None) -> web.Application:
    """Admin app sharing the main app's store and metrics. `reloader` enables POST /-/reload."""
    admin = web.Application()
    admin[keys.STORE] = main[keys.STORE]
    admin[keys.METRICS] = main[keys.METRICS]
    admin[keys.READINESS] = main[keys.READINESS]
    admin[keys.STATUS_SECTIONS] = main[keys.STATUS_SECTIONS]
    admin.router.add_get("/-/healthy", healthy)
    admin.router.add_get("/-/ready", ready)
    admin.router.add_get("/-/status", status)
    admin.router.add_get("/metrics", metrics)
    if reloader is not None:
        admin[RELOADER] = reloader
        admin.router.add_post("/-/reload", reload)
    return admin


async def healthy(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    """Ready once the rules are loaded (always, once serving) and every transport is up."""
    waiting = [name for name, is_ready in request.app[keys.READINESS].items() if not is_ready()]
    if waiting:
        return web.json_response({"status": "not_ready", "waiting_for": waiting}, status=503)
    return web.json_response({"status": "ready", "generation": request.app[keys.STORE].status.generation})


async def status(request: web.Request) -> web.Response:
    store = request.app[keys.STORE]
    body = store.status.as_json()
    body["path"] = str(store.path)
    for name, section in request.app[keys.STATUS_SECTIONS].items():
        body[name] = section()
    return web.json_response(body)


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=request.app[keys.METRICS].exposition(), headers={"Content-Type": CONTENT_TYPE})


async def reload(request: web.Request) -> web.Response:
    if not is_loopback(request.remote):
        raise web.HTTPForbidden(text='{"error": "forbidden", "reason": "reload is loopback only"}')
    state = await request.app[RELOADER].reload_now()
    return web.json_response(state.as_json(), status=200 if state.last_ok else 422)
