"""The local kinds: time (injected wall clock), system (keys present) and exec (real processes)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from responder.sources import (
    KNOWN_KINDS,
    SourceCall,
    SourceConfigError,
    SourceHub,
    compile_source,
)
from responder.sources.system import load_figures

# 2024-07-01 12:00:00 UTC
NOON_UTC = 1719835200.0


@pytest.fixture
async def hub() -> AsyncIterator[SourceHub]:
    async with aiohttp.ClientSession() as session:
        h = SourceHub(session, wall_clock=lambda: NOON_UTC)
        yield h
        await h.close()


def test_every_schema_kind_is_known() -> None:
    assert set(KNOWN_KINDS) == {"public_ip", "http", "system", "time", "exec"}


def test_unknown_kind_is_a_config_error() -> None:
    with pytest.raises(SourceConfigError) as info:
        compile_source("x", {"kind": "ftp"})
    assert info.value.path == ("kind",)


async def test_time_is_given_in_the_configured_zone(hub: SourceHub) -> None:
    spec = compile_source("now", {"kind": "time", "timezone": "Asia/Shanghai", "format": "%H:%M"})
    result = await hub.fetch(spec, SourceCall())
    assert result.ok
    assert result.data == {
        "iso": "2024-07-01T20:00:00+08:00",
        "formatted": "20:00",
        "timezone": "Asia/Shanghai",
        "unix": 1719835200,
    }


async def test_time_defaults_to_utc(hub: SourceHub) -> None:
    result = await hub.fetch(compile_source("now", {"kind": "time"}), SourceCall())
    assert result.data["formatted"] == "2024-07-01 12:00:00 UTC"


@pytest.mark.parametrize("zone", ["Mars/Olympus", "../../etc/passwd", "", "/etc/localtime"])
def test_unknown_time_zone_is_a_config_error(zone: str) -> None:
    with pytest.raises(SourceConfigError) as info:
        compile_source("now", {"kind": "time", "timezone": zone})
    assert info.value.path == ("timezone",)


async def test_system_reports_every_documented_key(hub: SourceHub) -> None:
    spec = compile_source("sys", {"kind": "system", "paths": ["/", "/no/such/dir"]})
    result = await hub.fetch(spec, SourceCall())
    assert result.ok
    data = result.data
    assert set(data) == {"hostname", "uptime_s", "uptime", "load", "cpu_count", "memory", "disks"}
    assert data["hostname"]
    assert set(data["load"]) == {"1m", "5m", "15m"}
    assert all(round(value, 2) == value for value in data["load"].values())
    assert data["memory"]["total_bytes"] >= data["memory"]["used_bytes"] > 0
    root, missing = data["disks"]
    assert root["path"] == "/" and root["total_bytes"] > 0
    assert missing == {"path": "/no/such/dir", "error": "unavailable"}


@pytest.mark.parametrize(
    ("averages", "shown"),
    [
        ((0.2099609375, 1.005, 12.3456), {"1m": 0.21, "5m": 1.0, "15m": 12.35}),
        ((0.0, 0.004, 0.005001), {"1m": 0.0, "5m": 0.0, "15m": 0.01}),
    ],
)
def test_system_load_is_rounded_to_two_decimals(
    averages: tuple[float, float, float], shown: dict[str, float]
) -> None:
    assert load_figures(*averages) == shown


def test_system_paths_must_be_absolute() -> None:
    with pytest.raises(SourceConfigError) as info:
        compile_source("sys", {"kind": "system", "paths": ["/", "data"]})
    assert info.value.path == ("paths", 1)


def exec_source(*argv: str, **config: Any) -> Any:
    return compile_source("cmd", {"kind": "exec", "argv": list(argv), **config})


async def test_exec_returns_stdout_and_exit_code(hub: SourceHub) -> None:
    result = await hub.fetch(exec_source("/bin/sh", "-c", "echo hi; exit 3"), SourceCall())
    assert result.ok and result.data == {"stdout": "hi\n", "exit_code": 3}


async def test_exec_ignores_message_args_without_pass_args(hub: SourceHub) -> None:
    spec = exec_source("/bin/echo", "fixed")
    result = await hub.fetch(spec, SourceCall(args=("extra", "; rm -rf /")))
    assert result.data["stdout"] == "fixed\n"


async def test_exec_appends_args_as_separate_elements_with_pass_args(hub: SourceHub) -> None:
    spec = exec_source(sys.executable, "-c", "import sys; print(sys.argv[1:])", pass_args=True)
    result = await hub.fetch(spec, SourceCall(args=("a b", "$(id)", ";ls")))
    assert result.data["stdout"] == "['a b', '$(id)', ';ls']\n"


@pytest.mark.parametrize("arg", ["-rf", "--help", "a\x00b"])
async def test_exec_refuses_option_like_args(hub: SourceHub, arg: str) -> None:
    spec = exec_source("/bin/echo", pass_args=True)
    result = await hub.fetch(spec, SourceCall(args=("ok", arg)))
    assert (result.ok, result.error) == (False, "bad_input")


async def test_exec_env_is_minimal(hub: SourceHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESPONDER_SECRET_FOR_TEST", "leak")
    spec = exec_source("/usr/bin/env", env={"EXTRA": "1"})
    result = await hub.fetch(spec, SourceCall())
    names = {line.split("=", 1)[0] for line in result.data["stdout"].splitlines()}
    assert names == {"PATH", "LANG", "EXTRA"}


async def test_exec_output_over_the_cap_is_too_large(hub: SourceHub) -> None:
    spec = exec_source(
        "/bin/sh", "-c", "yes", max_output_bytes=1000, timeout_s=30
    )  # a loaded CI box is slow to spawn
    result = await hub.fetch(spec, SourceCall())
    assert (result.ok, result.error) == (False, "too_large")


async def test_exec_timeout_kills_the_whole_process_group(hub: SourceHub, tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    script = f"sleep 60 & echo $! > {pid_file}; wait"
    spec = exec_source("/bin/sh", "-c", script, timeout_s=0.5)
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await hub.fetch(spec, SourceCall())
    assert (result.ok, result.error) == (False, "timeout")
    assert loop.time() - started < 0.5 * 5
    await wait_until_dead(int(pid_file.read_text()))


async def wait_until_dead(pid: int) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while is_running(pid):
        assert loop.time() < deadline, f"process {pid} survived the timeout"
        await asyncio.sleep(0.01)


def is_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


@pytest.mark.parametrize(
    ("argv", "path"),
    [(["sh", "-c", "true"], ("argv", 0)), (["/no/such/program"], ("argv", 0))],
)
def test_exec_program_must_be_an_absolute_executable(argv: list[str], path: tuple) -> None:
    with pytest.raises(SourceConfigError) as info:
        compile_source("cmd", {"kind": "exec", "argv": argv})
    assert info.value.path == path


def test_exec_is_only_run_by_the_hub() -> None:
    spec = exec_source("/bin/true")
    assert spec.kind == "exec" and spec.deadline_s == 3
    assert os.path.isabs(spec.argv[0])  # type: ignore[attr-defined]
