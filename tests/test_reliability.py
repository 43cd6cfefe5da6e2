"""Never silently broken: every hole of the attack-and-fault run, replayed against a real
`responder serve` process. Each test fails on the code before its fix."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from responder.engine.answer import RENDER_FAILED_TEXT
from tests.breakers import BREAKERS, repair
from tests.conftest import SECRET, RulesWriter, Sink, callback_body, signed_headers
from tests.process import ServerProcess, metric

pytestmark = pytest.mark.slow

ENV = {"DINGTALK_APP_SECRET": SECRET}
GOOD = """
dingtalk:
  app_secret: ${DINGTALK_APP_SECRET}
  session_webhook_origins: ["ORIGIN"]
rules:
  - name: version
    keywords: [version]
    msgtype: text
    at_sender: false
    template: version.md.j2
"""


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def post(session: aiohttp.ClientSession, server: ServerProcess, body: Any, **headers: str) -> int:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with session.post(
        server.url + "/dingtalk/callback", data=data, headers={**signed_headers(), **headers}
    ) as response:
        return response.status


async def ask(
    session: aiohttp.ClientSession, server: ServerProcess, sink: Sink, text: str, **fields: Any
) -> str:
    body = callback_body(text, webhook=sink.webhook(), conversationType="1", **fields)
    assert await post(session, server, body) == 200
    return str((await sink.next(10))["json"]["text"]["content"])


# Reload can never die


def write_good(path: Path, origin: str, version: str) -> None:
    repair(path, version)
    path.write_text(GOOD.replace("ORIGIN", origin), encoding="utf-8")


async def test_every_bad_file_fails_its_reload_and_the_next_reload_succeeds(
    write_rules: RulesWriter, sink: Sink, session: aiohttp.ClientSession
) -> None:
    path = write_rules("rules: []\n")
    write_good(path, sink.origin, "v0")
    server = await ServerProcess.start(
        path, "--enable-reload-endpoint", "--reload-settle", "0.1", environ=ENV
    )
    try:
        assert await ask(session, server, sink, "version") == "v0"
        for number, breaker in enumerate(BREAKERS, start=1):
            breaker(path)
            status = await server.reload_and_wait(session)
            assert status["last_reload_ok"] is False, (breaker.__name__, status)
            problem = status["problems"][0]
            assert problem["line"] >= 1 and problem["column"] >= 1 and problem["file"], breaker.__name__
            assert "hunter2" not in json.dumps(status)
            _, exposition = await server.get(session, "/metrics")
            assert metric(exposition, "responder_rules_last_reload_successful") == 0
            assert await ask(session, server, sink, "version") == f"v{number - 1}"  # the old rules serve

            write_good(path, sink.origin, f"v{number}")
            async with session.post(server.admin + "/-/reload") as response:  # the endpoint never hangs
                assert response.status == 200, (breaker.__name__, await response.text())
            assert await ask(session, server, sink, "version") == f"v{number}"
        assert server.output.count("rules_reload_failed") == len(BREAKERS)
        assert "Traceback" not in server.output
    finally:
        assert await server.stop() == 0


async def test_a_file_still_being_written_is_loaded_only_once_it_is_complete(
    write_rules: RulesWriter, sink: Sink, session: aiohttp.ClientSession
) -> None:
    head = "dingtalk: {app_secret: '${DINGTALK_APP_SECRET}'}\nrules:\n"
    path = write_rules(head + "  - {name: r0, keywords: [w0], msgtype: text, body: r0}\n")
    server = await ServerProcess.start(path, "--reload-settle", "1", environ=ENV)
    try:
        filler = "x" * 900  # about 1 KiB per rule, like the appending writer that found the bug
        rule = "  - {{name: r{0}, keywords: [w{0}], description: {1}, msgtype: text, body: r}}\n"

        async def append_rules() -> None:
            for i in range(1, 30):
                with path.open("a", encoding="utf-8") as f:
                    f.write(rule.format(i, filler))
                await asyncio.sleep(0.1 + 0.1 * (i % 2))  # the writer's pace, not synchronisation

        writer = asyncio.create_task(append_rules())
        while path.stat().st_size < 6 * 1024:  # a SIGHUP mid-write, once a few rules are in
            await asyncio.sleep(0.01)
        status = await server.reload_and_wait(session, timeout=30)
        assert writer.done()
        assert (status["last_reload_ok"], status["rules"]) == (True, 30), status
    finally:
        assert await server.stop() == 0


# Bounded work per message

BUDGET_RULES = """
dingtalk:
  app_secret: ${DINGTALK_APP_SECRET}
  session_webhook_origins: ["ORIGIN"]
