"""Run a real `responder serve` subprocess and talk to it (used by the process-level tests)."""

from __future__ import annotations

import asyncio
import os
import re
import resource
import signal
import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import REPO

_LISTENING = re.compile(r"listening url=(\S+) admin=(\S+)")


class ServerProcess:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._changed = asyncio.Condition()
        self._reader = asyncio.get_running_loop().create_task(self._read())
        self.url = ""
        self.admin = ""

    @classmethod
    async def start(
        cls,
        config: Path,
        *extra: str,
        environ: dict[str, str] | None = None,
        wait: bool = True,
        max_open_files: int | None = None,
    ) -> ServerProcess:
        env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", **(environ or {})}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "responder",
            "serve",
            "--config",
            str(config),
            "--port",
            "0",
            "--admin-port",
            "0",
            *extra,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            preexec_fn=None if max_open_files is None else partial(_limit_open_files, max_open_files),
        )
        server = cls(proc)
        if wait:
            found = await server.wait_for_line(_LISTENING)
            server.url, server.admin = found.group(1), found.group(2)
        return server

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            async with self._changed:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._changed.notify_all()
        async with self._changed:
            self._changed.notify_all()

    def stop_reading(self) -> None:
        """Leave stderr unread from now on, like a stuck log collector: the pipe fills up."""
        self._reader.cancel()

    def _resume_reading(self) -> None:
        """Drain stderr again (discarding it): asyncio's wait() only returns once it hits EOF."""
        if self._reader.cancelled():
            assert self.proc.stderr is not None
            self._reader = asyncio.get_running_loop().create_task(self.proc.stderr.read())

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    async def wait_for_line(self, pattern: re.Pattern[str] | str, timeout: float = 15.0) -> re.Match[str]:
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        async with asyncio.timeout(timeout):
            async with self._changed:
                while True:
                    for line in self.lines:
                        found = regex.search(line)
                        if found:
                            return found
                    if self._reader.done():
                        raise AssertionError(f"process ended without {regex.pattern!r}:\n{self.output}")
                    await self._changed.wait()

    def signal(self, signum: int = signal.SIGHUP) -> None:
        self.proc.send_signal(signum)

    async def exited(self, timeout: float = 15.0) -> int:
        """Wait for the process to end by itself."""
        self._resume_reading()
        async with asyncio.timeout(timeout):
            code = await self.proc.wait()
        await asyncio.gather(self._reader, return_exceptions=True)
        return code

    async def stop(self, timeout: float = 15.0) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        self._resume_reading()
        try:
            async with asyncio.timeout(timeout):
                code = await self.proc.wait()
        except TimeoutError:
            self.proc.kill()
            code = await self.proc.wait()
        await asyncio.gather(self._reader, return_exceptions=True)
        return code

    async def get(self, session: aiohttp.ClientSession, path: str) -> tuple[int, Any]:
        async with session.get(self.admin + path) as response:
            if response.content_type == "application/json":
                return response.status, await response.json()
            return response.status, await response.text()

    async def status(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        code, body = await self.get(session, "/-/status")
        assert code == 200
        return dict(body)

    async def reload_and_wait(self, session: aiohttp.ClientSession, timeout: float = 15.0) -> dict[str, Any]:
        """Send SIGHUP and poll /-/status until the attempt count moves (deadline, no sleep)."""
        before = (await self.status(session))["attempts"]
        self.signal(signal.SIGHUP)
        return await self.wait_status(session, lambda s: s["attempts"] > before, timeout)

    async def wait_status(
        self, session: aiohttp.ClientSession, predicate: Any, timeout: float = 15.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status = await self.status(session)
            if predicate(status):
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"status never matched: {status}\n{self.output}")
            await asyncio.sleep(0.02)  # polling interval under a deadline, not synchronisation


def _limit_open_files(limit: int) -> None:
    """In the child, before exec: the `ulimit -n` a small container or systemd unit might set."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))


def metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def argv(*parts: str) -> Sequence[str]:
    return parts
