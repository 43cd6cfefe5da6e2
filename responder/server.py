"""Run the callback and admin apps: bind, signals, pid file and graceful shutdown.

Only `responder serve` uses this; create_app stays free of process side effects so tests can
build many apps. Order on SIGTERM/SIGINT: stop accepting, let in-flight requests finish, drain
pending replies within the grace period (logging each one dropped), exit 0.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from responder import keys
from responder.admin import create_admin_app
from responder.store import Reloader

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Listen:
    host: str = "127.0.0.1"
    port: int = 8080
    admin_host: str = "127.0.0.1"
    admin_port: int | None = 9180
    pid_file: Path | None = None
    shutdown_grace_s: float = 10.0
    reload_endpoint: bool = False
    reuse_port: bool = False
    max_connections: int = 1024
    # Idle keep-alive connections and requests whose headers never finish are closed after this.
    keepalive_timeout_s: float = 15.0


# Request-handling limits shared by production and the test client, so tests see what users get.
HANDLER_OPTIONS = {
    "auto_decompress": False,  # compressed bodies are refused, never inflated (no zip bombs)
    "max_headers": 64,
    "max_field_size": 8190,
    "max_line_size": 8190,
}


class EarlySignals:
    """Remembers a SIGHUP that arrives before the event loop can handle it, so none is lost."""

    def __init__(self) -> None:
        self.hup_pending = False
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, self._remember)

    def _remember(self, signum: int, frame: object) -> None:
        self.hup_pending = True


async def run(app: web.Application, listen: Listen, early: EarlySignals) -> int:
    loop = asyncio.get_running_loop()
    store = app[keys.STORE]
    reloader = Reloader(store)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGHUP, reloader.request)
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if early.hup_pending:
        reloader.request()
    reloading = loop.create_task(reloader.run())
    runners = await _start(app, listen, reloader)
    try:
        _write_pid(listen.pid_file)
        await stop.wait()
        app[keys.READINESS]["shutting_down"] = lambda: False
        log.info("shutdown_started pending_replies=%d", app[keys.DISPATCHER].pending)
    finally:
        for runner in runners:
            await runner.cleanup()
        reloading.cancel()
        _remove_pid(listen.pid_file)
        for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    log.info("shutdown_finished")
    return 0


async def _start(app: web.Application, listen: Listen, reloader: Reloader) -> list[web.AppRunner]:
    runner = web.AppRunner(
        app, handle_signals=False, shutdown_timeout=listen.shutdown_grace_s, access_log=None
    )
    await runner.setup()
    site = web.TCPSite(runner, listen.host, listen.port, reuse_port=listen.reuse_port or None)
    await site.start()
    runners = [runner]
    admin_url = "off"
    if listen.admin_port is not None:
        admin = create_admin_app(app, reloader if listen.reload_endpoint else None)
        admin_runner = web.AppRunner(admin, handle_signals=False, access_log=None)
        await admin_runner.setup()
        admin_site = web.TCPSite(admin_runner, listen.admin_host, listen.admin_port)
        await admin_site.start()
        runners.insert(0, admin_runner)
        admin_url = _url(admin_site)
    log.info(
        "listening url=%s admin=%s callback_path=%s pid=%d",
        _url(site),
        admin_url,
        app[keys.STORE].current.dingtalk.callback_path,
        os.getpid(),
    )
    return runners


def _url(site: web.BaseSite) -> str:
    if isinstance(site, web.TCPSite):
        return f"http://{site.name.split('://', 1)[1].rsplit(':', 1)[0]}:{site.port}"
    return site.name


def _write_pid(path: Path | None) -> None:
    if path is not None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(f"{os.getpid()}\n")
        tmp.replace(path)


def _remove_pid(path: Path | None) -> None:
    if path is not None:
        path.unlink(missing_ok=True)
