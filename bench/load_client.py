#!/usr/bin/env python3
"""The fallback load generator (when wrk is missing): N keep-alive clients posting signed callbacks.

Closed loop, like wrk: each client sends its next callback when the previous one is answered. Runs
for --duration seconds, then prints one `load_result {json}` line. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
import common


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    codes: Counter[int] = field(default_factory=Counter)
    errors: int = 0


async def client(
    session: aiohttp.ClientSession, url: str, load: Load, worker: int, deadline: float, tally: Tally
) -> None:
    headers = common.signed_headers()  # valid for the whole timestamp window
    sent = 0
    while time.monotonic() < deadline:
        sent += 1
        msg_id = f"{load.run}-{worker}-{sent}"
        body = json.dumps(
            common.callback_body(load.text.replace("ID", msg_id), f"load-{msg_id}", load.webhook)
        )
        began = time.monotonic()
        try:
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                tally.codes[response.status] += 1
        except (aiohttp.ClientError, OSError, TimeoutError):
            tally.errors += 1
            continue
        tally.latencies.append(time.monotonic() - began)


@dataclass(frozen=True)
class Load:
    webhook: str
    text: str
    run: str  # in every id: a msgId repeated across runs would be a redelivery, not a message


async def generate(url: str, load: Load, connections: int, duration_s: float) -> dict[str, float]:
    tally = Tally()
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as session:
        began = time.monotonic()
        deadline = began + duration_s
        await asyncio.gather(*(client(session, url, load, w, deadline, tally) for w in range(connections)))
        took = time.monotonic() - began
    return {
        "requests": len(tally.latencies),
        "duration_s": took,
        "non_2xx": sum(n for c, n in tally.codes.items() if not 200 <= c < 300),
        "errors": tally.errors,
        "p50_ms": common.percentile(tally.latencies, 50) * 1000,
        "p99_ms": common.percentile(tally.latencies, 99) * 1000,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url", help="the callback URL (127.0.0.1)")
    parser.add_argument("webhook", help="the sessionWebhook to put in each callback")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--text", default="ping ID", help="what each callback says; ID becomes its id")
    parser.add_argument("--run", default="run1", help="a tag that keeps ids unique across runs")
    args = parser.parse_args()
    load = Load(args.webhook, args.text, args.run)
    result = asyncio.run(generate(args.url, load, args.connections, args.duration))
    print("load_result " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
