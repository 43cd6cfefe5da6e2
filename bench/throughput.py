#!/usr/bin/env python3
"""Throughput and cost figures, each next to a baseline measured in the same run (the host is noisy).

  http      signed `help` callbacks (--text) end to end vs a bare aiohttp handler returning fixed
            JSON and one that also POSTs each message to the sink, same load generator (wrk if
            installed, else a Python client process); prints issue 15's targets beside the figures
  matching  ns per matcher.find for 10..10,000 rules, as a ratio to 10 rules
  reload    reload time and the longest /-/healthy stall while 10,000 rules reload, vs a quiet window
  rss       idle RSS of `responder serve` vs the bare aiohttp server

Everything runs on 127.0.0.1 and stops by itself. It spawns bare_server.py (the baseline) and, without
wrk, load_client.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import re
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import common
import yaml

from responder.cli import sample_message
from responder.engine.matching import Matcher
from responder.rules.load import load_rules
from tests.redis_server import RedisServer

SECTIONS = ("rss", "matching", "reload", "http")
RULE_COUNTS = (10, 100, 1000, 10_000)
SCANNED = 100
GO_SAMPLE_RPS = 8000
BARE_SERVER = Path(__file__).with_name("bare_server.py")
LOAD_CLIENT = Path(__file__).with_name("load_client.py")
_WRK_RESULT = re.compile(r"wrk_result (.*)")


# ---- http: responder vs bare aiohttp ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoadResult:
    requests: int
    duration_s: float
    non_2xx: int
    errors: int
    p50_ms: float
    p99_ms: float

    @property
    def per_s(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0


def wrk_script(webhook: str, text: str, run: str) -> str:
    """A wrk Lua script: precomputed signed headers, a unique id per request (run, thread id and
    counter) wherever the marker stands in the body (msgId, conversationId, and `ID` in the text).
    The run tag keeps ids unique across runs: a repeated msgId is a redelivery, answered by dedupe."""
    marker = "\x00ID\x00"
    said = text.replace("ID", marker)
    body = json.dumps(common.callback_body(said, f"wrk-{marker}", webhook), ensure_ascii=False)
    parts = body.split(json.dumps(marker)[1:-1])
    headers = common.signed_headers()
    lua_headers = ", ".join(f'["{k}"] = "{v}"' for k, v in headers.items())
    lua_parts = ", ".join(f"[==[{p}]==]" for p in parts)
    return f"""
local parts = {{ {lua_parts} }}
local headers = {{ {lua_headers} }}
local counter = 0
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
function request()
  counter = counter + 1
  local id = "{run}-" .. tid .. "-" .. counter
  return wrk.format("POST", "{common.CALLBACK_PATH}", headers, table.concat(parts, id))
