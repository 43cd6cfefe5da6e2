"""Sandboxed Jinja2 for source requests: values from a message may fill values, never structure.

Owns the two environments (plain values, and URL path segments that are percent-encoded whole)
and the load-time checks that a template compiles and only reads `args`, `groups` and `text`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import jinja2
from jinja2 import meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .base import SourceCall, SourceConfigError

CALL_NAMES = frozenset({"args", "groups", "text"})


def encode_segment(value: Any) -> str:
    """Percent-encode one expression's output so it stays inside one path segment."""
    text = "" if value is None else str(value)
    if text in (".", ".."):  # dot segments would let a value climb out of the configured path
        return "%2E" * len(text)
    return quote(text, safe="")


def value_environment() -> jinja2.Environment:
    return ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)


def path_environment() -> jinja2.Environment:
    return ImmutableSandboxedEnvironment(
        undefined=jinja2.StrictUndefined, autoescape=False, finalize=encode_segment
    )


def compile_template(env: jinja2.Environment, source: str, path: tuple[str | int, ...]) -> jinja2.Template:
    """Compile `source`; raises SourceConfigError on bad syntax or unknown variable names."""
    try:
        unknown = meta.find_undeclared_variables(env.parse(source)) - CALL_NAMES
        template = env.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise SourceConfigError(path, f"template syntax error: {exc.message}") from exc
    if unknown:
        names = ", ".join(sorted(unknown))
        raise SourceConfigError(path, f"unknown template variable(s) {names}; use args, groups, text")
    return template


def call_context(call: SourceCall) -> Mapping[str, Any]:
    return {"args": list(call.args), "groups": dict(call.groups), "text": call.text}
