"""Examples: golden tests written inside rules.yaml, run through the real engine by `responder check`.

A rule's `examples:` list says what a message gets back. Each example becomes a Message, goes
through the pipeline offline (sources answered by the rule's `fixture`), and the reply is compared
with the expectations: which rule answered, substrings or a regex in the main text, a subset of the
reply JSON, or no reply at all. Failures point at the expectation in rules.yaml and show a diff.
"""

from __future__ import annotations

import datetime
import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from responder import dingtalk
from responder.delivery.pipeline import Handled, answer_once, local_now
from responder.engine.answer import Fixtures
from responder.rules import schema
from responder.rules.model import RuleSet
from responder.rules.problems import Problem
from responder.rules.yamldoc import Path, YamlDocument

_EXPECTATIONS = ("rule", "contains", "matches", "equals")


@dataclass(frozen=True, slots=True)
class Example:
    """One `examples:` item: the rule it belongs to, its number there (from 1) and where it is."""

    rule: str
    number: int
    path: Path
    spec: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ExampleReport:
    total: int
    failures: tuple[Problem, ...]
    failed: int  # examples with at least one failure

    @property
    def passed(self) -> int:
        return self.total - self.failed


def collect(doc: YamlDocument) -> list[Example]:
    """Every example in the file, in file order."""
    found = []
    for index, spec in enumerate(doc.data.get("rules", ())):
        for number, example in enumerate(spec.get("examples", ()), start=1):
            found.append(Example(spec["name"], number, ("rules", index, "examples", number - 1), example))
    return found


async def run_examples(
    ruleset: RuleSet,
    doc: YamlDocument,
    now: Callable[[], datetime.datetime] = local_now,
) -> ExampleReport:
    """Run every example of `doc` (the parsed file `ruleset` was compiled from) against `ruleset`."""
    examples = collect(doc)
    failures: list[Problem] = []
    failed = 0
    for example in examples:
        handled, body = await answer_once(example_message(example.spec), ruleset, Fixtures(), now=now)
        findings = judge(example, handled, body, ruleset)
        failed += bool(findings)
        for key, message, detail in findings:
            position = doc.key_position((*example.path, key)) if key else doc.position(example.path)
            label = f"rule {example.rule!r}: example {example.number}: "
            failures.append(
                Problem(str(ruleset.path), position.line, position.column, label + message, detail=detail)
            )
    return ExampleReport(len(examples), tuple(failures), failed)


def example_message(given: Mapping[str, Any]) -> dingtalk.Message:
    """The message an example describes, as DingTalk would deliver it (a group chat by default)."""
    spec = schema.with_defaults("example", given)
    return dingtalk.offline_message(
        spec.get("say", ""),
        msg_id="example",
        conversation_id=spec["conversation"],
        nick=spec["nick"],
        staff_id=spec["staff_id"],
        is_group=spec["chat"] == "group",
        is_admin=spec["admin"],
        msgtype=spec["type"],
        quoted=dingtalk.Quoted("text", spec["quote"]) if "quote" in spec else None,
    )


Finding = tuple[str, str, str]
"""(expectation key or "" for the whole example, message, detail)."""


def judge(
    example: Example, outcome: Handled, body: Mapping[str, Any] | None, ruleset: RuleSet
) -> list[Finding]:
    """Everything about `outcome` (and the reply JSON `body`) that the example did not expect;
    empty when it passes."""
    spec = example.spec
    if outcome.render_error:
        return [("", f"the reply failed to render: {outcome.render_error}", "")]
    if spec.get("no_reply"):
        return _judge_silence(spec, outcome)
    expected_rule = spec.get("rule", example.rule)
    if ruleset.rule(expected_rule) is None:
        return [("rule", f"there is no rule named {expected_rule!r}", "")]
    if outcome.reply is None or body is None:
        why = f"expected a reply from rule {expected_rule!r}, but none was sent ({outcome.reason})"
        return [("", why, "")]
    if outcome.rule != expected_rule:
        why = f"answered by rule {outcome.rule!r} ({outcome.reason}), expected rule {expected_rule!r}"
        return [("rule" if "rule" in spec else "say", why, "")]
    return _judge_reply(spec, outcome.reply, body)


def _judge_silence(spec: Mapping[str, Any], outcome: Handled) -> list[Finding]:
    mixed = [key for key in _EXPECTATIONS if key in spec]
    if mixed:
        return [("no_reply", f"no_reply cannot be combined with {', '.join(mixed)}", "")]
    if outcome.reply is None:
        return []
    return [("no_reply", f"expected no reply, but rule {outcome.rule!r} answered", _shown(outcome.reply))]


def _judge_reply(spec: Mapping[str, Any], reply: dingtalk.Reply, body: Mapping[str, Any]) -> list[Finding]:
    text = main_text(reply)
    findings: list[Finding] = []
    words = spec.get("contains", ())
    for word in [words] if isinstance(words, str) else words:
        if word not in text:
            findings.append(("contains", f"the reply text does not contain {word!r}", _shown(reply)))
    if "matches" in spec:
        findings.extend(_judge_regex(spec["matches"], text, reply))
    if "equals" in spec:
        findings.extend(_judge_fields(spec["equals"], body))
    return findings


def _judge_regex(pattern: str, text: str, reply: dingtalk.Reply) -> list[Finding]:
    try:
        found = re.search(pattern, text)
    except re.error as exc:
        return [("matches", f"matches: bad regex: {exc.msg} at position {exc.pos}", "")]
    return [] if found else [("matches", f"the reply text does not match {pattern!r}", _shown(reply))]


def _judge_fields(expected: Mapping[str, Any], body: Mapping[str, Any]) -> list[Finding]:
    actual = project(expected, body)
    if actual == expected:
        return []
    diff = difflib.unified_diff(
        _as_yaml(expected).splitlines(),
        _as_yaml(actual).splitlines(),
        fromfile="expected (equals)",
        tofile="actual reply",
        lineterm="",
    )
    return [("equals", "the reply differs from `equals`", "\n".join(diff))]


def project(expected: Any, actual: Any) -> Any:
    """`actual` cut down to the keys `expected` names, so a subset compares equal to its superset."""
    if isinstance(expected, Mapping) and isinstance(actual, Mapping):
        return {k: project(v, actual[k]) for k, v in expected.items() if k in actual}
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        return [project(e, a) for e, a in zip(expected, actual, strict=True)]
    return actual


def main_text(reply: dingtalk.Reply) -> str:
    """What `contains` and `matches` look at: the text, or a feedCard's titles one per line."""
    if reply.msgtype == "feedCard":
        return "\n".join(link.title for link in reply.links)
    return dingtalk.mentioned_text(reply)


def _shown(reply: dingtalk.Reply) -> str:
    return "actual reply text:\n" + "\n".join("  " + line for line in main_text(reply).splitlines())


class _ReadableDumper(yaml.SafeDumper):
    """Multi-line strings as `|` blocks, so a diff shows the changed line of a template."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_ReadableDumper.add_representer(str, _represent_str)


def _as_yaml(value: Any) -> str:
    return yaml.dump(value, Dumper=_ReadableDumper, allow_unicode=True, sort_keys=False, width=1000)
