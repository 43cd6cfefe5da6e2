"""The Redis connection of one process: the client's lifecycle, a deadline on every call, the
circuit breaker, a health probe, and the one warning (with a count) while Redis is away.

Guards call `run(guard, call)`: it answers what `call` returned, or raises Unavailable (counted
as a fallback) when Redis failed or the breaker is open, so the guard answers from memory.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from responder.logs import quoted
from responder.metrics import Metrics
from responder.settings import StateSettings
from responder.state.breaker import Breaker
from responder.state.urls import display_url

log = logging.getLogger(__name__)

T = TypeVar("T")

PROBE_INTERVAL_S = 1.0  # how soon a dead Redis is noticed when idle, and a returned one used again
PROBE_TTL_MS = 10_000
# Connections to Redis per process; calls beyond wait (within their deadline) for a free one.
MAX_CONNECTIONS = 32
ERRORS = (RedisError, OSError, TimeoutError)


class Unavailable(Exception):
    """Redis did not answer in time, answered an error, or the breaker is open."""


class RedisConnection:
    def __init__(self, settings: StateSettings, metrics: Metrics) -> None:
        self.prefix = settings.key_prefix
        self.client = _client(settings)
        self._settings = settings
        self._metrics = metrics
        self._breaker = Breaker()
        self._probe: asyncio.Task[None] | None = None
        self._down_since: float | None = None  # time.monotonic()
        self._down_at = ""  # the same moment, for /-/status
        self._fallbacks = 0
        self._last_error = ""

    @property
    def is_up(self) -> bool:
        return not self._breaker.is_open

    async def start(self) -> None:
        """Try Redis once (a dead one only makes this process fall back), then keep probing."""
        try:
            await self._probe_once()
        except ERRORS as exc:
            self._last_error = _describe(exc)
            if self._breaker.trip():
                self._went_down()
        else:
            log.info("state_backend_connected backend=redis url=%s", display_url(self._settings.url))
            self._metrics.state_backend_up.set(1)
        self._probe = asyncio.get_running_loop().create_task(self._probe_forever(), name="state-probe")

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            await asyncio.gather(self._probe, return_exceptions=True)
        await self.client.aclose()

    async def run(self, guard: str, call: Callable[[], Awaitable[T]]) -> T:
        """`call`'s answer within the timeout; Unavailable (and one more fallback) otherwise."""
        if self._breaker.is_open:
            raise self._fallback(guard)
        try:
            async with asyncio.timeout(self._settings.timeout_s):
                answer = await call()
        except ERRORS as exc:
            self._failed(exc)
            raise self._fallback(guard) from None
        self._succeeded()
        return answer

    def key(self, namespace: str, *parts: str) -> str:
        return ":".join((self.prefix + namespace, *parts))

    def status(self) -> dict[str, Any]:
        return {
            "backend": "redis",
            "shared": True,
            "url": display_url(self._settings.url),
            "key_prefix": self.prefix,
            "reachable": self.is_up,
            "down_since": self._down_at or None,
            "fallbacks": self._fallbacks,  # since it last went down
            "last_error": self._last_error or None,
        }

    async def _probe_forever(self) -> None:
        while True:
            await asyncio.sleep(PROBE_INTERVAL_S)
            try:
                await self._probe_once()
            except ERRORS as exc:
                self._failed(exc)
            else:
                self._succeeded()

    async def _probe_once(self) -> None:
        # A write, not a PING: a read-only replica or a full Redis answers PING but fails every guard.
        async with asyncio.timeout(self._settings.connect_timeout_s + self._settings.timeout_s):
            await self.client.set(self.key("probe"), str(os.getpid()), px=PROBE_TTL_MS)

    def _fallback(self, guard: str) -> Unavailable:
        self._fallbacks += 1
        self._metrics.state_fallbacks.labels(guard).inc()
        return Unavailable(guard)

    def _failed(self, exc: BaseException) -> None:
        self._last_error = _describe(exc)
        if self._breaker.failed():
            self._went_down()

    def _succeeded(self) -> None:
        if self._breaker.succeeded():
            down_s = time.monotonic() - (self._down_since or time.monotonic())
            log.warning(
                "state_backend_recovered backend=redis down_s=%.1f fallbacks=%d (shared state in use again)",
                down_s,
                self._fallbacks,
            )
            self._down_since, self._down_at = None, ""
            self._metrics.state_backend_up.set(1)

    def _went_down(self) -> None:
        self._down_since = time.monotonic()
        self._down_at = datetime.now(UTC).isoformat(timespec="seconds")
        self._fallbacks = 0
        self._metrics.state_backend_up.set(0)
        log.warning(
            "state_backend_unavailable backend=redis url=%s error=%s (each guard answers from this "
            "process's memory until Redis is back; state_backend_recovered will say how often)",
            display_url(self._settings.url),
            quoted(self._last_error, always=True),
        )


def _client(settings: StateSettings) -> Redis:
    pool = BlockingConnectionPool.from_url(
        settings.url,
        max_connections=MAX_CONNECTIONS,
        timeout=settings.timeout_s,
        socket_timeout=settings.timeout_s,
        socket_connect_timeout=settings.connect_timeout_s,
        # One immediate retry replaces a pooled connection that a Redis restart closed; the
        # breaker, not retries, handles a Redis that stays away.
        retry=Retry(NoBackoff(), 1),
        client_name="responder",
    )
    return Redis.from_pool(pool)  # the client owns the pool: aclose() closes its connections


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
