"""Validate rules.yaml data against schema/rules.schema.json and explain failures in plain words.

The schema file is the single definition of the format. In a checkout it is read from the
top-level schema/ folder; an installed wheel carries it inside the package.
"""

from __future__ import annotations

import datetime
import difflib
import functools
import json
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError, best_match

from responder.rules.yamldoc import Path as DataPath
from responder.rules.yamldoc import YamlDocument, YamlProblem, is_plain_scalar

_CHECKOUT_SCHEMA = Path(__file__).resolve().parents[2] / "schema" / "rules.schema.json"

_MATCH_KEYS = ("keywords", "command", "regex", "contains", "fallback", "non_text", "empty")
_ONE_OF_HINTS = {
    "Exactly one way to match.": _MATCH_KEYS,
    "Every other message type needs a template or an inline body.": ("template", "body"),
    "actionCard needs button or buttons.": ("button", "buttons"),
}
_NAMED_LISTS = {"rules": "rule", "pushes": "push", "schedules": "schedule"}
_JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer", float: "number"}


@functools.cache
def load_schema() -> dict[str, Any]:
    packaged = resources.files("responder.rules") / "rules.schema.json"
    source = packaged if packaged.is_file() else _CHECKOUT_SCHEMA
    schema: dict[str, Any] = json.loads(source.read_text(encoding="utf-8"))
    return schema


@functools.cache
def defaults(definition: str) -> Mapping[str, Any]:
    """The `default` of every property of `$defs/<definition>` that has one: the single place
    where rules.yaml's defaults are written."""
    properties = load_schema()["$defs"][definition].get("properties", {})
    return MappingProxyType({name: spec["default"] for name, spec in properties.items() if "default" in spec})


