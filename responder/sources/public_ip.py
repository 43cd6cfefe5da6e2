"""The `public_ip` kind: ask plain-text IP echo services in turn and validate the answer.

Caching, single-flight and stale serving are the SourceHub's job; this module only knows how to
ask providers, honour their 429 Retry-After, and refuse anything that is not exactly one address.
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .base import FetchContext, SourceCall, SourceConfigError, SourceFetchError
from .outbound import TRANSPORT_ERRORS, check_origin, error_code, read_capped

log = logging.getLogger(__name__)

MAX_ANSWER_BYTES = 1024
DEFAULT_BACKOFF_S = 60.0
MAX_BACKOFF_S = 3600.0

DEFAULT_PROVIDERS: Mapping[str, tuple[str, ...]] = {
    "ipv4": (
        "https://api.ipify.org",
        "https://ipv4.icanhazip.com",
        "https://checkip.amazonaws.com",
        "https://ipinfo.io/ip",
        "https://ifconfig.me/ip",
    ),
    "ipv6": (
        "https://api6.ipify.org",
        "https://ipv6.icanhazip.com",
        "https://v6.ident.me",
    ),
    "any": (
        "https://api64.ipify.org",
        "https://icanhazip.com",
        "https://ifconfig.me/ip",
        "https://ident.me",
    ),
}


@dataclass(frozen=True, slots=True)
class PublicIpSpec:
    name: str
    key: str
    providers: tuple[str, ...]
    family: str = "ipv4"
    deadline_s: float = 3.0
    cache_ttl_s: float | None = 60.0
    kind: str = "public_ip"

    def prepare(self, call: SourceCall) -> None:
        # Every call asks the same question, so all of them share one cache entry.
        return None

    async def load(self, ctx: FetchContext, request: None) -> dict[str, str]:
        loop = asyncio.get_running_loop()
        ends_at = loop.time() + self.deadline_s
        code = "unavailable"
        for index, url in enumerate(self.providers):
            if ctx.backoff.get(url, float("-inf")) > ctx.clock():
                continue
            remaining = ends_at - loop.time()
            is_last = index == len(self.providers) - 1
            try:
                return await self._ask(ctx, url, remaining if is_last else remaining / 2)
            except (*TRANSPORT_ERRORS, SourceFetchError) as exc:
                code = error_code(exc)
                log.info("provider_failed source=%s provider=%d code=%s", self.name, index, code)
        raise SourceFetchError(code)

    async def _ask(self, ctx: FetchContext, url: str, budget_s: float) -> dict[str, str]:
        async with (
            asyncio.timeout(budget_s),
            ctx.session.get(url, allow_redirects=False, headers={"Accept": "text/plain"}) as resp,
        ):
            if resp.status == 429:
                ctx.backoff[url] = ctx.clock() + retry_after_s(resp.headers.get("Retry-After"))
            if resp.status != 200:
                raise SourceFetchError("bad_status")
            body = await read_capped(resp, MAX_ANSWER_BYTES)
        return parse_ip(body, self.family)


def parse_ip(body: bytes, family: str) -> dict[str, str]:
    """Accept exactly one address of the wanted family, surrounded by whitespace at most."""
    try:
        text = body.decode("ascii").strip()
        address = ipaddress.ip_address(text)
    except ValueError as exc:  # UnicodeDecodeError is a ValueError too
        raise SourceFetchError("bad_response") from exc
    found = "ipv4" if address.version == 4 else "ipv6"
    if "%" in text or (family != "any" and found != family):
        raise SourceFetchError("bad_response")
    return {"ip": str(address), "family": found}


def retry_after_s(value: str | None, now: float | None = None) -> float:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), capped."""
    if not value:
        return DEFAULT_BACKOFF_S
    if value.strip().isdigit():
        return min(float(value.strip()), MAX_BACKOFF_S)
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return DEFAULT_BACKOFF_S
    delay = when - (time.time() if now is None else now)
    return min(max(delay, 0.0), MAX_BACKOFF_S)


def compile_public_ip(name: str, key: str, config: Mapping[str, Any]) -> PublicIpSpec:
    family = config.get("family", "ipv4")
    providers = tuple(config.get("providers") or DEFAULT_PROVIDERS[family])
    for index, provider in enumerate(providers):
        problem = check_origin(provider)
        if problem:
            raise SourceConfigError(("providers", index), f"{provider!r}: {problem}")
    return PublicIpSpec(
        name=name,
        key=key,
        providers=providers,
        family=family,
        deadline_s=float(config.get("timeout_s", 3)),
        cache_ttl_s=float(config.get("cache_ttl_s", 60)),
    )
