"""Jobs: what responder says first, one target each (a push's payload or a schedule's slot),
with the claim key that makes it happen once (on one replica, for one retried push)."""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from responder.rules.model import Announcement, Push, Schedule, Target
from responder.schedule.timing import slot_iso


@dataclass(frozen=True, slots=True)
class Job:
    key: str
    announcement: Announcement
    target: Target
    extra: Mapping[str, Any]  # what its templates see besides now/source/bot: schedule or payload


def push_extra(name: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """What a push's templates see besides now/source/bot."""
    return {"payload": payload, "push": {"name": name}}


def schedule_extra(name: str, slot: datetime.datetime) -> dict[str, Any]:
    """What a schedule's templates see besides now/source/bot."""
    return {"schedule": {"name": name, "slot": slot}}


def push_jobs(push: Push, payload: Mapping[str, Any], raw: bytes) -> list[Job]:
    """One job per target. The same body again (Alertmanager retries a failed webhook) has the
    same keys, so the claims send it once."""
    name = push.announcement.name
    digest = hashlib.sha256(name.encode() + b"\0" + raw).hexdigest()[:32]
    extra = push_extra(name, payload)
    return [
        Job(f"push:{name}:{digest}:{target.kind}:{target.id}", push.announcement, target, extra)
        for target in push.targets_for(payload)
    ]


def schedule_jobs(schedule: Schedule, slot: datetime.datetime) -> list[Job]:
    """One job per target for one slot; the key is the same on every replica, so a shared
    ledger lets one of them send it."""
    name = schedule.name
    extra = schedule_extra(name, slot)
    return [
        Job(
            f"schedule:{name}:{slot_iso(slot)}:{target.kind}:{target.id}",
            schedule.announcement,
            target,
            extra,
        )
        for target in schedule.targets
    ]
