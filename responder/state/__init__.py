"""Where the guards keep their state: this process's memory, or Redis shared by every replica.

delivery/ and engine/ see only their protocols (MessageLedger, CooldownCounters, SendBudget);
a StateBackend builds the implementations. `memory` is the embedded default. `redis` shares the
msgId claims, cooldowns, the send budget and schedule slots, and falls back to memory (one
warning, a gauge at 0) while Redis cannot be reached.
"""

from __future__ import annotations

from typing import Any, Protocol

from responder.delivery.claims import MessageLedger
from responder.delivery.pipeline import Guards
from responder.metrics import Metrics
from responder.settings import AppOptions, StateSettings
from responder.state.memory import MemoryState


class StateBackend(Protocol):
    """What the app needs of a backend: its guards, ledgers for other uses, and its health."""

    def guards(self, options: AppOptions) -> Guards:
        """The pipeline's guards (the overload gate always lives in this process)."""
        ...

    def ledger(self, namespace: str, ttl_s: float) -> MessageLedger:
        """A ledger of its own (schedule slots), never sharing keys with the msgId ledger."""
        ...

    def status(self) -> dict[str, Any]:
        """What /-/status shows under `state`."""
        ...

    async def close(self) -> None: ...


async def open_state(settings: StateSettings, metrics: Metrics) -> StateBackend:
    """The backend `settings` ask for, connected (or, if Redis is down, falling back already)."""
    if not settings.shared:
        metrics.state_backend_up.set(1)
        return MemoryState()
    # redis takes a fifth of a second to import: only processes that use it pay for it.
    from responder.state.shared import RedisState

    backend = RedisState(settings, metrics)
    await backend.start()
    return backend
