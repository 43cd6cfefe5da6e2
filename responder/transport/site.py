"""The callback port's connection limits: a cap on open connections, sized to the descriptors
the process may open, and one rate-limited line (not a traceback per accept) when they run out.

aiohttp closes idle and half-sent-header connections after its keep-alive timeout (server.py sets
it); what it lacks is a cap on how many connections one process holds. Extra connections get an
immediate 503 and are closed, so a flood cannot exhaust file descriptors or memory, and the admin
port, outbound replies and log files keep the descriptors they need.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import socket
import time
from typing import Any, cast

from aiohttp import web

log = logging.getLogger(__name__)

_REFUSAL_BODY = b'{"error":"overloaded","reason":"too many connections"}'
_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
    + f"Content-Length: {len(_REFUSAL_BODY)}\r\n\r\n".encode()
    + _REFUSAL_BODY
)


class ConnectionCap:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0
        self.refused = 0


class _CappedProtocol(asyncio.Protocol):
    """Delegates to aiohttp's request handler unless the cap is reached."""

    def __init__(self, inner: asyncio.Protocol, cap: ConnectionCap) -> None:
        self._inner = inner
        self._cap = cap
        self._admitted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._cap.open >= self._cap.limit:
            self._cap.refused += 1
            if self._cap.refused == 1 or self._cap.refused % 1000 == 0:
                log.warning(
                    "connection_refused reason=cap limit=%d refused=%d", self._cap.limit, self._cap.refused
                )
            # uvloop's transports are not asyncio.Transport subclasses: no isinstance check here.
            cast(asyncio.WriteTransport, transport).write(_REFUSAL)
            transport.close()
            return
        self._admitted = True
        self._cap.open += 1
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._admitted:
            self._cap.open -= 1
            self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._admitted:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._admitted else None

    def pause_writing(self) -> None:
        if self._admitted:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._admitted:
            self._inner.resume_writing()


# Descriptors kept back from the callback port: the admin port, the outbound connection pool
# (100), data sources, log files and the Stream socket.
RESERVED_DESCRIPTORS = 128
MIN_CONNECTIONS = 16
_OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def connection_limit(wanted: int) -> int:
    """`wanted`, lowered to what the descriptor limit leaves after the reserve.

    The soft limit is first raised to the hard one (as Go's runtime does), so a default `ulimit -n`
    of 1024 does not cap a server that may open more.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(MIN_CONNECTIONS, min(wanted, soft - RESERVED_DESCRIPTORS))


class DescriptorAlarm:
    """A loop exception handler that turns "out of file descriptors" into one line per interval.

    asyncio reports each failed accept with a traceback; a flood of connections would otherwise
    write one per accept attempt. Everything else goes to the default handler unchanged.
    """

    def __init__(self, interval_s: float = 10.0, clock: Any = time.monotonic) -> None:
        self._interval_s = interval_s
        self._clock = clock
        self._last = -interval_s
        self._suppressed = 0

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.set_exception_handler(self.handle)

    def handle(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if not (isinstance(exc, OSError) and exc.errno in _OUT_OF_DESCRIPTORS):
            loop.default_exception_handler(context)
            return
        now = self._clock()
        if now - self._last < self._interval_s:
            self._suppressed += 1
            return
        log.error(
            "descriptors_exhausted error=%s repeats=%d (new connections wait until some close)",
            errno.errorcode.get(exc.errno or 0, "?"),
            self._suppressed,
        )
        self._last, self._suppressed = now, 0


def bind(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A bound TCP socket for the callback port. `reuse_port`: one of a `--workers` group, each
    with its own socket on the port, the kernel spreading connections over them."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.setblocking(False)
    return sock


class CappedSite(web.BaseSite):
    """Like aiohttp's SockSite, with a connection cap in front of every connection."""

    def __init__(self, runner: web.BaseRunner, sock: socket.socket, cap: ConnectionCap) -> None:
        super().__init__(runner, backlog=1024)
        self._sock = sock
        self._cap = cap

    @property
    def name(self) -> str:
        host, port = self._sock.getsockname()[:2]
        if ":" in host:  # an IPv6 address needs brackets to be a URL someone can open
            host = f"[{host}]"
        return f"http://{host}:{port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _CappedProtocol(server(), self._cap), sock=self._sock, backlog=self._backlog
        )
