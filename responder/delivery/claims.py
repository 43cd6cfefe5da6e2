"""Exactly-once answering: a ledger of DingTalk `msgId`s that were claimed or answered.

DingTalk redelivers a message about 60 s later when the bot is slow (dingtalk-protocol.md §7);
the engine claims each `msgId` before answering so a redelivery is recognised and ignored.
This module owns the store contract and an in-memory store; it performs no I/O.
"""

from __future__ import annotations

import enum
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from responder.digests import digest
from responder.logs import quoted

log = logging.getLogger(__name__)

DEFAULT_TTL_S = 15 * 60
MIN_TTL_S = 10 * 60
DEFAULT_MAX_ENTRIES = 100_000
OUTCOMES = frozenset({"sent", "skipped", "dropped"})


class Claim(enum.Enum):
    """The answer to `claim`: whether the caller now owns the message."""

    NEW = "new"  # the caller owns it: answer, then complete() or release()
    IN_FLIGHT = "in_flight"  # another delivery of it is being answered right now
    DONE = "done"  # it was already answered (or deliberately not) within the TTL
    OVERLOADED = "overloaded"  # the ledger is full of in-flight messages: shed this one


class MessageLedger(Protocol):
    """Where the engine records which messages it owns and which it has finished.

    Every state expires, so a crashed handler cannot pin a message forever. A Redis store
    maps onto it one command each, with `ledger:<msgId>` keys:

    - `claim`: `SET key inflight NX PX <lease_ms>`; OK -> NEW, otherwise `GET key`:
      `inflight` -> IN_FLIGHT, `done:<outcome>` -> DONE. (Redis bounds memory itself with
      `maxmemory` and a `volatile-ttl` policy, so it never answers OVERLOADED.)
    - `complete`: `SET key done:<outcome> PX <ttl_ms>` (overwrites the lease).
    - `release`: a small Lua script, `if GET key == "inflight" then DEL key`, so a late
      release never erases a DONE written by another worker.
    """

    async def claim(self, msg_id: str) -> Claim:
        """Take ownership of `msg_id` if nobody has it; see Claim for the answers."""
        ...

    async def complete(self, msg_id: str, outcome: str) -> None:
        """Mark `msg_id` handled (`sent`, `skipped` or `dropped`); redeliveries become DONE."""
        ...

    async def release(self, msg_id: str) -> None:
        """Give up ownership after a failed delivery, so a redelivery may try again."""
        ...


class InMemoryLedger:
    """A MessageLedger for one process, with bounded memory.

    In-flight claims expire after `lease_s` (default: the TTL) in case their owner died
    without completing or releasing. At `max_entries`, the oldest DONE entry is evicted to
    make room; if every entry is in flight, `claim` answers OVERLOADED instead of growing.
    """

    def __init__(
        self,
        ttl_s: float = DEFAULT_TTL_S,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
        lease_s: float | None = None,
    ) -> None:
        if ttl_s < MIN_TTL_S:
            raise ValueError(f"ttl_s must be at least {MIN_TTL_S} s (DingTalk redelivers ~60 s later)")
        if max_entries < 1:
            raise ValueError("max_entries must be positive")
        self._ttl_s = ttl_s
        self._lease_s = ttl_s if lease_s is None else lease_s
        self._max_entries = max_entries
        self._clock = clock
        # Both maps hold msg_id -> expiry; one fixed duration per map keeps insertion order
        # equal to expiry order, so pruning only ever looks at the front.
        self._in_flight: OrderedDict[bytes, float] = OrderedDict()
        self._done: OrderedDict[bytes, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._in_flight) + len(self._done)

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def claim(self, msg_id: str) -> Claim:
        now = self._clock()
        self._prune(now)
        key = digest(msg_id)
        if key in self._done:
            return Claim.DONE
        if key in self._in_flight:
            return Claim.IN_FLIGHT
        if not self._make_room():
            return Claim.OVERLOADED  # the caller logs the drop; logging here too would double it
        self._in_flight[key] = now + self._lease_s
        return Claim.NEW

    async def complete(self, msg_id: str, outcome: str) -> None:
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {sorted(OUTCOMES)}, not {outcome!r}")
        now = self._clock()
        self._prune(now)
        key = digest(msg_id)
        self._in_flight.pop(key, None)
        self._done.pop(key, None)
        if not self._make_room():
            log.warning("message_completion_forgotten msg_id=%s reason=ledger_full", quoted(msg_id))
            return
        self._done[key] = now + self._ttl_s

    async def release(self, msg_id: str) -> None:
        self._in_flight.pop(digest(msg_id), None)

    def _make_room(self) -> bool:
        """Evict DONE entries, oldest first, until one more entry fits; False if none can."""
        while len(self) >= self._max_entries:
            if not self._done:
                return False
            self._done.popitem(last=False)
        return True

    def _prune(self, now: float) -> None:
        for entries in (self._in_flight, self._done):
            while entries and next(iter(entries.values())) <= now:
                entries.popitem(last=False)
