"""A circuit breaker for the state backend: after a few failures in a row, stop calling it.

Pure state, no I/O and no clock. While it is open nobody waits on a dead server: every guard
answers from its in-memory twin at once, and only the backend's health probe keeps trying; the
first probe that succeeds closes it.
"""

from __future__ import annotations

DEFAULT_FAILURES_TO_OPEN = 3


class Breaker:
    """Closed (calls go through) until `failures_to_open` consecutive failures; then open until
    `succeeded()`. One success resets the count, so a lone timeout now and then never opens it."""

    def __init__(self, failures_to_open: int = DEFAULT_FAILURES_TO_OPEN) -> None:
        if failures_to_open < 1:
            raise ValueError("failures_to_open must be at least 1")
        self._failures_to_open = failures_to_open
        self._failures = 0
        self.is_open = False

    def failed(self) -> bool:
        """Count one failure; True if it is the one that opened the breaker."""
        self._failures += 1
        if self.is_open or self._failures < self._failures_to_open:
            return False
        self.is_open = True
        return True

    def trip(self) -> bool:
        """Open at once (the backend was unreachable at start-up); True if it was closed."""
        self._failures = max(self._failures, self._failures_to_open)
        opened, self.is_open = not self.is_open, True
        return opened

    def succeeded(self) -> bool:
        """Reset the count; True if this closed an open breaker."""
        self._failures = 0
        closed, self.is_open = self.is_open, False
        return closed
