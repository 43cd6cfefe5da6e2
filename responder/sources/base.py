"""The contract between rules and data sources: compiled specs, calls and results.

A SourceSpec is immutable configuration, compiled once at load time (part of a RuleSet snapshot).
Live state (caches, single-flight, the HTTP session) lives in a SourceHub keyed by `spec.key`,
so a reload that leaves a source's configuration unchanged keeps its cache.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import aiohttp


class SourceConfigError(ValueError):
    """A source's configuration is wrong in a way the JSON schema cannot express.

    `path` is relative to the source's own mapping in rules.yaml, e.g. ("providers", 2).
    """

    def __init__(self, path: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


@dataclass(frozen=True, slots=True)
class SourceCall:
    """What one message gives the source: command args, regex groups, the normalised text."""

    args: tuple[str, ...] = ()
    groups: Mapping[str, str] = field(default_factory=dict)
    text: str = ""


@dataclass(frozen=True, slots=True)
class SourceResult:
    """What the template sees as `source`. `error` is a short user-safe code, not upstream text."""

    ok: bool
    data: Any = None
    error: str = ""
    stale: bool = False
    age_s: float | None = None

    @classmethod
    def failure(cls, error: str) -> SourceResult:
        return cls(ok=False, error=error)


class SourceSpec(Protocol):
    """Read-only (so frozen dataclasses conform): name, kind, key (config hash), deadline_s."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def key(self) -> str: ...

    @property
    def deadline_s(self) -> float: ...


class SourceFetchError(Exception):
    """One fetch failed; `code` is the user-safe reason that ends up in SourceResult.error.

    Codes: timeout, unavailable, bad_status, bad_response, too_large, refused_redirect, bad_input.
    """

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True, slots=True)
class FetchContext:
    """What a loader may use, handed over by the SourceHub.

    `clock` is monotonic (TTLs, back-off); `wall_clock` is Unix time (the `time` kind).
    `backoff` maps a provider URL to the `clock` time before which it must not be asked again.
    """

    session: aiohttp.ClientSession
    clock: Callable[[], float]
    wall_clock: Callable[[], float]
    backoff: MutableMapping[str, float]


class LoadableSpec(SourceSpec, Protocol):
    """What the hub needs from a compiled spec beyond the public SourceSpec fields.

    `cache_ttl_s` None means every call runs on its own (no cache, no single-flight). Otherwise
    calls whose `prepare` results are equal share one upstream call and one cache entry.
    """

    @property
    def cache_ttl_s(self) -> float | None: ...

    def prepare(self, call: SourceCall) -> Hashable:
        """Turn a call into the exact request to make; raises SourceFetchError('bad_input')."""
        ...

    async def load(self, ctx: FetchContext, request: Any) -> Any:
        """Perform the request and return `data`; raises SourceFetchError."""
        ...
