"""The documentation keeps up with the schema and the command line (datasette's test_docs idea)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from responder.rules import schema
from responder.rules.schema import load_schema
from tests.conftest import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")


def _properties(definition: dict[str, Any]) -> Iterator[str]:
    yield from definition.get("properties", {})


def _documented_keys() -> list[tuple[str, str]]:
    defs = load_schema()["$defs"]
    keys = [("top", key) for key in load_schema()["properties"]]
    for name in ("dingtalk", "state", "defaults", "scope", "rule"):
        keys += [(name, key) for key in _properties(defs[name])]
    return keys


@pytest.mark.parametrize(("section", "key"), _documented_keys())
def test_every_schema_key_is_in_the_readme(section: str, key: str) -> None:
    assert re.search(rf"`{re.escape(key)}[`:]", README), f"{section}.{key} is not documented in README.md"


def test_readme_has_exactly_two_setup_commands() -> None:
    setup = README.split("## Set up", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```sh\n(.*?)\n```", setup, re.S)
    assert commands[:2] == [
        "python3 -m venv .venv && . .venv/bin/activate && pip install -e . && responder serve --dev",
        "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[test]' && pytest",
    ]


def test_ci_runs_the_readme_test_command() -> None:
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[test]' && pytest" in ci


@pytest.mark.parametrize("command", ["serve", "check", "try", "sign"])
def test_every_cli_option_is_in_the_readme(command: str) -> None:
    usage = subprocess.run(
        [sys.executable, "-m", "responder", command, "--help"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    ).stdout
    for option in set(re.findall(r"(--[a-z][a-z-]+)", usage)) - {"--help"}:
        assert option in README, f"responder {command} {option} is not documented in README.md"


def _readme_table_defaults(section: str) -> dict[str, str]:
    """`key -> default` from the README's reference table of `section` (first two columns)."""
    table = README.split(f"### `{section}`", 1)[1].split("\n\n", 2)[1]
    rows = {}
    for line in table.splitlines()[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        for key in re.findall(r"`([a-z_]+)`", cells[0]):
            rows[key] = cells[1]
    return rows


@pytest.mark.parametrize("section", ["dingtalk", "state", "defaults"])
def test_the_readme_states_the_schemas_defaults(section: str) -> None:
    documented = _readme_table_defaults(section)
    schema_defaults = schema.defaults(section)
    assert schema_defaults, section
    for key, default in schema_defaults.items():
        shown = documented[key].strip("`")
        try:
            value = json.loads(shown)
        except ValueError:
            value = shown  # a bare string such as /dingtalk/callback
        assert value == default, f"README: {section}.{key} defaults to {shown}; schema: {default!r}"


def test_no_module_repeats_a_rules_yaml_default() -> None:
    """rules.yaml defaults are written once, in the schema; code reads them from there."""
    literals = ['"/dingtalk/callback"', '"https://api.dingtalk.com"', '"https://oapi.dingtalk.com"']
    for path in (REPO / "responder").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for literal in literals:
            assert literal not in text, f"{path.relative_to(REPO)} repeats the default {literal}"


DEPLOYMENT = (REPO / "docs" / "deployment.md").read_text(encoding="utf-8")
_QUOTED = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'")
_HUMAN_LINE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO |WARNING|ERROR) (.*)")


def _keys(message: str) -> list[str]:
    """The `key=` names of a log message, ignoring anything inside a quoted value."""
    return re.findall(r" ([a-z_0-9]+)=", _QUOTED.sub("", message))


def _logged_keys(logger: str, event: str) -> list[str]:
    """The keys the code's format string for `event` writes, found in the logger's module."""
    module = REPO / (logger.replace(".", "/") + ".py")
    found = re.search(rf'"{event}((?: [a-z_0-9]+=%[-.\w]*)*)"', module.read_text(encoding="utf-8"))
    assert found, f"{module.relative_to(REPO)} logs no {event!r}"
    return _keys(found.group(1))


def _log_examples(fence: str) -> list[str]:
    logs = DEPLOYMENT.split("\n## Logs\n", 1)[1]
    return [
        line for block in re.findall(rf"```{fence}\n(.*?)\n```", logs, re.S) for line in block.splitlines()
    ]


@pytest.mark.parametrize("line", _log_examples("json"))
def test_deployment_json_log_examples_have_the_real_shape_and_keys(line: str) -> None:
    record = json.loads(line)
    assert list(record) == ["ts", "level", "logger", "event", "msg"]
    assert record["msg"].split(" ", 1)[0] == record["event"]
    assert _keys(record["msg"]) == _logged_keys(record["logger"], record["event"])


@pytest.mark.parametrize("line", _log_examples("text"))
def test_deployment_human_log_examples_have_the_real_shape_and_keys(line: str) -> None:
    parsed = _HUMAN_LINE.fullmatch(line)
    assert parsed, line
    event = parsed.group(2).split(" ", 1)[0]
    assert _keys(parsed.group(2)) == _logged_keys("responder.rules.store", event)


DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


@pytest.mark.parametrize("document", DOCUMENTS, ids=[str(d.relative_to(REPO)) for d in DOCUMENTS])
def test_every_relative_link_points_at_a_file_in_the_repository(document: Path) -> None:
    # Code is not a link: `[graph](…)` in backticks or a fenced block shows what a template prints.
    text = re.sub(r"```.*?```|`[^`\n]*`", "", document.read_text(encoding="utf-8"), flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:|#", target):
            continue
        path = (document.parent / target.split("#", 1)[0]).resolve()
        assert path.exists(), f"{document.name} links {target}, which is not in the repository"


def test_the_readme_links_the_reliability_and_protocol_pages() -> None:
    assert "](docs/reliability.md)" in README
    assert "](docs/protocol.md)" in README
