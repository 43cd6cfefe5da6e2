"""load_rules: the immutable RuleSet it returns, rule precedence, ${ENV} interpolation, secrets,
the content hash used to skip unchanged reloads, and the templates directory as a boundary."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest

from responder.engine.rendering import render
from responder.rules.load import load_rules
from responder.rules.model import RulesError, RuleSet
from responder.settings import Connection, Policy

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cr3t-app-secret-value"
CLIENT_SECRET = "s3cr3t-client-secret-value"
TOKEN = "s3cr3t-bearer-token"

_PRECEDENCE = """\
rules:
  - {name: first, keywords: a, msgtype: text, body: "1"}
  - {name: urgent, keywords: b, priority: 10, msgtype: text, body: "2"}
  - {name: second, keywords: c, msgtype: text, body: "3"}
  - {name: late-urgent, keywords: d, priority: 10, msgtype: text, body: "4"}
  - {name: low, keywords: e, priority: -5, msgtype: text, body: "5"}
  - {name: middle, keywords: f, priority: 3, msgtype: text, body: "6"}
"""

_SECRETS = """\
dingtalk:
  app_secret:
    - ${APP_SECRET}
    - ${OLD_SECRET:-}
  mode: both
  client_id: ${CLIENT_ID:-ding-client}
  client_secret: ${CLIENT_SECRET}
rules:
  - {name: ip, keywords: ip, msgtype: text, body: hello}
