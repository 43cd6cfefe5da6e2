"""The embedded backend: every guard in this process's memory, for one replica (the default)."""

from __future__ import annotations

from typing import Any

from responder.delivery.claims import InMemoryLedger, MessageLedger
from responder.delivery.pipeline import Guards, guards_for
from responder.settings import AppOptions


class MemoryState:
    def guards(self, options: AppOptions) -> Guards:
        return guards_for(options)

    def ledger(self, namespace: str, ttl_s: float) -> MessageLedger:
        return InMemoryLedger(ttl_s=ttl_s)

    def status(self) -> dict[str, Any]:
        return {"backend": "memory", "shared": False, "reachable": True}

    async def close(self) -> None:
        pass