end
function done(summary, latency, requests)
  io.write(string.format(
    "wrk_result requests=%d duration_us=%d connect=%d read=%d write=%d status=%d timeout=%d "
    .. "p50_us=%d p99_us=%d\\n",
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.status, summary.errors.timeout, latency:percentile(50), latency:percentile(99)))
end
"""


async def run_wrk(args: argparse.Namespace, url: str, script: Path) -> LoadResult:
    argv = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s", "-s", str(script)]
    proc = await asyncio.create_subprocess_exec(
        *argv, url + common.CALLBACK_PATH, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), args.duration + 60)
    found = _WRK_RESULT.search(out.decode())
    if found is None:
        raise RuntimeError(f"wrk printed no result:\n{out.decode()}")
    f = {k: int(v) for k, v in (pair.split("=") for pair in found.group(1).split())}
    errors = f["connect"] + f["read"] + f["write"] + f["timeout"]
    return LoadResult(
        f["requests"], f["duration_us"] / 1e6, f["status"], errors, f["p50_us"] / 1000, f["p99_us"] / 1000
    )


async def run_python_load(args: argparse.Namespace, url: str, webhook: str, run: str) -> LoadResult:
    argv = [sys.executable, str(LOAD_CLIENT), url + common.CALLBACK_PATH, webhook]
    argv += ["--connections", str(args.connections), "--duration", str(args.duration), "--text", args.text]
    argv += ["--run", run]
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(proc.communicate(), args.duration + 60)
    line = next((x for x in out.decode().splitlines() if x.startswith("load_result ")), None)
    if line is None:
        raise RuntimeError(f"load generator printed no result:\n{out.decode()}")
    return LoadResult(**json.loads(line.removeprefix("load_result ")))


@dataclass(frozen=True, slots=True)
class HttpRun:
    target: str
    load: LoadResult
    replies_in_window: int  # replies the sink received while the load ran (inline: 2xx answers)
    replies_total: int  # ... and once the backlog had drained

    @property
    def replies_per_s(self) -> float:
        return self.replies_in_window / self.load.duration_s if self.load.duration_s else 0.0


Load = Callable[[str], Awaitable[LoadResult]]
TARGETS = ("bare", "bare+post", "inline", "webhook", "webhook-w2")
DELIVERING = frozenset({"bare+post", "webhook", "webhook-w2"})  # figure: replies the sink received
# Issue 15's targets: replies/s as a ratio to bare aiohttp's, and inline p99 against bare's.
INLINE_TARGET, WEBHOOK_TARGET, P99_LIMIT = 0.60, 0.40, 2.0
# ... a 10,000-rule reload's longest /-/healthy answer, load time vs PyYAML, matching, idle RSS.
RELOAD_STALL_LIMIT_MS, LOAD_VS_YAML_LIMIT, MATCH_FLAT_LIMIT, RSS_LIMIT = 50.0, 3.0, 2.0, 1.3


async def http_section(args: argparse.Namespace, folder: Path) -> None:
    use_wrk = args.loadgen == "wrk" or (args.loadgen == "auto" and shutil.which("wrk"))
    sink = await common.Sink(record=False).start()
    runs = itertools.count(1)

    async def load(url: str) -> LoadResult:
        run = f"run{next(runs)}"
        if not use_wrk:
            return await run_python_load(args, url, sink.webhook, run)
        script = folder / f"{run}.lua"
        script.write_text(wrk_script(sink.webhook, args.text, run))
        return await run_wrk(args, url, script)

    gen = f"wrk -t{args.threads} -c{args.connections}" if use_wrk else f"python aiohttp c={args.connections}"
    print(
        f"\n== http: signed {args.text!r} callbacks, {gen}, {args.duration}s per run, "
        f"{args.rounds} round(s) =="
    )
    if not shutil.which("redis-server"):
        raise SystemExit("the http section's --workers 2 row needs redis-server: apt install redis-server")
    redis = await RedisServer.start(folder)
    servers = await _http_servers(folder, sink, redis.url)
    try:
        rounds = [await _http_round(load, servers, sink) for _ in range(args.rounds)]
        rss = {name: servers[name].rss_kib() for name in TARGETS}
    finally:
        for server in servers.values():
            await server.stop()
        await sink.close()
        await redis.close()
    _print_http(rounds, rss)


async def _http_servers(folder: Path, sink: common.Sink, redis_url: str) -> dict[str, common.Process]:
    """bare aiohttp, alone and POSTing to the sink; responder answering in the HTTP response, and
    POSTing to the sink from one process and from `--workers 2` sharing a real redis-server."""
    bare = [sys.executable, str(BARE_SERVER), "--max-s", "900"]
    servers = {"bare": await common.Process.start(bare, folder / "bare.log")}
    servers["bare+post"] = await common.Process.start([*bare, "--post"], folder / "bare-post.log")
    shared = f"state:\n  backend: redis\n  url: {redis_url}\n"
    for name, reply, state, extra in (
        ("inline", "response", "", []),
        ("webhook", "session_webhook", "", []),
        ("webhook-w2", "session_webhook", shared, ["--workers", "2"]),
    ):
        text = common.rules_yaml(sink.origin, reply=reply) + state
        config = common.write_rules(folder / name / "rules.yaml", text)
        servers[name] = await common.Process.responder(config, folder / f"{name}.log", extra_args=extra)
    return servers


async def _http_round(load: Load, servers: dict[str, common.Process], sink: common.Sink) -> list[HttpRun]:
    runs = []
    for name in TARGETS:
        before = sink.count
        result = await load(servers[name].url)
        answered = result.requests - result.non_2xx
        if name not in DELIVERING:
            runs.append(HttpRun(name, result, answered, answered))
            continue
        in_window = sink.count - before

        async def drained() -> bool:
            return sink.count - before >= answered  # noqa: B023  (awaited before the loop moves on)

        with contextlib.suppress(TimeoutError):
            await common.wait_for(drained, timeout_s=30, interval_s=0.05)
        runs.append(HttpRun(name, result, in_window, sink.count - before))
    return runs


def _print_http(rounds: list[list[HttpRun]], rss: dict[str, int | None]) -> None:
    print(
        f"{'round':<7}{'target':<9}{'req/s':>8}{'replies/s':>11}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
        + "  ratio"
    )
    for i, runs in enumerate(rounds, 1):
        for run in runs:
            res = run.load
            print(
                f"{i:<7}{run.target:<9}{res.per_s:>8.0f}{run.replies_per_s:>11.0f}{res.p50_ms:>9.2f}"
                f"{res.p99_ms:>9.2f}{res.errors + res.non_2xx:>8}  "
                + common.ratio(run.replies_per_s, runs[0].replies_per_s)
            )
        for run in runs:
            if run.target in DELIVERING:
                # wrk does not count requests cut off at the end that the server still answered
                missing = max(0, run.load.requests - run.load.non_2xx - run.replies_total)
                print(
                    f"{'':<7}{run.target} replies: {run.replies_in_window} in window, "
                    f"{run.replies_total} after drain, missing {missing}"
                )
    medians = {}
    for index, target in enumerate(TARGETS[1:], 1):
        ratios = sorted(r[index].replies_per_s / r[0].replies_per_s for r in rounds if r[0].replies_per_s)
        listed = ", ".join(f"{x:.2f}" for x in ratios)
        medians[target] = ratios[len(ratios) // 2] if ratios else 0.0
        print(f"ratio {target}/bare replies per second: median {medians[target]:.2f} ({listed})")
    at = {name: index for index, name in enumerate(TARGETS)}
    bare, post, inline, webhook = at["bare"], at["bare+post"], at["inline"], at["webhook"]
    p99 = sorted(r[inline].load.p99_ms / r[bare].load.p99_ms for r in rounds if r[bare].load.p99_ms)
    extra = sorted(r[webhook].replies_per_s / r[post].replies_per_s for r in rounds if r[post].replies_per_s)
    print(
        f"ratio webhook/bare+post replies per second: median {_median(extra):.2f} (the extra exchange's cost)"
    )
    print("targets (issue 15):")
    _target("reply: response replies/s vs bare", medians["inline"], INLINE_TARGET, at_least=True)
    _target("reply: response p99 vs bare p99", _median(p99), P99_LIMIT, at_least=False)
    _target("session_webhook delivered/s vs bare", medians["webhook"], WEBHOOK_TARGET, at_least=True)
    _target("... with --workers 2 (and Redis) vs bare", medians["webhook-w2"], WEBHOOK_TARGET, at_least=True)
    print(f"reference: the original Go sample served ~{GO_SAMPLE_RPS} req/s on 2 cores with wrk -t2 -c50")
    # webhook-w2's figure is the supervisor's alone: its workers are separate processes.
    print("rss_kib after load: " + ", ".join(f"{name}={kib}" for name, kib in rss.items()))


def _median(values: list[float]) -> float:
    return values[len(values) // 2] if values else 0.0


def _target(label: str, figure: float, target: float, *, at_least: bool) -> None:
    met = figure >= target if at_least else figure <= target
    sign = ">=" if at_least else "<="
    print(f"  {label:<40}{figure:>6.2f}x  target {sign} {target:.2f}x  {'met' if met else 'MISSED'}")


# ---- matching cost ------------------------------------------------------------------------------


def matching_section(args: argparse.Namespace, folder: Path) -> None:
    print(f"\n== matching: ns per matcher.find (best of 5), ratio to 10 rules; +{SCANNED} scanned means")
    print(f"   {SCANNED} contains/regex rules of higher priority, all tried before the keyword index ==")
    cases = ("hit", "miss", f"hit+{SCANNED}", f"miss+{SCANNED}")
    print(f"{'rules':>7}{'load s':>8}" + "".join(f"{c:>18}" for c in cases))
    base: list[float] = []
    flatness, path = 0.0, None
    for count in [c for c in RULE_COUNTS if c <= args.max_rules]:
        path = common.write_rules(
            folder / f"m{count}" / "rules.yaml",
            common.rules_yaml("http://127.0.0.1:9", extra_rules=common.keyword_rules(count, scanned=SCANNED)),
        )
        began = time.perf_counter()
        ruleset = load_rules(path, {"DINGTALK_APP_SECRET": common.SECRET})
        load_s = time.perf_counter() - began
        # The same index without the scanned rules, built exactly as compile_ruleset builds it.
        keywords_only = Matcher([r for r in ruleset.rules if r.trigger.kind not in ("contains", "regex")])
        hit = sample_message(f"k{count - 1}", "Bench", "bench", True, False)
        miss = sample_message("nothing in the rules says this", "Bench", "bench", True, False)
        figures = [
            common.ns_per_find(keywords_only, hit, f"r{count - 1}", args.loops),
            common.ns_per_find(keywords_only, miss, "unknown", args.loops),
            common.ns_per_find(ruleset.matcher, hit, f"r{count - 1}", args.loops),
            common.ns_per_find(ruleset.matcher, miss, "unknown", args.loops),
        ]
        base = base or figures
        flatness = max(f / b for f, b in zip(figures, base, strict=True))
        cells = "".join(f"{f:>10.0f} {f / b:>5.2f}x " for f, b in zip(figures, base, strict=True))
        print(f"{count:>7}{load_s:>8.2f}{cells}")
    print("targets (issue 15):")
    _target(f"matching at {count} rules vs 10 (worst case)", flatness, MATCH_FLAT_LIMIT, at_least=False)
    if path is not None:
        _load_vs_yaml(path, count)


def _best_of(runs: int, work: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(runs):
        began = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - began)
    return best


def _load_vs_yaml(path: Path, count: int) -> None:
    """Loading (parse with positions, schema, compile, templates) against PyYAML's safe_load alone."""
    text = path.read_text("utf-8")
    parse_s = _best_of(3, lambda: yaml.safe_load(text))
    load_s = _best_of(3, lambda: load_rules(path, {"DINGTALK_APP_SECRET": common.SECRET}))
    print(f"  (load_rules {load_s:.2f} s, yaml.safe_load {parse_s:.2f} s, best of 3, {count} rules)")
    _target(f"loading {count} rules vs yaml.safe_load", load_s / parse_s, LOAD_VS_YAML_LIMIT, at_least=False)