"""


def write_rules(tmp_path: Path, text: str, templates: dict[str, str] | None = None) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    for name, content in (templates or {}).items():
        target = tmp_path / "templates" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
    return path


def load_text(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> RuleSet:
    return load_rules(write_rules(tmp_path, text), environ or {})


def problems_of(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(RulesError) as caught:
        load_rules(path, environ or {})
    return [str(p) for p in caught.value.problems]


def test_bundled_rules_load() -> None:
    ruleset = load_rules(ROOT / "rules.yaml", {})
    assert [r.name for r in ruleset.rules] == ["ip", "help", "hello", "about", "unknown", "not-text", "id"]
    assert list(ruleset.pushes) == ["alertmanager", "ci"]
    assert all(not push.token for push in ruleset.pushes.values())  # disabled until their token is set
    assert ruleset.dingtalk.policy.app_secrets == ()
    assert ruleset.path == ROOT / "rules.yaml"


def test_ruleset_and_its_parts_cannot_be_changed(tmp_path: Path) -> None:
    ruleset = load_text(tmp_path, _SECRETS, {"APP_SECRET": SECRET, "CLIENT_SECRET": CLIENT_SECRET})
    rule = ruleset.rules[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ruleset.rules = ()  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ruleset.dingtalk.policy.app_secrets = ()  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        rule.priority = 99  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        rule.scope.admins_only = True  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        rule.reply.msgtype = "markdown"  # type: ignore[misc]
    assert isinstance(ruleset.rules, tuple)
    assert isinstance(ruleset.dingtalk.policy.app_secrets, tuple)


def test_ruleset_mappings_are_read_only() -> None:
    ruleset = load_rules(ROOT / "rules.yaml", {})
    with pytest.raises(TypeError):
        ruleset.sources["extra"] = ruleset.sources["public_ip"]  # type: ignore[index]
    with pytest.raises(TypeError):
        ruleset.catalogue[0]["description"] = "changed"  # type: ignore[index]
    assert isinstance(ruleset.catalogue, tuple)


def test_rules_are_ordered_by_priority_then_file_order(tmp_path: Path) -> None:
    ruleset = load_text(tmp_path, _PRECEDENCE)
    assert [r.name for r in ruleset.rules] == ["urgent", "late-urgent", "middle", "first", "second", "low"]
    assert [r.index for r in ruleset.rules] == [1, 3, 5, 0, 2, 4]
    assert ruleset.rule("middle") is ruleset.rules[2]
    assert ruleset.rule("absent") is None


def test_rule_remembers_its_line(tmp_path: Path) -> None:
    ruleset = load_text(tmp_path, _PRECEDENCE)
    assert {r.name: r.line for r in ruleset.rules}["second"] == 4


def test_env_references_defaults_and_lists(tmp_path: Path) -> None:
    ruleset = load_text(tmp_path, _SECRETS, {"APP_SECRET": SECRET, "CLIENT_SECRET": CLIENT_SECRET})
    assert ruleset.dingtalk.policy.app_secrets == (SECRET,)  # the empty default drops out
    assert ruleset.dingtalk.connection.client_id == "ding-client"
    assert ruleset.dingtalk.connection.client_secret == CLIENT_SECRET


def test_env_default_is_ignored_when_variable_is_set(tmp_path: Path) -> None:
    environ = {"APP_SECRET": SECRET, "OLD_SECRET": "old", "CLIENT_ID": "id-from-env", "CLIENT_SECRET": "c"}
    ruleset = load_text(tmp_path, _SECRETS, environ)
    assert ruleset.dingtalk.policy.app_secrets == (SECRET, "old")
    assert ruleset.dingtalk.connection.client_id == "id-from-env"


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("a$$b", "a$b"),
        ("$${APP_SECRET}", "${APP_SECRET}"),
        ("$$$${X}", "$${X}"),
        ("pre-${X}-post", "pre-x-value-post"),
        ("${X}${X}", "x-valuex-value"),
        ("${UNSET:-fallback value}", "fallback value"),
        ("${UNSET:-}", ""),
        ("${EMPTY:-default}", ""),
        ("$X and $ alone", "$X and $ alone"),
        ("${NESTED}", "${X}"),
    ],
)
def test_env_interpolation_forms(tmp_path: Path, written: str, expected: str) -> None:
    text = f"dingtalk:\n  client_id: '{written}'\nrules: []\n"
    ruleset = load_text(tmp_path, text, {"X": "x-value", "NESTED": "${X}", "EMPTY": ""})
    assert ruleset.dingtalk.connection.client_id == expected


def test_env_references_in_templates_are_left_alone(tmp_path: Path) -> None:
    text = "rules:\n  - {name: ip, keywords: ip, msgtype: text, body: 'cost: ${PRICE} $$5'}\n"
    ruleset = load_text(tmp_path, text, {"PRICE": "10"})
    assert render(ruleset.rules[0].reply, {}, None).text == "cost: ${PRICE} $$5"


def test_missing_env_variable_is_an_error_naming_it(tmp_path: Path) -> None:
    path = write_rules(tmp_path, _SECRETS)
    problems = problems_of(path, {"CLIENT_SECRET": CLIENT_SECRET})
    assert problems == [f"{path}:3:7: dingtalk.app_secret.0: environment variable APP_SECRET is not set"]


def test_secrets_do_not_appear_in_repr(tmp_path: Path) -> None:
    ruleset = load_text(tmp_path, _SECRETS, {"APP_SECRET": SECRET, "CLIENT_SECRET": CLIENT_SECRET})
    for shown in (repr(ruleset), str(ruleset), repr(ruleset.dingtalk), repr(ruleset.rules)):
        assert SECRET not in shown
        assert CLIENT_SECRET not in shown
    assert "client_id='ding-client'" in repr(ruleset.dingtalk)


def test_settings_reprs_hide_secrets() -> None:
    policy = Policy((SECRET,), "session_webhook", ("https://oapi.dingtalk.com",), 3_600_000, 5.0)
    connection = Connection("/dingtalk/callback", "stream", "ding-client", CLIENT_SECRET, "https://x")
    assert SECRET not in repr(policy)
    assert CLIENT_SECRET not in repr(connection)


def test_source_secrets_do_not_appear_in_repr(tmp_path: Path) -> None:
    text = (
        "sources:\n  api:\n    kind: http\n    url: https://api.example.com/v1/status\n"
        "    headers: {Authorization: 'Bearer ${API_TOKEN}'}\n"
        "rules:\n  - {name: status, keywords: status, source: api, msgtype: text, body: ok}\n"
    )
    ruleset = load_text(tmp_path, text, {"API_TOKEN": TOKEN})
    assert TOKEN not in repr(ruleset)


def test_failed_load_never_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    path = write_rules(tmp_path, "dingtalk:\n  app_secret: ${APP_SECRET}\n  client_id: ${NOPE}\nrules: []\n")
    problems_of(path, {"APP_SECRET": SECRET})
    load_rules(ROOT / "rules.yaml", {"DINGTALK_APP_SECRET": SECRET})
    assert caplog.records == []


def test_content_argument_is_used_instead_of_the_file(tmp_path: Path) -> None:
    path = write_rules(tmp_path, "rules: []\n")
    ruleset = load_rules(path, {}, content=_PRECEDENCE.encode())
    assert len(ruleset.rules) == 6


def test_sha256_is_stable_for_unchanged_content(tmp_path: Path) -> None:
    path = write_rules(tmp_path, _HELP_RULES, {"help.md.j2": "Help!\n"})
    before = load_rules(path, {}).sha256
    path.write_text(_HELP_RULES, encoding="utf-8")  # rewritten, same bytes
    (tmp_path / "templates" / "help.md.j2").write_text("Help!\n", encoding="utf-8")
    assert load_rules(path, {}).sha256 == before
    assert load_rules(path, {"UNRELATED": "x"}).sha256 == before


_HELP_RULES = "rules:\n  - {name: help, keywords: help, msgtype: text, template: help.md.j2}\n"


def test_sha256_changes_when_a_template_changes(tmp_path: Path) -> None:
    path = write_rules(tmp_path, _HELP_RULES, {"help.md.j2": "Help!\n"})
    before = load_rules(path, {}).sha256
    (tmp_path / "templates" / "help.md.j2").write_text("Help?\n", encoding="utf-8")
    assert load_rules(path, {}).sha256 != before


def test_sha256_changes_when_the_rules_file_changes(tmp_path: Path) -> None:
    path = write_rules(tmp_path, _HELP_RULES, {"help.md.j2": "Help!\n"})
    before = load_rules(path, {}).sha256
    path.write_text(_HELP_RULES + "# a comment\n", encoding="utf-8")
    assert load_rules(path, {}).sha256 != before


def test_sha256_changes_when_a_template_in_a_subfolder_changes(tmp_path: Path) -> None:
    rules = "rules:\n  - {name: help, keywords: help, msgtype: text, template: parts/help.md.j2}\n"
    path = write_rules(tmp_path, rules, {"parts/help.md.j2": "Help!\n"})
    before = load_rules(path, {}).sha256
    (tmp_path / "templates" / "parts" / "help.md.j2").write_text("Help?\n", encoding="utf-8")
    assert load_rules(path, {}).sha256 != before


@pytest.mark.parametrize("key", ["template", "on_error"])
@pytest.mark.parametrize(
    "name", ["../rules.yaml", "../secret.txt", "parts/../../secret.txt", "/etc/hostname"]
)
def test_template_cannot_escape_the_templates_dir(tmp_path: Path, key: str, name: str) -> None:
    (tmp_path / "secret.txt").write_text(SECRET, encoding="utf-8")
    rule = "{name: ip, keywords: ip, msgtype: text, source: pip, fixture: {}"
    rule += f", template: ok.md.j2, on_error: '{name}'}}" if key == "on_error" else f", template: '{name}'}}"
    text = f"sources:\n  pip: {{kind: public_ip}}\nrules:\n  - {rule}\n"
    path = write_rules(tmp_path, text, {"ok.md.j2": "ok\n", "parts/x.md.j2": "x\n"})
    (problem,) = problems_of(path)
    assert f"template {name!r} must name a file inside templates/" in problem
    assert SECRET not in problem
