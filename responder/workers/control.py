"""The link between a worker and its supervisor.

Over the worker's stdin: first the rules file the supervisor loaded (a length line, then the
bytes), so a worker starts, or restarts, on the fleet's version rather than whatever is on disk;
then nothing, until its end tells the worker that the supervisor is gone. Over its stdout: one
`ready` line once it serves. Over a Unix socket: its admin endpoints (status, metrics and
readiness for the supervisor to gather) and POST /-/load, a reload with the file in the body.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import BinaryIO

from aiohttp import web

from responder import keys
from responder.transport.admin import create_admin_app

LOAD_PATH = "/-/load"
READY_LINE = "ready"


async def start(app: web.Application, path: Path) -> web.AppRunner:
    control = create_admin_app(app)
    control.router.add_post(LOAD_PATH, load)
    runner = web.AppRunner(control, handle_signals=False, access_log=None)
    await runner.setup()
    await web.UnixSite(runner, str(path)).start()
    return runner


async def load(request: web.Request) -> web.Response:
    """Reload with the rules file in the body (templates are read from disk)."""
    status = await request.app[keys.STORE].reload(content=await request.read())
    return web.json_response(status.as_json(), status=200 if status.last_ok else 422)


def rules_message(content: bytes) -> bytes:
    """What the supervisor writes to a new worker's stdin."""
    return b"%d\n" % len(content) + content


def read_rules(stream: BinaryIO) -> bytes:
    """The worker's end: the rules file from `rules_message` (blocking; before the loop runs)."""
    size = int(stream.readline())
    content = stream.read(size)
    if len(content) != size:
        raise EOFError("the supervisor closed stdin before the rules file was complete")
    return content


def announce_ready() -> None:
    print(READY_LINE, flush=True)  # the supervisor waits for this line on our stdout


async def until_supervisor_leaves() -> None:
    """Return once stdin reaches its end: the supervisor closed it, or died."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await reader.read()
