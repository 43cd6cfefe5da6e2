"""Per-rule cooldowns: at most `max` answers per window, counted per sender, conversation or
globally. The pipeline asks before it calls a source, through `CooldownCounters`; `Cooldowns`
keeps them in this process (pure state with an injected clock). responder.state keeps them in
Redis for several replicas.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from responder.digests import digest

if TYPE_CHECKING:
    from responder.dingtalk import Message


Clock = Callable[[], float]

PER_VALUES = ("sender", "conversation", "global")
DEFAULT_MAX_KEYS = 100_000


@dataclass(frozen=True, slots=True)
class Cooldown:
    """A rule's `cooldown:`: at most `max_hits` answers per `seconds`, counted `per` key.

    `reply` is answered (once per window per key) when the rule is refused; None means silence.
    """

    per: str
    seconds: float
    max_hits: int = 1
    reply: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.per not in PER_VALUES:
            raise ValueError(f"per must be one of {PER_VALUES}, not {self.per!r}")
        if not self.seconds > 0 or not self.max_hits >= 1:
            raise ValueError("cooldown needs seconds > 0 and max_hits >= 1")

    def key_for(self, message: Message) -> str:
        """The counter this message hits: its sender, its conversation, or the one global key."""
        if self.per == "sender":
            # senderStaffId is absent for people outside the robot's organisation.
            return message.sender_staff_id or message.sender_id
        if self.per == "conversation":
            return message.conversation_id
        return ""


class CooldownCounters(Protocol):
    """Where the pipeline counts a rule's answers per key, in a window that slides."""

    async def check(self, rule_name: str, cooldown: Cooldown, key: str) -> bool:
        """True (and count the hit) if the rule may answer for `key` now; False if cooling down."""
        ...

    async def notice_due(self, rule_name: str, cooldown: Cooldown, key: str) -> bool:
        """True at most once per window per key: whether a refused rule should say `reply`."""
        ...


def notice_cooldown(rule_name: str, cooldown: Cooldown) -> tuple[str, Cooldown]:
    """The counter behind `notice_due`: one hit per window, beside the rule's own."""
    return f"{rule_name}\x00notice", Cooldown(cooldown.per, cooldown.seconds)


class Cooldowns:
    """Sliding-window hit counters for rule cooldowns in this process, with bounded memory.

    Counters whose last hit left its window are pruned. At `max_keys` live counters the least
    recently hit one is forgotten, so that key may answer early (fail open): the outbound
    budget, not the cooldown, is what protects DingTalk's limit.
    """

    def __init__(self, clock: Clock = time.monotonic, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        self._clock = clock
        self._max_keys = max_keys
        # One ordered map per (rule, cooldown): a fixed window keeps last-hit order equal to
        # expiry order, so pruning only looks at each map's front. A reload that changes a
        # rule's cooldown starts fresh counters; the old ones expire.
        self._buckets: dict[tuple[str, Cooldown], OrderedDict[bytes, deque[float]]] = {}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    async def notice_due(self, rule_name: str, cooldown: Cooldown, key: str) -> bool:
        return await self.check(*notice_cooldown(rule_name, cooldown), key)

    async def check(self, rule_name: str, cooldown: Cooldown, key: str) -> bool:
        now = self._clock()
        self._prune(now)
        bucket = self._buckets.setdefault((rule_name, cooldown), OrderedDict())
        counter = digest("" if cooldown.per == "global" else key)
        hits = bucket.get(counter)
        if hits is None:
            self._make_room()
            hits = bucket[counter] = deque(maxlen=cooldown.max_hits)
            self._size += 1
        while hits and hits[0] <= now - cooldown.seconds:
            hits.popleft()
        if len(hits) >= cooldown.max_hits:
            return False
        hits.append(now)
        bucket.move_to_end(counter)
        return True

    def _prune(self, now: float) -> None:
        for bucket_id, bucket in list(self._buckets.items()):
            seconds = bucket_id[1].seconds
            while bucket and next(iter(bucket.values()))[-1] <= now - seconds:
                bucket.popitem(last=False)
                self._size -= 1
            if not bucket:
                del self._buckets[bucket_id]

    def _make_room(self) -> None:
        while self._size >= self._max_keys:
            oldest = min(
                (b for b in self._buckets.values() if b),
                key=lambda b: next(iter(b.values()))[-1],
            )
            oldest.popitem(last=False)
            self._size -= 1
