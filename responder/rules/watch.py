"""`serve --watch`: ask for a reload whenever rules.yaml or a template changes on disk.

Two watches (watchfiles: inotify on Linux): the rules file's folder, not recursively, for the file
itself and for a Kubernetes ConfigMap's `..data` symlink swap (kubelet writes a new folder and
renames `..data_tmp` over `..data`); and templates/, recursively. A templates/ folder that goes
away (the old side of a swap) is watched again once it is back. Requests go to the same Reloader
as SIGHUP, which settles, coalesces and serialises them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from watchfiles import Change, DefaultFilter, awatch

from responder.rules.load import templates_dir

log = logging.getLogger(__name__)

DEBOUNCE_MS = 300  # changes closer together than this are one batch (one request)
RETRY_S = 2.0  # how often a missing templates/ folder is looked for again
CONFIGMAP_LINK = "..data"


async def watch_rules(path: Path, request: Callable[[], None]) -> None:
    """Call `request()` after each batch of changes, until cancelled."""
    log.info("rules_watch_started path=%s", path)
    async with asyncio.TaskGroup() as watches:
        watches.create_task(_watch_folder(path, request))
        watches.create_task(_watch_templates(templates_dir(path), request))


async def _watch_folder(path: Path, request: Callable[[], None]) -> None:
    names = {path.name, CONFIGMAP_LINK, templates_dir(path).name}

    def relevant(change: Change, changed: str) -> bool:
        return Path(changed).name in names

    async for _ in awatch(path.parent, recursive=False, watch_filter=relevant, debounce=DEBOUNCE_MS):
        request()


async def _watch_templates(folder: Path, request: Callable[[], None]) -> None:
    while True:
        if not folder.is_dir():
            await asyncio.sleep(RETRY_S)
            continue
        async for changes in awatch(folder, watch_filter=DefaultFilter(), debounce=DEBOUNCE_MS):
            request()
            if any(Path(changed) == folder for _, changed in changes):
                break  # the folder itself went: watch whatever takes its place
