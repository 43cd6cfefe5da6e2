"""The Redis backend: every guard several replicas must agree on, over one connection."""

from __future__ import annotations

from typing import Any

from responder.delivery.claims import MessageLedger
from responder.delivery.gate import Gate
from responder.delivery.pipeline import Guards
from responder.metrics import Metrics
from responder.settings import AppOptions, StateSettings
from responder.state.budget import RedisBudget
from responder.state.claims import RedisLedger
from responder.state.connection import RedisConnection
from responder.state.cooldowns import RedisCooldowns


class RedisState:
    def __init__(self, settings: StateSettings, metrics: Metrics) -> None:
        self._connection = RedisConnection(settings, metrics)

    async def start(self) -> None:
        await self._connection.start()

    def guards(self, options: AppOptions) -> Guards:
        return Guards(
            claims=RedisLedger(self._connection, "msg"),
            cooldowns=RedisCooldowns(self._connection),
            budget=RedisBudget(self._connection, options.sends_per_window, options.send_window_s),
            gate=Gate(options.max_pending),
        )

    def ledger(self, namespace: str, ttl_s: float) -> MessageLedger:
        return RedisLedger(self._connection, namespace, ttl_s)

    def status(self) -> dict[str, Any]:
        return self._connection.status()

    async def close(self) -> None:
        await self._connection.close()
