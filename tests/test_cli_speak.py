"""The speak-first commands: `send` (a real `responder` process sending to a local fake
OpenAPI), `try --schedule`, `try --push` and the fire times `check` lists (in-process)."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from responder.cli import main
from tests.conftest import ROOT
from tests.fake_openapi import APP_KEY, APP_SECRET, Fault

RULES = """\
dingtalk:
  client_id: ${CLIENT_ID:-}
  client_secret: ${CLIENT_SECRET:-}
  api_base: API
rules:
  - {name: help, keywords: help, msgtype: text, body: help}
schedules:
  - name: standup
    cron: "30 9 * * 1-5"
    timezone: Asia/Shanghai
    to: [{conversation: cid-team}, {user: lead01}]
    msgtype: markdown
    title: Stand-up
    body: "#### Stand-up, {{ schedule.slot.strftime('%A %H:%M') }}"
  - name: broken
    every: 1h
    to: [{conversation: cid-team}]
    msgtype: text
    body: "{{ schedule.slot.nope }}"
pushes:
  - name: deploys
    token: ${DEPLOY_TOKEN:-}
    to: [{conversation: cid-dev}]
    match:
      - when: {env: prod}
        to: [{conversation: cid-ops}]
    msgtype: text
    body: "{{ payload.service }} -> {{ payload.env }}"
"""
CREDENTIALS = {"CLIENT_ID": APP_KEY, "CLIENT_SECRET": APP_SECRET}


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES.replace("API", "https://api.dingtalk.com"), encoding="utf-8")
    (tmp_path / "templates").mkdir()
    return path


def run(
    capsys: pytest.CaptureFixture[str], *argv: str, environ: dict[str, str] | None = None
) -> tuple[int, str, str]:
    code = main(list(argv), environ=CREDENTIALS if environ is None else environ)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_check_lists_the_next_three_fire_times_of_each_schedule(
    rules: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "check", "--config", str(rules))
    assert (code, err) == (0, "")
    standup, broken, summary = out.splitlines()
    assert standup.startswith("schedule 'standup': cron '30 9 * * 1-5' Asia/Shanghai; next ")
    times = [datetime.datetime.fromisoformat(t) for t in standup.split("; next ")[1].split(", ")]
    assert len(times) == 3 and times == sorted(times)
    assert all(t.strftime("%H:%M %z") == "09:30 +0800" and t.weekday() < 5 for t in times)
    assert broken.startswith("schedule 'broken': every 1h ")
    assert ", 2 schedules, 1 pushes, " in summary


def test_try_schedule_prints_what_the_next_slot_sends_to_each_target(
    rules: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "try", "--config", str(rules), "--schedule", "standup")
    assert code == 0, err
    group, person = (json.loads(line) for line in out.splitlines())
    assert group["to"] == {"conversation": "cid-team"} and person["to"] == {"user": "lead01"}
    assert group["msgKey"] == "sampleMarkdown" and group["msgParam"]["title"] == "Stand-up"
    assert group["msgParam"]["text"].startswith("#### Stand-up, ") and group["msgParam"]["text"].endswith(
        " 09:30"
    )
    assert err.startswith("schedule 'standup': next slot ")


def test_try_schedule_fails_on_a_render_error_and_an_unknown_name(
    rules: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "try", "--config", str(rules), "--schedule", "broken")
    assert code == 1 and "render failed: " in err and "'nope'" in err
    assert json.loads(out)["msgParam"] == {
        "content": "schedule 'broken' failed to render; the server log says why."
    }
    code, _, err = run(capsys, "try", "--config", str(rules), "--schedule", "nope")
    assert (code, err) == (1, "responder try: no schedule 'nope' (schedules: standup, broken)\n")


def test_try_push_prints_what_a_payload_sends(
    rules: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    payload = tmp_path / "deploy.json"
    payload.write_text('{"service": "shop", "env": "prod"}', encoding="utf-8")
    code, out, err = run(capsys, "try", "--config", str(rules), "--push", "deploys", str(payload))
    assert code == 0, err
    assert json.loads(out) == {
        "to": {"conversation": "cid-ops"},
        "msgKey": "sampleText",
        "msgParam": {"content": "shop -> prod"},
    }
    assert err == "push 'deploys' (disabled: its token is empty): 1 target(s)\n"
    payload.write_text('{"service": "shop", "env": "prod", "env": "dev"}', encoding="utf-8")
    code, out, err = run(capsys, "try", "--config", str(rules), "--push", "deploys", str(payload))
    assert (code, out) == (1, "") and "duplicate key 'env'" in err
    assert run(capsys, "try", "--config", str(rules), "--push", "deploys")[0] == 2  # no FILE


def test_send_needs_a_target_and_one_of_text_or_template(
    rules: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "send", "--config", str(rules), "hello")[:2] == (2, "")
    assert run(capsys, "send", "--config", str(rules), "--to", "cid-1")[0] == 2
    bare = rules.with_name("bare.yaml")
    bare.write_text(RULES.split("schedules:")[0].replace("API", "https://api.dingtalk.com"), encoding="utf-8")
    code, _, err = run(capsys, "send", "--config", str(bare), "--to", "cid-1", "hi", environ={})
    assert (code, err) == (
        1,
        "responder send: sending needs dingtalk.client_id and client_secret (the app's AppKey/AppSecret)\n",
    )


async def send(rules: Path, openapi: Any, *argv: str) -> tuple[int, str]:
    rules.write_text(RULES.replace("API", openapi.base), encoding="utf-8")
    environ = {**os.environ, **CREDENTIALS}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "responder",
        "send",
        "--config",
        str(rules),
        *argv,
        env=environ,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode is not None
    return process.returncode, err.decode()


async def test_send_delivers_text_as_data_to_groups_and_people(rules: Path, openapi: Any) -> None:
    code, err = await send(rules, openapi, "--to", "cid-a", "--user", "staff-1", "deploy *done*")
    assert code == 0, err
    assert err.splitlines() == ["conversation cid-a: sent", "user staff-1: sent"]
    group, person = sorted(openapi.sends, key=lambda s: s.path)
    assert group.body["openConversationId"] == "cid-a" and person.body["userIds"] == ["staff-1"]
    assert group.msg_param == person.msg_param == {"content": "deploy *done*"}


async def test_send_renders_a_markdown_template_with_the_value_escaped(
    rules: Path, openapi: Any, tmp_path: Path
) -> None:
    template = tmp_path / "notice.md.j2"
    template.write_text("#### Maintenance\nAt {{ now.year }}, by {{ bot.name }}", encoding="utf-8")
    code, err = await send(rules, openapi, "--to", "cid-a", "--template", str(template), "--title", "[x](y)")
    assert code == 0, err
    (sent,) = openapi.sends
    assert sent.body["msgKey"] == "sampleMarkdown"
    assert sent.msg_param == {
        "title": "［x］(y)",  # a title is escaped like every markdown field
        "text": f"#### Maintenance\nAt {datetime.date.today().year}, by responder",
    }


async def test_send_says_which_target_was_refused_and_exits_1(rules: Path, openapi: Any) -> None:
    openapi.inject(Fault.QUOTA_EXHAUSTED, times=1)
    code, err = await send(rules, openapi, "--to", "cid-a", "hi")
    assert (code, err) == (1, "conversation cid-a: dropped (openapi_quota_exhausted)\n")
