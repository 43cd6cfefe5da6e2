"""Template variables nothing provides, and sources whose data no template reads."""

from __future__ import annotations

import dataclasses
import datetime
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta, nodes

from responder.authoring import examples
from responder.authoring.lint.context import LintContext
from responder.authoring.lint.references import _get
from responder.delivery.jobs import push_extra, schedule_extra
from responder.engine.matching import Match, Scope, Trigger
from responder.engine.rendering import announcement_context, build_context, make_environment
from responder.rules import yamldoc
from responder.rules.load import templates_dir
from responder.rules.problems import Problem
from responder.rules.templates import TemplateFiles
from responder.sources.base import SourceResult


@dataclass(frozen=True, slots=True)
class _Vocabulary:
    """What the templates of one section (rules, pushes, schedules) are given to read."""

    section: str
    label: str  # "rule", "push", "schedule": how a problem names its owner
    shapes: Mapping[str, frozenset[str]]  # variable -> its attributes, when they are fixed
    names: frozenset[str]


def template_problems(ctx: LintContext) -> Iterator[Problem]:
    scanner = _TemplateScanner(ctx.ruleset.path, ctx.doc)
    rules = [(i, spec) for i, spec in enumerate(ctx.specs) if i in ctx.by_index]
    yield from _section_problems(ctx, scanner, _rule_vocabulary(), rules)
    for section, label in (("pushes", "push"), ("schedules", "schedule")):
        specs = list(enumerate(ctx.doc.data.get(section, ())))
        yield from _section_problems(ctx, scanner, _announcement_vocabulary(section, label), specs)


def _section_problems(
    ctx: LintContext,
    scanner: _TemplateScanner,
    vocabulary: _Vocabulary,
    specs: list[tuple[int, Mapping[str, Any]]],
) -> Iterator[Problem]:
    for index, spec in specs:
        used: set[str] = set()
        for template in scanner.templates(vocabulary.section, index, spec):
            used |= template.names
            yield from scanner.undefined(template, vocabulary, spec["name"])
        if "source" in spec and "source" not in used:
            yield ctx.warn(
                (vocabulary.section, index, "source"),
                f"{vocabulary.label} {spec['name']!r} fetches source {spec['source']!r}, "
                "but none of its templates use `source`",
            )


@dataclass(frozen=True, slots=True)
class _Template:
    """One template of a rule: its text, the names it reads, and how to place a line of it."""

    text: str
    names: frozenset[str]
    ast: nodes.Template
    file: str
    first_line: int
    column: int | None
    assigned: frozenset[str] = frozenset()  # set by {% set %}, {% for %} or a macro: not context


class _TemplateScanner:
    def __init__(self, rules_path: Path, doc: yamldoc.YamlDocument) -> None:
        self.env = make_environment(TemplateFiles(templates_dir(rules_path)))
        self.doc = doc
        self.file = str(rules_path)
        self.globals = frozenset(self.env.globals)
        self.reported: set[tuple[str, int, str]] = set()

    def templates(self, section: str, index: int, spec: Mapping[str, Any]) -> Iterator[_Template]:
        for key in ("template", "on_error"):
            if key in spec:
                yield from self.from_file(spec[key], set())
        for path in _inline_fields(spec):
            value = _get(spec, path)
            if isinstance(value, str):
                yield self.inline((section, index, *path), value)

    def from_file(self, name: str, seen: set[str]) -> Iterator[_Template]:
        """The file and every template it includes or extends, each once."""
        if name in seen:
            return
        seen.add(name)
        try:
            text, filename, _ = self.env.loader.get_source(self.env, name)  # type: ignore[union-attr]
        except jinja2.TemplateError:  # not found, or refused: the compiler has reported it
            return
        template = self.parsed(text, filename or name, 1, None)
        yield template
        for child in meta.find_referenced_templates(template.ast):
            if child is not None:
                yield from self.from_file(child, seen)

    def inline(self, path: yamldoc.Path, text: str) -> _Template:
        position = self.doc.position(path)
        node = self.doc.scalar(path)
        block = node is not None and node.style in ("|", ">")
        first_line = position.line + (1 if block else 0)
        return self.parsed(text, self.file, first_line, None if block else position.column)

    def parsed(self, text: str, file: str, first_line: int, column: int | None) -> _Template:
        ast = self.env.parse(text)
        names = frozenset(meta.find_undeclared_variables(ast))
        assigned = frozenset(n.name for n in ast.find_all(nodes.Name) if n.ctx in ("store", "param"))
        return _Template(text, names, ast, file, first_line, column, assigned)

    def undefined(self, template: _Template, vocabulary: _Vocabulary, owner: str) -> Iterator[Problem]:
        """Names and attributes nothing can ever give a template: errors, because the reply
        could only ever be the apology (`{{ sender.nickname }}` for `{{ sender.nick }}`)."""
        label = f"{vocabulary.label} {owner!r}"
        yield from self.missing_attributes(template, vocabulary, label)
        for name in sorted(template.names - vocabulary.names - self.globals):
            lineno = _first_use(template.ast, name)
            line = template.first_line + lineno - 1
            if (template.file, line, name) in self.reported:
                continue  # a template file shared by several rules is reported once
            self.reported.add((template.file, line, name))
            column = _column(template, lineno, name) if template.file != self.file else 1
            if template.column and lineno == 1:
                column = template.column
            yield Problem(
                template.file,
                line,
                column,
                f"{label}: template variable {name!r} is not defined; "
                f"templates see: {', '.join(sorted(vocabulary.names))}",
            )

    def missing_attributes(
        self, template: _Template, vocabulary: _Vocabulary, label: str
    ) -> Iterator[Problem]:
        shapes = vocabulary.shapes
        for node in template.ast.find_all((nodes.Getattr, nodes.Getitem)):
            owner, attribute = _attribute_of(node)
            if owner is None or owner not in shapes or owner in template.assigned:
                continue
            known = shapes[owner]
            if attribute in known or attribute in _MAPPING_METHODS:
                continue
            line = template.first_line + node.lineno - 1
            if (template.file, line, f"{owner}.{attribute}") in self.reported:
                continue
            self.reported.add((template.file, line, f"{owner}.{attribute}"))
            yield Problem(
                template.file,
                line,
                template.column if template.column and node.lineno == 1 else 1,
                f"{label}: {owner}.{attribute} does not exist; {owner} has: {', '.join(sorted(known))}",
            )


