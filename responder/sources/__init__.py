"""Data sources: live data for replies, declared in rules.yaml and fetched by a SourceHub.

`compile_source` turns one validated `sources:` entry into an immutable spec (load time, no I/O
beyond stat-ing files); `SourceHub.fetch` runs it (request time). Kinds live in their own modules.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from .base import SourceCall, SourceConfigError, SourceFetchError, SourceResult, SourceSpec
from .clock import compile_time
from .command import compile_exec
from .http_config import compile_http
from .hub import SourceHub
from .public_ip import compile_public_ip
from .system import compile_system

__all__ = [
    "KNOWN_KINDS",
    "SourceCall",
    "SourceConfigError",
    "SourceFetchError",
    "SourceHub",
    "SourceResult",
    "SourceSpec",
    "compile_source",
]

Compiler = Callable[[str, str, Mapping[str, Any]], SourceSpec]

_COMPILERS: Mapping[str, Compiler] = {
    "public_ip": compile_public_ip,
    "http": compile_http,
    "system": compile_system,
    "time": compile_time,
    "exec": compile_exec,
}

KNOWN_KINDS: tuple[str, ...] = tuple(_COMPILERS)


def compile_source(name: str, config: Mapping[str, Any]) -> SourceSpec:
    """Check what the schema cannot and return the immutable spec; raises SourceConfigError."""
    kind = config.get("kind")
    compiler = _COMPILERS.get(kind) if isinstance(kind, str) else None
    if compiler is None:
        raise SourceConfigError(("kind",), f"unknown source kind {kind!r}")
    return compiler(name, source_key(name, config), config)


def source_key(name: str, config: Mapping[str, Any]) -> str:
    """A stable hash of name + config: equal across reloads exactly when nothing changed."""
    canonical = json.dumps([name, config], sort_keys=True, default=repr, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()
