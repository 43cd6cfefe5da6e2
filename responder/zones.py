"""IANA time zones by name, for schedules and the `time` source.

zoneinfo is imported on first use: with sysconfig it is ~0.8 MiB resident, and most rule sets
name no zone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo


def load_zone(name: str) -> ZoneInfo:
    """The IANA zone `name`; ValueError for unknown names and path tricks like `../x`."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise ValueError(
            f"unknown time zone {name!r}: use an IANA name such as Asia/Shanghai or UTC"
        ) from exc