# ---- reload time and event-loop stall -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Probe:
    at: float
    latency_ms: float


async def probe(session: aiohttp.ClientSession, url: str, until: Callable[[], bool]) -> list[Probe]:
    """GET /-/healthy back to back (one keep-alive connection): a stall shows as one slow answer."""
    samples = []
    while not until():
        began = time.monotonic()
        async with session.get(url + "/-/healthy") as response:
            await response.read()
        samples.append(Probe(began, (time.monotonic() - began) * 1000))
    return samples


async def reload_section(args: argparse.Namespace, folder: Path) -> None:
    count = args.max_rules
    print(f"\n== reload: {count} rules, SIGHUP while a probe hits /-/healthy back to back ==")
    origin = "http://127.0.0.1:9"
    config = folder / "reload" / "rules.yaml"
    common.write_rules(config, common.rules_yaml(origin, extra_rules=common.keyword_rules(count)))
    small = common.write_rules(folder / "small" / "rules.yaml", common.rules_yaml(origin))
    baseline = await common.Process.responder(small, folder / "small.log")
    await baseline.stop()
    server = await common.Process.responder(config, folder / "reload.log", timeout_s=300)
    print(
        f"startup_s (spawn to listening): {server.started_s:.2f} vs {baseline.started_s:.2f} with 2 rules "
        f"({common.ratio(server.started_s, baseline.started_s)})"
    )
    print(f"rss_kib with {count} rules after start: {server.rss_kib()}")
    try:
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(60)) as session:
            quiet_end = time.monotonic() + 3
            quiet = await probe(session, server.url, lambda: time.monotonic() > quiet_end)
            _print_probes("quiet 3 s (baseline)", quiet, None)
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(10)) as admin:
                stalls = [
                    await _reload_turn(session, admin, server, config, origin, count, turn, quiet)
                    for turn in range(1, args.reloads + 1)
                ]
            print(f"rss_kib with {count} rules after {args.reloads} reloads: {server.rss_kib()}")
            quiet_max = max(s.latency_ms for s in quiet)
            print("targets (issue 15):")
            print(
                f"  longest /-/healthy answer while {count} rules reload: {max(stalls):.1f} ms "
                f"(quiet max {quiet_max:.1f} ms)  target <= {RELOAD_STALL_LIMIT_MS:.0f} ms  "
                + ("met" if max(stalls) <= RELOAD_STALL_LIMIT_MS else "MISSED")
            )
    finally:
        await server.stop()


