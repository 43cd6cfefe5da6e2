"""What schedules and pushes would send, without sending: `responder try --schedule NAME`,
`responder try --push NAME FILE`, and the fire times `responder check` lists.

Both run the pipeline offline (delivery.pipeline.announce_once), so what they print is what the
OpenAPI would be sent, per target: `{"to": …, "msgKey": …, "msgParam": …}`.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from responder.delivery.jobs import push_jobs, schedule_jobs
from responder.delivery.pipeline import Handled, announce_once
from responder.dingtalk import MessageError
from responder.dingtalk.callback import parse_json_object
from responder.engine.answer import SourceAnswers
from responder.rules.model import RuleSet, Target
from responder.schedule.timing import next_fire_times

FIRE_TIMES_LISTED = 3


class TryError(Exception):
    """Nothing can be tried: an unknown name, a payload that is not a JSON object."""


@dataclass(frozen=True, slots=True)
class Tried:
    """What a try would send (per target) and how each job ended."""

    handled: list[Handled]
    sent: list[dict[str, Any]]
    note: str  # for stderr: which slot, or why nothing goes out

    @property
    def render_error(self) -> str:
        return next((h.render_error for h in self.handled if h.render_error), "")


def schedule_lines(ruleset: RuleSet, now: datetime.datetime | None = None) -> Iterator[str]:
    """One line per schedule for `check`: its timing and the next fire times."""
    moment = now or datetime.datetime.now(datetime.UTC)
    for schedule in ruleset.schedules:
        times = ", ".join(t.isoformat() for t in next_fire_times(schedule.timing, moment, FIRE_TIMES_LISTED))
        yield f"schedule {schedule.name!r}: {schedule.timing}; next {times}"


async def try_schedule(
    ruleset: RuleSet, name: str, sources: SourceAnswers, now: datetime.datetime | None = None
) -> Tried:
    schedule = next((s for s in ruleset.schedules if s.name == name), None)
    if schedule is None:
        known = ", ".join(s.name for s in ruleset.schedules) or "none"
        raise TryError(f"no schedule {name!r} (schedules: {known})")
    slot = schedule.timing.next_after(now or datetime.datetime.now(datetime.UTC))
    handled, sent = await announce_once(schedule_jobs(schedule, slot), ruleset, sources)
    return Tried(handled, _shown(sent), f"schedule {name!r}: next slot {slot.isoformat()}")


async def try_push(ruleset: RuleSet, name: str, body: bytes, sources: SourceAnswers) -> Tried:
    push = ruleset.pushes.get(name)
    if push is None:
        known = ", ".join(ruleset.pushes) or "none"
        raise TryError(f"no push {name!r} (pushes: {known})")
    try:
        payload = parse_json_object(body)
    except MessageError as exc:
        raise TryError(f"the payload: {exc}") from None
    jobs = push_jobs(push, payload, body)
    if not jobs:
        return Tried([], [], f"push {name!r}: no `match` entry holds and the push has no `to`: nothing sent")
    handled, sent = await announce_once(jobs, ruleset, sources)
    disabled = "" if push.token else " (disabled: its token is empty)"
    return Tried(handled, _shown(sent), f"push {name!r}{disabled}: {len(jobs)} target(s)")


def _shown(sent: list[tuple[Target, dict[str, Any]]]) -> list[dict[str, Any]]:
    return [{"to": {target.kind: target.id}, **message} for target, message in sent]
