"""Process-level options that come from the command line, not from rules.yaml."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from responder.dispatch import Limits
from responder.throttle import DINGTALK_SENDS_PER_MINUTE, DINGTALK_WINDOW_S, Gate, OutboundBudget

MAX_BODY_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class AppOptions:
    dev: bool = False
    max_body_bytes: int = MAX_BODY_BYTES
    body_timeout_s: float = 10.0
    clock: Callable[[], float] = time.time
    max_pending: int = 1000  # replies in progress before callbacks get 503
    shutdown_grace_s: float = 10.0  # how long pending replies may take on shutdown
    sends_per_window: int = DINGTALK_SENDS_PER_MINUTE  # per conversation
    send_window_s: float = DINGTALK_WINDOW_S

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def limits(self) -> Limits:
        return Limits(
            budget=OutboundBudget(self.sends_per_window, self.send_window_s),
            gate=Gate(self.max_pending),
        )
