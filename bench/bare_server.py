#!/usr/bin/env python3
"""The throughput baseline: a bare aiohttp server with one handler that returns fixed JSON.

It imports nothing but aiohttp, so its figures are what aiohttp alone costs on this machine. It stops on
SIGTERM or after --max-s seconds, whichever comes first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from aiohttp import web


async def callback(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=b"{}", content_type="application/json")


async def serve(port: int, max_s: float) -> None:
    app = web.Application()
    app.router.add_post("/dingtalk/callback", callback)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print(f"listening url=http://127.0.0.1:{runner.addresses[0][1]}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), max_s)
    await runner.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--max-s", type=float, default=600, help="stop by itself after this long")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.max_s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
