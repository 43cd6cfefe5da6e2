"""Shared harness for the benchmarks: a `responder serve` subprocess, a reply sink, signed callbacks, figures.

Load goes to 127.0.0.1 only and every wait here has a deadline. Nothing in responder imports this.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import re
import signal
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # bench scripts run as files; responder need not be installed

from tests import conftest as test_helpers  # noqa: E402  (the suite's helpers, not copies)

if TYPE_CHECKING:
    from responder.dingtalk import Message
    from responder.engine.matching import Matcher

SECRET = "bench-app-secret-not-real"
CALLBACK_PATH = "/dingtalk/callback"
LISTENING = re.compile(r"listening url=(\S+)(?: admin=(\S+))?")
_PONG = re.compile(r"pong (\S+)")
PR_SET_PDEATHSIG = 1


def signed_headers(secret: str = SECRET) -> dict[str, str]:
    """Callback headers. The signature covers only the timestamp, so one set is valid for the window."""
    return test_helpers.signed_headers(secret)


def callback_body(text: str, msg_id: str, webhook: str) -> dict[str, Any]:
    """The test suite's callback (the protocol sheet's example) with a live sessionWebhook expiry.

    Each message comes from a conversation of its own: DingTalk allows 20 replies a minute per
    conversation and responder keeps to that, which is not what these benchmarks measure.
    """
    return test_helpers.callback_body(text, webhook=webhook, msgId=msg_id, conversationId=f"cidBENCH{msg_id}")


def rules_yaml(
    origin: str, *, revision: int = 0, extra_rules: str = "", reply: str = "session_webhook"
) -> str:
    """A signed config whose `ping ID` rule answers `pong ID`, so the sink can tell replies apart,
    and the bundled `help` rule (its template is copied in by write_rules)."""
    return f"""# revision {revision}
dingtalk:
  app_secret: ${{DINGTALK_APP_SECRET}}
  session_webhook_origins: ["{origin}"]
  reply: {reply}
rules:
  - name: ping
    description: Answers pong with the same id
    command: [ping]
    msgtype: text
    at_sender: false
    body: "pong {{{{ args_text }}}}"
  - name: help
    description: What I can do
    keywords: [help, 帮助]
    msgtype: markdown
    title: Help
    template: help.md.j2
{extra_rules}  - name: unknown
    fallback: true
    msgtype: text
    at_sender: false
    body: "unknown"
