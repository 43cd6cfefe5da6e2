"""POST /push/NAME: inbound pushes (Alertmanager, CI) sent into groups through the OpenAPI.

HTTP only: the caller proves itself with `Authorization: Bearer TOKEN` (compared in constant
time), the JSON body becomes the templates' `payload`, and each target is one job on the same
pipeline as replies (admit, claim, source, render, budget, send, settle, account). A retried
push (the same body within the claim's lifetime, as Alertmanager retries) is sent once.
"""

from __future__ import annotations

import asyncio
import datetime
import hmac
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from responder import keys
from responder.delivery.jobs import push_jobs
from responder.delivery.pipeline import Handled
from responder.dingtalk import MessageError
from responder.dingtalk.callback import parse_json_object
from responder.rules.model import Push
from responder.transport.callback import read_json_body

log = logging.getLogger(__name__)

# Alertmanager groups alerts into one POST; bound it with `max_alerts` in its webhook_configs.
MAX_PUSH_BYTES = 1024 * 1024


@dataclass(slots=True)
class PushRecord:
    accepted: int = 0
    last_accepted: str | None = None  # ISO 8601, UTC
    last_outcome: str | None = None  # of the last job to finish: sent, dropped, skipped
    last_reason: str | None = None


class PushActivity:
    """What /-/status shows of each push: how often it was accepted and how its last send went."""

    def __init__(self) -> None:
        self._records: dict[str, PushRecord] = {}

    def accepted(self, name: str) -> None:
        record = self._records.setdefault(name, PushRecord())
        record.accepted += 1
        record.last_accepted = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")

    def finished(self, name: str, handled: Handled) -> None:
        record = self._records.setdefault(name, PushRecord())
        record.last_outcome, record.last_reason = handled.outcome, handled.reason

    def status(self, names: list[str]) -> dict[str, Any]:
        return {name: _as_json(self._records.get(name, PushRecord())) for name in names}


ACTIVITY = web.AppKey("push_activity", PushActivity)


def install(app: web.Application) -> None:
    """Route POST /push/NAME (always: pushes are reloadable) and show them in /-/status."""
    activity = app[ACTIVITY] = PushActivity()
    app.router.add_post("/push/{name}", receive)
    app[keys.STATUS_SECTIONS]["pushes"] = lambda: activity.status(sorted(app[keys.STORE].current.pushes))


async def receive(request: web.Request) -> web.Response:
    app = request.app
    pushes = app[keys.STORE].current.pushes
    name = request.match_info["name"]
    token = _bearer(request.headers.get("Authorization", ""))
    push = pushes.get(name)
    if push is None or not push.token:
        known = any(_same(token, p.token) for p in pushes.values() if p.token)
        return _refuse(app, name, 404 if known else 401, "unknown push" if known else "unauthorized")
    if not _same(token, push.token):
        return _refuse(app, name, 401, "unauthorized")
    sink = app.get(keys.OPENAPI)
    if sink is None:  # credentials added by a reload: the OpenAPI client is made at start-up
        return _refuse(app, name, 503, "the OpenAPI client starts with the process: restart to use it")
    try:
        raw = await read_json_body(request, MAX_PUSH_BYTES)
    except web.HTTPException as refused:  # 413, 415, 408, 400, with their reason
        app[keys.METRICS].pushes.labels(name, f"http_{refused.status}").inc()
        raise
    try:
        payload = parse_json_object(raw)
    except MessageError as exc:
        return _refuse(app, name, 422, str(exc))
    return _accept(app, name, push, payload, raw)


def _accept(app: web.Application, name: str, push: Push, payload: dict[str, Any], raw: bytes) -> web.Response:
    targets = push.targets_for(payload)
    if not targets:
        return _refuse(app, name, 422, "no `match` entry holds for this payload and the push has no `to`")
    pipeline, sink = app[keys.PIPELINE], app[keys.OPENAPI]
    started = [pipeline.announce(job, sink) for job in push_jobs(push, payload, raw)]
    tasks = [task for task in started if task is not None]
    if not tasks:
        return _refuse(app, name, 503, "too many messages pending")
    app[keys.METRICS].pushes.labels(name, "accepted").inc()
    app[ACTIVITY].accepted(name)
    for task in tasks:
        task.add_done_callback(lambda done: _finished(app, name, done))
    return web.json_response({"accepted": len(tasks), "targets": len(targets)}, status=202)


def _finished(app: web.Application, name: str, task: asyncio.Task[Handled]) -> None:
    if not task.cancelled():  # the pipeline accounts for a job cut short by shutdown
        app[ACTIVITY].finished(name, task.result())


def _refuse(app: web.Application, name: str, status: int, reason: str) -> web.Response:
    label = name if name in app[keys.STORE].current.pushes else "unknown"
    app[keys.METRICS].pushes.labels(label, f"http_{status}").inc()
    error = {401: "unauthorized", 404: "not_found", 422: "unprocessable", 503: "unavailable"}[status]
    return web.json_response({"error": error, "reason": reason}, status=status)


def _as_json(record: PushRecord) -> dict[str, Any]:
    return {
        "accepted": record.accepted,
        "last_accepted": record.last_accepted,
        "last_outcome": record.last_outcome,
        "last_reason": record.last_reason,
    }


def _bearer(header: str) -> str:
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _same(given: str, expected: str) -> bool:
    return bool(given) and hmac.compare_digest(given.encode(), expected.encode())
