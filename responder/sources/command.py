"""The `exec` kind: run one fixed argv (never a shell) with a deadline and an output cap.

Opt-in by declaring it. Message args reach the command only with `pass_args: true`, each as its
own argv element, and never one that starts with '-' (it would be read as an option).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .base import FetchContext, SourceCall, SourceConfigError, SourceFetchError

MAX_PASSED_ARGS = 16
MINIMAL_ENV: Mapping[str, str] = MappingProxyType({"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"})


@dataclass(frozen=True, slots=True)
class ExecSpec:
    name: str
    key: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=lambda: MINIMAL_ENV)
    pass_args: bool = False
    max_output_bytes: int = 64 * 1024
    deadline_s: float = 3.0
    cache_ttl_s: float | None = None
    kind: str = "exec"

    def prepare(self, call: SourceCall) -> tuple[str, ...]:
        if not self.pass_args:
            return self.argv
        if len(call.args) > MAX_PASSED_ARGS or any(not is_plain_arg(a) for a in call.args):
            raise SourceFetchError("bad_input")
        return self.argv + tuple(call.args)

    async def load(self, ctx: FetchContext, argv: tuple[str, ...]) -> dict[str, Any]:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env=dict(self.env),
            cwd="/",
            start_new_session=True,  # its own process group, so a timeout kills children too
        )
        try:
            assert proc.stdout is not None
            stdout = await read_output(proc.stdout, self.max_output_bytes)
            exit_code = await proc.wait()
        finally:
            await reap(proc)
        return {"stdout": stdout.decode("utf-8", errors="replace"), "exit_code": exit_code}


def is_plain_arg(arg: str) -> bool:
    return not arg.startswith("-") and "\x00" not in arg


async def read_output(stream: asyncio.StreamReader, max_bytes: int) -> bytes:
    output = bytearray()
    while chunk := await stream.read(65536):
        output += chunk
        if len(output) > max_bytes:
            raise SourceFetchError("too_large")
    return bytes(output)


async def reap(proc: asyncio.subprocess.Process) -> None:
    """Kill whatever is left of the command's process group, then wait for the leader."""
    # Even after the leader exited, children it left behind may still run (and hold the pipe).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    # Discard what is left in the pipe: asyncio (3.11) only finishes wait() once the pipe reaches
    # EOF, and a pipe left full after `too_large` pauses reading, so EOF would never be seen.
    if proc.stdout is not None:
        await proc.stdout.read()
    await proc.wait()


def compile_exec(name: str, key: str, config: Mapping[str, Any]) -> ExecSpec:
    argv = tuple(str(a) for a in config["argv"])
    if not os.path.isabs(argv[0]):
        raise SourceConfigError(("argv", 0), "the program must be an absolute path")
    if not os.access(argv[0], os.X_OK):
        raise SourceConfigError(("argv", 0), f"{argv[0]!r} is not an executable file")
    env = MappingProxyType({**MINIMAL_ENV, **{k: str(v) for k, v in config.get("env", {}).items()}})
    return ExecSpec(
        name,
        key,
        argv,
        env=env,
        pass_args=bool(config.get("pass_args", False)),
        max_output_bytes=int(config.get("max_output_bytes", 64 * 1024)),
        deadline_s=float(config.get("timeout_s", 3)),
    )