"""


def keyword_rules(count: int, *, scanned: int = 0) -> str:
    """`count` keyword rules (k0..), after `scanned` contains/regex rules that outrank them (priority 1)."""
    lines = []
    for i in range(scanned):
        trigger = f"contains: [w{i}]" if i % 2 else f"regex: '^re{i} (?P<n>[0-9]+)$'"
        lines.append(f"  - {{name: s{i}, priority: 1, {trigger}, msgtype: text, body: s{i}}}\n")
    for i in range(count):
        lines.append(f"  - {{name: r{i}, keywords: [k{i}], msgtype: text, body: r{i}}}\n")
    return "".join(lines)


def write_rules(path: Path, text: str) -> Path:
    """Write atomically (a reload never reads half a file), with the bundled help template."""
    (path.parent / "templates").mkdir(parents=True, exist_ok=True)
    help_template = (REPO / "templates" / "help.md.j2").read_bytes()
    (path.parent / "templates" / "help.md.j2").write_bytes(help_template)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
    return path


class Sink:
    """A fake DingTalk sessionWebhook on 127.0.0.1 that counts replies and notes when each `pong ID` came."""

    def __init__(self, *, record: bool = True) -> None:
        self.record = record
        self.count = 0
        self.arrivals: dict[str, float] = {}
        self.duplicates = 0
        self.unreadable = 0
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def webhook(self) -> str:
        return f"{self.origin}/robot/sendBySession?session=bench0123456789abcdef"

    async def start(self) -> Sink:
        app = web.Application()
        app.router.add_post("/robot/sendBySession", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.count += 1
        if self.record:
            self._note(raw)
        return web.Response(body=b'{"errcode":0,"errmsg":"ok"}', content_type="application/json")

    def _note(self, raw: bytes) -> None:
        try:
            found = _PONG.search(json.loads(raw)["text"]["content"])
        except (ValueError, KeyError, TypeError):
            found = None
        if found is None:
            self.unreadable += 1
        elif found.group(1) in self.arrivals:
            self.duplicates += 1
        else:
            self.arrivals[found.group(1)] = time.monotonic()


def _die_with_parent() -> None:
    # A benchmark killed hard must not leave servers running: the kernel sends SIGTERM for us.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Process:
    """A server subprocess whose stderr goes to a log file; `start` waits for its `listening` line."""

    def __init__(self, proc: asyncio.subprocess.Process, log_path: Path) -> None:
        self.proc = proc
        self.log_path = log_path
        self.url = ""
        self.admin = ""
        self.started_s = 0.0

    @classmethod
    async def start(
        cls,
        argv: Sequence[str],
        log_path: Path,
        environ: dict[str, str] | None = None,
        timeout_s: float = 120,
    ) -> Process:
        pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")]))
        env = {**os.environ, "PYTHONPATH": pythonpath, "PYTHONUNBUFFERED": "1", **(environ or {})}
        began = time.monotonic()
        with log_path.open("wb") as log_file:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log_file,
                env=env,
                preexec_fn=_die_with_parent,
            )
        process = cls(proc, log_path)
        try:
            await process._await_listening(timeout_s)
        except BaseException:
            await process.stop()
            raise
        process.started_s = time.monotonic() - began
        return process

    @classmethod
    async def responder(
        cls, config: Path, log_path: Path, timeout_s: float = 120, extra_args: Sequence[str] = ()
    ) -> Process:
        argv = [sys.executable, "-m", "responder", "serve", "--config", str(config)]
        argv += ["--port", "0", "--admin-port", "0", *extra_args]
        return await cls.start(argv, log_path, {"DINGTALK_APP_SECRET": SECRET}, timeout_s)

    async def _await_listening(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = LISTENING.search(self.log())
            if found:
                self.url, self.admin = found.group(1), found.group(2) or ""
                return
            if self.proc.returncode is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}:\n{self.tail()}")
            await asyncio.sleep(0.02)  # polling a log file under a deadline
        raise RuntimeError(f"server did not listen within {timeout_s}s:\n{self.tail()}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text("utf-8", "replace")

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def rss_kib(self) -> int | None:
        return rss_kib(self.pid)

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    async def stop(self, timeout_s: float = 20) -> int:
        """SIGTERM, then SIGKILL after `timeout_s`. Returns the exit code."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout_s)
        except TimeoutError:
            self.proc.kill()
            return await self.proc.wait()

    async def status(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        async with session.get(self.admin + "/-/status") as response:
            response.raise_for_status()
            return dict(await response.json())


async def wait_for(
    check: Callable[[], Awaitable[Any]], timeout_s: float, interval_s: float = 0.01
) -> tuple[Any, float]:
    """Poll `check` until it returns something truthy. Returns (value, seconds taken); raises TimeoutError."""
    began = time.monotonic()
    while True:
        value = await check()
        if value:
            return value, time.monotonic() - began
        if time.monotonic() - began > timeout_s:
            raise TimeoutError(f"condition not met within {timeout_s}s")
        await asyncio.sleep(interval_s)  # polling under a deadline


def rss_kib(pid: int) -> int | None:
    """VmRSS of `pid` in KiB from /proc, or None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def slope_per_minute(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, in value units per minute."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if spread == 0:
        return 0.0
    return 60 * sum((t - mean_t) * (v - mean_v) for t, v in points) / spread


def ns_per_find(matcher: Matcher, message: Message, expected: str, loops: int) -> float:
    """Best-of-5 ns per matcher.find(message); checks the answer so a broken case cannot look fast."""
    found = matcher.find(message)
    assert found is not None and found.rule.name == expected, (expected, found)
    best = float("inf")
    for _ in range(5):
        began = time.perf_counter_ns()
        for _ in range(loops):
            matcher.find(message)
        best = min(best, (time.perf_counter_ns() - began) / loops)
    return best


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def ratio(value: float, baseline: float) -> str:
    return f"{value / baseline:.2f}x" if baseline else "n/a"


def status_classes(codes: Counter[int]) -> dict[str, int]:
    """2xx / 4xx / 5xx counts from a Counter of HTTP status codes."""
    return {
        "2xx": sum(n for c, n in codes.items() if 200 <= c < 300),
        "4xx": sum(n for c, n in codes.items() if 400 <= c < 500),
        "5xx": sum(n for c, n in codes.items() if c >= 500),
    }
