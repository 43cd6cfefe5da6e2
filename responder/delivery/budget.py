"""DingTalk's outbound send budget: at most 20 sends per conversation per minute, waiting for a
slot while a reply can still be sent, and backing off after errcode 130101.

`SendBudget` is what the pipeline asks; `OutboundBudget` keeps it in this process (pure asyncio
state with an injected clock and sleep; it performs no I/O and sends nothing). responder.state
keeps it in Redis for several replicas.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from responder.digests import digest
from responder.logs import quoted
from responder.settings import DINGTALK_SENDS_PER_MINUTE, DINGTALK_WINDOW_S

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[object]]
DINGTALK_THROTTLE_S = 600.0  # how long DingTalk throttles a robot after errcode 130101
# A reply queued longer than this is stale, and its waiter would hold an overload-gate slot.
DEFAULT_MAX_WAIT_S = 120.0
DEFAULT_MAX_CONVERSATIONS = 100_000  # lanes tracked at once; beyond that new conversations wait


class SendBudget(Protocol):
    """Send slots per conversation, and the pauses DingTalk's errcode 130101 asks for."""

    async def acquire(self, conversation_id: str, deadline: float) -> bool:
        """Wait for a send slot; False at once if it is not free now and would come after
        `deadline` (time.monotonic units), so a deadline of now means "only if there is no wait"."""
        ...

    async def backoff(self, conversation_id: str, seconds: float = DINGTALK_THROTTLE_S) -> None:
        """After errcode 130101: send nothing to this conversation for `seconds` (and to none,
        if another conversation is backing off already: the limit is then robot-wide)."""
        ...

    async def backoff_all(self, seconds: float = DINGTALK_THROTTLE_S) -> None:
        """Send nothing to any conversation for `seconds` (the robot itself is throttled)."""
        ...


@dataclass(slots=True)
class _Lane:
    """One conversation's recent and reserved send times (sorted) and its backoff."""

    sends: deque[float] = field(default_factory=deque)
    blocked_until: float = -math.inf


class OutboundBudget:
    """At most `per_window` sends per conversation per rolling `window_s`, waiting if needed.

    Waiters queue in arrival order: each reserves the earliest slot that keeps every window
    under the limit, and learns at once if that slot is past its deadline.

    Backoff scope (errcode 130101): DingTalk documents the 20/minute limit and the 10-minute
    throttle per robot only for custom robots, which live in one conversation; for the
    sessionWebhook it documents neither. So `backoff` silences the one conversation, and
    escalates to the whole robot when a second conversation is refused while the first is
    still backing off: evidence that the limit is robot-wide. One spamming group alone
    therefore never silences the others.
    """

    def __init__(
        self,
        per_window: int = DINGTALK_SENDS_PER_MINUTE,
        window_s: float = DINGTALK_WINDOW_S,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        max_conversations: int = DEFAULT_MAX_CONVERSATIONS,
        max_wait_s: float = DEFAULT_MAX_WAIT_S,
    ) -> None:
        self._per_window = per_window
        self._max_wait_s = max_wait_s
        self._window_s = window_s
        self._clock = clock
        self._sleep = sleep
        self._max_conversations = max_conversations
        self._lanes: OrderedDict[bytes, _Lane] = OrderedDict()
        self._robot_blocked_until = -math.inf
        self._last_backoff: tuple[str, float] | None = None
        self._last_sweep = -math.inf

    def __len__(self) -> int:
        return len(self._lanes)

    async def acquire(self, conversation_id: str, deadline: float) -> bool:
        """Wait for a send slot; False at once if it is not free now and would come after
        `deadline` (clock units), so a deadline of now means "only if there is no wait".

        Never waits longer than `max_wait_s`. Cancelling the wait gives the slot back.
        """
        deadline = min(deadline, self._clock() + self._max_wait_s)
        while True:
            now = self._clock()
            lane = self._lane(conversation_id, now)
            if lane is None:
                return False
            at = self._next_slot(lane, now)
            if at > max(deadline, now):  # the deadline bounds waiting; a free slot is taken
                return False
            lane.sends.append(at)
            if at <= now:
                return True
            if await self._wait_for_slot(lane, at):
                return True

    async def backoff(self, conversation_id: str, seconds: float = DINGTALK_THROTTLE_S) -> None:
        now = self._clock()
        until = now + seconds
        lane = self._lane(conversation_id, now)
        if lane is None:
            self._block_all(seconds)
            return
        lane.blocked_until = max(lane.blocked_until, until)
        previous, self._last_backoff = self._last_backoff, (conversation_id, until)
        log.warning("outbound_backoff_started conversation=%s seconds=%.0f", quoted(conversation_id), seconds)
        if previous is not None and previous[0] != conversation_id and previous[1] > now:
            self._block_all(seconds)

    async def backoff_all(self, seconds: float = DINGTALK_THROTTLE_S) -> None:
        self._block_all(seconds)

    def _block_all(self, seconds: float) -> None:
        self._robot_blocked_until = max(self._robot_blocked_until, self._clock() + seconds)
        log.warning("outbound_backoff_started conversation=* seconds=%.0f", seconds)

    async def _wait_for_slot(self, lane: _Lane, at: float) -> bool:
        """Sleep until the reserved slot; False (slot returned) if a backoff arrived meanwhile."""
        try:
            await self._sleep(at - self._clock())
        except BaseException:
            lane.sends.remove(at)
            raise
        if max(lane.blocked_until, self._robot_blocked_until) <= self._clock():
            return True
        lane.sends.remove(at)
        return False

    def _next_slot(self, lane: _Lane, now: float) -> float:
        sends = lane.sends
        while sends and sends[0] <= now - self._window_s:
            sends.popleft()
        # Never before the last reservation: slots are handed out in arrival order, which also
        # keeps `sends` sorted.
        at = max(now, lane.blocked_until, self._robot_blocked_until, sends[-1] if sends else now)
        if len(sends) >= self._per_window:
            at = max(at, sends[-self._per_window] + self._window_s)
        return at

    def _lane(self, conversation_id: str, now: float) -> _Lane | None:
        """The conversation's lane, created if there is room; None if memory is exhausted."""
        key = digest(conversation_id)
        lane = self._lanes.get(key)
        if lane is None:
            self._prune(now)
            if len(self._lanes) >= self._max_conversations:
                return None
            lane = self._lanes[key] = _Lane()
        self._lanes.move_to_end(key)
        return lane

    def _prune(self, now: float) -> None:
        """Forget idle lanes from the least recently used end; sweep them all when full.

        A full sweep costs one pass over every lane, so it runs at most once a second.
        """
        full = len(self._lanes) >= self._max_conversations
        if full and now - self._last_sweep >= 1.0:
            self._last_sweep = now
            self._lanes = OrderedDict(
                (cid, lane) for cid, lane in self._lanes.items() if not self._is_idle(lane, now)
            )
            if len(self._lanes) >= self._max_conversations:
                log.warning("outbound_budget_full conversations=%d", len(self._lanes))
            return
        while self._lanes:
            lane = next(iter(self._lanes.values()))
            if not self._is_idle(lane, now):
                return
            self._lanes.popitem(last=False)

    def _is_idle(self, lane: _Lane, now: float) -> bool:
        recent = bool(lane.sends) and lane.sends[-1] > now - self._window_s
        return not recent and lane.blocked_until <= now


def monotonic_deadline(expires_ms: int, now_ms: int, now: float, margin_s: float = 5.0) -> float:
    """The sessionWebhook expiry (epoch ms) on the budget's clock, less time to make the POST."""
    return now + (expires_ms - now_ms) / 1000 - margin_s
