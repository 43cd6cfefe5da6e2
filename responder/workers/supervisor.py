"""The `--workers` supervisor: start N workers on one port, keep them running, reload them all
with one rules file, answer the admin endpoints for all of them, and drain them all on SIGTERM.

The supervisor loads the rules itself (to refuse a bad file once, and to know the version every
worker must serve) but answers no message: the workers do.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import tempfile
import time
from functools import partial
from pathlib import Path

import aiohttp
from aiohttp import web

from responder import systemd
from responder.rules.store import Reloader, ReloadStatus, RuleStore
from responder.serve import EarlySignals, pid_file, process_edge, url_of
from responder.settings import Listen
from responder.workers import admin
from responder.workers.process import Argv, WorkerFailed, WorkerProcess

log = logging.getLogger(__name__)

RESTART_DELAYS_S = (1.0, 2.0, 5.0, 10.0, 30.0)  # after quick exits in a row; then the last again
HEALTHY_AFTER_S = 60.0  # a worker that served this long restarts after the first delay again
STOP_EXTRA_S = 10.0  # beyond --shutdown-grace before a worker that will not stop is killed
_CONTROL_ERRORS = (aiohttp.ClientError, OSError, TimeoutError, ValueError, KeyError)


class Fleet:
    """The workers, the rules they serve, and reloads that give each of them the same file."""

    def __init__(self, store: RuleStore, workers: list[WorkerProcess]) -> None:
        self.store = store
        self.workers = workers
        self.shutting_down = False
        self._keepers: list[asyncio.Task[None]] = []
        self._quick_exits = {worker.index: 0 for worker in workers}

    @property
    def status(self) -> ReloadStatus:
        return self.store.status

    async def start(self) -> None:
        """Start every worker; WorkerFailed if one does not come up (the caller stops the rest)."""
        await asyncio.gather(*(worker.start(self._rules()) for worker in self.workers))
        loop = asyncio.get_running_loop()
        self._keepers = [loop.create_task(self._keep(worker)) for worker in self.workers]

    async def reload(self) -> ReloadStatus:
        """Load the file here; if it is a new version, have every worker load exactly these bytes."""
        generation = self.store.status.generation
        status = await self.store.reload()
        if status.generation != generation:
            running = [worker for worker in self.workers if worker.running]
            took = await asyncio.gather(*(self._give_rules(worker) for worker in running))
            log.info(
                "workers_reloaded generation=%d sha256=%.12s workers=%d/%d",
                status.generation,
                status.sha256,
                sum(took),
                len(self.workers),
            )
        return status

    async def stop(self, grace_s: float) -> bool:
        """SIGTERM every worker, wait for them to drain; True if all exited 0."""
        self.shutting_down = True
        for keeper in self._keepers:
            keeper.cancel()
        await asyncio.gather(*self._keepers, return_exceptions=True)
        started = [worker for worker in self.workers if worker.pid is not None]
        for worker in started:
            worker.stop()
        try:
            async with asyncio.timeout(grace_s + STOP_EXTRA_S):
                codes = await asyncio.gather(*(worker.wait() for worker in started))
        except TimeoutError:
            log.error("workers_not_stopping killing=%d", sum(worker.running for worker in started))
            for worker in started:
                worker.kill()
            codes = [await worker.wait() for worker in started]
        for worker in self.workers:
            await worker.close()
        return all(code == 0 for code in codes)

    async def _give_rules(self, worker: WorkerProcess) -> bool:
        """Reload `worker` with the fleet's rules file; False (logged) if it did not take it."""
        current = self.store.current
        try:
            answer = await worker.load(self._rules())
            took = answer["last_reload_ok"] and answer["sha256"] == current.sha256
        except _CONTROL_ERRORS as exc:
            log.error("worker_reload_failed worker=%d error=%s", worker.index, type(exc).__name__)
            return False
        if not took:
            # Templates are read by each worker: one that changed meanwhile differs (or fails).
            log.error(
                "worker_reload_failed worker=%d sha256=%.12s expected=%.12s error=%s",
                worker.index,
                answer.get("sha256", ""),
                current.sha256,
                answer.get("last_error"),
            )
        return bool(took)

    def _rules(self) -> bytes:
        """The rules file every worker serves: the bytes the supervisor itself loaded last."""
        return self.store.current.text.encode("utf-8")

    async def _keep(self, worker: WorkerProcess) -> None:
        """Restart `worker` whenever it exits, after a delay that grows while it keeps failing."""
        while True:
            code = await worker.wait()
            if time.monotonic() - worker.started_at >= HEALTHY_AFTER_S:
                self._quick_exits[worker.index] = 0
            delay = RESTART_DELAYS_S[min(self._quick_exits[worker.index], len(RESTART_DELAYS_S) - 1)]
            self._quick_exits[worker.index] += 1
            log.error(
                "worker_exited worker=%d pid=%s code=%d restart_in_s=%g",
                worker.index,
                worker.pid,
                code,
                delay,
            )
            await asyncio.sleep(delay)
            worker.restarts += 1
            rules = self._rules()
            try:
                await worker.start(rules)
            except WorkerFailed as exc:
                log.error("worker_restart_failed %s", exc)
                continue
            if rules != self._rules():  # a reload happened while it was starting
                await self._give_rules(worker)


