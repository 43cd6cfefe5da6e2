"""The OpenAPI's two local brakes: the monthly call cap and the backoff after DingTalk refuses
for QPS or quota. Both are plain counters on injected clocks; they make no calls and keep
nothing across restarts.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable


def utc_month(unix_s: float) -> tuple[int, int]:
    moment = datetime.datetime.fromtimestamp(unix_s, datetime.UTC)
    return moment.year, moment.month


class MonthlyCallCap:
    """Counts metered calls per calendar month (UTC) and refuses once `cap` are made.

    DingTalk counts its quota per calendar month (in Beijing time, presumably; UTC differs by 8
    hours at the turn of the month, which a cap with a margin absorbs). The count lives in
    memory, so a restart starts the month again from 0. `cap=None` counts without refusing.
    """

    def __init__(
        self,
        cap: int | None,
        clock: Callable[[], float],
        on_count: Callable[[int], None] = lambda count: None,
    ) -> None:
        self._cap = cap
        self._clock = clock
        self._on_count = on_count
        self._month = utc_month(clock())
        self._count = 0

    @property
    def count(self) -> int:
        self._roll()
        return self._count

    @property
    def reached(self) -> bool:
        return self._cap is not None and self.count >= self._cap

    def reserve(self) -> bool:
        """Count one call about to be made; False (and nothing counted) at the cap."""
        if self.reached:
            return False
        self._count += 1
        self._on_count(self._count)
        return True

    def _roll(self) -> None:
        month = utc_month(self._clock())
        if month != self._month:
            self._month, self._count = month, 0
            self._on_count(0)


class RefusalBackoff:
    """After a refusal, no call is made for `initial_s`, then for twice as long after each further
    refusal, up to `max_s`, so service resumes within `max_s` of the refusals ending; a success
    resets it. Refusals of calls already in flight when the wait began do not lengthen it, so a
    burst refused together counts once.
    """

    def __init__(self, initial_s: float, max_s: float, monotonic: Callable[[], float]) -> None:
        if initial_s <= 0 or max_s < initial_s:
            raise ValueError("need 0 < initial_s <= max_s")
        self._initial_s = initial_s
        self._max_s = max_s
        self._monotonic = monotonic
        self._refusals = 0
        self._until = float("-inf")

    @property
    def active(self) -> bool:
        return self._monotonic() < self._until

    def refused(self) -> float:
        """Start (or keep) waiting; returns the seconds left to wait."""
        now = self._monotonic()
        if now >= self._until:
            delay = min(self._max_s, self._initial_s * 2 ** min(self._refusals, 32))
            self._refusals += 1
            self._until = now + delay
        return self._until - now

    def succeeded(self) -> None:
        self._refusals = 0
