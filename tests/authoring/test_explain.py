"""`responder try --explain`: every rule in precedence order and why it did or did not answer."""

from __future__ import annotations

from pathlib import Path

import pytest

from responder.authoring.explain import format_verdicts
from responder.cli import main
from responder.engine.matching import Verdict

RULES = """\
rules:
  - name: deploy-admin
    keywords: [deploy]
    priority: 10
    scope: {admins_only: true}
    msgtype: text
    body: deploying
  - name: deploy
    command: deploy
    msgtype: text
    body: "ask an admin to deploy {{ args_text }}"
  - name: help
    keywords: [help]
    msgtype: text
    body: help
  - name: unknown
    fallback: true
    msgtype: text
    body: what?
"""


@pytest.fixture
def rules_path(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES, encoding="utf-8")
    (tmp_path / "templates").mkdir()
    return path


def explain(rules_path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[list[str], str]:
    assert main(["try", "--offline", "--config", str(rules_path), *args], environ={}) == 0
    out, err = capsys.readouterr()
    return err.splitlines(), out


def test_explain_lists_every_rule_with_why_it_did_not_answer(
    rules_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err, out = explain(rules_path, capsys, "--explain", "deploy")
    assert err == [
        "✗ deploy-admin  matched keyword 'deploy', but scope: admins only",
        "✓ deploy        command 'deploy'",
        "✗ help          keywords did not match",
        "✗ unknown       fallback: not needed",
        "rule: deploy (command 'deploy')",
    ]
    assert '"content":"@tester ask an admin to deploy"' in out


def test_explain_shows_the_admin_rule_winning_for_an_admin(
    rules_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err, _ = explain(rules_path, capsys, "--explain", "--admin", "DEPLOY")
    assert err[:2] == [
        "✓ deploy-admin  keyword 'deploy'",
        "✗ deploy        matched command 'DEPLOY', but a rule before it won",
    ]


def test_explain_shows_the_fallback_taking_unknown_text(
    rules_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err, _ = explain(rules_path, capsys, "--explain", "weather")
    assert err == [
        "✗ deploy-admin  keywords did not match",
        "✗ deploy        command did not match",
        "✗ help          keywords did not match",
        "✓ unknown       nothing else matched",
        "rule: unknown (nothing else matched)",
    ]


def test_try_without_explain_prints_only_the_rule(
    rules_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err, _ = explain(rules_path, capsys, "help")
    assert err == ["rule: help (keyword 'help')"]


def test_verdict_table_aligns_names_and_marks_the_winner() -> None:
    table = format_verdicts(
        [Verdict("a", False, "keywords did not match"), Verdict("longer", True, "keyword 'x'")]
    )
    assert table == "✗ a       keywords did not match\n✓ longer  keyword 'x'"
    assert format_verdicts([]) == ""
