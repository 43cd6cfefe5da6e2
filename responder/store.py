"""RuleStore: holds the live RuleSet and replaces it only with a fully loaded one.

All fallible work (read, validate, compile) happens before the one mutation, the swap of
`current`; a failed reload leaves the old snapshot serving and records the error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from responder.loader import load_rules
from responder.rules import RulesError, RuleSet

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReloadStatus:
    generation: int
    sha256: str
    loaded_at: float
    last_attempt_at: float
    last_ok: bool
    last_error: str = ""


class RuleStore:
    def __init__(
        self,
        ruleset: RuleSet,
        environ: Mapping[str, str],
        *,
        loader: Callable[[Path, Mapping[str, str]], RuleSet] = load_rules,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.current = ruleset
        self._environ = environ
        self._loader = loader
        self._clock = clock
        self._lock = asyncio.Lock()
        now = clock()
        self.status = ReloadStatus(1, ruleset.sha256, now, now, True)

    @property
    def path(self) -> Path:
        return self.current.path

    async def reload(self) -> ReloadStatus:
        """Load the file again off the event loop; swap on success, keep the old set on error."""
        async with self._lock:
            attempted = self._clock()
            try:
                new = await asyncio.to_thread(self._loader, self.path, self._environ)
            except RulesError as exc:
                log.error("rules_reload_failed problems=%d first=%s", len(exc.problems), exc.problems[0])
                self.status = _failed(self.status, attempted, str(exc))
                return self.status
            self.status = self._swap(new, attempted)
            return self.status

    def _swap(self, new: RuleSet, attempted: float) -> ReloadStatus:
        old = self.status
        if new.sha256 == self.current.sha256:
            log.info("rules_reload_unchanged generation=%d sha256=%.12s", old.generation, new.sha256)
            return ReloadStatus(old.generation, old.sha256, old.loaded_at, attempted, True)
        self.current = new
        generation = old.generation + 1
        log.info(
            "rules_reloaded generation=%d rules=%d sha256=%.12s",
            generation,
            len(new.rules),
            new.sha256,
        )
        return ReloadStatus(generation, new.sha256, attempted, attempted, True)


def _failed(old: ReloadStatus, attempted: float, error: str) -> ReloadStatus:
    return ReloadStatus(old.generation, old.sha256, old.loaded_at, attempted, False, error)
