"""`serve --watch`: a real process reloads by itself when rules.yaml, a template or a
ConfigMap's `..data` symlink changes, through the same reloader as SIGHUP (and, with
--workers, every worker takes the new file)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import SECRET, RulesWriter, Sink
from tests.process import ServerProcess
from tests.redis_server import RedisServer

pytestmark = pytest.mark.slow

ENV = {"DINGTALK_APP_SECRET": SECRET}
WATCH = ("--watch", "--reload-settle", "0.2")


def rules_text(origin: str, reply: str, state: str = "") -> str:
    return f"""
dingtalk:
  app_secret: ${{DINGTALK_APP_SECRET}}
  session_webhook_origins: ["{origin}"]
{state}rules:
  - {{name: version, keywords: [version], msgtype: text, at_sender: false, template: version.j2}}
  - {{name: label, keywords: [label], msgtype: text, at_sender: false, body: "{reply}"}}
"""


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def test_an_edited_file_and_an_edited_template_are_reloaded_without_a_signal(
    write_rules: RulesWriter, sink: Sink, session: aiohttp.ClientSession
) -> None:
    path = write_rules(rules_text(sink.origin, "v1"), {"version.j2": "t1"})
    server = await ServerProcess.start(path, *WATCH, environ=ENV)
    try:
        await server.wait_for_line("rules_watch_started")
        temporary = path.with_name("rules.yaml.tmp")  # an atomic save: write, then rename over
        temporary.write_text(rules_text(sink.origin, "v2"))
        os.replace(temporary, path)
        status = await server.wait_status(session, lambda s: s["generation"] == 2)
        assert status["last_reload_ok"] is True
        (path.parent / "templates" / "version.j2").write_text("t2")
        await server.wait_status(session, lambda s: s["generation"] == 3)
        assert "rules_reload_unchanged" not in server.output  # unrelated files were not watched
    finally:
        assert await server.stop() == 0


def configmap(folder: Path, origin: str, versions: tuple[str, ...], state: str = "") -> Path:
    """A ConfigMap volume as kubelet lays it out: rules.yaml -> ..data/rules.yaml, ..data -> ..v1."""
    for version in versions:
        (folder / f"..{version}" / "templates").mkdir(parents=True)
        (folder / f"..{version}" / "rules.yaml").write_text(rules_text(origin, version, state))
        (folder / f"..{version}" / "templates" / "version.j2").write_text(version)
    (folder / "..data").symlink_to(f"..{versions[0]}")
    (folder / "rules.yaml").symlink_to("..data/rules.yaml")
    (folder / "templates").symlink_to("..data/templates")
    return folder / "rules.yaml"


def swap(folder: Path, version: str) -> None:
    (folder / "..data_tmp").symlink_to(f"..{version}")
    os.replace(folder / "..data_tmp", folder / "..data")  # atomic, as kubelet does


async def test_a_configmap_symlink_swap_is_reloaded(
    tmp_path: Path, sink: Sink, session: aiohttp.ClientSession
) -> None:
    path = configmap(tmp_path / "config", sink.origin, ("v1", "v2", "v3"))
    server = await ServerProcess.start(path, *WATCH, environ=ENV)
    try:
        await server.wait_for_line("rules_watch_started")
        swap(path.parent, "v2")
        await server.wait_status(session, lambda s: s["generation"] == 2)
        swap(path.parent, "v3")  # the watch outlives the folder it first resolved to
        await server.wait_status(session, lambda s: s["generation"] == 3)
    finally:
        assert await server.stop() == 0


async def test_with_workers_every_worker_takes_the_swapped_file(
    tmp_path: Path, sink: Sink, session: aiohttp.ClientSession, redis_server: RedisServer
) -> None:
    state = "state:\n  backend: redis\n  url: ${REDIS_URL}\n"
    path = configmap(tmp_path / "config", sink.origin, ("v1", "v2"), state)
    environ = {**ENV, "REDIS_URL": redis_server.url}
    server = await ServerProcess.start(path, "--workers", "2", *WATCH, environ=environ)
    try:
        await server.wait_for_line("rules_watch_started")
        swap(path.parent, "v2")
        status = await server.wait_status(
            session,
            lambda s: s["generation"] == 2 and all(w["status"]["generation"] == 2 for w in s["workers"]),
        )
        assert {w["status"]["sha256"] for w in status["workers"]} == {status["sha256"]}
    finally:
        assert await server.stop() == 0
