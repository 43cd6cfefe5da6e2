"""A bounded set of recently seen ids with a time-to-live, for dropping redelivered frames."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable


class RecentIds:
    """Remembers ids for `ttl_s` seconds, at most `max_size` of them (oldest forgotten first)."""

    def __init__(self, ttl_s: float, max_size: int, now: Callable[[], float]) -> None:
        self._ttl_s = ttl_s
        self._max_size = max_size
        self._now = now
        self._seen: OrderedDict[str, float] = OrderedDict()

    def add(self, key: str) -> bool:
        """Record `key`; False if it was already seen within the TTL."""
        now = self._now()
        self._expire(now)
        if key in self._seen:
            return False
        self._seen[key] = now + self._ttl_s
        if len(self._seen) > self._max_size:
            self._seen.popitem(last=False)
        return True

    def __contains__(self, key: object) -> bool:
        self._expire(self._now())
        return key in self._seen

    def __len__(self) -> int:
        return len(self._seen)

    def _expire(self, now: float) -> None:
        # Insertion order is expiry order because the TTL is fixed.
        while self._seen and next(iter(self._seen.values())) <= now:
            self._seen.popitem(last=False)
