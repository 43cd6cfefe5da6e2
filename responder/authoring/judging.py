"""Judging what an example sent against what it expects: shared by rule and push examples."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from responder.rules.yamldoc import Path


@dataclass(frozen=True, slots=True)
class Example:
    """One `examples:` item: the rule it belongs to, its number there (from 1) and where it is."""

    rule: str
    number: int
    path: Path
    spec: Mapping[str, Any]


Finding = tuple[str, str, str]
"""(expectation key or "" for the whole example, message, detail)."""


def judge_text(spec: Mapping[str, Any], text: str) -> list[Finding]:
    """`contains` and `matches` against the main text of what would be sent."""
    findings: list[Finding] = []
    shown = shown_text(text)
    words = spec.get("contains", ())
    for word in [words] if isinstance(words, str) else words:
        if word not in text:
            findings.append(("contains", f"the reply text does not contain {word!r}", shown))
    if "matches" in spec:
        findings.extend(_judge_regex(spec["matches"], text, shown))
    return findings


def _judge_regex(pattern: str, text: str, shown: str) -> list[Finding]:
    try:
        found = re.search(pattern, text)
    except re.error as exc:
        return [("matches", f"matches: bad regex: {exc.msg} at position {exc.pos}", "")]
    return [] if found else [("matches", f"the reply text does not match {pattern!r}", shown)]


def judge_fields(expected: Mapping[str, Any], body: Mapping[str, Any]) -> list[Finding]:
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


def shown_text(text: str) -> str:
    return "actual reply text:\n" + "\n".join("  " + line for line in text.splitlines())


class _ReadableDumper(yaml.SafeDumper):
    """Multi-line strings as `|` blocks, so a diff shows the changed line of a template."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_ReadableDumper.add_representer(str, _represent_str)


def _as_yaml(value: Any) -> str:
    return yaml.dump(value, Dumper=_ReadableDumper, allow_unicode=True, sort_keys=False, width=1000)
