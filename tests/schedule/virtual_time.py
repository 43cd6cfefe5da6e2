"""An asyncio loop whose clock jumps ahead whenever every task is waiting, and a wall clock on it.

The loop's own timers (asyncio.sleep, wait_for) fire in order at their virtual instants, but
no real time passes, so a day of slots takes milliseconds and nothing races the machine's
speed. Virtual time only advances when nothing is ready to run: work always finishes "first".
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Awaitable, Callable
from datetime import datetime, tzinfo
from typing import Any, TypeVar

T = TypeVar("T")


class _InstantSelector(selectors.DefaultSelector):
    """Polls without blocking; a wait for the next timer moves the clock to it instead."""

    def __init__(self, advance: Callable[[float], None]) -> None:
        super().__init__()
        self._advance = advance

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = super().select(0)
        if events or timeout == 0:
            return events
        if timeout is None:
            raise RuntimeError("virtual time: every task waits and no timer is set (a deadlock)")
        self._advance(timeout)
        return events


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._virtual_now = 0.0
        super().__init__(_InstantSelector(self._advance))

    def time(self) -> float:
        return self._virtual_now

    def _advance(self, seconds: float) -> None:
        self._virtual_now += seconds


class WallClock:
    """Unix time for the code under test: a start instant plus the loop's virtual time.

    `jump` moves it without the loop's time moving, as when the machine sleeps or NTP steps."""

    def __init__(self, start: datetime) -> None:
        self._start = start.timestamp()
        self._jumped = 0.0

    def __call__(self) -> float:
        return self._start + self._jumped + asyncio.get_running_loop().time()

    def now(self, zone: tzinfo) -> datetime:
        return datetime.fromtimestamp(self(), zone)

    def jump(self, seconds: float) -> None:
        self._jumped += seconds


def run_virtual(scenario: Callable[[WallClock], Awaitable[T]], start: datetime) -> T:
    """Run `scenario(clock)` on a VirtualTimeLoop whose wall clock reads `start` at first."""

    async def main() -> T:
        return await scenario(WallClock(start))

    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(main())


async def until(predicate: Callable[[], Any], timeout: float = 86_400.0) -> None:
    """Wait (in virtual time, checking every virtual second) until `predicate()` is true."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(1)
