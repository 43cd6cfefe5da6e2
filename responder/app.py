"""create_app: the aiohttp application, its resources (as cleanup contexts) and its routes.

No process side effects here (signals, logging, binding): the CLI owns those, so tests can build
as many apps as they like.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from responder import keys
from responder.delivery.late import openapi_sink
from responder.delivery.pipeline import Pipeline
from responder.delivery.webhook import REPLY_CONNECTIONS, WebhookSink
from responder.engine.answer import LiveSources
from responder.logs import Throttle
from responder.metrics import Metrics
from responder.rules.store import RuleStore
from responder.schedule import service as schedules
from responder.settings import AppOptions
from responder.sources import SourceHub
from responder.state import open_state
from responder.transport import admin, pushes
from responder.transport import callback as handlers
from responder.transport.stream import StreamClient


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
    app[keys.STATUS_SECTIONS] = {}
    pushes.install(app)
    app[keys.LOG_THROTTLE] = Throttle()
    app.cleanup_ctx.append(_state)  # closes last: draining replies still settle their claims
    app.cleanup_ctx.append(_outbound)
    schedules.install(app)  # stops before the pipeline drains
    app.cleanup_ctx.append(_stream)
    if store.running.serves_http:
        app.router.add_post(store.running.callback_path, handlers.callback)
    app.router.add_get("/-/healthy", admin.healthy)
    app.router.add_get("/-/ready", admin.ready)
    return app


async def _state(app: web.Application) -> AsyncIterator[None]:
    """The guards' backend (`state:`, restart-only), and what /-/status shows of it."""
    backend = await open_state(app[keys.STORE].running_state, app[keys.METRICS])
    app[keys.STATE] = backend
    app[keys.STATUS_SECTIONS]["state"] = backend.status
    yield
    await backend.close()


async def _outbound(app: web.Application) -> AsyncIterator[None]:
    """Keep-alive ClientSessions: one for sources and Stream mode, one of its own for replies, so
    a slow data source can never hold the connection a reply waits for. Pending replies drain
    on shutdown."""
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=100, ttl_dns_cache=300),
        raise_for_status=False,
    )
    replies = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=REPLY_CONNECTIONS, ttl_dns_cache=300),
        raise_for_status=False,
    )
    store, options, metrics = app[keys.STORE], app[keys.OPTIONS], app[keys.METRICS]
    hub = SourceHub(session, metrics=metrics)
    store.subscribe(lambda new: hub.prune(spec.key for spec in new.sources.values()))
    pipeline = Pipeline(lambda: store.current, LiveSources(hub), app[keys.STATE].guards(options), metrics)
    app[keys.HTTP] = session
    app[keys.SOURCES] = hub
    app[keys.PIPELINE] = pipeline
    late = openapi_sink(store.running, replies, metrics)
    if late is not None:
        app[keys.OPENAPI] = late
    app[keys.WEBHOOK] = WebhookSink(replies, clock=options.clock, late=late)
    metrics.pending.set_function(lambda: pipeline.pending)
    yield
    await pipeline.drain(options.shutdown_grace_s)
    await hub.close()
    await session.close()
    await replies.close()


async def _stream(app: web.Application) -> AsyncIterator[None]:
    """Stream mode: dial out to DingTalk and feed its messages to the same pipeline."""
    connection = app[keys.STORE].running
    if not connection.serves_stream:
        yield
        return
    pipeline, sink = app[keys.PIPELINE], app[keys.WEBHOOK]
    client = StreamClient(
        app[keys.HTTP],
        api_base=connection.api_base,
        client_id=connection.client_id,
        client_secret=connection.client_secret,
        submit=lambda message: pipeline.start(message, sink),
        metrics=app[keys.METRICS],
    )
    app[keys.READINESS]["stream"] = lambda: client.is_live
    task = asyncio.get_running_loop().create_task(client.run())
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
