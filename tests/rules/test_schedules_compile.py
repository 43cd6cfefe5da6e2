"""`schedules:` in rules.yaml: what loads, and the load errors (file:line:col) for a schedule
that could never work: a cron that is not five fields or never fires, both or neither of cron
and every, an unknown time zone, a catch_up too long, no credentials to send with."""

from __future__ import annotations

from pathlib import Path

import pytest

from responder.rules.load import load_rules
from responder.rules.model import RulesError, RuleSet, Target

HEAD = """\
dingtalk:
  client_id: ${CLIENT_ID:-}
  client_secret: ${CLIENT_SECRET:-}
rules:
  - {name: help, keywords: help, msgtype: text, body: help}
schedules:
"""
ENV = {"CLIENT_ID": "ding-app-key", "CLIENT_SECRET": "ding-app-secret"}
GOOD = """\
  - name: standup
    cron: "30 9 * * 1-5"
    timezone: Asia/Shanghai
    catch_up: 10m
    to: [{conversation: cid-team}]
    msgtype: text
    body: "Stand-up in {{ schedule.name }}"
"""


def load(tmp_path: Path, schedules: str, environ: dict[str, str] | None = None) -> RuleSet:
    path = tmp_path / "rules.yaml"
    path.write_text(HEAD + schedules, encoding="utf-8")
    return load_rules(path, ENV if environ is None else environ)


def problems(tmp_path: Path, schedules: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(RulesError) as caught:
        load(tmp_path, schedules, environ)
    return [f"{p.line}:{p.column}: {p.message}" for p in caught.value.problems]


def test_a_schedule_compiles_with_its_timing_and_targets(tmp_path: Path) -> None:
    (schedule,) = load(tmp_path, GOOD).schedules
    assert (schedule.name, str(schedule.timing), schedule.catch_up_s) == (
        "standup",
        "cron '30 9 * * 1-5' Asia/Shanghai",
        600.0,
    )
    assert schedule.targets == (Target("conversation", "cid-team"),)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (('"30 9 * * 1-5"', '"30 9 * *"'), "8:11: schedule 'standup': cron takes five fields"),
        (('"30 9 * * 1-5"', '"0 0 31 2 *"'), "8:11: schedule 'standup': cron '0 0 31 2 *' never fires"),
        (("Asia/Shanghai", "Mars/Olympus"), "9:15: schedule 'standup': unknown time zone 'Mars/Olympus'"),
        (("catch_up: 10m", "catch_up: 2d"), "10:15: schedule 'standup': catch_up must be at most 1d"),
        (("cid-team", "'${CID:-}'"), "11:25: schedule 'standup': `conversation` is empty"),
    ],
)
def test_a_schedule_that_could_never_work_is_a_load_error(
    tmp_path: Path, change: tuple[str, str], expected: str
) -> None:
    (problem,) = problems(tmp_path, GOOD.replace(*change))
    assert problem.startswith(expected), problem


def test_cron_and_every_together_or_neither_is_a_schema_error(tmp_path: Path) -> None:
    (both,) = problems(tmp_path, GOOD.replace("    timezone:", "    every: 1h\n    timezone:"))
    assert both.startswith("7:5: ") and "cron" in both
    (neither,) = problems(tmp_path, GOOD.replace('    cron: "30 9 * * 1-5"\n', ""))
    assert neither.startswith("7:5: ") and "cron" in neither


def test_a_schedule_needs_credentials_and_a_unique_name(tmp_path: Path) -> None:
    (problem,) = problems(tmp_path, GOOD, {})
    assert problem.startswith("7:11: schedule 'standup': schedules send through the OpenAPI")
    assert problems(tmp_path, GOOD + GOOD) == ["14:11: schedule name 'standup' is already used"]


def test_every_and_a_bare_number_of_seconds(tmp_path: Path) -> None:
    text = GOOD.replace('cron: "30 9 * * 1-5"', "every: 90")
    (schedule,) = load(tmp_path, text).schedules
    assert str(schedule.timing) == "every 1m30s Asia/Shanghai"
