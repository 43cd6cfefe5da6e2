"""The `system` kind: hostname, uptime, load, memory and disk usage, read off the event loop.

Reads /proc on Linux; on other systems the /proc-backed values are None rather than an error.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .base import FetchContext, SourceCall, SourceConfigError


@dataclass(frozen=True, slots=True)
class SystemSpec:
    name: str
    key: str
    paths: tuple[str, ...] = ("/",)
    deadline_s: float = 3.0
    cache_ttl_s: float | None = None
    kind: str = "system"

    def prepare(self, call: SourceCall) -> None:
        return None

    async def load(self, ctx: FetchContext, request: None) -> dict[str, Any]:
        # statvfs on a hung network mount blocks; the thread keeps the loop free and the
        # hub's deadline still answers on time.
        return await asyncio.to_thread(read_system, self.paths)


def read_system(paths: tuple[str, ...]) -> dict[str, Any]:
    uptime_s = read_uptime_s()
    return {
        "hostname": socket.gethostname(),
        "uptime_s": uptime_s,
        "uptime": format_duration(uptime_s) if uptime_s is not None else None,
        "load": read_load(),
        "cpu_count": os.cpu_count(),
        "memory": read_memory(),
        "disks": [read_disk(path) for path in paths],
    }


def read_uptime_s() -> float | None:
    try:
        return float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def read_load() -> dict[str, float] | None:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return None
    return load_figures(one, five, fifteen)


LOAD_DECIMALS = 2


def load_figures(one: float, five: float, fifteen: float) -> dict[str, float]:
    """Load averages rounded to 2 decimals: the kernel's fixed-point values come back as binary
    fractions (0.2099609375) that a `{{ source.data.load["1m"] }}` would print in full."""
    return {
        "1m": round(one, LOAD_DECIMALS),
        "5m": round(five, LOAD_DECIMALS),
        "15m": round(fifteen, LOAD_DECIMALS),
    }


def read_memory() -> dict[str, Any] | None:
    try:
        lines = Path("/proc/meminfo").read_text().splitlines()
    except OSError:
        return None
    kib = {k: int(v.split()[0]) for k, _, v in (line.partition(":") for line in lines) if v}
    if "MemTotal" not in kib:
        return None
    total = kib["MemTotal"] * 1024
    available = kib.get("MemAvailable", kib.get("MemFree", 0)) * 1024
    return memory_figures(total, available)


def memory_figures(total: int, available: int) -> dict[str, Any]:
    used = total - available
    percent = round(100 * used / total, 1) if total else 0.0
    return {
        "total_bytes": total,
        "available_bytes": available,
        "used_bytes": used,
        "used_percent": percent,
    }


def read_disk(path: str) -> dict[str, Any]:
    try:
        usage = shutil.disk_usage(path)
    except OSError:
        return {"path": path, "error": "unavailable"}
    percent = round(100 * usage.used / usage.total, 1) if usage.total else 0.0
    return {
        "path": path,
        "total_bytes": usage.total,
        "used_bytes": usage.used,
        "free_bytes": usage.free,
        "used_percent": percent,
    }


def format_duration(seconds: float) -> str:
    """'3d 4h 5m' style, for people; templates wanting numbers use uptime_s."""
    minutes, _ = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    parts = [f"{days}d"] if days else []
    if days or hours:
        parts.append(f"{hours}h")
    parts.append(f"{minutes}m")
    return " ".join(parts)


def compile_system(name: str, key: str, config: Mapping[str, Any]) -> SystemSpec:
    paths = tuple(config.get("paths") or ["/"])
    for index, path in enumerate(paths):
        if not os.path.isabs(path):
            raise SourceConfigError(("paths", index), f"{path!r} must be an absolute path")
    return SystemSpec(name, key, paths, deadline_s=float(config.get("timeout_s", 3)))
