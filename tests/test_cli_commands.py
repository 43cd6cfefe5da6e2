"""The `sign` and `try` commands, run in-process through responder.cli.main."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from responder.cli import main
from responder.dingtalk import verify_signature
from responder.engine.answer import RENDER_FAILED_TEXT

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = str(ROOT / "rules.yaml")

_RULES = """\
rules:
  - name: whoami
    keywords: whoami
    msgtype: text
    body: "{{ sender.nick }} {{ sender.staff_id or '-' }} admin={{ sender.is_admin }} {{ conversation.type }}"
  - name: reboot
    keywords: reboot
    scope: {admins_only: true}
    msgtype: text
    body: rebooting
  - name: broken
    keywords: broken
    msgtype: text
    body: "{{ nope }}"
"""


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv), environ={})
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def try_json(
    capsys: pytest.CaptureFixture[str], config: Path | str, *argv: str
) -> tuple[dict[str, Any], str]:
    code, out, err = run(capsys, "try", "--config", str(config), *argv)
    assert code == 0, err
    (line,) = out.splitlines()
    body: dict[str, Any] = json.loads(line)
    return body, err


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(_RULES, encoding="utf-8")
    return path


def test_sign_prints_protocol_sheet_row_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "sign", "--secret", "this is a secret", "--timestamp", "1577262236757")
    assert (code, err) == (0, "")
    assert out == "timestamp: 1577262236757\nsign: DJrE6qdyVGCQz9z5r2MDuNcNAhwYnuAkyj13cx169CA=\n"


def test_sign_without_timestamp_signs_the_current_time(capsys: pytest.CaptureFixture[str]) -> None:
    before = int(time.time() * 1000)
    code, out, _ = run(capsys, "sign", "--secret", "s3cret")
    after = int(time.time() * 1000)
    assert code == 0
    headers = dict(line.split(": ", 1) for line in out.splitlines())
    assert before <= int(headers["timestamp"]) <= after
    verify_signature(headers, ["s3cret"], after, 1000)


@pytest.mark.parametrize("timestamp", ["1577262236", "now", "15772622367570", "-577262236757"])
def test_sign_refuses_a_timestamp_that_is_not_13_digits(
    capsys: pytest.CaptureFixture[str], timestamp: str
) -> None:
    code, out, err = run(capsys, "sign", "--secret", "s", "--timestamp", timestamp)
    assert (code, out) == (2, "")
    assert "13 digits" in err


def test_sign_without_a_secret_anywhere_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "sign")
    assert (code, out) == (2, "")
    assert err == "responder sign: no secret: pass --secret or set DINGTALK_APP_SECRET\n"


def test_sign_reads_the_secret_from_the_environment(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["sign", "--timestamp", "1577262236757"], environ={"DINGTALK_APP_SECRET": "this is a secret"})
    assert code == 0
    assert capsys.readouterr().out.endswith("sign: DJrE6qdyVGCQz9z5r2MDuNcNAhwYnuAkyj13cx169CA=\n")


def test_sign_secret_option_wins_over_the_environment(capsys: pytest.CaptureFixture[str]) -> None:
    environ = {"DINGTALK_APP_SECRET": "another secret"}
    code = main(["sign", "--secret", "this is a secret", "--timestamp", "1577262236757"], environ=environ)
    assert code == 0
    assert capsys.readouterr().out.endswith("sign: DJrE6qdyVGCQz9z5r2MDuNcNAhwYnuAkyj13cx169CA=\n")


def test_try_prints_reply_json_and_rule_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    body, err = try_json(capsys, BUNDLED, "--offline", "help")
    assert err == "rule: help (keyword 'help')\n"
    assert body["msgtype"] == "markdown"
    assert body["markdown"]["title"] == "Help"
    assert "**ip / 公网ip / myip**" in body["markdown"]["text"]
    assert body["at"] == {"atUserIds": ["tester"], "isAtAll": False}


def test_try_offline_answers_source_with_the_fixture(capsys: pytest.CaptureFixture[str]) -> None:
    body, err = try_json(capsys, BUNDLED, "--offline", "ip")
    assert err == "rule: ip (keyword 'ip')\n"
    assert body["markdown"] == {"title": "Public IP", "text": "#### Public IP\n**203.0.113.7**\n\n@tester"}


def test_try_takes_the_rest_of_the_command_line_as_the_text(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "rules:\n  - {name: weather, command: [weather], msgtype: text, body: '{{ args | join(\"+\") }}'}\n",
        encoding="utf-8",
    )
    body, err = try_json(capsys, path, "--private", "weather", "杭州", "西湖")
    assert err == "rule: weather (command 'weather')\n"
    assert body == {"msgtype": "text", "text": {"content": "杭州+西湖"}}


def test_try_defaults_to_a_group_chat_with_a_tester(capsys: pytest.CaptureFixture[str], rules: Path) -> None:
    body, _ = try_json(capsys, rules, "whoami")
    assert body == {
        "msgtype": "text",
        "text": {"content": "@tester Tester tester admin=False group"},
        "at": {"atUserIds": ["tester"], "isAtAll": False},
    }


def test_try_private_drops_the_mention(capsys: pytest.CaptureFixture[str], rules: Path) -> None:
    body, _ = try_json(capsys, rules, "--private", "whoami")
    assert body == {"msgtype": "text", "text": {"content": "Tester tester admin=False private"}}


def test_try_nick_and_staff_id_change_the_sender(capsys: pytest.CaptureFixture[str], rules: Path) -> None:
    body, _ = try_json(capsys, rules, "--nick", "李四", "--staff-id", "lisi", "whoami")
    assert body["text"]["content"] == "@lisi 李四 lisi admin=False group"
    assert body["at"]["atUserIds"] == ["lisi"]


def test_try_empty_staff_id_mentions_the_nick(capsys: pytest.CaptureFixture[str], rules: Path) -> None:
    body, _ = try_json(capsys, rules, "--nick", "李四", "--staff-id", "", "whoami")
    assert body == {"msgtype": "text", "text": {"content": "@李四 李四 - admin=False group"}}


def test_try_admin_unlocks_admin_only_rules(capsys: pytest.CaptureFixture[str], rules: Path) -> None:
    body, err = try_json(capsys, rules, "reboot")  # a non-admin is told, not ignored
    assert err == "rule: reboot (told: scope: admins only)\n"
    assert body["text"]["content"] == "@tester Sorry, only organisation admins may use this."
    body, err = try_json(capsys, rules, "--admin", "reboot")
    assert err == "rule: reboot (keyword 'reboot')\n"
    assert body["text"]["content"] == "@tester rebooting"


def test_try_reports_render_failure_and_prints_graceful_reply(
    capsys: pytest.CaptureFixture[str], rules: Path
) -> None:
    body, err = try_json(capsys, rules, "broken")
    assert body == {"msgtype": "text", "text": {"content": RENDER_FAILED_TEXT}}
    assert err.startswith("rule: broken (render failed: ")
    assert "'nope' is undefined" in err


def test_try_with_broken_rules_exits_1_with_problems(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - {name: ip, keywords: ip, msgtype: txt, body: a}\n", encoding="utf-8")
    code, out, err = run(capsys, "try", "--config", str(path), "ip")
    assert (code, out) == (1, "")
    assert err.startswith(f"{path}:2:39: ")


def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"], environ={})
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("responder ")
