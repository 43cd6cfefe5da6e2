"""The OpenAPI access token: cached until shortly before it expires and fetched once for all
concurrent waiters. It only schedules fetches; the fetch itself (the HTTP call) is the
client's, passed in.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from responder.dingtalk.openapi import AccessToken

log = logging.getLogger(__name__)

# Refresh this long before expiry, as the official SDK does, so no call races the expiry.
REFRESH_MARGIN_S = 300.0


def refresh_margin_s(lifetime_s: float) -> float:
    """5 minutes, or a tenth of a short lifetime, so a short-lived token is still reused."""
    return min(REFRESH_MARGIN_S, lifetime_s / 10)


class TokenCache:
    """Hands out the current token. `get` returns None when none could be fetched."""

    def __init__(
        self, fetch: Callable[[], Awaitable[AccessToken | None]], monotonic: Callable[[], float]
    ) -> None:
        self._fetch = fetch
        self._monotonic = monotonic
        self._value: str | None = None
        self._refresh_at = float("-inf")
        self._expires_at = float("-inf")
        self._fetching: asyncio.Task[str | None] | None = None

    def __repr__(self) -> str:
        return f"TokenCache(cached={self._value is not None})"

    async def get(self) -> str | None:
        if self._value is not None and self._monotonic() < self._refresh_at:
            return self._value
        if self._fetching is None:
            self._fetching = asyncio.create_task(self._refresh())
        # shield: a waiter that is cancelled must not cancel the fetch the others wait for.
        return await asyncio.shield(self._fetching)

    def drop(self, value: str) -> None:
        """Forget `value` after DingTalk rejected it, unless a newer token already replaced it."""
        if self._value == value:
            self._value = None

    async def _refresh(self) -> str | None:
        try:
            token = await self._fetch()
        finally:
            self._fetching = None
        now = self._monotonic()
        if token is None:
            # The old token, if it has not expired yet, still beats no token.
            return self._value if self._value is not None and now < self._expires_at else None
        self._value = token.value
        self._expires_at = now + token.expires_in_s
        self._refresh_at = self._expires_at - refresh_margin_s(token.expires_in_s)
        log.debug("openapi_token_fetched expires_in_s=%.0f", token.expires_in_s)
        return self._value
