"""The suite's loop-facing core on uvloop, the loop `serve` runs on: signature, dedupe, budget,
connection cap, pushes, Stream frames, the Redis guards and accounting hold there as on asyncio's own loop.

Pure code (the engine, DingTalk's formats) does not touch the loop and is not run twice. uvloop
has already differed once: its transports are not asyncio.Transport subclasses."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, TEST_LOOP

CORE = [
    "tests/test_event_loop.py::test_the_loop_is_the_one_asked_for",
    "tests/delivery",
    "tests/transport/test_callback.py",
    "tests/transport/test_hardening.py",
    "tests/transport/test_pushes.py",
    "tests/transport/test_stream_client.py",
    "tests/schedule/test_schedules_in_app.py",
    "tests/state",
]


async def test_the_loop_is_the_one_asked_for() -> None:
    loop = type(asyncio.get_running_loop())
    if TEST_LOOP == "uvloop":
        assert loop.__module__.startswith("uvloop")
    else:
        assert loop.__module__.startswith("asyncio")


@pytest.mark.slow
@pytest.mark.skipif(TEST_LOOP == "uvloop", reason="already running on uvloop")
def test_the_core_of_the_suite_passes_on_uvloop() -> None:
    environ = {**os.environ, "RESPONDER_TEST_LOOP": "uvloop"}
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *CORE]
    done = subprocess.run(argv, cwd=ROOT, env=environ, capture_output=True, text=True, timeout=300)
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-2000:]
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in summary and "failed" not in summary
