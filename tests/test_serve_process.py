"""`responder serve` as a supervisor and a newcomer see it: exit codes, systemd readiness, the
playground's URL and where logs go. Real processes, real sockets, loopback only."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from responder import systemd
from responder.cli import EXIT_CONFIG, EXIT_FAILURE
from tests.conftest import REPO, SECRET, RulesWriter
from tests.process import ServerProcess

pytestmark = pytest.mark.slow

ENV = {"DINGTALK_APP_SECRET": SECRET}
SIGNED_RULES = """
dingtalk:
  app_secret: ${DINGTALK_APP_SECRET}
rules:
  - {name: hi, keywords: [hi], msgtype: text, body: hello}
"""
UNSIGNED_RULES = """
rules:
  - {name: hi, keywords: [hi], msgtype: text, body: hello}
"""
BROKEN_RULES = "rules:\n  - name: x\n    keywords: [on]\n    msgtype: text\n    body: hi\n"


def _no_secret_environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("DINGTALK_APP_SECRET", "NOTIFY_SOCKET")}


async def run_responder(*argv: str, environ: dict[str, str] | None = None) -> tuple[int, str]:
    """Run the command to its end; its exit code and stderr."""
    env = {**_no_secret_environ(), "PYTHONPATH": str(REPO), **(environ or {})}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "responder",
        *argv,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    async with asyncio.timeout(30):
        _, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, err.decode()


# ---- exit codes ---------------------------------------------------------------------------------


async def test_broken_rules_at_start_up_exit_78_while_check_still_exits_1(write_rules: RulesWriter) -> None:
    path = write_rules(BROKEN_RULES)
    serve_code, serve_err = await run_responder("serve", "--config", str(path), "--port", "0", environ=ENV)
    check_code, check_err = await run_responder("check", "--config", str(path), environ=ENV)
    assert (serve_code, check_code) == (EXIT_CONFIG, EXIT_FAILURE) == (78, 1)
    assert f"{path}:3:" in serve_err and f"{path}:3:" in check_err
    assert "listening" not in serve_err


async def test_no_secret_without_dev_exits_78(write_rules: RulesWriter) -> None:
    path = write_rules(UNSIGNED_RULES)
    code, err = await run_responder("serve", "--config", str(path), "--port", "0")
    assert code == 78
    assert "no dingtalk.app_secret is set" in err


async def test_a_log_file_that_cannot_be_opened_exits_78(write_rules: RulesWriter, tmp_path: Path) -> None:
    path = write_rules(SIGNED_RULES)
    log_file = tmp_path / "no-such-dir" / "responder.log"
    code, err = await run_responder("serve", "--config", str(path), "--log-file", str(log_file), environ=ENV)
    assert code == 78
    assert "cannot set up logging" in err


async def test_a_port_already_taken_is_a_runtime_failure_exit_1(write_rules: RulesWriter) -> None:
    path = write_rules(SIGNED_RULES)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        code, err = await run_responder(
            "serve", "--config", str(path), "--port", port, "--admin-port", "-1", environ=ENV
        )
    assert code == 1
    assert "listen_failed" in err


# ---- systemd readiness (Type=notify) ------------------------------------------------------------


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    """A real abstract unix datagram socket, named as systemd names one in $NOTIFY_SOCKET."""
    name = f"responder-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind("\0" + name)
        receiver.setblocking(False)
        yield "@" + name, receiver


async def next_datagram(receiver: socket.socket, timeout: float = 30.0) -> str:
    async with asyncio.timeout(timeout):
        return (await asyncio.get_running_loop().sock_recv(receiver, 4096)).decode()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def accepts_connections(port: int) -> bool:
    with socket.socket() as client:
        return client.connect_ex(("127.0.0.1", port)) == 0


async def test_ready_is_sent_only_once_both_ports_listen_and_stopping_on_sigterm(
    write_rules: RulesWriter, notify_socket: tuple[str, socket.socket]
) -> None:
    address, receiver = notify_socket
    path = write_rules(SIGNED_RULES)
    callback_port, admin_port = free_port(), free_port()
    ports = ("--port", str(callback_port), "--admin-port", str(admin_port))  # known before it listens
    server = await ServerProcess.start(path, *ports, environ={**ENV, "NOTIFY_SOCKET": address}, wait=False)
    try:
        assert await next_datagram(receiver) == "READY=1"
        # Checked the moment READY=1 arrives, with no retry: "started" must mean "answering".
        assert accepts_connections(callback_port) and accepts_connections(admin_port)
        server.signal(signal.SIGTERM)
        assert await next_datagram(receiver) == "STOPPING=1"
        assert await server.exited(timeout=30) == 0
    finally:
        await server.stop()


async def test_a_config_error_sends_no_ready(
    write_rules: RulesWriter, notify_socket: tuple[str, socket.socket]
) -> None:
    address, receiver = notify_socket
    code, _ = await run_responder(
        "serve", "--config", str(write_rules(BROKEN_RULES)), environ={**ENV, "NOTIFY_SOCKET": address}
    )
    assert code == 78
    with pytest.raises(BlockingIOError):
        receiver.recv(4096)


def test_notify_writes_one_datagram_to_a_socket_path(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(str(path))
        assert systemd.notify(str(path), "READY=1") is True
        assert receiver.recv(4096) == b"READY=1"


def test_notify_into_an_abstract_socket() -> None:
    name = f"responder-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind("\0" + name)
        assert systemd.notify("@" + name, "STOPPING=1") is True
        assert receiver.recv(4096) == b"STOPPING=1"


@pytest.mark.parametrize("address", ["", "vsock:2:1234", "relative/notify"])
def test_notify_without_a_usable_address_does_nothing(address: str) -> None:
    assert systemd.notify(address, "READY=1") is False


def test_notify_to_a_socket_nobody_listens_on_never_raises(tmp_path: Path) -> None:
    assert systemd.notify(str(tmp_path / "gone"), "READY=1") is False


# ---- what a newcomer reads in the log -----------------------------------------------------------


async def test_dev_mode_logs_a_clickable_playground_url_once_the_port_is_bound(
    write_rules: RulesWriter,
) -> None:
    path = write_rules(UNSIGNED_RULES)
    server = await ServerProcess.start(path, "--dev", environ={"DINGTALK_APP_SECRET": ""})
    try:
        announced = await server.wait_for_line(
            r"playground_enabled url=(http://127\.0\.0\.1:(\d+)/-/playground/)$"
        )
        assert announced.group(1) == server.url + "/-/playground/"
        assert int(announced.group(2)) != 0  # the bound port, not the --port 0 it was asked for
        async with aiohttp.ClientSession() as session, session.get(announced.group(1)) as page:
            assert page.status == 200
            assert "responder playground" in await page.text()
    finally:
        assert await server.stop() == 0


async def test_with_a_log_file_records_go_to_the_file_only(write_rules: RulesWriter, tmp_path: Path) -> None:
    path = write_rules(SIGNED_RULES)
    log_file = tmp_path / "responder.log"
    server = await ServerProcess.start(path, "--log-file", str(log_file), environ=ENV, wait=False)
    try:
        deadline = time.monotonic() + 30
        while not (log_file.exists() and "listening url=" in log_file.read_text(encoding="utf-8")):
            assert time.monotonic() < deadline, server.output
            await asyncio.sleep(0.02)  # polling interval under a deadline, not synchronisation
    finally:
        assert await server.stop() == 0
    assert "shutdown_finished" in log_file.read_text(encoding="utf-8")
    assert server.output == ""  # stderr got nothing: the file replaces it
