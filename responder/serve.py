"""Run the callback and admin apps: bind, connection limits, signals, pid file, readiness,
graceful shutdown.

Only `responder serve` uses this; create_app stays free of process side effects so tests can
build many apps. Once both ports listen: the pid file, `on_listening(url)`, then systemd's
READY=1. Order on SIGTERM/SIGINT: STOPPING=1, stop accepting, let in-flight requests finish,
drain pending replies within the grace period (logging each one dropped), exit 0.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from responder import keys, systemd
from responder.rules.store import Reloader
from responder.settings import Listen
from responder.transport.admin import create_admin_app
from responder.transport.site import CappedSite, ConnectionCap, DescriptorAlarm, bind, connection_limit

log = logging.getLogger(__name__)

# Request-handling limits shared by production and the test client, so tests see what users get.
HANDLER_OPTIONS: dict[str, Any] = {
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


def nothing(url: str) -> None:
    """The default `on_listening`."""


async def run(
    app: web.Application,
    listen: Listen,
    early: EarlySignals,
    *,
    on_listening: Callable[[str], None] = nothing,
) -> int:
    """Serve until SIGTERM/SIGINT; `on_listening` gets the callback port's URL once both ports are
    bound (the port is known only then when it was 0)."""
    loop = asyncio.get_running_loop()
    DescriptorAlarm().install(loop)
    reloader = Reloader(app[keys.STORE])
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGHUP, reloader.request)
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if early.hup_pending:
        reloader.request()
    reloading = loop.create_task(reloader.run())
    runners, url = await _start(app, listen, reloader)
    try:
        _write_pid(listen.pid_file)
        on_listening(url)
        # Only now is the service up: systemd (Type=notify) reports "started" and starts what
        # waits for it, and a reload or stop before this point is queued by systemd.
        systemd.notify(listen.notify_socket, "READY=1")
        await stop.wait()
        systemd.notify(listen.notify_socket, "STOPPING=1")
        app[keys.READINESS]["shutting_down"] = lambda: False
        log.info("shutdown_started pending_replies=%d", app[keys.PIPELINE].pending)
    finally:
        for runner in runners:
            await runner.cleanup()
        reloading.cancel()
        _remove_pid(listen.pid_file)
        for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    log.info("shutdown_finished")
    return 0


def callback_runner(app: web.Application, listen: Listen) -> web.AppRunner:
    """The callback port's runner, with the limits production applies (tests build it too)."""
    return web.AppRunner(
        app,
        handle_signals=False,
        shutdown_timeout=app[keys.OPTIONS].shutdown_grace_s,
        access_log=None,
        # Closes idle keep-alive connections and those whose headers never finish (aiohttp's own
        # default is an hour): its timer starts when a connection opens or a response ends.
        keepalive_timeout=listen.keepalive_timeout_s,
        **HANDLER_OPTIONS,
    )


async def _start(app: web.Application, listen: Listen, reloader: Reloader) -> tuple[list[web.AppRunner], str]:
    """Bind and start both sites; the runners (admin first, for cleanup) and the callback URL."""
    runner = callback_runner(app, listen)
    await runner.setup()
    cap = ConnectionCap(connection_limit(listen.max_connections))
    site = CappedSite(runner, bind(listen.host, listen.port), cap)
    await site.start()
    runners = [runner]
    admin_url = "off"
    if listen.admin_port is not None:
        admin = create_admin_app(app, reloader if listen.reload_endpoint else None)
        admin_runner = web.AppRunner(
            admin, handle_signals=False, access_log=None, keepalive_timeout=listen.keepalive_timeout_s
        )
        await admin_runner.setup()
        admin_site = web.TCPSite(admin_runner, listen.admin_host, listen.admin_port)
        await admin_site.start()
        runners.insert(0, admin_runner)
        admin_url = _url(admin_site)
    log.info(
        "listening url=%s admin=%s callback_path=%s max_connections=%d keepalive_timeout_s=%g pid=%d",
        site.name,
        admin_url,
        app[keys.STORE].running.callback_path,
        cap.limit,
        listen.keepalive_timeout_s,
        os.getpid(),
    )
    return runners, site.name


def _url(site: web.TCPSite) -> str:
    return f"http://{site.name.split('://', 1)[1].rsplit(':', 1)[0]}:{site.port}"


def _write_pid(path: Path | None) -> None:
    if path is not None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(f"{os.getpid()}\n")
        tmp.replace(path)


def _remove_pid(path: Path | None) -> None:
    if path is not None:
        path.unlink(missing_ok=True)
