"""Run the callback and admin apps: bind, connection limits, signals, pid file, readiness,
graceful shutdown.

Only `responder serve` uses this; create_app stays free of process side effects so tests can
build many apps. Once both ports listen: the pid file, `on_listening(url)`, then systemd's
READY=1. Order on SIGTERM/SIGINT: STOPPING=1, stop accepting, let in-flight requests finish,
drain pending replies within the grace period (logging each one dropped), exit 0.

A `--workers` worker (Listen.control_socket set) runs the same way with three differences: it
shares the callback port with its siblings (SO_REUSEPORT), its admin endpoints answer the
supervisor on a Unix socket (plus POST /-/load: the rules file the supervisor read), and it
ignores SIGHUP (the supervisor reloads every worker with one file version) and stops when the
supervisor's end of its stdin closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from aiohttp import web

from responder import keys, systemd
from responder.rules.store import Reloader
from responder.settings import Listen
from responder.transport.admin import create_admin_app
from responder.transport.site import CappedSite, ConnectionCap, DescriptorAlarm, bind, connection_limit
from responder.workers import control

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


@contextlib.asynccontextmanager
async def process_edge(
    reloader: Reloader, listen: Listen, early: EarlySignals, config: Path
) -> AsyncIterator[asyncio.Event]:
    """Signals and reload triggers of a serving process; yields the event that stops it.

    SIGTERM and SIGINT set it. SIGHUP (and `--watch`) request reloads, except in a worker, which
    ignores SIGHUP and stops when its supervisor goes away.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    if listen.control_socket is not None:
        loop.add_signal_handler(signal.SIGHUP, lambda: None)
        tasks.append(loop.create_task(_set_when_done(control.until_supervisor_leaves(), stop)))
    else:
        loop.add_signal_handler(signal.SIGHUP, reloader.request)
        if early.hup_pending:
            reloader.request()
        tasks.append(loop.create_task(reloader.run()))
        if listen.watch:
            # Imported only here: watchfiles and its Rust extension cost 1.2 MiB of idle RSS.
            from responder.rules.watch import watch_rules

            tasks.append(loop.create_task(watch_rules(config, reloader.request)))
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        yield stop
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


async def _set_when_done(awaitable: Awaitable[None], event: asyncio.Event) -> None:
    await awaitable
    event.set()


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
    DescriptorAlarm().install(asyncio.get_running_loop())
    store = app[keys.STORE]
    reloader = Reloader(store)
    async with process_edge(reloader, listen, early, store.path) as stop:
        runners, url = await _start(app, listen, reloader)
        freeze_startup_heap()
        try:
            with pid_file(listen.pid_file):
                on_listening(url)
                announce_ready(listen)
                await stop.wait()
                systemd.notify(listen.notify_socket, "STOPPING=1")
                app[keys.READINESS]["shutting_down"] = lambda: False
                log.info("shutdown_started pending_replies=%d", app[keys.PIPELINE].pending)
        finally:
            for runner in runners:
                await runner.cleanup()
    log.info("shutdown_finished")
    return 0


def freeze_startup_heap() -> None:
    """Put everything alive once the server is up (modules, the first snapshot, the app) out of
    the garbage collector's reach, so each full collection walks only what came later.

    Once, at start-up: the first snapshot's few cycles (its Jinja environment) outlive it when a
    reload replaces it, a fixed cost. Freezing each new snapshot would keep every retired one's."""
    gc.collect()
    gc.freeze()


def announce_ready(listen: Listen) -> None:
    """Only now is the service up: systemd (Type=notify) reports "started" and starts what waits
    for it (a reload or stop before this point is queued by systemd); a worker tells its
    supervisor instead."""
    if listen.control_socket is not None:
        control.announce_ready()
    systemd.notify(listen.notify_socket, "READY=1")


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
    sock = bind(listen.host, listen.port, reuse_port=listen.control_socket is not None)
    site = CappedSite(runner, sock, cap)
    await site.start()
    if listen.control_socket is not None:
        control_runner = await control.start(app, listen.control_socket)
        log.info("worker_serving url=%s control=%s pid=%d", site.name, listen.control_socket, os.getpid())
        return [control_runner, runner], site.name
    runners = [runner]
    admin_url = "off"
    if listen.admin_port is not None:
        admin_runner, admin_url = await _start_admin(app, listen, reloader)
        runners.insert(0, admin_runner)
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


async def _start_admin(app: web.Application, listen: Listen, reloader: Reloader) -> tuple[web.AppRunner, str]:
    assert listen.admin_port is not None
    admin = create_admin_app(app, reloader if listen.reload_endpoint else None)
    runner = web.AppRunner(
        admin, handle_signals=False, access_log=None, keepalive_timeout=listen.keepalive_timeout_s
    )
    await runner.setup()
    site = web.TCPSite(runner, listen.admin_host, listen.admin_port)
    await site.start()
    return runner, url_of(site)


def url_of(site: web.TCPSite) -> str:
    return f"http://{site.name.split('://', 1)[1].rsplit(':', 1)[0]}:{site.port}"


@contextlib.contextmanager
def pid_file(path: Path | None) -> Iterator[None]:
    """This process's id in `path` (written atomically) while the block runs."""
    if path is None:
        yield
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{os.getpid()}\n")
    tmp.replace(path)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
