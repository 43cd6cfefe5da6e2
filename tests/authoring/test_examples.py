"""Examples in rules.yaml: run by `responder check` through the real engine, failures with a diff."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from responder.authoring import examples, judging
from responder.cli import main

ROOT = Path(__file__).resolve().parents[2]

HEADER = """\
rules:
  - name: ping
    keywords: [ping]
    msgtype: text
    body: "pong {{ sender.nick }}"
    at_sender: false
"""


def write_rules(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    (tmp_path / "templates").mkdir(exist_ok=True)
    return path


def run_check(path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    code = main(["check", "--config", str(path), *extra], environ={})
    out, err = capsys.readouterr()
    return code, out, err


def bundled_copy(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "rules.yaml", tmp_path / "rules.yaml")
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    return tmp_path / "rules.yaml"


def line_of(path: Path, needle: str, after: str = "") -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if after in line) if after else 0
    return next(i for i in range(start, len(lines)) if needle in lines[i]) + 1


def test_bundled_rules_examples_all_pass(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_check(ROOT / "rules.yaml", capsys)
    assert (code, err) == (0, "")
    passed = re.search(r"(\d+) of (\d+) examples passed, 0 warnings", out)
    assert passed is not None and passed.group(1) == passed.group(2) and int(passed.group(1)) >= 10


def test_every_bundled_rule_has_examples() -> None:
    from responder.authoring.lint import read_document
    from responder.rules.load import load_rules

    ruleset = load_rules(ROOT / "rules.yaml", {})
    owners = {example.rule for example in examples.collect(read_document(ruleset))}
    assert owners == {rule.name for rule in ruleset.rules}


def test_changed_template_fails_check_with_line_and_diff(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = bundled_copy(tmp_path)
    template = tmp_path / "templates" / "ip.md.j2"
    template.write_text(template.read_text().replace("**{{ source.data.ip }}**", "IP {{ source.data.ip }}"))
    code, out, err = run_check(path, capsys)
    line = line_of(path, "equals:", after="- name: ip")
    assert code == 1
    assert out == ""
    assert f"{path}:{line}:9: rule 'ip': example 1: the reply differs from `equals`\n" in err
    assert "    -    **203.0.113.7**\n    +    IP 203.0.113.7\n" in err
    assert f"{path}: FAILED, " in err


def test_example_answered_by_another_rule_names_both(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_rules(tmp_path, HEADER + "    examples:\n      - say: hello\n")
    code, _, err = run_check(path, capsys)
    assert code == 1
    assert err.splitlines()[0] == (
        f"{path}:8:9: rule 'ping': example 1: expected a reply from rule 'ping', "
        "but none was sent (no rule matched)"
    )


def test_example_expecting_other_rule_points_at_rule_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = HEADER + (
        "    examples:\n"
        "      - say: ping\n"
        "        rule: other\n"
        "  - name: other\n"
        "    fallback: true\n"
        "    msgtype: text\n"
        "    body: what?\n"
    )
    code, _, err = run_check(write_rules(tmp_path, text), capsys)
    assert code == 1
    assert (
        ":9:9: rule 'ping': example 1: answered by rule 'ping' (keyword 'ping'), expected rule 'other'" in err
    )


def test_contains_and_matches_failures_show_the_actual_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = HEADER + (
        "    examples:\n      - say: ping\n        contains: [pong Tester, PONG]\n        matches: '^ping'\n"
    )
    code, _, err = run_check(write_rules(tmp_path, text), capsys)
    assert code == 1
    assert ":9:9: rule 'ping': example 1: the reply text does not contain 'PONG'\n" in err
    assert ":10:9: rule 'ping': example 1: the reply text does not match '^ping'\n" in err
    assert "    actual reply text:\n      pong Tester\n" in err
    assert "0 of 1 examples passed" in err


def test_sender_and_scope_options_reach_the_engine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = HEADER + (
        "    scope: {chat: private, admins_only: true, conversations: [cidX]}\n"
        "    examples:\n"
        "      - {say: ping, nick: Ann, admin: true, chat: private, conversation: cidX, contains: pong Ann}\n"
        "      - {say: ping, chat: private, conversation: cidX, contains: only organisation admins}\n"
        "      - {say: ping, admin: true, conversation: cidX, contains: private chat with me only}\n"
        "      - {say: ping, admin: true, chat: private, no_reply: true}\n"
    )
    code, out, err = run_check(write_rules(tmp_path, text), capsys)
    assert (code, err) == (0, "")
    assert "4 of 4 examples passed" in out


def test_no_reply_fails_when_a_rule_answers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = HEADER + "    examples:\n      - say: ping\n        no_reply: true\n"
    code, _, err = run_check(write_rules(tmp_path, text), capsys)
    assert code == 1
    assert ":9:9: rule 'ping': example 1: expected no reply, but rule 'ping' answered\n" in err


def test_picture_example_reaches_the_non_text_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = HEADER + (
        "  - name: pictures\n"
        "    non_text: true\n"
        "    msgtype: text\n"
        "    body: 'no {{ message_type }}s please'\n"
        "    examples:\n"
        "      - type: picture\n"
        "        equals: {text: {content: '@tester no pictures please'}}\n"
        "      - type: picture\n"
        "        equals: {text: {content: no pictures}}\n"
    )
    code, _, err = run_check(write_rules(tmp_path, text), capsys)
    assert code == 1
    where = f"{tmp_path / 'rules.yaml'}:15:9"
    assert err.splitlines()[0] == f"{where}: rule 'pictures': example 2: the reply differs from `equals`"
    assert "    -  content: no pictures\n    +  content: '@tester no pictures please'\n" in err
    assert "1 of 2 examples passed" in err


def test_no_examples_flag_skips_failing_examples(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_rules(tmp_path, HEADER + "    examples:\n      - say: nope\n")
    code, out, _ = run_check(path, capsys, "--no-examples")
    assert code == 0
    assert ": OK, 1 rules, 0 sources, 0 warnings, sha256 " in out


def test_example_with_unknown_key_is_refused_by_the_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_rules(tmp_path, HEADER + "    examples:\n      - say: ping\n        expect: pong\n")
    code, _, err = run_check(path, capsys)
    assert code == 1
    assert f"{path}:9:9: rule 'ping': examples[0]: unknown key 'expect'" in err


def test_text_example_without_say_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_rules(tmp_path, HEADER + "    examples:\n      - contains: pong\n")
    code, _, err = run_check(path, capsys)
    assert code == 1
    assert f"{path}:8:9: rule 'ping': examples[0]: 'say' is required" in err


def test_equals_compares_a_subset_of_the_reply() -> None:
    actual = {"msgtype": "markdown", "markdown": {"title": "Help", "text": "long"}, "at": {"isAtAll": False}}
    assert judging.project({"markdown": {"title": "Help"}}, actual) == {"markdown": {"title": "Help"}}
    assert judging.project({"markdown": {"nope": 1}}, actual) == {"markdown": {}}
    assert judging.project({"msgtype": "text"}, actual) == {"msgtype": "markdown"}


@pytest.mark.slow
def test_check_runs_examples_as_a_command(tmp_path: Path) -> None:
    path = bundled_copy(tmp_path)
    ok = subprocess.run(
        [sys.executable, "-m", "responder", "check", "--config", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert "examples passed" in ok.stdout
    (tmp_path / "templates" / "help.md.j2").write_text("#### Nothing to see\n")
    failed = subprocess.run(
        [sys.executable, "-m", "responder", "check", "--config", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert failed.returncode == 1
    assert "rule 'help': example 1: the reply text does not contain '**ip / 公网ip / myip**'" in failed.stderr


PUSH = """\
pushes:
  - name: ci
    token: ""
    to: [{conversation: cid-dev}]
    match:
      - when: {status: failed}
        to: [{conversation: cid-oncall}]
    msgtype: markdown
    title: CI
    body: "#### {{ payload.project }}: {{ payload.status }}"
    examples:
      - payload: {project: shop, status: failed}
        contains: ["shop: failed"]
        equals: {msgKey: sampleMarkdown, msgParam: {title: CI}}
        to: [{conversation: cid-oncall}]
      - payload: {project: shop, status: failed}
        to: [{conversation: cid-dev}]
      - payload: {project: "*shop*", status: ok}
        contains: ["*shop*"]
      - payload: {status: ok}
        contains: [x]
"""


def test_push_examples_run_offline_and_name_the_example_that_failed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_rules(tmp_path, HEADER + PUSH)
    code, _, err = run_check(path, capsys)
    at = {n: line_of(path, "- payload", after="examples:") + offset for n, offset in ((2, 5), (3, 7), (4, 8))}
    assert code == 1
    assert err.splitlines()[0] == (
        f"{path}:{at[2]}:9: push 'ci': example 2: "
        "sent to [{'conversation': 'cid-oncall'}], expected [{'conversation': 'cid-dev'}]"
    )
    assert f"{path}:{at[3]}:9: push 'ci': example 3: the reply text does not contain '*shop*'" in err
    assert "#### ＊shop＊: ok" in err  # payload values are escaped like message text
    assert f"{path}:{at[4]}:9: push 'ci': example 4: the message failed to render: " in err
    assert "example 1" not in err and "render_failed" not in err
    assert err.splitlines()[-1] == f"{path}: FAILED, 1 of 4 examples passed, 0 warnings"
