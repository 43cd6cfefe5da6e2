"""A real Debian `redis-server` for the tests, on a free loopback port, with nothing persisted.

server = await RedisServer.start(tmp_path)      # ready to accept connections
server.url                                     # redis://127.0.0.1:PORT/0 (with the password)
await server.stop(); await server.start_again()  # the same port, an empty database
await server.close()                           # at teardown (the fixture does it)
"""

from __future__ import annotations

import asyncio
import shutil
import socket
from pathlib import Path

import pytest

REDIS_SERVER = shutil.which("redis-server")
_READY = b"Ready to accept connections"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    def __init__(self, folder: Path, port: int, password: str) -> None:
        self.folder = folder
        self.port = port
        self.password = password
        self.log: list[str] = []
        self._proc: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[bytes] | None = None

    @classmethod
    async def start(cls, folder: Path, password: str = "") -> RedisServer:
        if REDIS_SERVER is None:  # .ci/run installs it; a newcomer's machine may not have it
            pytest.skip("needs Debian's redis-server (apt-get install redis-server)")
        server = cls(folder, free_port(), password)
        await server.start_again()
        return server

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def start_again(self, timeout: float = 10.0) -> None:
        """Start (again) on the same port; returns once it accepts connections."""
        assert not self.running
        assert REDIS_SERVER is not None, "start() skips without redis-server"
        argv = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
        argv += ["no", "--dir", str(self.folder), "--daemonize", "no", "--loglevel", "notice"]
        if self.password:
            argv += ["--requirepass", self.password]
        self._proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        async with asyncio.timeout(timeout):
            await self._wait_until_ready()

    async def _wait_until_ready(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        async for raw in self._proc.stdout:
            self.log.append(raw.decode(errors="replace").rstrip())
            if _READY in raw:
                self._drain = asyncio.get_running_loop().create_task(self._proc.stdout.read())
                return
        raise AssertionError("redis-server exited before it was ready:\n" + "\n".join(self.log))

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop it (its data goes with it: nothing is saved)."""
        if self._proc is None or self._proc.returncode is not None:
            return
        self._proc.terminate()
        async with asyncio.timeout(timeout):
            await self._proc.wait()
            if self._drain is not None:
                await self._drain

    async def close(self) -> None:
        try:
            await self.stop()
        except TimeoutError:
            assert self._proc is not None
            self._proc.kill()
            await self._proc.wait()