async def _reload_turn(
    session: aiohttp.ClientSession,
    admin: aiohttp.ClientSession,
    server: common.Process,
    config: Path,
    origin: str,
    count: int,
    turn: int,
    quiet: list[Probe],
) -> float:
    """One reload under the probe; the longest answer (ms) the probe saw."""
    before = await server.status(admin)
    common.write_rules(
        config, common.rules_yaml(origin, revision=turn, extra_rules=common.keyword_rules(count))
    )
    finished: list[float] = []

    def settled() -> bool:  # probe 1 s past the swap: freeing the old rule set happens on the loop
        return bool(finished) and time.monotonic() > finished[0] + 1

    async def swapped() -> None:
        async def changed() -> bool:
            return (await server.status(admin))["generation"] > before["generation"]

        await common.wait_for(changed, timeout_s=120, interval_s=0.05)
        finished.append(time.monotonic())

    sent = time.monotonic()
    server.signal(signal.SIGHUP)
    watcher = asyncio.create_task(swapped())
    samples = await probe(session, server.url, lambda: settled() or watcher.done())
    await watcher
    return _print_probes(f"reload {turn}: {finished[0] - sent:.2f} s to swap", samples, quiet)


def _print_probes(label: str, samples: list[Probe], quiet: list[Probe] | None) -> float:
    latencies = [s.latency_ms for s in samples]
    worst = max(latencies, default=0)
    line = (
        f"{label}: probes={len(samples)} p50_ms={common.percentile(latencies, 50):.2f} "
        f"p99_ms={common.percentile(latencies, 99):.2f} max_ms={worst:.1f}"
    )
    if quiet:
        line += f" (max {common.ratio(worst, max(s.latency_ms for s in quiet))} the quiet max)"
    print(line)
    return worst


