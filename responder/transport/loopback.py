"""Whether an address is this machine's own: the one test for dev mode, the playground and the
reload endpoint, so they cannot disagree."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str | None) -> bool:
    """True for `localhost`, 127.0.0.0/8 and ::1 (also written `[::1]` or with a `%zone`)."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0]).is_loopback
    except ValueError:
        return False
