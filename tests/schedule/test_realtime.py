"""The Scheduler on the real clock and asyncio.sleep: `every: 1s` fires each second, on time."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime

import pytest

from responder.delivery.claims import InMemoryLedger
from responder.schedule.runner import Scheduler
from responder.schedule.timing import Timing

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Spec:
    name: str
    timing: Timing
    catch_up_s: float | None = None


async def test_every_second_fires_on_consecutive_seconds_with_the_real_clock() -> None:
    fired: list[tuple[datetime, float]] = []
    three = asyncio.Event()

    async def fire(spec: Spec, slot: datetime) -> str:
        fired.append((slot, time.time()))
        if len(fired) >= 3:
            three.set()
        return "sent"

    runner = Scheduler([Spec("tick", Timing.from_every("1s", "UTC"))], fire, InMemoryLedger())
    task = runner.start()
    try:
        await asyncio.wait_for(three.wait(), timeout=6)
    finally:
        await runner.stop()
    assert task.done()
    stamps = [slot.timestamp() for slot, _ in fired]
    assert stamps == [stamps[0] + i for i in range(len(stamps))]  # each second once, none skipped
    # Called at its second, give or take a busy machine (the start-up slot may be up to 1 s old).
    assert all(-0.01 <= called - slot.timestamp() < 1.5 for slot, called in fired)
    assert all(abs(called - slot.timestamp()) < 0.5 for slot, called in fired[1:])
