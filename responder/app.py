"""create_app: the aiohttp application, its resources (as cleanup contexts) and its routes.

No process side effects here (signals, logging, binding): the CLI owns those, so tests can build
as many apps as they like.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from responder import admin, handlers, keys
from responder.dispatch import Dispatcher
from responder.metrics import Metrics
from responder.options import AppOptions
from responder.sources import SourceHub
from responder.store import RuleStore
from responder.stream import StreamClient


def create_app(
    store: RuleStore, options: AppOptions | None = None, metrics: Metrics | None = None
) -> web.Application:
    options = options or AppOptions()
    metrics = metrics or Metrics()
    store.attach_metrics(metrics)
    # The body cap is enforced in the handler with a JSON reason; this is only a backstop.
    app = web.Application(middlewares=[handlers.errors], client_max_size=options.max_body_bytes * 2)
    app[keys.STORE] = store
    app[keys.OPTIONS] = options
    app[keys.METRICS] = metrics
    app[keys.READINESS] = {}
    app.cleanup_ctx.append(_outbound)
    app.cleanup_ctx.append(_stream)
    if store.current.dingtalk.mode in ("http", "both"):
        app.router.add_post(store.current.dingtalk.callback_path, handlers.callback)
    app.router.add_get("/-/healthy", admin.healthy)
    app.router.add_get("/-/ready", admin.ready)
    return app


async def _outbound(app: web.Application) -> AsyncIterator[None]:
    """One ClientSession (keep-alive) for sources and replies; pending replies drain on shutdown."""
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=100, ttl_dns_cache=300),
        raise_for_status=False,
    )
    hub = SourceHub(session, metrics=app[keys.METRICS])
    app[keys.HTTP] = session
    app[keys.SOURCES] = hub
    options = app[keys.OPTIONS]
    app[keys.DISPATCHER] = Dispatcher(
        app[keys.STORE], session, hub.fetch, app[keys.METRICS], limits=options.limits(), clock=options.clock
    )
    app[keys.METRICS].pending.set_function(lambda: app[keys.DISPATCHER].pending)
    yield
    await app[keys.DISPATCHER].drain(options.shutdown_grace_s)
    await hub.close()
    await session.close()


async def _stream(app: web.Application) -> AsyncIterator[None]:
    """Stream mode: dial out to DingTalk and feed its messages to the same dispatcher."""
    dingtalk = app[keys.STORE].current.dingtalk
    if dingtalk.mode not in ("stream", "both"):
        yield
        return
    client = StreamClient(
        app[keys.HTTP],
        api_base=dingtalk.api_base,
        client_id=dingtalk.client_id,
        client_secret=dingtalk.client_secret,
        submit=app[keys.DISPATCHER].submit,
        metrics=app[keys.METRICS],
    )
    app[keys.READINESS]["stream"] = lambda: client.is_live
    task = asyncio.get_running_loop().create_task(client.run())
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
