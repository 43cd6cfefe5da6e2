"""`responder serve --workers N` as a real process tree: what it refuses, reloads that give
every worker the same file, a drain on SIGTERM, a crashed worker restarted, and workers that
never outlive their supervisor. (Two workers answering as one: tests/test_replicas_process.py.)"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import SECRET, RulesWriter, Sink, callback_body
from tests.process import ServerProcess
from tests.redis_server import RedisServer
from tests.replicas import Replicas, samples

pytestmark = pytest.mark.slow


def rules_text(origin: str, reply: str = "v1", backend: str = "redis") -> str:
    state = "state:\n  backend: redis\n  url: ${REDIS_URL}\n" if backend == "redis" else ""
    return f"""
dingtalk:
  app_secret: ${{DINGTALK_APP_SECRET}}
  session_webhook_origins: ["{origin}"]
{state}rules:
  - {{name: version, keywords: [version], msgtype: text, at_sender: false, body: "{reply}"}}
"""


@pytest.fixture
def environ(redis_server: RedisServer) -> dict[str, str]:
    return {"DINGTALK_APP_SECRET": SECRET, "REDIS_URL": redis_server.url}


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def test_memory_backend_with_two_workers_is_refused(write_rules: RulesWriter, sink: Sink) -> None:
    path = write_rules(rules_text(sink.origin, backend="memory"))
    server = await ServerProcess.start(
        path, "--workers", "2", environ={"DINGTALK_APP_SECRET": SECRET}, wait=False
    )
    assert await server.exited() == 78  # EX_CONFIG: a restart will not fix it
    assert "--workers 2 needs state.backend: redis" in server.output
    assert "worker_started" not in server.output


@pytest.mark.parametrize("reuse_port", [False, True], ids=["plain_listener", "reuseport_listener"])
async def test_a_port_already_taken_is_refused(
    write_rules: RulesWriter, sink: Sink, environ: dict[str, str], reuse_port: bool
) -> None:
    with socket.socket() as taken:
        if reuse_port:  # another --workers responder: SO_REUSEPORT would let us join its group
            taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = write_rules(rules_text(sink.origin))
        argv = ("--workers", "2", "--port", str(port))
        server = await ServerProcess.start(path, *argv, environ=environ, wait=False)
        assert await server.exited() == 1
    assert f"127.0.0.1:{port} is already in use" in server.output
    assert "worker_started" not in server.output


async def test_log_file_with_workers_is_refused(
    write_rules: RulesWriter, sink: Sink, environ: dict[str, str], tmp_path: Path
) -> None:
    path = write_rules(rules_text(sink.origin))
    argv = ("--workers", "2", "--log-file", str(tmp_path / "r.log"))
    server = await ServerProcess.start(path, *argv, environ=environ, wait=False)
    assert await server.exited() == 78
    assert "--log-file cannot be used with --workers" in server.output


async def test_sighup_reloads_every_worker_with_the_same_file(
    write_rules: RulesWriter, sink: Sink, environ: dict[str, str], session: aiohttp.ClientSession
) -> None:
    path = write_rules(rules_text(sink.origin, "v1"))
    replicas = await Replicas.start(path, environ, workers=2, extra=("--reload-settle", "0"))
    supervisor = replicas.servers[0]
    try:
        path.write_text(rules_text(sink.origin, "v2"))
        status = await supervisor.reload_and_wait(session)
        assert (status["last_reload_ok"], status["generation"]) == (True, 2)
        workers = [w["status"] for w in (await supervisor.status(session))["workers"]]
        assert [w["sha256"] for w in workers] == [status["sha256"]] * 2
        await supervisor.wait_for_line("workers_reloaded generation=2")
        for _ in range(12):
            assert await replicas.post(callback_body("version", webhook=sink.webhook())) == 200
        replies = {(await sink.next(10))["json"]["text"]["content"] for _ in range(12)}
        assert replies == {"v2"}
        handled = await replicas.per_replica(session, "responder_messages_total")
        assert len(handled) == 2, handled  # both workers answered, with the new rules

        path.write_text(rules_text(sink.origin, "v3").replace("msgtype: text", "msgtype: txet"))
        status = await supervisor.reload_and_wait(session)
        assert status["last_reload_ok"] is False and status["generation"] == 2
        workers = [w["status"] for w in (await supervisor.status(session))["workers"]]
        assert [w["generation"] for w in workers] == [2, 2]  # a bad file never reaches a worker
    finally:
        assert await replicas.stop() == [0]


async def test_sigterm_drains_every_worker(
    write_rules: RulesWriter, sink: Sink, environ: dict[str, str], session: aiohttp.ClientSession
) -> None:
    path = write_rules(rules_text(sink.origin))
    replicas = await Replicas.start(path, environ, workers=2)
    sink.hold = asyncio.Event()
    for _ in range(6):
        assert await replicas.post(callback_body("version", webhook=sink.webhook())) == 200
    async with asyncio.timeout(10):
        while sink.arrivals < 6:  # every reply is on its way, held by the sink
            await asyncio.sleep(0.02)  # polling under a deadline
    handled = await replicas.per_replica(session, "responder_replies_pending")
    assert sorted(handled) == ["0", "1"] and sum(handled.values()) == 6, handled
    supervisor = replicas.servers[0]
    supervisor.signal(signal.SIGTERM)
    await supervisor.wait_for_line("shutdown_started workers=2")
    sink.hold.set()
    assert await supervisor.exited() == 0
    assert sink.count == 6  # nothing dropped
    assert supervisor.output.count("shutdown_finished worker=") == 2


async def test_a_killed_worker_is_restarted_and_serves_the_fleets_rules(
    write_rules: RulesWriter, sink: Sink, environ: dict[str, str], session: aiohttp.ClientSession
) -> None:
    path = write_rules(rules_text(sink.origin, "v1"))
    replicas = await Replicas.start(path, environ, workers=2, extra=("--reload-settle", "0"))
    supervisor = replicas.servers[0]
    try:
        path.write_text(rules_text(sink.origin, "v2"))
        await supervisor.reload_and_wait(session)
        path.write_text(rules_text(sink.origin, "v3-not-reloaded"))  # on disk, but never loaded
        victim = (await supervisor.status(session))["workers"][1]["pid"]
        os.kill(victim, signal.SIGKILL)
        status = await supervisor.wait_status(
            session, lambda s: s["workers"][1]["restarts"] == 1 and s["workers"][1]["status"] is not None
        )
        assert status["workers"][1]["pid"] != victim
        assert status["workers"][1]["status"]["sha256"] == status["sha256"]  # v2, as the others
        assert "worker_exited worker=1" in supervisor.output
    finally:
        assert await replicas.stop() == [0]


async def test_workers_never_outlive_their_supervisor(
    write_rules: RulesWriter, sink: Sink, environ: dict[str, str], session: aiohttp.ClientSession
) -> None:
    path = write_rules(rules_text(sink.origin))
    replicas = await Replicas.start(path, environ, workers=2)
    supervisor = replicas.servers[0]
    pids = [w["pid"] for w in (await supervisor.status(session))["workers"]]
    supervisor.proc.kill()
    await supervisor.exited()
    deadline = time.monotonic() + 15
    while any(_alive(pid) for pid in pids):
        assert time.monotonic() < deadline, "a worker outlived its supervisor"
        await asyncio.sleep(0.05)  # polling under a deadline


async def test_metrics_label_every_sample_with_its_worker(
    write_rules: RulesWriter, sink: Sink, environ: dict[str, str], session: aiohttp.ClientSession
) -> None:
    path = write_rules(rules_text(sink.origin))
    replicas = await Replicas.start(path, environ, workers=2)
    try:
        [exposition] = await replicas.expositions(session)
        for name in ("responder_rules_loaded", "responder_state_backend_up", "responder_replies_pending"):
            assert sorted(labels["worker"] for labels, _ in samples(exposition, name)) == ["0", "1"], name
    finally:
        assert await replicas.stop() == [0]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
