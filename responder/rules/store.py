"""RuleStore: holds the live RuleSet and replaces it only with a fully loaded one.

All fallible work (read, validate, compile) happens off the event loop before the one mutation,
the swap of `current`; a failed reload leaves the old snapshot serving and records the error.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from responder.logs import quoted
from responder.metrics import Metrics
from responder.rules.load import load_rules
from responder.rules.model import RulesError, RuleSet
from responder.rules.problems import Problem
from responder.settings import DEFAULT_RELOAD_SETTLE_S

log = logging.getLogger(__name__)

Loader = Callable[..., RuleSet]  # (path, environ, *, settle_s=…) like load_rules
Subscriber = Callable[[RuleSet], None]


@dataclass(frozen=True, slots=True)
class ReloadStatus:
    generation: int
    sha256: str
    rules: int
    loaded_at: float
    last_attempt_at: float
    attempts: int
    last_ok: bool
    last_success_at: float
    last_duration_s: float = 0.0
    last_error: str = ""
    problems: tuple[Problem, ...] = field(default=(), repr=False)
    # Restart-only settings (dingtalk.callback_path, mode, …) the live file changed: not applied.
    restart_required: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "sha256": self.sha256,
            "rules": self.rules,
            "loaded_at": self.loaded_at,
            "last_attempt_at": self.last_attempt_at,
            "attempts": self.attempts,
            "last_reload_ok": self.last_ok,
            "last_success_at": self.last_success_at,
            "last_reload_duration_s": round(self.last_duration_s, 6),
            "last_error": self.last_error or None,
            "restart_required": list(self.restart_required),
            "problems": [
                {"file": p.file, "line": p.line, "column": p.column, "message": p.message}
                for p in self.problems
            ],
        }


class RuleStore:
    """The live snapshot, its reload status, and who to tell when it changes.

    `running` and `running_state` are the restart-only settings the process started with; they
    never change. A reload that changes them applies everything else and reports
    `restart_required`.
    """

    def __init__(
        self,
        ruleset: RuleSet,
        environ: Mapping[str, str],
        *,
        loader: Loader = load_rules,
        clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
        settle_s: float = DEFAULT_RELOAD_SETTLE_S,
    ) -> None:
        self.current = ruleset
        self.settle_s = settle_s
        self.running = ruleset.dingtalk.connection
        self.running_state = ruleset.state
        self._subscribers: list[Subscriber] = []
        self._environ = environ
        self._loader = loader
        self._clock = clock
        self._lock = asyncio.Lock()
        self._metrics = metrics
        now = clock()
        self.status = ReloadStatus(1, ruleset.sha256, len(ruleset.rules), now, now, 1, True, now)
        self._publish()

    @property
    def path(self) -> Path:
        return self.current.path

    def subscribe(self, subscriber: Subscriber) -> None:
        """Call `subscriber(new)` after every swap to a new snapshot (caches prune, for example)."""
        self._subscribers.append(subscriber)

    def attach_metrics(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._publish()

    async def reload(self, content: bytes | None = None) -> ReloadStatus:
        """Load the file again off the event loop; swap on success, keep the old set on error.

        `content` is the rules file as someone else read it (a `--workers` supervisor, so every
        worker loads the same version); templates are still read from disk. Never raises:
        whatever fails is recorded as a failed reload, so the next one runs.
        """
        async with self._lock:
            attempted = self._clock()
            started = time.monotonic()
            try:
                new = await asyncio.to_thread(self._load, content)
            except RulesError as exc:
                self.status = self._failed(exc.problems, attempted, started)
            except Exception as exc:  # the loader promises RulesError; never let a bug kill reloads
                log.exception("rules_reload_crashed")
                problem = Problem(str(self.path), 1, 1, f"cannot load: {type(exc).__name__}")
                self.status = self._failed((problem,), attempted, started)
            else:
                self.status = replace(self._swap(new, attempted), last_duration_s=time.monotonic() - started)
            self._publish()
            return self.status

    def _load(self, content: bytes | None) -> RuleSet:
        with loop_friendly_build:
            if content is not None:
                return self._loader(self.path, self._environ, content=content)
            if self.settle_s > 0:
                return self._loader(self.path, self._environ, settle_s=self.settle_s)
            return self._loader(self.path, self._environ)

    def _failed(self, problems: Sequence[Problem], attempted: float, started: float) -> ReloadStatus:
        log.error("rules_reload_failed problems=%d first=%s", len(problems), quoted(str(problems[0])))
        return replace(
            self.status,
            last_attempt_at=attempted,
            attempts=self.status.attempts + 1,
            last_ok=False,
            last_error="\n".join(str(p) for p in problems),
            problems=tuple(problems),
            last_duration_s=time.monotonic() - started,
        )

    def _swap(self, new: RuleSet, attempted: float) -> ReloadStatus:
        old = self.status
        ok = replace(
            old,
            last_attempt_at=attempted,
            attempts=old.attempts + 1,
            last_ok=True,
            last_success_at=attempted,
            last_error="",
            problems=(),
        )
        if new.sha256 == self.current.sha256:
            log.info("rules_reload_unchanged generation=%d sha256=%.12s", old.generation, new.sha256)
            return ok
        retire_gradually(self.current)
        self.current = new
        generation = old.generation + 1
        log.info("rules_reloaded generation=%d rules=%d sha256=%.12s", generation, len(new.rules), new.sha256)
        restart_required = new.dingtalk.connection.changed_fields(self.running)
        restart_required += new.state.changed_fields(self.running_state)
        if restart_required:
            log.warning("restart_required fields=%s", ",".join(restart_required))
        self._notify(new)
        return replace(
            ok,
            generation=generation,
            sha256=new.sha256,
            rules=len(new.rules),
            loaded_at=attempted,
            restart_required=restart_required,
        )

    def _notify(self, new: RuleSet) -> None:
        for subscriber in self._subscribers:
            try:
                subscriber(new)
            except Exception:  # one subscriber's bug must not undo the swap or skip the others
                log.exception("reload_subscriber_failed subscriber=%r", subscriber)

    def _publish(self) -> None:
        metrics, status = self._metrics, self.status
        if metrics is None:
            return
        metrics.reload_successful.set(1 if status.last_ok else 0)
        metrics.reload_success_timestamp.set(status.last_success_at)
        metrics.rules_loaded.set(status.rules)
        metrics.restart_required.set(1 if status.restart_required else 0)
        metrics.rules_info.clear()
        metrics.rules_info.labels(status.sha256, str(status.generation)).set(1)


def retire_gradually(old: RuleSet) -> None:
    """Free `old`'s rules a rule at a time, in a thread of their own, once nothing uses it.

    Messages still in flight keep the set they started with, so it dies wherever the last one
    ends: on the event loop. Its 10,000 rules freed there in one piece held the loop for ~20 ms.
    Holding them in a list of our own makes its death cheap; the list is then emptied off the loop.
    """
    bulk: list[object] = [*old.rules, *old.catalogue]
    weakref.finalize(old, _drain_in_thread, bulk).atexit = False


def _drain_in_thread(bulk: list[object]) -> None:
    threading.Thread(target=_drain, args=(bulk,), name="retire-snapshot", daemon=True).start()


def _drain(bulk: list[object]) -> None:
    while bulk:
        bulk.pop()  # one rule, its trigger and templates: a short stretch holding the GIL


NO_FULL_COLLECTIONS = 1 << 30  # gen-2 threshold: a count of gen-1 collections never reached
BUILD_SWITCH_INTERVAL_S = 0.001


class _BuildConditions:
    """Conditions for building a snapshot in a thread while the event loop serves.

    No full collections: a build allocates hundreds of thousands of objects (the YAML tree, the
    new rules), and each full collection it set off walked them all holding the GIL, stalling
    the loop for hundreds of ms. Young collections go on, so the new rules reach the oldest
    generation a few thousand at a time instead of waiting, all young, for one collection that
    walks them together (~30 ms at 10,000 rules; pausing the collector outright did that).
    A 1 ms GIL switch interval instead of 5 ms: the loop waits for the GIL once or more per
    request, and a busy build made it wait the whole interval each time.

    Both are the interpreter's, not a store's: builds are counted (a process with several stores,
    as tests have), the first one in saves and sets them, the last one out restores them.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._builds = 0
        self._saved = (gc.get_threshold(), sys.getswitchinterval())

    def __enter__(self) -> None:
        with self._lock:
            if self._builds == 0:
                self._saved = (gc.get_threshold(), sys.getswitchinterval())
                young, middle, _ = self._saved[0]
                gc.set_threshold(young, middle, NO_FULL_COLLECTIONS)
                sys.setswitchinterval(BUILD_SWITCH_INTERVAL_S)
            self._builds += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._builds -= 1
            if self._builds == 0:
                thresholds, interval = self._saved
                sys.setswitchinterval(interval)
                gc.set_threshold(*thresholds)


loop_friendly_build = _BuildConditions()


class Reloadable(Protocol):
    """What a Reloader drives: a RuleStore, or a `--workers` supervisor's fleet of them."""

    @property
    def status(self) -> ReloadStatus: ...

    async def reload(self) -> ReloadStatus: ...


class Reloader:
    """Turns reload requests (SIGHUP, POST /-/reload, --watch) into serialised, coalesced reloads.

    Requests that arrive while a reload runs collapse into one more reload afterwards, so a storm
    of signals costs at most two loads and reloads never overlap.
    """

    def __init__(self, store: Reloadable) -> None:
        self._store = store
        self._wanted = asyncio.Event()
        self._completed = 0
        self._running = False
        self._changed = asyncio.Condition()

    def request(self) -> None:
        self._wanted.set()

    async def reload_now(self) -> ReloadStatus:
        """Request a reload and wait for one that started after this call."""
        async with self._changed:
            target = self._completed + (2 if self._running else 1)
            self.request()
            await self._changed.wait_for(lambda: self._completed >= target)
        return self._store.status

    async def run(self) -> None:
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            self._running = True
            try:
                await self._store.reload()
            finally:
                self._running = False
                async with self._changed:
                    self._completed += 1
                    self._changed.notify_all()
