"""A listening site that caps concurrent connections and can share its port between workers.

aiohttp already closes idle and half-sent-header connections after its keep-alive timeout; what it
lacks is a cap on how many connections one process holds. Extra connections get an immediate 503
and are closed, so a flood cannot exhaust file descriptors or memory.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

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
            assert isinstance(transport, asyncio.Transport)
            transport.write(_REFUSAL)
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


def bind(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket; with reuse_port several worker processes can share it."""
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

    def __init__(self, runner: web.BaseRunner[Any], sock: socket.socket, cap: ConnectionCap) -> None:
        super().__init__(runner, backlog=1024)
        self._sock = sock
        self._cap = cap

    @property
    def name(self) -> str:
        host, port = self._sock.getsockname()[:2]
        return f"http://{host}:{port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _CappedProtocol(server(), self._cap), sock=self._sock, backlog=self._backlog
        )
