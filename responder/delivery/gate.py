"""The overload gate: a non-blocking limit on messages in progress (admit or refuse at once)."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

from responder.settings import DEFAULT_MAX_PENDING

if TYPE_CHECKING:
    pass


class Gate:
    """A non-blocking limit on work in progress: admit or refuse at once, never queue."""

    def __init__(self, limit: int = DEFAULT_MAX_PENDING) -> None:
        if limit < 1:
            raise ValueError("limit must be positive")
        self.limit = limit
        self.in_use = 0

    def try_enter(self) -> GatePass:
        """A pass that is truthy if admitted; release it (or leave its `with`) when done."""
        admitted = self.in_use < self.limit
        if admitted:
            self.in_use += 1
        return GatePass(self, admitted)

    def _leave(self) -> None:
        self.in_use -= 1


class GatePass:
    """Use as `with gate.try_enter() as admitted:`, or keep it and `release()` it from a task."""

    __slots__ = ("_gate", "_held", "admitted")

    def __init__(self, gate: Gate, admitted: bool) -> None:
        self._gate = gate
        self._held = admitted
        self.admitted = admitted

    def __bool__(self) -> bool:
        return self.admitted

    def __enter__(self) -> bool:
        return self.admitted

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def release(self) -> None:
        """Give the slot back; safe to call more than once."""
        if self._held:
            self._held = False
            self._gate._leave()
