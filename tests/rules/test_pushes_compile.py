"""`pushes:` in rules.yaml: what loads, and the load errors (file:line:col) for a push that could
never work: a short token, no credentials to send with, a message the OpenAPI cannot carry, an
empty target, no targets at all, a reused name."""

from __future__ import annotations

from pathlib import Path

import pytest

from responder.rules.load import load_rules
from responder.rules.model import RulesError, Target

HEAD = """\
dingtalk:
  client_id: ${CLIENT_ID:-}
  client_secret: ${CLIENT_SECRET:-}
rules:
  - {name: help, keywords: help, msgtype: text, body: help}
pushes:
"""
ENV = {"CLIENT_ID": "ding-app-key", "CLIENT_SECRET": "ding-app-secret", "TOKEN": "t" * 16}
GOOD = """\
  - name: alerts
    token: ${TOKEN}
    to: [{conversation: cid-a}]
    match:
      - when: {status: resolved, labels.team: [db, web]}
        to: [{user: staff-1}]
    msgtype: text
    body: "{{ payload.status }}"
"""


def load(tmp_path: Path, pushes: str, environ: dict[str, str] | None = None) -> object:
    path = tmp_path / "rules.yaml"
    path.write_text(HEAD + pushes, encoding="utf-8")
    return load_rules(path, ENV if environ is None else environ)


def problems(tmp_path: Path, pushes: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(RulesError) as caught:
        load(tmp_path, pushes, environ)
    return [f"{p.line}:{p.column}: {p.message}" for p in caught.value.problems]


def test_a_push_compiles_with_its_targets_and_routes(tmp_path: Path) -> None:
    push = load(tmp_path, GOOD).pushes["alerts"]  # type: ignore[attr-defined]
    assert push.token == "t" * 16
    assert push.targets_for({"status": "firing"}) == (Target("conversation", "cid-a"),)
    assert push.targets_for({"status": "resolved", "labels": {"team": "web"}}) == (Target("user", "staff-1"),)
    assert push.targets_for({"status": "resolved", "labels": {"team": "ops"}}) == (
        Target("conversation", "cid-a"),
    )
    assert push.targets_for({"status": "resolved", "labels": "web"}) == (Target("conversation", "cid-a"),)


def test_a_short_token_is_a_load_error(tmp_path: Path) -> None:
    assert problems(tmp_path, GOOD, {**ENV, "TOKEN": "short"}) == [
        "8:12: push 'alerts': token must be at least 16 characters"
    ]


def test_a_push_with_a_token_needs_credentials(tmp_path: Path) -> None:
    (problem,) = problems(tmp_path, GOOD, {"TOKEN": "t" * 16})
    assert problem.startswith("7:11: push 'alerts': pushes send through the OpenAPI")


def test_a_disabled_push_needs_neither_credentials_nor_targets(tmp_path: Path) -> None:
    text = "  - {name: quiet, token: '', to: [{conversation: '${CID:-}'}], msgtype: text, body: x}\n"
    assert load(tmp_path, text, {}).pushes["quiet"].token == ""  # type: ignore[attr-defined]


def test_an_empty_target_of_an_enabled_push_is_a_load_error(tmp_path: Path) -> None:
    text = GOOD.replace("cid-a", "'${CID:-}'")
    assert problems(tmp_path, text) == ["9:25: push 'alerts': `conversation` is empty (is its variable set?)"]


def test_a_feedcard_cannot_be_pushed(tmp_path: Path) -> None:
    text = """\
  - name: feed
    token: ${TOKEN}
    to: [{conversation: cid-a}]
    msgtype: feedCard
    links: [{title: a, url: "https://example.com", picture: "https://example.com/p.png"}]
"""
    (problem,) = problems(tmp_path, text)
    assert problem.startswith("10:14: push 'feed': ") and "feedCard" in problem


def test_a_push_without_targets_or_a_reused_name_is_a_load_error(tmp_path: Path) -> None:
    assert problems(tmp_path, GOOD + GOOD) == ["15:11: push name 'alerts' is already used"]
    lone = "  - {name: lone, token: '${TOKEN}', msgtype: text, body: x}\n"
    assert problems(tmp_path, lone) == ["7:12: push 'lone': needs `to`, `match`, or both"]


def test_a_when_that_is_no_mapping_gets_the_schema_error(tmp_path: Path) -> None:
    (problem,) = problems(tmp_path, GOOD.replace("{status: resolved, labels.team: [db, web]}", "[status]"))
    assert problem.startswith("11:15: ") and "object" in problem


def test_templates_are_not_interpolated_but_targets_are(tmp_path: Path) -> None:
    text = GOOD.replace("cid-a", "'${CID}'").replace('"{{ payload.status }}"', '"costs ${PRICE}"')
    push = load(tmp_path, text, {**ENV, "CID": "cid-from-env"}).pushes["alerts"]  # type: ignore[attr-defined]
    assert push.targets == (Target("conversation", "cid-from-env"),)
