"""One worker process as its supervisor sees it: start it and wait until it serves, talk to its
control socket, stop it, and know when it exits."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from responder.workers.control import READY_LINE, rules_message

log = logging.getLogger(__name__)

Argv = Callable[[int, Path], list[str]]  # (worker index, its control socket) -> the command
CONTROL_TIMEOUT_S = 5.0
START_TIMEOUT_S = 120.0  # a worker loads and compiles the rules before it serves


class WorkerFailed(Exception):
    """The worker exited (or went silent) before it served."""


class WorkerProcess:
    def __init__(self, index: int, socket: Path, argv: Argv) -> None:
        self.index = index
        self.socket = socket
        self._argv = argv
        self._proc: asyncio.subprocess.Process | None = None
        self._session: aiohttp.ClientSession | None = None
        self.started_at = 0.0  # time.monotonic() when it last served
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def start(self, rules: bytes) -> None:
        """Spawn it on this rules file; return once it serves, WorkerFailed if it ends first."""
        self.socket.unlink(missing_ok=True)
        # After the rules, stdin stays open and unwritten: its end tells the worker that we are
        # gone, even if we are killed. stderr is ours: the worker's log lines go where ours do.
        self._proc = proc = await asyncio.create_subprocess_exec(
            *self._argv(self.index, self.socket),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdin is not None and proc.stdout is not None
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                proc.stdin.write(rules_message(rules))
                await proc.stdin.drain()
                line = await proc.stdout.readline()
        except TimeoutError:
            proc.kill()
            raise WorkerFailed(f"worker {self.index} did not serve within {START_TIMEOUT_S:g} s") from None
        except ConnectionError:  # it died before it read the rules
            line = b""
        if line.decode().strip() != READY_LINE:
            code = await proc.wait()
            raise WorkerFailed(f"worker {self.index} exited with code {code} before it served")
        self.started_at = time.monotonic()
        log.info("worker_started worker=%d pid=%d", self.index, proc.pid)

    async def wait(self) -> int:
        assert self._proc is not None
        return await self._proc.wait()

    def stop(self) -> None:
        """Ask it to drain and exit (SIGTERM), as `responder serve` always does."""
        if self.running:
            assert self._proc is not None
            self._proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        if self.running:
            assert self._proc is not None
            self._proc.kill()

    async def get(self, path: str) -> tuple[int, str]:
        """GET one of its admin endpoints: (status, body)."""
        async with self._client().get(f"http://worker{path}") as response:
            return response.status, await response.text()

    async def load(self, content: bytes) -> dict[str, Any]:
        """Reload it with this rules file; its reload status."""
        async with self._client().post("http://worker/-/load", data=content) as response:
            status: dict[str, Any] = json.loads(await response.text())
            return status

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._proc is not None and self._proc.stdin is not None:
            self._proc.stdin.close()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=str(self.socket)),
                timeout=aiohttp.ClientTimeout(total=CONTROL_TIMEOUT_S),
            )
        return self._session
