"""Examples: golden tests written inside rules.yaml, run through the real engine by `responder check`.

A rule's `examples:` list says what a message gets back. Each example becomes a Message, goes
through the pipeline offline (sources answered by the rule's `fixture`), and the reply is compared
with the expectations: which rule answered, substrings or a regex in the main text, a subset of the
reply JSON, or no reply at all. Failures point at the expectation in rules.yaml and show a diff.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from responder import dingtalk
from responder.authoring.judging import Example, Finding, judge_fields, judge_text, shown_text
from responder.authoring.push_examples import collect_pushes, judge_push_example
from responder.delivery.pipeline import Handled, answer_once, local_now
from responder.engine.answer import Fixtures
from responder.rules import schema
from responder.rules.model import RuleSet
from responder.rules.problems import Problem
from responder.rules.yamldoc import YamlDocument

_EXPECTATIONS = ("rule", "contains", "matches", "equals")


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
    examples = [(example, "rule") for example in collect(doc)]
    examples += [(example, "push") for example in collect_pushes(doc)]
    failures: list[Problem] = []
    failed = 0
    for example, kind in examples:
        if kind == "push":
            findings = await judge_push_example(example, ruleset, now)
        else:
            handled, body = await answer_once(example_message(example.spec), ruleset, Fixtures(), now=now)
            findings = judge(example, handled, body, ruleset)
        failed += bool(findings)
        for key, message, detail in findings:
            position = doc.key_position((*example.path, key)) if key else doc.position(example.path)
            label = f"{kind} {example.rule!r}: example {example.number}: "
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
    shown = shown_text(main_text(outcome.reply))
    return [("no_reply", f"expected no reply, but rule {outcome.rule!r} answered", shown)]


def _judge_reply(spec: Mapping[str, Any], reply: dingtalk.Reply, body: Mapping[str, Any]) -> list[Finding]:
    findings = judge_text(spec, main_text(reply))
    if "equals" in spec:
        findings.extend(judge_fields(spec["equals"], body))
    return findings


def main_text(reply: dingtalk.Reply) -> str:
    """What `contains` and `matches` look at: the text, or a feedCard's titles one per line."""
    if reply.msgtype == "feedCard":
        return "\n".join(link.title for link in reply.links)
    return dingtalk.mentioned_text(reply)
