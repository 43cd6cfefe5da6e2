"""The schedules of a running server: a Scheduler over the live rules' `schedules:`, whose every
slot becomes one job per target on the replies' pipeline, sent through the OpenAPI.

Its slot ledger is its own (never the msgId ledger: the two would evict each other's entries)
and keeps a slot long enough for the longest catch_up. In memory, a restart forgets it; with
`state.backend: redis` every replica claims slots in one Redis ledger, so a slot fires once among
all of them.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from responder import keys
from responder.delivery.jobs import schedule_jobs
from responder.delivery.pipeline import Handled
from responder.rules.model import Schedule
from responder.schedule.runner import DEFAULT_TOLERANCE_S, Scheduler
from responder.schedule.timing import MAX_CATCH_UP_S

log = logging.getLogger(__name__)

SLOT_LEDGER_TTL_S = DEFAULT_TOLERANCE_S + MAX_CATCH_UP_S + 600
SCHEDULER = web.AppKey("scheduler", Scheduler[Schedule])


def install(app: web.Application) -> None:
    """Run the live rules' schedules while the app runs (after the pipeline it sends through)."""
    app.cleanup_ctx.append(_run)


async def _run(app: web.Application) -> AsyncIterator[None]:
    store = app[keys.STORE]
    scheduler = Scheduler(
        store.current.schedules,
        lambda schedule, slot: fire(app, schedule, slot),
        app[keys.STATE].ledger("slot", SLOT_LEDGER_TTL_S),
        clock=app[keys.OPTIONS].clock,
        metrics=app[keys.METRICS],
    )
    app[SCHEDULER] = scheduler
    store.subscribe(lambda new: scheduler.update(new.schedules))
    app[keys.STATUS_SECTIONS]["schedules"] = scheduler.status
    scheduler.start()
    yield
    await scheduler.stop()


async def fire(app: web.Application, schedule: Schedule, slot: datetime.datetime) -> str:
    """Send one slot to every target; the result the scheduler records: `sent`, or the first
    `dropped:reason` / `skipped:reason` among the targets."""
    sink = app.get(keys.OPENAPI)
    if sink is None:  # schedules came with a reload that also added the credentials
        log.warning("schedule_not_sent schedule=%s reason=openapi_not_running (restart)", schedule.name)
        return "dropped:openapi_not_running"
    pipeline = app[keys.PIPELINE]
    started = [pipeline.announce(job, sink) for job in schedule_jobs(schedule, slot)]
    handled = await asyncio.gather(*(task for task in started if task is not None))
    return summary(handled, overloaded=any(task is None for task in started))


def summary(handled: list[Handled], *, overloaded: bool = False) -> str:
    if overloaded:
        return "dropped:overloaded"
    unsent = next((h for h in handled if h.outcome != "sent"), None)
    return "sent" if unsent is None else f"{unsent.outcome}:{unsent.reason}"
