#!/usr/bin/env python3
"""The throughput baselines: a bare aiohttp server with one handler that returns fixed JSON, or
(--post) also POSTs a fixed reply to the message's sessionWebhook on the same loop, as the
cheapest possible session_webhook robot would.

It imports nothing but aiohttp, so its figures are what aiohttp alone costs on this machine. It stops on
SIGTERM or after --max-s seconds, whichever comes first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys

import aiohttp
from aiohttp import web

REPLY = b'{"msgtype":"text","text":{"content":"ok"}}'
SESSION = web.AppKey("session", aiohttp.ClientSession)
PENDING = web.AppKey("pending", set)


async def callback(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=b"{}", content_type="application/json")


async def callback_and_post(request: web.Request) -> web.Response:
    webhook = json.loads(await request.read())["sessionWebhook"]
    task = asyncio.get_running_loop().create_task(_post(request.app[SESSION], webhook))
    request.app[PENDING].add(task)
    task.add_done_callback(request.app[PENDING].discard)
    return web.Response(body=b"{}", content_type="application/json")


async def _post(session: aiohttp.ClientSession, webhook: str) -> None:
    headers = {"Content-Type": "application/json"}
    async with session.post(webhook, data=REPLY, headers=headers) as response:
        await response.read()


async def serve(port: int, max_s: float, post: bool) -> None:
    app = web.Application()
    app.router.add_post("/dingtalk/callback", callback_and_post if post else callback)
    app[SESSION] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100))
    app[PENDING] = set()
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print(f"listening url=http://127.0.0.1:{runner.addresses[0][1]}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), max_s)
    await runner.cleanup()
    await app[SESSION].close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--max-s", type=float, default=600, help="stop by itself after this long")
    parser.add_argument("--post", action="store_true", help="also POST a reply to each sessionWebhook")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.max_s, args.post))
    return 0


if __name__ == "__main__":
    sys.exit(main())
