"""Rule lint: each warning on a crafted rules.yaml, with its exact file:line:col, and --strict."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from responder.authoring import lint
from responder.cli import main
from responder.rules.load import load_rules

ROOT = Path(__file__).resolve().parents[2]


def warnings_for(tmp_path: Path, rules: str, templates: dict[str, str] | None = None) -> list[str]:
    """The lint warnings for `rules`, with the tmp path shortened to `R` (rules) or `T/` (templates)."""
    path = tmp_path / "rules.yaml"
    path.write_text(rules, encoding="utf-8")
    (tmp_path / "templates").mkdir(exist_ok=True)
    for name, text in (templates or {}).items():
        (tmp_path / "templates" / name).write_text(text, encoding="utf-8")
    ruleset = load_rules(path, {})
    found = lint.lint(ruleset, lint.read_document(ruleset))
    return [str(w).replace(str(path), "R").replace(f"{tmp_path}/templates/", "T/") for w in found]


def rule(name: str, match: str, extra: str = "") -> str:
    return f"  - name: {name}\n    {match}\n{extra}    msgtype: text\n    body: ok\n"


def test_bundled_rules_have_no_warnings() -> None:
    ruleset = load_rules(ROOT / "rules.yaml", {})
    assert lint.lint(ruleset, lint.read_document(ruleset)) == []


def test_same_keyword_in_two_rules_after_normalising_and_case_folding(tmp_path: Path) -> None:
    rules = (
        "rules:\n"
        + rule("a", "keywords: [\uff28\uff45\uff4c\uff4c\uff4f, bye]")
        + rule("b", "command: [hello]", "    priority: -1\n")
    )
    assert warnings_for(tmp_path, rules) == [
        "R:7:15: warning: rule 'b': command 'hello' is also used by rule 'a' (line 2)",
    ]


def test_case_sensitive_rules_with_different_case_do_not_clash(tmp_path: Path) -> None:
    rules = (
        "defaults: {case_sensitive: true}\nrules:\n"
        + rule("a", "keywords: [Help]")
        + rule("b", "keywords: [help]")
    )
    assert warnings_for(tmp_path, rules) == []


def test_rule_behind_a_higher_priority_rule_with_the_same_keywords_never_fires(tmp_path: Path) -> None:
    rules = (
        "rules:\n"
        + rule("late", "keywords: [deploy]")
        + rule("early", "keywords: [DEPLOY]", "    priority: 5\n")
    )
    assert warnings_for(tmp_path, rules) == [
        "R:3:15: warning: rule 'late' can never answer: rule 'early' (line 6) "
        "takes every message it matches first",
        "R:3:16: warning: rule 'late': keyword 'deploy' is also used by rule 'early' (line 6)",
    ]


def test_rule_behind_a_contains_rule_that_matches_all_its_keywords_never_fires(tmp_path: Path) -> None:
    rules = "rules:\n" + rule("any_ip", "contains: ip") + rule("mine", "keywords: [my ip, 公网 IP]")
    assert warnings_for(tmp_path, rules) == [
        "R:7:15: warning: rule 'mine' can never answer: rule 'any_ip' (line 2) "
        "takes every message it matches first",
    ]


def test_rule_taken_by_several_earlier_rules_names_them_all(tmp_path: Path) -> None:
    rules = "rules:\n" + rule("a", "keywords: [x]") + rule("b", "regex: '^y'") + rule("c", "keywords: [x, Y]")
    assert warnings_for(tmp_path, rules) == [
        "R:11:15: warning: rule 'c' can never answer: rule 'a' (line 2) and rule 'b' (line 6) "
        "takes every message it matches first",
        "R:11:16: warning: rule 'c': keyword 'x' is also used by rule 'a' (line 2)",
    ]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        # the earlier rule's scope is narrower, so other senders still reach the later one
        (rule("a", "keywords: [go]", "    scope: {admins_only: true}\n"), rule("b", "keywords: [hi, go]")),
        (rule("a", "keywords: [go]", "    scope: {chat: group}\n"), rule("b", "command: go")),
        (rule("a", "keywords: [go]", "    scope: {senders: [s1]}\n"), rule("b", "contains: go")),
        # a keyword rule does not take `go fast`, which the command rule answers
        (rule("a", "keywords: [go]"), rule("b", "command: go")),
        # a case-sensitive rule lets `GO` through to a case-insensitive one
        (rule("a", "keywords: [go]", "    case_sensitive: true\n"), rule("b", "keywords: [go]")),
        # a regex that only matches some of the texts
        (rule("a", "regex: '^go$'"), rule("b", "contains: [go]")),
    ],
)
def test_rules_that_can_still_fire_are_not_called_shadowed(tmp_path: Path, first: str, second: str) -> None:
    assert not [w for w in warnings_for(tmp_path, "rules:\n" + first + second) if "never answer" in w]


def test_narrower_earlier_scope_does_not_shadow_but_wider_one_does(tmp_path: Path) -> None:
    admin = "    scope: {admins_only: true, chat: private}\n"
    rules = "rules:\n" + rule("open", "command: [go]") + rule("admin", "keywords: go", admin)
    assert warnings_for(tmp_path, rules)[0] == (
        "R:7:15: warning: rule 'admin' can never answer: rule 'open' (line 2) "
        "takes every message it matches first"
    )


def test_identical_regex_later_never_fires(tmp_path: Path) -> None:
    rules = "rules:\n" + rule("a", "regex: 'b[io]t'") + rule("b", "regex: 'b[io]t'")
    assert warnings_for(tmp_path, rules) == [
        "R:7:12: warning: rule 'b' can never answer: rule 'a' (line 2) takes every message it matches first",
    ]


def test_keywords_written_as_regexes(tmp_path: Path) -> None:
    rules = "rules:\n" + rule("a", r"keywords: ['deploy.*', '?', 'c++', '\d+', '^start']")
    assert warnings_for(tmp_path, rules) == [
        "R:3:16: warning: rule 'a': keyword 'deploy.*' contains regex syntax '.*' but is matched literally; "
        "use regex: for a pattern",
        "R:3:40: warning: rule 'a': keyword '\\\\d+' contains regex syntax '\\\\d' but is matched literally; "
        "use regex: for a pattern",
        "R:3:47: warning: rule 'a': keyword '^start' contains regex syntax '^s' but is matched literally; "
        "use regex: for a pattern",
    ]


@pytest.mark.parametrize("pattern", [r"^(a+)+$", r"(\w*)*$", r"(a|a)*b", r"(.*,)*x", r"^(\w+\s?)+$"])
def test_nested_repeats_are_not_warned_about_since_re2_runs_them_in_linear_time(
    tmp_path: Path, pattern: str
) -> None:
    assert warnings_for(tmp_path, "rules:\n" + rule("nested", f"regex: '{pattern}'")) == []


def test_check_passes_a_nested_repeat_without_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n" + rule("nested", "regex: '^(a+)+$'"), encoding="utf-8")
    assert main(["check", "--strict", "--config", str(path)], environ={}) == 0
    out, err = capsys.readouterr()
    assert (err, out.split(", sha256")[0]) == ("", f"{path}: OK, 1 rules, 0 sources, no examples, 0 warnings")


def test_identical_regex_differing_in_case_does_not_shadow(tmp_path: Path) -> None:
    rules = (
        "rules:\n" + rule("a", "regex: 'b[io]t'", "    case_sensitive: true\n") + rule("b", "regex: 'b[io]t'")
    )
    assert not [w for w in warnings_for(tmp_path, rules) if "never answer" in w]


SEEN = (
    "args, args_text, bot, conversation, groups, message_type, now, parts, quoted, rule, rules, "
    "sender, source, spoken, text"
)


def test_template_variables_nothing_provides(tmp_path: Path) -> None:
    rules = (
        "rules:\n"
        "  - name: greet\n"
        "    keywords: [hi]\n"
        "    msgtype: markdown\n"
        "    title: 'Hi {{ nick }}'\n"
        "    template: greet.md.j2\n"
    )
    template = (
        "{% for r in rules %}{{ loop.index }} {{ r.name }}{% endfor %}\n"
        "{% set x = 1 %}{{ x }} {{ range(2) }}\n"
        "to {{ user.name }}\n"
    )
    # Errors, not warnings: such a reply could only ever be the apology.
    assert warnings_for(tmp_path, rules, {"greet.md.j2": template}) == [
        f"R:5:12: rule 'greet': template variable 'nick' is not defined; templates see: {SEEN}",
        f"T/greet.md.j2:3:7: rule 'greet': template variable 'user' is not defined; templates see: {SEEN}",
    ]


def test_an_attribute_no_message_has_is_an_error(tmp_path: Path) -> None:
    rules = "rules:\n  - name: a\n    keywords: [a]\n    msgtype: text\n"
    rules += "    body: |\n      {{ sender.nick }} {{ sender['staff_id'] }}\n      {{ sender.nickname }}\n"
    assert warnings_for(tmp_path, rules) == [
        "R:7:1: rule 'a': sender.nickname does not exist; sender has: is_admin, nick, staff_id"
    ]


def test_push_and_schedule_templates_are_checked_against_what_they_see(tmp_path: Path) -> None:
    rules = (
        "dingtalk: {client_id: app-key, client_secret: app-secret}\n"
        "rules:\n" + rule("a", "keywords: [a]") + "pushes:\n"
        "  - {name: p, token: '', to: [{conversation: c}], msgtype: text,"
        " body: '{{ payload.any.thing }} {{ push.nam }} {{ sender.nick }}'}\n"
        "schedules:\n"
        "  - {name: s, every: 1h, to: [{conversation: c}], msgtype: text, body: '{{ schedule.when }}'}\n"
    )
    assert warnings_for(tmp_path, rules) == [
        "R:8:72: push 'p': push.nam does not exist; push has: name",
        "R:8:72: push 'p': template variable 'sender' is not defined; "
        "templates see: bot, now, payload, push, source",
        "R:10:72: schedule 's': schedule.when does not exist; schedule has: name, slot",
    ]


def test_check_fails_on_an_undefined_variable_even_without_examples(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - {name: a, keywords: [a], msgtype: text, body: '{{ sender.nickname }}'}\n")
    (tmp_path / "templates").mkdir()
    assert main(["check", "--config", str(path)], environ={}) == 1
    assert "1 error" in capsys.readouterr().err


def test_block_scalar_template_variable_points_at_its_line(tmp_path: Path) -> None:
    rules = "rules:\n  - name: a\n    keywords: [a]\n    msgtype: text\n"
    rules += "    body: |\n      one\n      two {{ zzz }}\n"
    assert [w.split(": rule")[0] for w in warnings_for(tmp_path, rules)] == ["R:7:1"]


def test_unused_source_and_source_the_templates_ignore(tmp_path: Path) -> None:
    rules = (
        "sources:\n"
        "  clock: {kind: time}\n"
        "  spare: {kind: time}\n"
        "rules:\n"
        "  - name: t\n"
        "    keywords: [time]\n"
        "    source: clock\n"
        "    msgtype: text\n"
        "    body: 'it is {{ now }}'\n"
    )
    assert warnings_for(tmp_path, rules) == [
        "R:3:3: warning: source 'spare' is not used by any rule",
        "R:7:13: warning: rule 't' fetches source 'clock', but none of its templates use `source`",
    ]


def test_buttons_and_links_without_urls(tmp_path: Path) -> None:
    rules = (
        "rules:\n"
        "  - name: card\n"
        "    keywords: [card]\n"
        "    msgtype: actionCard\n"
        "    title: Card\n"
        "    body: text\n"
        "    buttons:\n"
        "      - {title: Go, url: ''}\n"
        "      - {title: Ok, url: 'https://example.com'}\n"
        "  - name: feed\n"
        "    keywords: [feed]\n"
        "    msgtype: feedCard\n"
        "    links:\n"
        "      - title: A\n"
        "        url: ' '\n"
        "        picture: https://example.com/a.png\n"
    )
    assert warnings_for(tmp_path, rules) == [
        "R:8:26: warning: rule 'card': button 1 'Go' has an empty URL",
        "R:15:14: warning: rule 'feed': link 1 'A' has an empty URL",
    ]


def test_strict_turns_warnings_into_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n" + rule("a", "keywords: [x]") + rule("b", "keywords: [x]"), encoding="utf-8")
    assert main(["check", "--config", str(path)], environ={}) == 0
    out, err = capsys.readouterr()
    assert re.fullmatch(
        rf"{re.escape(str(path))}: OK, 2 rules, 0 sources, no examples, 2 warnings, sha256 \w+\n", out
    )
    assert err.count(": warning: ") == 2
    assert main(["check", "--strict", "--config", str(path)], environ={}) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.endswith(f"{path}: FAILED, no examples, 2 warnings\n")


def test_strict_passes_a_clean_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--strict", "--config", str(ROOT / "rules.yaml")], environ={}) == 0
    assert capsys.readouterr().err == ""