def with_defaults(definition: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """`given` with the schema's defaults filled in for the keys it leaves out."""
    return {**defaults(definition), **given}


@functools.cache
def _validator() -> jsonschema.Draft202012Validator:
    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def validate(doc: YamlDocument) -> list[YamlProblem]:
    """Every schema violation in `doc`, each placed at the node it concerns, in file order."""
    errors = sorted(_validator().iter_errors(doc.data), key=lambda e: list(e.absolute_path))
    problems = [_problem(doc, error) for error in _leaves(errors)]
    return sorted(problems, key=lambda p: (p.position.line, p.position.column))


def _leaves(errors: list[ValidationError]) -> Iterator[ValidationError]:
    """Condense anyOf/oneOf noise: report the branch meant for the value's own type (a list's
    items one by one), else the most relevant error, unless we explain the oneOf ourselves."""
    for error in errors:
        hint = _schema_of(error).get("description") if isinstance(error.schema, dict) else None
        if error.validator == "oneOf" and hint not in _ONE_OF_HINTS and error.context:
            yield from _leaves(_branch_for_type(error) or [best_match(error.context)])
        else:
            yield error


def _schema_of(error: ValidationError) -> Mapping[str, Any]:
    return error.schema if isinstance(error.schema, Mapping) else {}


def _branch_for_type(error: ValidationError) -> list[ValidationError]:
    """The errors of the oneOf branch whose `type` is the instance's type (e.g. the array form)."""
    kind = _JSON_TYPES.get(type(error.instance))
    branches = _schema_of(error).get("oneOf", [])
    for index, branch in enumerate(branches):
        resolved = _resolve(branch)
        if resolved.get("type") == kind:
            return [e for e in error.context if e.relative_schema_path and e.relative_schema_path[0] == index]
    return []


def _resolve(branch: dict[str, Any]) -> dict[str, Any]:
    ref = branch.get("$ref", "")
    if ref.startswith("#/$defs/"):
        return dict(load_schema()["$defs"][ref.removeprefix("#/$defs/")])
    return branch


def _problem(doc: YamlDocument, error: ValidationError) -> YamlProblem:
    path: DataPath = tuple(error.absolute_path)
    message = _describe(doc, error, path)
    if error.validator == "additionalProperties":
        extra = _unexpected_keys(error)
        if extra:
            return YamlProblem(doc.key_position((*path, extra[0])), message)
    return YamlProblem(doc.position(path), message)


def _describe(doc: YamlDocument, error: ValidationError, path: DataPath) -> str:
    where = _where(doc, path)
    retyped = _retyped_scalar(doc, error, path)
    if retyped:
        return f"{where}{retyped}"
    if error.validator == "additionalProperties":
        extra = _unexpected_keys(error)
        allowed = sorted(_schema_of(error).get("properties", {}))
        hint = _did_you_mean(extra[0], allowed)
        return f"{where}unknown key {extra[0]!r}{hint}; allowed keys: {', '.join(allowed)}"
    if error.validator == "oneOf":
        return where + _explain_one_of(error)
    if error.validator == "enum" and isinstance(error.instance, str):
        choices = [str(choice) for choice in _as_list(error.validator_value)]
        hint = _did_you_mean(error.instance, choices)
        shown = "this value" if _may_hold_secrets(path) else repr(error.instance)
        return f"{where}{shown} is not one of {', '.join(choices)}{hint}"
    if _may_hold_secrets(path) and error.validator not in ("required",):
        return where + _value_free(error)
    if error.validator == "maxLength":  # the value itself may be long, or secret: never echo it
        return f"{where}longer than {error.validator_value} characters"
    if error.validator == "required":
        return f"{where}{error.message.replace(' is a required property', '')} is required"
    return f"{where}{error.message}"


def _did_you_mean(written: str, candidates: list[str]) -> str:
    """` (did you mean 'keywords'?)` for a near miss (errbot and git do the same), else ""."""
    folded = {candidate.lower(): candidate for candidate in candidates}
    close = difflib.get_close_matches(written.lower(), list(folded), n=1, cutoff=0.6)
    return f" (did you mean {folded[close[0]]!r}?)" if close else ""


def _where(doc: YamlDocument, path: DataPath) -> str:
    """`rule 'ip': scope.chat: ` for a rule, `dingtalk.reply: ` elsewhere."""
    label = ""
    if len(path) >= 2 and path[0] in _NAMED_LISTS and isinstance(path[1], int):
        item = doc.data[path[0]][path[1]]
        name = item.get("name") if isinstance(item, dict) else None
        kind = _NAMED_LISTS[str(path[0])]
        label = f"{kind} {name!r}: " if isinstance(name, str) else f"{path[0]}[{path[1]}]: "
        path = path[2:]
    dotted = "".join(f".{step}" if isinstance(step, str) else f"[{step}]" for step in path).lstrip(".")
    return label + (f"{dotted}: " if dotted else "")


def _unexpected_keys(error: ValidationError) -> list[str]:
    known = _schema_of(error).get("properties", {})
    instance = error.instance if isinstance(error.instance, dict) else {}
    return [key for key in instance if key not in known]


def _explain_one_of(error: ValidationError) -> str:
    keys = _ONE_OF_HINTS.get(_schema_of(error).get("description", ""), ())
    instance = error.instance if isinstance(error.instance, dict) else {}
    present = [key for key in keys if key in instance]
    if not keys:
        return error.message
    if not present:
        return f"needs one of: {', '.join(keys)}"
    return f"has {' and '.join(present)}; use only one of them"


def _retyped_scalar(doc: YamlDocument, error: ValidationError, path: DataPath) -> str | None:
    """Explain YAML 1.1's silent retyping (`on` -> True) where the schema wanted text."""
    if error.validator != "type" or "string" not in _as_list(error.validator_value):
        return None
    node = doc.scalar(path)
    if node is None or not is_plain_scalar(node) or isinstance(error.instance, str):
        return None
    kind = _yaml_type_name(error.instance)
    if _may_hold_secrets(path):
        return f"YAML reads this unquoted value as {kind.split(' ', 2)[1]}; write it in quotes"
    quoted = json.dumps(node.value, ensure_ascii=False)
    return f"YAML reads the unquoted value {node.value!r} as {kind}; write it in quotes: {quoted}"


def _may_hold_secrets(path: DataPath) -> bool:
    """Secrets live in these sections (app_secret, the Redis URL, source headers); errors there
    never echo values."""
    return bool(path) and path[0] in ("dingtalk", "state", "sources")


def _value_free(error: ValidationError) -> str:
    expected = error.validator_value
    if error.validator == "type":
        return f"must be {' or '.join(_as_list(expected))}"  # type: ignore[arg-type]
    if error.validator == "enum":
        return f"must be one of {', '.join(map(str, _as_list(expected)))}"
    if error.validator == "pattern":
        return f"must match {expected}"
    if error.validator in ("minLength", "maxLength", "minItems", "maxItems", "minimum", "maximum"):
        return f"is outside the allowed range ({error.validator} {expected})"
    return f"is not valid here ({error.validator})"


def _yaml_type_name(value: object) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if value is None:
        return "null (nothing)"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, datetime.date):
        return "a date"
    return type(value).__name__


def _as_list(value: object) -> list[object]:
    return value if isinstance(value, list) else [value]