def claim_port(host: str, port: int) -> int:
    """The port the workers will share: `port`, or a free one for 0.

    OSError (EADDRINUSE) if anything listens on it already: SO_REUSEPORT would let the workers
    silently join another server's group (another responder, started twice) and split its traffic.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            message = f"{host}:{port} is already in use; --workers does not share a port with another server"
            raise OSError(errno.EADDRINUSE, message) from None
        return int(probe.getsockname()[1])


async def supervise(
    store: RuleStore, listen: Listen, count: int, argv: Argv, early: EarlySignals, grace_s: float
) -> int:
    """Run `count` workers until SIGTERM: 0 once all drained, 1 if they could not start or stop.

    `argv(port, index, socket)` is a worker's command; `grace_s`, how long each may drain.
    """
    port = claim_port(listen.host, listen.port)
    with tempfile.TemporaryDirectory(prefix="responder-workers-") as folder:
        sockets = [Path(folder) / f"worker-{index}.sock" for index in range(count)]
        fleet = Fleet(store, [WorkerProcess(i, path, partial(argv, port)) for i, path in enumerate(sockets)])
        reloader = Reloader(fleet)
        async with process_edge(reloader, listen, early, store.path) as stop:
            try:
                served = await _serve(fleet, listen, port, reloader, stop)
            finally:
                stopped = await fleet.stop(grace_s)
    log.info("shutdown_finished workers_clean=%s", stopped)
    return 0 if served and stopped else 1


async def _serve(fleet: Fleet, listen: Listen, port: int, reloader: Reloader, stop: asyncio.Event) -> bool:
    try:
        await fleet.start()
    except WorkerFailed as exc:
        log.error("workers_failed %s (their own lines above say why)", exc)
        return False
    runner, admin_url = await _start_admin(fleet, listen, reloader)
    try:
        log.info(
            "listening url=http://%s:%d admin=%s workers=%d pid=%d",
            listen.host,
            port,
            admin_url,
            len(fleet.workers),
            os.getpid(),
        )
        with pid_file(listen.pid_file):
            systemd.notify(listen.notify_socket, "READY=1")  # every worker serves
            await stop.wait()
            systemd.notify(listen.notify_socket, "STOPPING=1")
            fleet.shutting_down = True
            log.info("shutdown_started workers=%d", len(fleet.workers))
    finally:
        await runner.cleanup()
    return True


async def _start_admin(fleet: Fleet, listen: Listen, reloader: Reloader) -> tuple[web.AppRunner, str]:
    app = admin.create_fleet_admin(fleet, reloader if listen.reload_endpoint else None)
    runner = web.AppRunner(
        app, handle_signals=False, access_log=None, keepalive_timeout=listen.keepalive_timeout_s
    )
    await runner.setup()
    if listen.admin_port is None:
        return runner, "off"
    site = web.TCPSite(runner, listen.admin_host, listen.admin_port)
    await site.start()
    return runner, url_of(site)
