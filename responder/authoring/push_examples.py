"""Examples of pushes: payloads written in rules.yaml, sent offline through the push (sources
answered by its fixture), and what the OpenAPI would have been sent compared with the
expectations: `contains` and `matches` on the message text, `equals` on msgKey/msgParam, `to`
on the targets, or `no_reply` when no target applies."""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Mapping
from typing import Any

from responder.authoring.judging import Example, Finding, judge_fields, judge_text
from responder.delivery.jobs import push_jobs
from responder.delivery.pipeline import announce_once, local_now
from responder.engine.answer import Fixtures
from responder.rules.model import RuleSet, Target
from responder.rules.yamldoc import YamlDocument


def collect_pushes(doc: YamlDocument) -> list[Example]:
    found = []
    for index, spec in enumerate(doc.data.get("pushes", ())):
        for number, example in enumerate(spec.get("examples", ()), start=1):
            found.append(Example(spec["name"], number, ("pushes", index, "examples", number - 1), example))
    return found


async def judge_push_example(
    example: Example, ruleset: RuleSet, now: Callable[[], datetime.datetime] = local_now
) -> list[Finding]:
    push = ruleset.pushes[example.rule]
    payload = example.spec["payload"]
    jobs = push_jobs(push, payload, json.dumps(payload, sort_keys=True).encode())
    handled, sent = await announce_once(jobs, ruleset, Fixtures(), now=now)
    if example.spec.get("no_reply"):
        return (
            []
            if not sent
            else [("no_reply", f"expected nothing sent, but it went to {len(sent)} target(s)", "")]
        )
    errors = [h.render_error for h in handled if h.render_error]
    if errors:
        return [("", f"the message failed to render: {errors[0]}", "")]
    if not sent:
        why = handled[0].reason if handled else "no `match` entry holds and the push has no `to`"
        return [("payload", f"nothing would be sent ({why})", "")]
    return _judge_sent(example.spec, sent)


def _judge_sent(spec: Mapping[str, Any], sent: list[tuple[Target, dict[str, Any]]]) -> list[Finding]:
    message = sent[0][1]
    param = message["msgParam"]
    text = str(param.get("text") or param.get("content") or param.get("title") or "")
    findings = judge_text(spec, text)
    if "equals" in spec:
        findings.extend(judge_fields(spec["equals"], message))
    if "to" in spec:
        expected = [dict(t) for t in spec["to"]]
        actual = [{t.kind: t.id} for t, _ in sent]
        if actual != expected:
            findings.append(("to", f"sent to {actual}, expected {expected}", ""))
    return findings