rules:
  - name: repeat
    command: [repeat]
    msgtype: text
    at_sender: false
    body: "{% for a in args %}{{ args_text*50 }}{% endfor %}"
  - name: loop
    keywords: [loop]
    msgtype: text
    at_sender: false
    body: "{% macro again() %}{{ again() }}{% endmacro %}{{ again() }}"
  - name: echo
    keywords: [echo]
    msgtype: text
    at_sender: false
    body: echo
"""


@pytest.fixture
async def budget_server(write_rules: RulesWriter, sink: Sink) -> AsyncIterator[ServerProcess]:
    server = await ServerProcess.start(write_rules(BUDGET_RULES.replace("ORIGIN", sink.origin)), environ=ENV)
    yield server
    assert await server.stop() == 0


async def test_a_render_over_budget_is_the_apology_and_the_loop_stays_free(
    budget_server: ServerProcess, sink: Sink, session: aiohttp.ClientSession
) -> None:
    words = " ".join(["词"] * 6000)
    started = time.monotonic()
    assert await ask(session, budget_server, sink, f"repeat {words}") == RENDER_FAILED_TEXT
    assert time.monotonic() - started < 10  # was 100 s and 3.5 GB of memory
    assert (await budget_server.get(session, "/-/healthy"))[0] == 200
    await budget_server.wait_for_line("render_failed rule=repeat reason=budget")


async def test_a_recursive_template_is_the_apology_and_its_msgid_is_settled(
    budget_server: ServerProcess, sink: Sink, session: aiohttp.ClientSession
) -> None:
    body = callback_body("loop", webhook=sink.webhook(), conversationType="1")
    assert await post(session, budget_server, body) == 200
    assert (await sink.next(10))["json"]["text"]["content"] == RENDER_FAILED_TEXT
    await budget_server.wait_for_line(r"reply_sent .*rule=loop")
    assert await post(session, budget_server, body) == 200  # DingTalk's redelivery
    await budget_server.wait_for_line(r"reply_skipped .*reason='duplicate_done'")


@pytest.mark.parametrize("field", ["msgId", "conversationId", "senderStaffId", "senderNick"])
async def test_absurd_identifiers_are_refused_on_arrival(
    field: str, budget_server: ServerProcess, sink: Sink, session: aiohttp.ClientSession
) -> None:
    body = callback_body("echo", webhook=sink.webhook(), **{field: "x" * 60_000})
    async with session.post(
        budget_server.url + "/dingtalk/callback", data=json.dumps(body), headers=signed_headers()
    ) as response:
        assert response.status == 400
        assert f"field {field!r} is longer than" in (await response.json())["reason"]
    assert all(len(line) < 2000 for line in budget_server.lines)


async def test_message_data_cannot_add_fields_to_a_log_line(
    budget_server: ServerProcess, sink: Sink, session: aiohttp.ClientSession
) -> None:
    await ask(session, budget_server, sink, "echo", msgId="a rule=admin reason='sent'")
    found = await budget_server.wait_for_line(r"reply_sent msg_id=.*")
    assert "msg_id=\"a rule=admin reason='sent'\" rule=echo " in found.group(0)


async def test_refused_signatures_cost_a_line_now_and_then_but_are_all_counted(
    budget_server: ServerProcess, sink: Sink, session: aiohttp.ClientSession
) -> None:
    body = callback_body("echo", webhook=sink.webhook())
    for _ in range(50):
        assert await post(session, budget_server, body, sign="forged") == 401
    _, exposition = await budget_server.get(session, "/metrics")
    assert metric(exposition, 'responder_auth_failures_total{reason="bad_signature"}') == 50
    assert budget_server.output.count("auth_rejected") <= 2


async def test_duplicate_signature_headers_and_duplicate_json_keys_are_refused(
    budget_server: ServerProcess, sink: Sink
) -> None:
    host, port = budget_server.url.removeprefix("http://").rsplit(":", 1)
    headers = signed_headers()
    payload = json.dumps(callback_body("echo", webhook=sink.webhook()))
    duplicate_key = payload[:-1] + ', "msgId": "second"}'
    cases = [
        (f"timestamp: {headers['timestamp']}\r\n", payload, b"401"),
        ("", duplicate_key, b"400"),
    ]
    for extra, body, status in cases:
        reader, writer = await asyncio.open_connection(host, int(port))
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + extra
        raw = body.encode()
        writer.write(
            f"POST /dingtalk/callback HTTP/1.1\r\nHost: x\r\n{head}Content-Length: {len(raw)}\r\n"
            "Connection: close\r\n\r\n".encode()
            + raw
        )
        answer = await asyncio.wait_for(reader.read(), 10)
        assert answer.split(b" ", 2)[1] == status, answer
        writer.close()


# Logs


async def test_a_log_file_on_a_full_disk_falls_back_to_stderr_and_is_counted(
    write_rules: RulesWriter, sink: Sink, session: aiohttp.ClientSession
) -> None:
    path = write_rules(BUDGET_RULES.replace("ORIGIN", sink.origin))
    server = await ServerProcess.start(path, "--log-file", "/dev/full", environ=ENV)
    try:
        assert await ask(session, server, sink, "echo") == "echo"
        await server.wait_for_line("reply_sent")
        _, exposition = await server.get(session, "/metrics")
        lost = metric(exposition, 'responder_log_records_lost{reason="write_failed"}')
        assert lost is not None and lost > 0
    finally:
        assert await server.stop() == 0


SECRET_RULES = """
dingtalk:
  app_secret: ${DINGTALK_APP_SECRET}
  session_webhook_origins: ["ORIGIN"]
