"""A MessageLedger in Redis: one claim per msgId (or schedule slot) among every replica.

The mapping is the one delivery/claims.py sketches, one round trip per call: `claim` is a
script (SET NX PX, else GET), `complete` a SET PX, `release` a script that deletes only an
in-flight claim, so a late release never erases another replica's DONE. Keys hold a digest.

Every call is written through to an in-memory twin as well. While Redis is away the twin
answers alone; and a message this replica handled during an outage is still recognised here
once Redis is back (the twin's DONE beats Redis's NEW).
"""

from __future__ import annotations

import contextlib

from responder.delivery.claims import DEFAULT_TTL_S, OUTCOMES, Claim, InMemoryLedger
from responder.digests import digest
from responder.state.connection import RedisConnection, Unavailable

INFLIGHT = "inflight"
DONE_PREFIX = "done:"
_CLAIM = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return false end
return redis.call('GET', KEYS[1])
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisLedger:
    """Claims under `<prefix><namespace>:<digest>`, kept `ttl_s` once done (in flight: as long)."""

    def __init__(self, connection: RedisConnection, namespace: str, ttl_s: float = DEFAULT_TTL_S) -> None:
        self._connection = connection
        self._namespace = namespace
        self._ttl_ms = int(ttl_s * 1000)
        self._twin = InMemoryLedger(ttl_s=ttl_s)
        self._claim = connection.client.register_script(_CLAIM)
        self._release = connection.client.register_script(_RELEASE)

    async def claim(self, msg_id: str) -> Claim:
        key = self._key(msg_id)
        try:
            held = await self._connection.run(
                "claims", lambda: self._claim(keys=[key], args=[INFLIGHT, self._ttl_ms])
            )
        except Unavailable:
            return await self._twin.claim(msg_id)
        if held is not None:
            return Claim.IN_FLIGHT if held == INFLIGHT.encode() else Claim.DONE
        return await self._claim_twin(msg_id, key)

    async def _claim_twin(self, msg_id: str, key: str) -> Claim:
        """Redis says NEW; the twin may know better (it saw the message while Redis was away)."""
        mine = await self._twin.claim(msg_id)
        if mine is Claim.DONE:
            await self._set(key, DONE_PREFIX + "during_outage")  # tell the other replicas too
        elif mine is Claim.OVERLOADED:
            await self._give_back(key)
        return mine

    async def complete(self, msg_id: str, outcome: str) -> None:
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {sorted(OUTCOMES)}, not {outcome!r}")
        await self._twin.complete(msg_id, outcome)
        await self._set(self._key(msg_id), DONE_PREFIX + outcome)

    async def release(self, msg_id: str) -> None:
        await self._twin.release(msg_id)
        await self._give_back(self._key(msg_id))

    async def _set(self, key: str, value: str) -> None:
        client = self._connection.client
        with contextlib.suppress(Unavailable):  # the twin has it; Redis's claim expires with its lease
            await self._connection.run("claims", lambda: client.set(key, value, px=self._ttl_ms))

    async def _give_back(self, key: str) -> None:
        with contextlib.suppress(Unavailable):  # the twin has released it; Redis's claim expires
            await self._connection.run("claims", lambda: self._release(keys=[key], args=[INFLIGHT]))

    def _key(self, msg_id: str) -> str:
        return self._connection.key(self._namespace, digest(msg_id).hex())
