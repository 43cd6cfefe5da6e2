"""SourceHub: the live side of data sources (caches, single-flight, back-off, deadlines, metrics).

Specs are immutable and compiled elsewhere; all mutable state lives here, keyed by `spec.key`,
so a reload that keeps a source's configuration keeps its cache. `fetch` never raises.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from ..metrics import Metrics
from .base import FetchContext, LoadableSpec, SourceCall, SourceFetchError, SourceResult, SourceSpec
from .outbound import TRANSPORT_ERRORS, error_code

log = logging.getLogger(__name__)

# Bounds memory for sources whose requests vary with the message (http with args).
MAX_ENTRIES_PER_SOURCE = 64


@dataclass(frozen=True, slots=True)
class CacheEntry:
    data: Any
    stored_at: float


@dataclass(slots=True)
class LiveState:
    """Per-source mutable state: last good answers (LRU) and the calls in flight."""

    entries: OrderedDict[Hashable, CacheEntry] = field(default_factory=OrderedDict)
    inflight: dict[Hashable, asyncio.Task[SourceResult]] = field(default_factory=dict)

    def remember(self, request: Hashable, entry: CacheEntry) -> None:
        self.entries[request] = entry
        self.entries.move_to_end(request)
        while len(self.entries) > MAX_ENTRIES_PER_SOURCE:
            self.entries.popitem(last=False)


class SourceHub:
    """Answers `fetch(spec, call)` for every source of every RuleSet generation.

    Create one per app next to the shared ClientSession; call `close()` before closing it.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        metrics: Metrics | None = None,
        max_concurrency: int = 32,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._ctx = FetchContext(session, clock, wall_clock, backoff={})
        self._metrics = metrics
        self._clock = clock
        self._outbound = asyncio.Semaphore(max_concurrency)
        self._states: dict[str, LiveState] = {}
        self._tasks: set[asyncio.Task[SourceResult]] = set()

    async def fetch(self, spec: SourceSpec, call: SourceCall) -> SourceResult:
        """Return the source's answer within `spec.deadline_s`; failures become results."""
        started = self._clock()
        result, cached = await self._answer(spec, call)  # type: ignore[arg-type]
        self._record(spec, result, cached, self._clock() - started)
        return result

    def prune(self, live_keys: Iterable[str]) -> None:
        """Drop caches of sources no longer in any live RuleSet (call after a reload)."""
        keep = set(live_keys)
        for key in [k for k in self._states if k not in keep]:
            del self._states[key]

    async def close(self) -> None:
        """Cancel background refreshes still running, so nothing outlives the session."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _answer(self, spec: LoadableSpec, call: SourceCall) -> tuple[SourceResult, bool]:
        try:
            request = spec.prepare(call)
        except SourceFetchError as exc:
            return SourceResult.failure(exc.code), False
        except Exception:
            log.exception("source_crashed source=%s kind=%s", spec.name, spec.kind)
            return SourceResult.failure("internal"), False
        if spec.cache_ttl_s is None:
            return await self._run(spec, request), False
        return await self._shared(spec, request)

    async def _shared(self, spec: LoadableSpec, request: Hashable) -> tuple[SourceResult, bool]:
        state = self._states.setdefault(spec.key, LiveState())
        entry = state.entries.get(request)
        if entry is not None and self._clock() - entry.stored_at < (spec.cache_ttl_s or 0):
            return SourceResult(True, entry.data, age_s=self._clock() - entry.stored_at), True
        task = state.inflight.get(request) or self._start(spec, state, request)
        try:
            result = await asyncio.wait_for(asyncio.shield(task), spec.deadline_s)
        except TimeoutError:
            result = SourceResult.failure("timeout")
        return self._or_stale(state, request, result), False

    def _start(self, spec: LoadableSpec, state: LiveState, request: Hashable) -> asyncio.Task[SourceResult]:
        task = asyncio.create_task(self._refresh(spec, state, request))
        state.inflight[request] = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _refresh(self, spec: LoadableSpec, state: LiveState, request: Hashable) -> SourceResult:
        try:
            result = await self._run(spec, request)
            if result.ok:
                state.remember(request, CacheEntry(result.data, self._clock()))
            return result
        finally:
            state.inflight.pop(request, None)

    async def _run(self, spec: LoadableSpec, request: Hashable) -> SourceResult:
        try:
            async with asyncio.timeout(spec.deadline_s), self._outbound:
                data = await spec.load(self._ctx, request)
        except (SourceFetchError, *TRANSPORT_ERRORS) as exc:
            log.info("source_failed source=%s error=%s", spec.name, type(exc).__name__)
            return SourceResult.failure(error_code(exc))
        except Exception:
            log.exception("source_crashed source=%s kind=%s", spec.name, spec.kind)
            return SourceResult.failure("internal")
        return SourceResult(ok=True, data=data, age_s=0.0)

    def _or_stale(self, state: LiveState, request: Hashable, result: SourceResult) -> SourceResult:
        entry = state.entries.get(request)
        if result.ok or entry is None:
            return result
        age_s = max(self._clock() - entry.stored_at, 0.0)
        return SourceResult(True, entry.data, error=result.error, stale=True, age_s=age_s)

    def _record(self, spec: SourceSpec, result: SourceResult, cached: bool, latency_s: float) -> None:
        outcome = "stale" if result.stale else ("ok" if result.ok else result.error)
        log.debug("source_fetched source=%s result=%s cached=%s", spec.name, outcome, cached)
        if self._metrics is None:
            return
        self._metrics.source_calls.labels(spec.name, outcome).inc()
        self._metrics.source_latency.labels(spec.name).observe(latency_s)
        if cached:
            self._metrics.source_cache_hits.labels(spec.name).inc()
