"""The contract between rules and data sources: compiled specs, calls and results.

A SourceSpec is immutable configuration, compiled once at load time (part of a RuleSet snapshot).
Live state (caches, single-flight, the HTTP session) lives in a SourceHub keyed by `spec.key`,
so a reload that leaves a source's configuration unchanged keeps its cache.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


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
    """What the template sees as `source`. `error` is a short user-safe code, never upstream text."""

    ok: bool
    data: Any = None
    error: str = ""
    stale: bool = False
    age_s: float | None = None

    @classmethod
    def failure(cls, error: str) -> SourceResult:
        return cls(ok=False, error=error)


class SourceSpec(Protocol):
    name: str
    kind: str
    key: str
    deadline_s: float
