"""Sources no rule uses, and buttons, links and cards with an empty URL."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from responder.authoring.lint.context import LintContext
from responder.rules import yamldoc
from responder.rules.problems import Problem


def unused_sources(ctx: LintContext) -> Iterator[Problem]:
    used = {spec.get("source") for spec in ctx.specs}
    for name in ctx.doc.data.get("sources") or {}:
        if name not in used:
            yield ctx.warn(("sources", name), f"source {name!r} is not used by any rule", key=True)


def empty_urls(ctx: LintContext) -> Iterator[Problem]:
    for index, spec in enumerate(ctx.specs):
        for path, what in _url_fields(spec):
            value = _get(spec, path)
            if isinstance(value, str) and not value.strip():
                message = f"rule {spec['name']!r}: {what} has an empty URL"
                yield ctx.warn(("rules", index, *path), message)


def _url_fields(spec: Mapping[str, Any]) -> Iterator[tuple[yamldoc.Path, str]]:
    if spec.get("msgtype") == "link":
        yield ("url",), "the link card"
    if "button" in spec:
        yield ("button", "url"), f"button {spec['button'].get('title', '')!r}"
    for i, button in enumerate(spec.get("buttons", ())):
        yield ("buttons", i, "url"), f"button {i + 1} {button.get('title', '')!r}"
    for i, link in enumerate(spec.get("links", ())):
        yield ("links", i, "url"), f"link {i + 1} {link.get('title', '')!r}"


def _get(data: Any, path: yamldoc.Path) -> Any:
    for step in path:
        found = isinstance(data, Mapping) and step in data
        found = found or (isinstance(data, list) and isinstance(step, int) and step < len(data))
        if not found:
            return None
        data = data[step]
    return data
