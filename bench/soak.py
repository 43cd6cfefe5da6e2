#!/usr/bin/env python3
"""Soak: open-loop signed callbacks against a real `responder serve`, with SIGHUP reloads and RSS sampling.

Sends are scheduled at t0 + i/rate whatever the server does (late and missed sends are counted), all to
127.0.0.1; the run is bounded by --duration. Exit 1 on any non-2xx, connection error, lost or duplicate
reply, wrong reload result or unclean server exit. `--duration 20` is the CI version.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import common

from tests import breakers  # the reload battery's ways to break a file

INVALID_RULES = "rules:\n  - name: broken\n    keywords: [x]\n    msgtype: txet\n    body: x\n"


@dataclass
class Load:
    """What the sender saw."""

    sent: int = 0
    late: int = 0
    missed: int = 0
    codes: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    sent_at: dict[str, float] = field(default_factory=dict)
    accepted: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class ReloadResult:
    at_s: float
    kind: str  # valid or invalid
    correct: bool
    took_s: float
    detail: str


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--duration", type=float, default=180, help="seconds of load (default 180)")
    parser.add_argument("--rate", type=float, default=50, help="callbacks per second (default 50)")
    parser.add_argument("--reload-every", type=float, default=30, help="seconds between SIGHUPs (default 30)")
    parser.add_argument("--late-ms", type=float, default=10, help="a send this late counts as late")
    parser.add_argument("--max-lag-s", type=float, default=1.0, help="a send this late is skipped (missed)")
    parser.add_argument("--max-in-flight", type=int, default=500, help="more pending sends: missed")
    parser.add_argument("--drain-s", type=float, default=15, help="how long to wait for the last replies")
    return parser.parse_args(argv)


async def send_one(
    session: aiohttp.ClientSession, server: common.Process, sink: common.Sink, load: Load, msg_id: str
) -> None:
    body = json.dumps(common.callback_body(f"ping {msg_id}", f"soak-{msg_id}", sink.webhook)).encode()
    began = time.monotonic()
    load.sent_at[msg_id] = began
    try:
        async with session.post(
            server.url + common.CALLBACK_PATH, data=body, headers=common.signed_headers()
        ) as response:
            await response.read()
            load.codes[response.status] += 1
            if 200 <= response.status < 300:
                load.accepted.add(msg_id)
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        load.errors[type(exc).__name__] += 1
        return
    load.latencies_ms.append((time.monotonic() - began) * 1000)


async def generate(
    args: argparse.Namespace, server: common.Process, sink: common.Sink, load: Load, t0: float
) -> None:
    """Open loop: send i is due at t0 + i/rate; pending sends never hold back the schedule."""
    total = int(args.duration * args.rate)
    in_flight: set[asyncio.Task[None]] = set()
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=200)) as session:
        for i in range(total):
            lag = await _until(t0 + i / args.rate)
            if lag > args.max_lag_s or len(in_flight) >= args.max_in_flight:
                load.missed += 1
                continue
            load.late += lag * 1000 > args.late_ms
            load.sent += 1
            task = asyncio.create_task(send_one(session, server, sink, load, str(i)))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        if in_flight:
            await asyncio.gather(*in_flight)


async def _until(due: float) -> float:
    """Sleep until `due` (monotonic seconds); return how late we woke."""
    delay = due - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
    return max(0.0, time.monotonic() - due)


async def reload_cycle(
    args: argparse.Namespace, server: common.Process, config: Path, origin: str, t0: float
) -> list[ReloadResult]:
    """Every --reload-every seconds: odd turns load a changed valid file, even turns an invalid one."""
    results: list[ReloadResult] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        turn = 1
        while turn * args.reload_every < args.duration:
            await _until(t0 + turn * args.reload_every)
            results.append(await reload_once(session, server, config, origin, turn, t0))
            turn += 1
    return results


async def reload_once(
    session: aiohttp.ClientSession, server: common.Process, config: Path, origin: str, turn: int, t0: float
) -> ReloadResult:
    valid = turn % 2 == 1
    before = await server.status(session)
    break_file(config, origin, turn) if not valid else write_valid(config, origin, turn)
    at_s = time.monotonic() - t0
    server.signal(signal.SIGHUP)

    async def attempted() -> dict[str, object] | None:
        status = await server.status(session)
        return status if status["attempts"] > before["attempts"] else None

    try:
        after, took_s = await common.wait_for(attempted, timeout_s=15)
    except TimeoutError:
        return ReloadResult(at_s, "valid" if valid else "invalid", False, 15, "no reload attempt seen")
    if valid:
        correct = after["last_reload_ok"] is True and after["generation"] == before["generation"] + 1
    else:
        correct = after["last_reload_ok"] is False and after["generation"] == before["generation"]
    detail = f"generation {before['generation']}->{after['generation']}"
    detail += f" last_reload_ok={after['last_reload_ok']}"
    return ReloadResult(at_s, "valid" if valid else "invalid", correct, took_s, detail)


VERSION_RULE = "  - {name: version, keywords: [version], msgtype: text, template: version.md.j2}\n"


def write_valid(config: Path, origin: str, turn: int) -> None:
    breakers.repair(config, f"revision {turn}")
    common.write_rules(config, common.rules_yaml(origin, revision=turn, extra_rules=VERSION_RULE))


def break_file(config: Path, origin: str, turn: int) -> None:
    """Even turns break the file: invalid YAML first, then each breaker of the reload battery."""
    kinds: list[breakers.Breaker | None] = [None, *breakers.BREAKERS]
    breaker = kinds[(turn // 2 - 1) % len(kinds)]
    if breaker is None:
        common.write_rules(config, INVALID_RULES)
        return
    write_valid(config, origin, turn)  # a fresh valid file, then spoiled the way real files are
    breaker(config)


async def sample_rss(server: common.Process, samples: list[tuple[float, float]], stop: asyncio.Event) -> None:
    t0 = time.monotonic()
    while not stop.is_set():
        kib = server.rss_kib()
        if kib is not None:
            samples.append((time.monotonic() - t0, float(kib)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


async def drain(sink: common.Sink, load: Load, timeout_s: float) -> float:
    """Wait until every accepted callback has its reply (or the deadline). Returns seconds waited."""

    async def done() -> bool:
        return load.accepted <= sink.arrivals.keys()

    try:
        _, took = await common.wait_for(done, timeout_s, interval_s=0.05)
    except TimeoutError:
        return timeout_s
    return took


@dataclass
class Run:
    load: Load
    sink: common.Sink
    reloads: list[ReloadResult]
    rss: list[tuple[float, float]]
    exit_code: int
    drain_s: float
    server_tail: str


async def soak(args: argparse.Namespace, folder: Path) -> Run:
    sink = await common.Sink().start()
    config = folder / "rules.yaml"
    write_valid(config, sink.origin, 0)
    server = await common.Process.responder(config, folder / "server.log")
    load, rss, stop = Load(), [], asyncio.Event()
    try:
        sampler = asyncio.create_task(sample_rss(server, rss, stop))
        t0 = time.monotonic()
        reloading = asyncio.create_task(reload_cycle(args, server, config, sink.origin, t0))
        await generate(args, server, sink, load, t0)
        reloads = await reloading
        drain_s = await drain(sink, load, args.drain_s)
        stop.set()
        await sampler
    finally:
        exit_code = await server.stop()
        await sink.close()
    return Run(load, sink, reloads, rss, exit_code, drain_s, server.tail())


def report(args: argparse.Namespace, run: Run) -> list[str]:
    """Print the summary; return the failures (empty means pass)."""
    load, sink = run.load, run.sink
    classes = common.status_classes(load.codes)
    non_2xx = sum(load.codes.values()) - classes["2xx"]
    delivered = load.accepted & sink.arrivals.keys()
    lost = len(load.accepted) - len(delivered)
    reply_ms = [(sink.arrivals[m] - load.sent_at[m]) * 1000 for m in delivered]
    print(f"soak: duration_s={args.duration:g} rate_per_s={args.rate:g} reload_every_s={args.reload_every:g}")
    print(f"sent={load.sent} late={load.late} missed={load.missed} (late means >{args.late_ms:g} ms behind)")
    errors = sum(load.errors.values())
    print(f"responses 2xx={classes['2xx']} non_2xx={non_2xx} 5xx={classes['5xx']} errors={errors}")
    if load.errors:
        print(f"errors_by_kind {dict(load.errors)}")
    print(
        f"replies delivered={len(delivered)} expected={len(load.accepted)} lost={lost} "
        f"duplicates={sink.duplicates} unexpected={sink.unreadable + len(sink.arrivals) - len(delivered)} "
        f"drain_s={run.drain_s:.2f}"
    )
    print(_latency_line("callback_latency_ms", load.latencies_ms))
    print(_latency_line("reply_latency_ms", reply_ms))
    for result in run.reloads:
        verdict = "ok" if result.correct else "WRONG"
        print(
            f"reload at_s={result.at_s:.1f} kind={result.kind} {verdict} "
            f"took_s={result.took_s:.2f} {result.detail}"
        )
    wrong = sum(not r.correct for r in run.reloads)
    print(f"reloads total={len(run.reloads)} correct={len(run.reloads) - wrong} wrong={wrong}")
    print(_rss_line(run.rss))
    print(f"server_exit={run.exit_code}")
    return _failures(load, non_2xx, lost, sink.duplicates, wrong, run.exit_code)


def _latency_line(name: str, values: list[float]) -> str:
    p50, p99 = common.percentile(values, 50), common.percentile(values, 99)
    return f"{name} p50={p50:.1f} p99={p99:.1f} max={max(values, default=0):.1f} n={len(values)}"


def _rss_line(rss: list[tuple[float, float]]) -> str:
    if not rss:
        return "rss_kib none"
    settled = rss[len(rss) // 4 :]  # the first quarter is warm-up (allocator, imports, caches)
    return (
        f"rss_kib start={rss[0][1]:.0f} end={rss[-1][1]:.0f} max={max(v for _, v in rss):.0f} "
        f"slope_kib_per_min={common.slope_per_minute(rss):.1f} "
        f"slope_after_warmup_kib_per_min={common.slope_per_minute(settled):.1f} samples={len(rss)}"
    )


def _failures(load: Load, non_2xx: int, lost: int, duplicates: int, wrong: int, exit_code: int) -> list[str]:
    checks = {
        "non-2xx responses": non_2xx,
        "connection errors": sum(load.errors.values()),
        "lost replies": lost,
        "duplicate replies": duplicates,
        "wrong reload results": wrong,
        "unclean server exit": exit_code != 0,
        "nothing sent": load.sent == 0,
    }
    return [f"{name}: {int(value)}" for name, value in checks.items() if value]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="responder-soak-") as folder:
        run = asyncio.run(soak(args, Path(folder)))
    failures = report(args, run)
    if failures:
        print("result: FAIL (" + "; ".join(failures) + ")")
        print("server log tail:\n" + run.server_tail)
        return 1
    print("result: PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
