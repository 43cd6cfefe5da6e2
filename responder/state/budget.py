"""A SendBudget in Redis: DingTalk's 20 sends a minute per conversation, and the 130101
backoffs, counted once for every replica together.

Each conversation is a sorted set of reserved send times on the Redis server's clock; one script
prunes it, finds the earliest slot that keeps every window under the limit (never before the last
reservation, so waiters keep their arrival order across replicas), and reserves it if it comes
within the caller's deadline. The caller sleeps until its slot, then checks no backoff arrived
meanwhile. Backoffs are keys that expire; the second conversation refused while another is backing
off blocks the whole robot, as in memory.

While Redis is away the in-memory twin decides alone, so replicas together may exceed the limit
until it returns; backoffs are written to the twin as well, so one that was in Redis still holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from functools import partial

from responder.delivery.budget import DEFAULT_MAX_WAIT_S, DINGTALK_THROTTLE_S, Clock, OutboundBudget, Sleep
from responder.digests import digest
from responder.logs import quoted
from responder.settings import DINGTALK_SENDS_PER_MINUTE, DINGTALK_WINDOW_S
from responder.state.connection import RedisConnection, Unavailable

log = logging.getLogger(__name__)

# Every script starts here: the server's clock in ms, and the backoff keys' helpers.
_PRELUDE = """
local now = redis.call('TIME')
now = now[1] * 1000 + math.floor(now[2] / 1000)
local function until_of(key) return tonumber(redis.call('GET', key) or 0) end
local function block(key, ms)
  if until_of(key) < now + ms then redis.call('SET', key, now + ms, 'PX', ms) end
end
"""
# KEYS: sends, conversation block, robot block. ARGV: per window, window ms, max wait ms, member.
# Answers the milliseconds to wait for the reserved slot, or -1 (nothing reserved).
_RESERVE = (
    _PRELUDE
    + """
local per, window = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local at = math.max(now, until_of(KEYS[2]), until_of(KEYS[3]))
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if last[2] then at = math.max(at, tonumber(last[2])) end
if redis.call('ZCARD', KEYS[1]) >= per then
  at = math.max(at, tonumber(redis.call('ZRANGE', KEYS[1], -per, -per, 'WITHSCORES')[2]) + window)
end
if at - now > tonumber(ARGV[3]) then return -1 end
redis.call('ZADD', KEYS[1], at, ARGV[4])
redis.call('PEXPIRE', KEYS[1], at - now + window)
return at - now
"""
)
# Same KEYS; ARGV[1] the member. 1 if the slot still stands, 0 (slot given back) if a backoff came.
_CONFIRM = (
    _PRELUDE
    + """
if math.max(until_of(KEYS[2]), until_of(KEYS[3])) > now then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 0
end
return 1
"""
)
# KEYS: conversation block, robot block, last backoff. ARGV: ms, the conversation's digest.
# 1 if the robot is now blocked too (another conversation was backing off already).
_BACKOFF = (
    _PRELUDE
    + """
local ms = tonumber(ARGV[1])
block(KEYS[1], ms)
local previous = redis.call('GET', KEYS[3])
redis.call('SET', KEYS[3], ARGV[2], 'PX', ms)
if previous and previous ~= ARGV[2] then
  block(KEYS[2], ms)
  return 1
end
return 0
"""
)
# KEYS[1] the robot block; ARGV[1] ms.
_BLOCK_ALL = _PRELUDE + "block(KEYS[1], tonumber(ARGV[1]))\nreturn 1\n"


class RedisBudget:
    def __init__(
        self,
        connection: RedisConnection,
        per_window: int = DINGTALK_SENDS_PER_MINUTE,
        window_s: float = DINGTALK_WINDOW_S,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        max_wait_s: float = DEFAULT_MAX_WAIT_S,
    ) -> None:
        self._connection = connection
        self._per_window = per_window
        self._window_ms = round(window_s * 1000)
        self._clock = clock
        self._sleep = sleep
        self._max_wait_s = max_wait_s
        self._twin = OutboundBudget(per_window, window_s, clock=clock, sleep=sleep, max_wait_s=max_wait_s)
        self._robot = connection.key("budget", "blocked", "robot")
        client = connection.client
        self._reserve = client.register_script(_RESERVE)
        self._confirm = client.register_script(_CONFIRM)
        self._backoff = client.register_script(_BACKOFF)
        self._block_all = client.register_script(_BLOCK_ALL)

    async def acquire(self, conversation_id: str, deadline: float) -> bool:
        keys = self._lane(conversation_id)
        member = secrets.token_hex(8)
        while True:
            wait_s = max(0.0, min(deadline - self._clock(), self._max_wait_s))
            args: list[str | int] = [self._per_window, self._window_ms, round(wait_s * 1000), member]
            try:
                slot_ms = await self._connection.run("budget", partial(self._reserve, keys=keys, args=args))
            except Unavailable:
                return await self._twin.acquire(conversation_id, deadline)
            if slot_ms < 0:
                return False
            if slot_ms == 0 or await self._wait_for_slot(keys, member, slot_ms / 1000):
                return True

    async def _wait_for_slot(self, keys: list[str], member: str, seconds: float) -> bool:
        """Sleep until the reserved slot; False (slot given back) if a backoff arrived meanwhile."""
        try:
            await self._sleep(seconds)
        except BaseException:
            await self._give_back(keys[0], member)
            raise
        try:
            return bool(await self._connection.run("budget", lambda: self._confirm(keys=keys, args=[member])))
        except Unavailable:
            return True  # the slot was ours; answering beats silence

    async def backoff(self, conversation_id: str, seconds: float = DINGTALK_THROTTLE_S) -> None:
        await self._twin.backoff(conversation_id, seconds)
        _, conversation_block, robot_block = self._lane(conversation_id)
        keys = [conversation_block, robot_block, self._connection.key("budget", "last_backoff")]
        args: list[str | int] = [round(seconds * 1000), digest(conversation_id).hex()]
        try:
            robot_wide = await self._connection.run("budget", lambda: self._backoff(keys=keys, args=args))
        except Unavailable:
            return
        if robot_wide:
            log.warning(
                "outbound_backoff_escalated conversation=%s seconds=%.0f (another conversation is "
                "backing off already: every replica pauses all sends)",
                quoted(conversation_id),
                seconds,
            )
            await self._twin.backoff_all(seconds)

    async def backoff_all(self, seconds: float = DINGTALK_THROTTLE_S) -> None:
        await self._twin.backoff_all(seconds)
        try:
            await self._connection.run(
                "budget", lambda: self._block_all(keys=[self._robot], args=[round(seconds * 1000)])
            )
        except Unavailable:
            return

    async def _give_back(self, sends: str, member: str) -> None:
        with contextlib.suppress(Unavailable):  # else the reservation ages out of the window
            await self._connection.run("budget", lambda: self._connection.client.zrem(sends, member))

    def _lane(self, conversation_id: str) -> list[str]:
        """The keys of one conversation: its sends, its block, and the robot's block."""
        conversation = digest(conversation_id).hex()
        key = self._connection.key
        return [key("budget", "sends", conversation), key("budget", "blocked", conversation), self._robot]
