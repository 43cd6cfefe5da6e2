"""Reconnect delays: capped exponential backoff with jitter, reset after a healthy connection."""

from __future__ import annotations

import random


class Backoff:
    """Delays initial, 2*initial, 4*initial … capped at `max_s`, each drawn from [d/2, d].

    The jitter ("equal jitter") spreads many clients that lost the gateway at the same moment.
    """

    def __init__(self, initial_s: float, max_s: float, rng: random.Random) -> None:
        if initial_s <= 0 or max_s < initial_s:
            raise ValueError("need 0 < initial_s <= max_s")
        self._initial_s = initial_s
        self._max_s = max_s
        self._rng = rng
        self._failures = 0

    def next_delay(self) -> float:
        ceiling = min(self._max_s, self._initial_s * 2 ** min(self._failures, 62))
        self._failures += 1
        return self._rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self._failures = 0
