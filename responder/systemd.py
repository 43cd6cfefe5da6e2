"""sd_notify(3) without libsystemd: tell systemd (`Type=notify`) that the service is ready or stopping.

systemd passes the address of a unix datagram socket in $NOTIFY_SOCKET: a path, or an abstract
socket written with a leading `@`. Each state is one datagram such as `READY=1`. Outside systemd
the variable is unset and every call is a no-op. Only `serve` calls this.
"""

from __future__ import annotations

import logging
import socket

log = logging.getLogger(__name__)

# systemd reads the socket at once; a stuck manager must still not hold the process for long.
SEND_TIMEOUT_S = 1.0


def notify(address: str, state: str) -> bool:
    """Send `state` (e.g. "READY=1") to the socket at `address` ($NOTIFY_SOCKET).

    False, without raising, when there is no address, it is of a kind this does not speak
    (systemd also knows vsock addresses, which it never gives a service on a host), or the send
    failed: readiness is a courtesy to the supervisor and must never stop the service.
    """
    if not address:
        return False
    if address.startswith("@"):
        target = "\0" + address[1:]  # Linux abstract namespace: no file, the name starts with NUL
    elif address.startswith("/"):
        target = address
    else:
        log.warning("systemd_notify_unsupported address=%s", address)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.settimeout(SEND_TIMEOUT_S)
            sock.connect(target)
            sock.sendall(state.encode("utf-8"))
    except OSError as exc:
        log.warning("systemd_notify_failed state=%s error=%s", state, exc.strerror or exc)
        return False
    return True