def _rule_vocabulary() -> _Vocabulary:
    """What rendering.build_context gives a rule's templates, asked of it, not copied."""
    match = Match(_Named("lint"), "")
    message = examples.example_message({"quote": "q"})
    context = build_context(match, message, SourceResult(ok=True), (), _SAMPLE_TIME)
    return _Vocabulary("rules", "rule", _shapes(context), frozenset(context))


def _announcement_vocabulary(section: str, label: str) -> _Vocabulary:
    """What a push's or schedule's templates get: jobs.py's extras on announcement_context.
    `payload` is whatever the caller POSTs, so its attributes are not checked."""
    extra = push_extra("lint", {}) if section == "pushes" else schedule_extra("lint", _SAMPLE_TIME)
    context = {**announcement_context(SourceResult(ok=True), _SAMPLE_TIME), **extra}
    shapes = {name: attrs for name, attrs in _shapes(context).items() if name != "payload"}
    return _Vocabulary(section, label, shapes, frozenset(context))


_SAMPLE_TIME = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)


def _shapes(context: Mapping[str, Any]) -> dict[str, frozenset[str]]:
    """For each context variable with a fixed shape (a mapping, a result), the attributes it has."""
    shapes = {}
    for name, value in context.items():
        if isinstance(value, dict):
            shapes[name] = frozenset(value)
        elif dataclasses.is_dataclass(value):
            shapes[name] = frozenset(f.name for f in dataclasses.fields(value))
    return shapes


def _attribute_of(node: nodes.Node) -> tuple[str | None, str]:
    """(`sender`, `nick`) for `sender.nick` or `sender["nick"]`; (None, "") otherwise."""
    target = node.node  # type: ignore[attr-defined]
    if not (isinstance(target, nodes.Name) and target.ctx == "load"):
        return None, ""
    if isinstance(node, nodes.Getattr):
        return target.name, node.attr
    argument = node.arg  # type: ignore[attr-defined]
    if isinstance(argument, nodes.Const) and isinstance(argument.value, str):
        return target.name, argument.value
    return None, ""


_MAPPING_METHODS = frozenset(name for name in dir(dict) if not name.startswith("_"))


@dataclass(frozen=True, slots=True)
class _Named:
    """A stand-in rule: enough to ask build_context which names it provides."""

    name: str
    trigger: Trigger = field(default_factory=lambda: Trigger("fallback"))
    scope: Scope = field(default_factory=Scope)


def _first_use(ast: nodes.Template, name: str) -> int:
    lines = [n.lineno for n in ast.find_all(nodes.Name) if n.name == name and n.ctx == "load"]
    return min(lines, default=1)


def _column(template: _Template, lineno: int, name: str) -> int:
    lines = template.text.splitlines()
    text = lines[lineno - 1] if lineno <= len(lines) else ""
    found = re.search(rf"\b{re.escape(name)}\b", text)
    return found.start() + 1 if found else 1


def _inline_fields(spec: Mapping[str, Any]) -> Iterator[yamldoc.Path]:
    for key in ("body", "title", "url", "picture"):
        yield (key,)
    yield from (("button", key) for key in ("title", "url"))
    for i, _ in enumerate(spec.get("buttons", ())):
        yield from (("buttons", i, key) for key in ("title", "url"))
    for i, _ in enumerate(spec.get("links", ())):
        yield from (("links", i, key) for key in ("title", "url", "picture"))
