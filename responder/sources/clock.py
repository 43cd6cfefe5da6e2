"""The `time` kind: the current time in a configured IANA time zone, optionally strftime'd."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from responder import zones

from .base import FetchContext, SourceCall, SourceConfigError

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

DEFAULT_FORMAT = "%Y-%m-%d %H:%M:%S %Z"


@dataclass(frozen=True, slots=True)
class TimeSpec:
    name: str
    key: str
    zone: ZoneInfo
    format: str = DEFAULT_FORMAT
    deadline_s: float = 3.0
    cache_ttl_s: float | None = None
    kind: str = "time"

    def prepare(self, call: SourceCall) -> None:
        return None

    async def load(self, ctx: FetchContext, request: None) -> dict[str, Any]:
        unix = ctx.wall_clock()
        now = datetime.fromtimestamp(unix, self.zone)
        return {
            "iso": now.isoformat(timespec="seconds"),
            "formatted": now.strftime(self.format),
            "timezone": self.zone.key,
            "unix": int(unix),
        }


def load_zone(name: str) -> ZoneInfo:
    """Raises SourceConfigError for unknown names and for path-like tricks ('../x')."""
    try:
        return zones.load_zone(name)
    except ValueError as exc:
        raise SourceConfigError(("timezone",), str(exc)) from exc


def compile_time(name: str, key: str, config: Mapping[str, Any]) -> TimeSpec:
    zone = load_zone(config.get("timezone", "UTC"))
    fmt = config.get("format", DEFAULT_FORMAT)
    try:
        datetime.now(zone).strftime(fmt)
    except ValueError as exc:
        raise SourceConfigError(("format",), f"bad strftime format {fmt!r}") from exc
    return TimeSpec(name, key, zone, fmt)
