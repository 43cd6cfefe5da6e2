"""The supervisor's admin endpoints, for the whole fleet: /-/healthy, /-/ready (some worker is
ready), /-/status (the rules every worker should serve, and each worker's own status), /metrics
(every worker's, labelled `worker`) and, when enabled, POST /-/reload (every worker)."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from responder.metrics import CONTENT_TYPE
from responder.rules.store import Reloader
from responder.transport import admin
from responder.workers.metrics import merge

if TYPE_CHECKING:
    from responder.workers.process import WorkerProcess
    from responder.workers.supervisor import Fleet

FLEET: web.AppKey[Fleet] = web.AppKey("fleet")


def create_fleet_admin(fleet: Fleet, reloader: Reloader | None) -> web.Application:
    app = web.Application()
    app[FLEET] = fleet
    app.router.add_get("/-/healthy", admin.healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_get("/-/status", status)
    app.router.add_get("/metrics", metrics)
    if reloader is not None:
        app[admin.RELOADER] = reloader
        app.router.add_post("/-/reload", admin.reload)
    return app


async def ready(request: web.Request) -> web.Response:
    """Ready while any worker is: the kernel sends connections only to workers that listen."""
    fleet = request.app[FLEET]
    answers = await _ask_all(fleet.workers, "/-/ready")
    if fleet.shutting_down or not any(a is not None and a[0] == 200 for a in answers):
        return web.json_response({"status": "not_ready", "shutting_down": fleet.shutting_down}, status=503)
    return web.json_response({"status": "ready", "generation": fleet.status.generation})


async def status(request: web.Request) -> web.Response:
    fleet = request.app[FLEET]
    body = fleet.status.as_json()
    body["path"] = str(fleet.store.path)
    answers = await _ask_all(fleet.workers, "/-/status")
    body["workers"] = [
        _worker_entry(worker, answer) for worker, answer in zip(fleet.workers, answers, strict=True)
    ]
    return web.json_response(body)


async def metrics(request: web.Request) -> web.Response:
    fleet = request.app[FLEET]
    answers = await _ask_all(fleet.workers, "/metrics")
    texts = {str(w.index): a[1] for w, a in zip(fleet.workers, answers, strict=True) if a and a[0] == 200}
    return web.Response(body=merge(texts), headers={"Content-Type": CONTENT_TYPE})


def _worker_entry(worker: WorkerProcess, answer: tuple[int, str] | None) -> dict[str, Any]:
    return {
        "worker": worker.index,
        "pid": worker.pid,
        "running": worker.running,
        "restarts": worker.restarts,
        "status": json.loads(answer[1]) if answer and answer[0] == 200 else None,
    }


async def _ask_all(workers: list[WorkerProcess], path: str) -> list[tuple[int, str] | None]:
    """GET `path` from every running worker at once; None for one that did not answer."""

    async def ask(worker: WorkerProcess) -> tuple[int, str] | None:
        if not worker.running:
            return None
        try:
            return await worker.get(path)
        except (aiohttp.ClientError, OSError, TimeoutError):
            return None

    return list(await asyncio.gather(*(ask(worker) for worker in workers)))
