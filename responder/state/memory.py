"""The embedded backend: every guard in this process's memory, for one replica (the default)."""

from __future__ import annotations

from typing import Any

from responder.delivery.budget import OutboundBudget
from responder.delivery.claims import InMemoryLedger, MessageLedger
from responder.delivery.gate import Gate
from responder.delivery.pipeline import Guards
from responder.settings import AppOptions


def memory_guards(options: AppOptions) -> Guards:
    """Fresh in-memory guards with the limits `options` asks for."""
    return Guards(
        budget=OutboundBudget(options.sends_per_window, options.send_window_s),
        gate=Gate(options.max_pending),
    )


class MemoryState:
    def guards(self, options: AppOptions) -> Guards:
        return memory_guards(options)

    def ledger(self, namespace: str, ttl_s: float) -> MessageLedger:
        return InMemoryLedger(ttl_s=ttl_s)

    def status(self) -> dict[str, Any]:
        return {"backend": "memory", "shared": False, "reachable": True}

    async def close(self) -> None:
        pass