sources:
  api:
    kind: http
    url: APIORIGIN/api
    headers: {Authorization: "Bearer ${API_TOKEN}"}
PROVIDERrules:
  - name: echo
    keywords: [echo]
    msgtype: text
    at_sender: false
    body: echo
  - name: api
    keywords: [api]
    source: api
    msgtype: text
    at_sender: false
    body: "{{ source.ok }}"
"""


async def test_interpolated_values_never_reach_errors_status_or_logs(
    write_rules: RulesWriter, sink: Sink, trap: Sink, session: aiohttp.ClientSession
) -> None:
    token = "tok-7f3a9c-never-shown"
    environ = {**ENV, "API_TOKEN": token, "HOST": f"user:{token}@ip.example"}
    rules = SECRET_RULES.replace("APIORIGIN", trap.origin).replace("ORIGIN", sink.origin)
    path = write_rules(rules.replace("PROVIDER", ""))
    server = await ServerProcess.start(path, environ=environ)
    try:
        assert await ask(session, server, sink, "api") == "True"
        call = await asyncio.wait_for(trap.received.get(), 10)
        assert call["headers"]["Authorization"] == f"Bearer {token}"  # the value is used, never shown
        bad = "  ip:\n    kind: public_ip\n    providers: ['https://${HOST}/']\n"
        path.write_text(rules.replace("PROVIDER", bad))
        status = await server.reload_and_wait(session)
        assert status["last_reload_ok"] is False
        assert token not in json.dumps(status) and "***" in status["last_error"]
        await server.wait_for_line("rules_reload_failed")
        assert token not in server.output
    finally:
        assert await server.stop() == 0


# Delivery that tells the truth


async def test_a_slow_sink_and_many_replies_are_all_sent_and_logged_sent(
    write_rules: RulesWriter, sink: Sink, session: aiohttp.ClientSession
) -> None:
    rules = BUDGET_RULES.replace("ORIGIN", sink.origin).replace(
        "session_webhook_origins", "webhook_timeout_s: 5\n  session_webhook_origins"
    )
    server = await ServerProcess.start(write_rules(rules), environ=ENV)
    sink.hold = release = asyncio.Event()
    try:
        for i in range(250):
            body = callback_body("echo", webhook=sink.webhook(), conversationId=f"c{i}")
            assert await post(session, server, body) == 200
        deadline = time.monotonic() + 30
        while sink.arrivals < 250:  # every reply reaches the sink before any is answered
            assert time.monotonic() < deadline, sink.arrivals
            await asyncio.sleep(0.02)  # polling under a deadline
        release.set()
        deadline = time.monotonic() + 30
        while server.output.count("reply_sent") < 250:
            assert time.monotonic() < deadline, server.output[-2000:]
            await asyncio.sleep(0.05)
        assert "reply_dropped" not in server.output
    finally:
        assert await server.stop() == 0


def count(pattern: str, text: str) -> int:
    return len(re.findall(pattern, text))