# ---- idle RSS -----------------------------------------------------------------------------------


async def rss_section(args: argparse.Namespace, folder: Path) -> None:
    print("\n== rss: idle VmRSS 2 s after listening ==")
    config = common.write_rules(folder / "rss" / "rules.yaml", common.rules_yaml("http://127.0.0.1:9"))
    bundled = common.REPO / "rules.yaml"
    bare = await common.Process.start([sys.executable, str(BARE_SERVER), "--max-s", "60"], folder / "b.log")
    server = await common.Process.responder(config, folder / "rss.log")
    shipped = await common.Process.responder(bundled, folder / "shipped.log")
    try:
        await asyncio.sleep(2)  # let start-up allocations settle before sampling
        figures = {"bare aiohttp": bare.rss_kib(), "responder (2 rules)": server.rss_kib()}
        figures["responder (bundled rules.yaml)"] = shipped.rss_kib()
    finally:
        for process in (shipped, server, bare):
            await process.stop()
    base = figures["bare aiohttp"] or 0
    for name, kib in figures.items():
        print(f"{name:<32}{kib or 0:>8} KiB  {common.ratio(kib or 0, base)}")
    print("targets (issue 15):")
    bundled_ratio = (figures["responder (bundled rules.yaml)"] or 0) / base if base else 0.0
    _target("idle RSS, bundled rules.yaml vs bare", bundled_ratio, RSS_LIMIT, at_least=False)


ASYNC_SECTIONS = {"rss": rss_section, "reload": reload_section, "http": http_section}


# ---- command line -------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"sections, comma-separated ({SECTIONS})")
    parser.add_argument("--duration", type=int, default=10, help="seconds per http run (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of bare, inline, webhook (default 3)")
    parser.add_argument("--connections", type=int, default=50, help="concurrent connections (default 50)")
    parser.add_argument(
        "--text", default="help", help="what each callback says; ID becomes its id (default help)"
    )
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--max-rules", type=int, default=10_000, help="largest rule count (default 10000)")
    parser.add_argument("--loops", type=int, default=20_000, help="matcher.find calls per timing")
    parser.add_argument("--reloads", type=int, default=3, help="reloads to time (default 3)")
    return parser.parse_args(argv)


async def run_sections(args: argparse.Namespace) -> None:
    wanted = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(wanted) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown sections: {sorted(unknown)}")
    with tempfile.TemporaryDirectory(prefix="responder-bench-") as name:
        folder = Path(name)
        for section in (s for s in SECTIONS if s in wanted):
            if section == "matching":
                matching_section(args, folder)  # in-process and synchronous: nothing else runs meanwhile
            else:
                await ASYNC_SECTIONS[section](args, folder)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"responder throughput bench, python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d %H:%M')}")
    asyncio.run(run_sections(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
