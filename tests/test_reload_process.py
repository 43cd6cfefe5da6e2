"""Hot reload against a real `responder serve` process and real signals."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import SECRET, RulesWriter, Sink, callback_body, signed_headers
from tests.process import ServerProcess, metric

pytestmark = pytest.mark.slow

ENV = {"DINGTALK_APP_SECRET": SECRET}


def rules_text(origin: str, reply: str = "v1", extra: str = "") -> str:
    return f"""
dingtalk:
  app_secret: ${{DINGTALK_APP_SECRET}}
  session_webhook_origins: ["{origin}"]
rules:
  - name: version
    keywords: [version]
    msgtype: text
    at_sender: false
    body: "{reply}"
{extra}"""


async def ask(session: aiohttp.ClientSession, server: ServerProcess, sink: Sink, text: str) -> str:
    body = json.dumps(callback_body(text, webhook=sink.webhook(), conversationType="1"))
    async with session.post(
        server.url + "/dingtalk/callback", data=body, headers=signed_headers()
    ) as response:
        assert response.status == 200
    return str((await sink.next(10))["json"]["text"]["content"])


@pytest.fixture
async def session() -> aiohttp.ClientSession:
    async with aiohttp.ClientSession() as client:
        yield client


async def test_valid_invalid_valid(
    write_rules: RulesWriter, sink: Sink, session: aiohttp.ClientSession
) -> None:
    path = write_rules(rules_text(sink.origin, "v1"))
    server = await ServerProcess.start(path, environ=ENV)
    try:
        assert await ask(session, server, sink, "version") == "v1"

        path.write_text(rules_text(sink.origin, "v2").replace("msgtype: text", "msgtype: txet"))
        status = await server.reload_and_wait(session)
        assert status["last_reload_ok"] is False
        assert status["generation"] == 1
        problem = status["problems"][0]
        assert (problem["file"], problem["line"]) == (str(path), 8)
        assert "txet" in problem["message"]
        assert f"{path}:8:" in status["last_error"]
        _, exposition = await server.get(session, "/metrics")
        assert metric(exposition, "responder_rules_last_reload_successful") == 0
        assert await ask(session, server, sink, "version") == "v1"  # the old rules keep answering

        path.write_text(rules_text(sink.origin, "v3"))
        status = await server.reload_and_wait(session)
        assert (status["last_reload_ok"], status["generation"]) == (True, 2)
        _, exposition = await server.get(session, "/metrics")
        assert metric(exposition, "responder_rules_last_reload_successful") == 1
        assert await ask(session, server, sink, "version") == "v3"
    finally:
        assert await server.stop() == 0


async def test_one_broken_template_among_fifty_changed_rules_rejects_the_whole_reload(
    write_rules: RulesWriter, sink: Sink, session: aiohttp.ClientSession
) -> None:
    def many(tag: str, broken: int | None) -> str:
        rules = []
        for i in range(50):
            body = "{{ text" if i == broken else f"{tag} {i}"
            rules.append(
                f"  - name: r{i}\n    keywords: [k{i}]\n    msgtype: text\n"
                f'    at_sender: false\n    body: "{body}"\n'
            )
        return rules_text(sink.origin, tag, "".join(rules))

    path = write_rules(many("old", None))
    server = await ServerProcess.start(path, environ=ENV)
    try:
        path.write_text(many("new", 37))
        status = await server.reload_and_wait(session)
        assert status["last_reload_ok"] is False
        assert "rule 'r37'" in status["last_error"]
        for keyword, expected in (("k0", "old 0"), ("k49", "old 49"), ("version", "old")):
            assert await ask(session, server, sink, keyword) == expected
    finally:
        assert await server.stop() == 0


async def test_rename_over_and_symlink_swap_load_the_new_content(
    tmp_path: Path, sink: Sink, session: aiohttp.ClientSession
) -> None:
    # A Kubernetes ConfigMap volume: rules.yaml -> ..data/rules.yaml, ..data -> ..2026_v1
    for version in ("v1", "v2"):
        folder = tmp_path / f"..{version}"
        (folder / "templates").mkdir(parents=True)
        (folder / "rules.yaml").write_text(rules_text(sink.origin, version))
    (tmp_path / "..data").symlink_to("..v1")
    (tmp_path / "rules.yaml").symlink_to("..data/rules.yaml")
    server = await ServerProcess.start(tmp_path / "rules.yaml", environ=ENV)
    try:
        assert await ask(session, server, sink, "version") == "v1"
        (tmp_path / "..data_tmp").symlink_to("..v2")
        os.replace(tmp_path / "..data_tmp", tmp_path / "..data")  # atomic swap, as kubelet does
        assert (await server.reload_and_wait(session))["generation"] == 2
        assert await ask(session, server, sink, "version") == "v2"

        # An editor's save: write a temporary file, rename it over the original.
        target = tmp_path / "..v2" / "rules.yaml"
        temporary = target.with_name(".rules.yaml.swp")
        temporary.write_text(rules_text(sink.origin, "v3"))
        os.replace(temporary, target)
        assert (await server.reload_and_wait(session))["generation"] == 3
        assert await ask(session, server, sink, "version") == "v3"
    finally:
        assert await server.stop() == 0


@pytest.mark.parametrize("kind", ["alias_bomb", "oversized"])
async def test_hostile_files_are_rejected_quickly_while_healthy_answers(
    kind: str, write_rules: RulesWriter, sink: Sink, session: aiohttp.ClientSession
) -> None:
    path = write_rules(rules_text(sink.origin, "v1"))
    server = await ServerProcess.start(path, environ=ENV)
    try:
        if kind == "alias_bomb":
            lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
            lines += [
                f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)}]"
                for i in range(9)
            ]
            path.write_text("\n".join(lines) + "\nrules: []\n")
        else:
            path.write_text(rules_text(sink.origin, "v2") + "#" * (2 * 1024 * 1024))
        started = time.monotonic()
        server.signal(signal.SIGHUP)
        code, _ = await server.get(session, "/-/healthy")
        assert code == 200
        status = await server.wait_status(session, lambda s: s["attempts"] > 1)
        assert time.monotonic() - started < 10
        assert status["last_reload_ok"] is False
        assert (
            ("anchors" in status["last_error"])
            if kind == "alias_bomb"
            else ("larger than" in status["last_error"])
        )
        assert await ask(session, server, sink, "version") == "v1"
    finally:
        assert await server.stop() == 0


async def test_unchanged_file_is_a_no_op(
    write_rules: RulesWriter, sink: Sink, session: aiohttp.ClientSession
) -> None:
    path = write_rules(rules_text(sink.origin, "v1"))
    server = await ServerProcess.start(path, environ=ENV)
    try:
        before = await server.status(session)
        after = await server.reload_and_wait(session)
        assert (after["generation"], after["sha256"], after["loaded_at"]) == (
            before["generation"],
            before["sha256"],
            before["loaded_at"],
        )
        await server.wait_for_line("rules_reload_unchanged")
    finally:
        assert await server.stop() == 0


async def test_sighup_storm_under_traffic_gives_no_5xx(
    write_rules: RulesWriter, sink: Sink, session: aiohttp.ClientSession
) -> None:
    path = write_rules(rules_text(sink.origin, "v1"))
    server = await ServerProcess.start(path, environ=ENV)
    statuses: list[int] = []

    async def traffic() -> None:
        for i in range(150):
            # One conversation each: DingTalk's 20-a-minute budget per conversation is not under test.
            body = json.dumps(
                callback_body(
                    "version", webhook=sink.webhook(), conversationType="1", conversationId=f"cid{i}"
                )
            )
            async with session.post(
                server.url + "/dingtalk/callback", data=body, headers=signed_headers()
            ) as r:
                statuses.append(r.status)
            if i % 3 == 0:
                path.write_text(rules_text(sink.origin, f"v{i}") if i % 2 else "rules: [oops")

    try:
        load = asyncio.create_task(traffic())
        while not load.done():
            server.signal(signal.SIGHUP)
            await asyncio.sleep(0.005)  # pacing the storm, not synchronising
        await load
        assert statuses == [200] * 150
        assert server.proc.returncode is None
        code, _ = await server.get(session, "/-/healthy")
        assert code == 200
        received = 0
        while received < 150:
            await sink.next(10)
            received += 1
    finally:
        assert await server.stop() == 0


async def test_sighup_during_startup_does_not_kill_and_is_not_lost(
    write_rules: RulesWriter, sink: Sink, session: aiohttp.ClientSession
) -> None:
    # Enough rules that loading takes a moment, so the signals land before the port is bound.
    extra = "".join(
        f"  - name: r{i}\n    keywords: [k{i}]\n    msgtype: text\n    body: '{{{{ text }}}} {i}'\n"
        for i in range(3000)
    )
    path = write_rules(rules_text(sink.origin, "v1", extra))
    server = await ServerProcess.start(path, environ=ENV, wait=False)
    try:
        await server.wait_for_line("starting ")
        for _ in range(5):
            server.signal(signal.SIGHUP)
        found = await server.wait_for_line("listening url=(\\S+) admin=(\\S+)", timeout=60)
        server.url, server.admin = found.group(1), found.group(2)
        assert "listening" in server.output.split("\n")[-1] or server.proc.returncode is None
        status = await server.wait_status(session, lambda s: s["attempts"] >= 2, timeout=60)
        assert status["last_reload_ok"] is True
    finally:
        assert await server.stop() == 0


async def test_bad_file_at_startup_exits_before_binding(write_rules: RulesWriter) -> None:
    path = write_rules("rules:\n  - name: x\n    keywords: [on]\n    msgtype: text\n    body: hi\n")
    server = await ServerProcess.start(path, environ=ENV, wait=False)
    assert await server.exited() == 78  # EX_CONFIG: a restart would not help
    assert f"{path}:3:16: rules.[0].keywords" in server.output or f"{path}:3:" in server.output
    assert "listening" not in server.output


async def test_sigterm_with_replies_pending_ends_cleanly(
    write_rules: RulesWriter, sink: Sink, session: aiohttp.ClientSession
) -> None:
    sink.hold = release = asyncio.Event()
    path = write_rules(rules_text(sink.origin, "v1"))
    server = await ServerProcess.start(path, environ=ENV)
    body = json.dumps(callback_body("version", webhook=sink.webhook(), conversationType="1"))
    async with session.post(
        server.url + "/dingtalk/callback", data=body, headers=signed_headers()
    ) as response:
        assert response.status == 200
    await asyncio.wait_for(sink.arrived.wait(), 10)
    server.signal(signal.SIGTERM)
    await server.wait_for_line("shutdown_started pending_replies=1")
    release.set()
    assert await server.stop() == 0
    assert "reply_sent" in server.output
    assert "shutdown_finished" in server.output


async def test_sigterm_logs_each_reply_it_cannot_finish_in_the_grace_period(
    write_rules: RulesWriter, sink: Sink, session: aiohttp.ClientSession
) -> None:
    sink.hold = asyncio.Event()  # the sessionWebhook never answers
    path = write_rules(rules_text(sink.origin, "v1"))
    server = await ServerProcess.start(path, "--shutdown-grace", "0.5", environ=ENV)
    body = json.dumps(callback_body("version", webhook=sink.webhook(), conversationType="1"))
    async with session.post(
        server.url + "/dingtalk/callback", data=body, headers=signed_headers()
    ) as response:
        assert response.status == 200
    await asyncio.wait_for(sink.arrived.wait(), 10)
    assert await server.stop() == 0
    assert "reply_dropped" in server.output and "reason='shutdown'" in server.output


async def test_a_stuck_log_reader_does_not_stop_replies(
    write_rules: RulesWriter, sink: Sink, session: aiohttp.ClientSession
) -> None:
    path = write_rules(rules_text(sink.origin, "v1"))
    server = await ServerProcess.start(path, environ=ENV)
    server.stop_reading()  # nobody reads the server's stderr any more: the pipe (64 KiB) fills up
    try:
        for i in range(1000):  # a log line each (~150 bytes), far more than the pipe holds
            body = callback_body(
                "version", webhook=sink.webhook(), conversationType="1", conversationId=f"c{i}"
            )
            async with session.post(
                server.url + "/dingtalk/callback", data=json.dumps(body), headers=signed_headers()
            ) as response:
                assert response.status == 200
            assert (await sink.next(10))["json"]["text"]["content"] == "v1"
    finally:
        assert await server.stop(timeout=30) == 0


async def test_a_reload_that_changes_a_restart_only_setting_applies_the_rest_and_says_so(
    write_rules: RulesWriter, sink: Sink, session: aiohttp.ClientSession
) -> None:
    path = write_rules(rules_text(sink.origin, "v1"))
    server = await ServerProcess.start(path, environ=ENV)
    try:
        moved = rules_text(sink.origin, "v2").replace("dingtalk:\n", "dingtalk:\n  callback_path: /moved\n")
        path.write_text(moved)
        status = await server.reload_and_wait(session)
        assert (status["last_reload_ok"], status["generation"]) == (True, 2)
        assert status["restart_required"] == ["callback_path"]
        _, exposition = await server.get(session, "/metrics")
        assert metric(exposition, "responder_restart_required") == 1
        await server.wait_for_line("restart_required fields=callback_path")
        # Everything else applied; the callback keeps its start-up path until a restart.
        assert await ask(session, server, sink, "version") == "v2"
        async with session.post(server.url + "/moved", data=b"{}", headers=signed_headers()) as response:
            assert response.status == 404

        path.write_text(rules_text(sink.origin, "v3"))  # back to what the process runs with
        status = await server.reload_and_wait(session)
        assert status["restart_required"] == []
        _, exposition = await server.get(session, "/metrics")
        assert metric(exposition, "responder_restart_required") == 0
    finally:
        assert await server.stop() == 0
