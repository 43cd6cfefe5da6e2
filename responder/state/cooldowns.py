"""CooldownCounters in Redis: one sliding window per rule and key, shared by every replica.

Each counter is a sorted set of hit times on the Redis server's clock (so replicas whose clocks
differ still agree); one script prunes, counts and adds atomically. While Redis is away the
in-memory twin counts alone, which may let a rule answer again early: cooldowns fail open.
"""

from __future__ import annotations

import secrets

from responder.digests import digest
from responder.engine.cooldowns import Cooldown, Cooldowns, notice_cooldown
from responder.state.connection import RedisConnection, Unavailable

# KEYS[1] the counter; ARGV: window ms, max hits, a unique member. 1 if the hit counts.
_HIT = """
local now = redis.call('TIME')
now = now[1] * 1000 + math.floor(now[2] / 1000)
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return 1
"""


class RedisCooldowns:
    def __init__(self, connection: RedisConnection) -> None:
        self._connection = connection
        self._twin = Cooldowns()
        self._hit = connection.client.register_script(_HIT)

    async def check(self, rule_name: str, cooldown: Cooldown, key: str) -> bool:
        counter = self._key(rule_name, cooldown, key)
        window_ms = max(1, round(cooldown.seconds * 1000))
        try:
            counted = await self._connection.run(
                "cooldowns",
                lambda: self._hit(keys=[counter], args=[window_ms, cooldown.max_hits, secrets.token_hex(8)]),
            )
        except Unavailable:
            return await self._twin.check(rule_name, cooldown, key)
        return bool(counted)

    async def notice_due(self, rule_name: str, cooldown: Cooldown, key: str) -> bool:
        return await self.check(*notice_cooldown(rule_name, cooldown), key)

    def _key(self, rule_name: str, cooldown: Cooldown, key: str) -> str:
        # Like the in-memory buckets: a reload that changes a rule's cooldown starts afresh.
        bucket = digest(f"{rule_name}\x00{cooldown.per}\x00{cooldown.seconds!r}\x00{cooldown.max_hits}")
        counter = digest("" if cooldown.per == "global" else key)
        return self._connection.key("cooldown", bucket.hex(), counter.hex())
