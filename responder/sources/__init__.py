"""Data sources (placeholder until the sources branch lands)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from responder.sources.base import SourceCall, SourceConfigError, SourceResult, SourceSpec

KNOWN_KINDS = ("public_ip",)


@dataclass(frozen=True, slots=True)
class _Spec:
    name: str
    kind: str
    key: str
    deadline_s: float
    config: Any


def compile_source(name: str, config: Mapping[str, Any]) -> SourceSpec:
    key = hashlib.sha256(json.dumps([name, config], sort_keys=True).encode()).hexdigest()
    return _Spec(name, config["kind"], key, float(config.get("timeout_s", 3)), config)


class SourceHub:
    def __init__(self, session: Any, **_: Any) -> None:
        self.session = session

    async def fetch(self, spec: SourceSpec, call: SourceCall) -> SourceResult:
        return SourceResult.failure("unavailable")


__all__ = ["KNOWN_KINDS", "SourceConfigError", "SourceHub", "compile_source"]
