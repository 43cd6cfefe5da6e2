"""Process-level options that come from the command line, not from rules.yaml."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

MAX_BODY_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class AppOptions:
    dev: bool = False
    max_body_bytes: int = MAX_BODY_BYTES
    body_timeout_s: float = 10.0
    clock: Callable[[], float] = time.time

    def now_ms(self) -> int:
        return int(self.clock() * 1000)
