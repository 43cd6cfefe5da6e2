"""Lint: things in a loadable rules.yaml that are probably mistakes, reported as warnings.

The loader refuses what cannot work; this module points at what works but likely is not what the
author meant: duplicate keywords, rules that can never answer, keywords written as regexes, regexes
that can backtrack for ever, template variables nothing provides, unused sources, empty URLs.
Every check is conservative: a warning should be worth reading. `review` runs lint and the
examples together for `responder check`.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

import jinja2
from jinja2 import meta, nodes

from responder import examples, yamldoc
from responder.loader import templates_dir
from responder.matching import Match, Scope, Trigger, normalise
from responder.rendering import build_context, make_environment
from responder.rules import Rule, RuleSet

_WORD_KINDS = ("keywords", "command", "contains")
_WORD_LABEL = {"keywords": "keyword", "command": "command", "contains": "contains word"}
# Regex syntax nobody types in a literal keyword by accident; a lone `?` or `c++` stays quiet.
_REGEX_SYNTAX = re.compile(r"\\[A-Za-z.\\]|\.[*+?]|^\^.|.\$$|\[[^\]]+\]|.\|.|\(\?|\{\d+(?:,\d*)?\}")
_REPEATS = (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT)
_ALPHABET = frozenset(map(chr, range(32, 127))) | frozenset("\t\n\u00e9\u4e2d\u3000")


@dataclass(frozen=True, slots=True)
class LintWarning:
    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: warning: {self.message}"


@dataclass(frozen=True, slots=True)
class Review:
    """What `responder check` found beyond loading: lint warnings and example results."""

    warnings: tuple[LintWarning, ...]
    examples: examples.ExampleReport | None

    def lines(self) -> list[str]:
        failures = self.examples.failures if self.examples else ()
        return [str(w) for w in self.warnings] + [str(f) for f in failures]

    def ok(self, *, strict: bool) -> bool:
        failed = self.examples is not None and self.examples.failed > 0
        return not failed and not (strict and self.warnings)

    def summary(self) -> str:
        parts = [f"{len(self.warnings)} warning{'' if len(self.warnings) == 1 else 's'}"]
        report = self.examples
        if report is not None:
            ran = f"{report.passed} of {report.total} examples passed"
            parts.insert(0, ran if report.total else "no examples")
        return ", ".join(parts)


def read_document(ruleset: RuleSet) -> yamldoc.YamlDocument:
    """The parsed file behind `ruleset`, for positions and the parts the compiler does not keep."""
    return yamldoc.parse(ruleset.text, str(ruleset.path))


async def review(ruleset: RuleSet, *, run_examples: bool = True) -> Review:
    doc = read_document(ruleset)
    report = await examples.run_examples(ruleset, doc) if run_examples else None
    return Review(tuple(lint(ruleset, doc)), report)


def lint(ruleset: RuleSet, doc: yamldoc.YamlDocument) -> list[LintWarning]:
    """Every warning for `ruleset` (compiled from `doc`), in file order."""
    linter = _Linter(ruleset, doc)
    found = [
        *linter.duplicate_words(),
        *linter.shadowed_rules(),
        *linter.regex_like_words(),
        *linter.slow_regexes(),
        *linter.template_problems(),
        *linter.unused_sources(),
        *linter.empty_urls(),
    ]
    return sorted(
        set(found), key=lambda w: (w.file != str(ruleset.path), w.file, w.line, w.column, w.message)
    )


@dataclass(frozen=True, slots=True)
class _Word:
    rule: Rule
    kind: str
    word: str
    path: yamldoc.Path


class _Linter:
    def __init__(self, ruleset: RuleSet, doc: yamldoc.YamlDocument) -> None:
        self.ruleset = ruleset
        self.doc = doc
        self.file = str(ruleset.path)
        self.specs: list[Mapping[str, Any]] = doc.data["rules"]
        self.by_index = {rule.index: rule for rule in ruleset.rules}

    def warn(self, path: yamldoc.Path, message: str, *, key: bool = False) -> LintWarning:
        position = self.doc.key_position(path) if key else self.doc.position(path)
        return LintWarning(self.file, position.line, position.column, message)

    def words(self) -> Iterator[_Word]:
        """Every keyword, command and contains word as written, with its rule, in file order."""
        for index, spec in enumerate(self.specs):
            kind = next((k for k in _WORD_KINDS if k in spec), None)
            if kind is None or index not in self.by_index:
                continue
            value = spec[kind]
            if isinstance(value, str):
                yield _Word(self.by_index[index], kind, value, ("rules", index, kind))
            else:
                for j, word in enumerate(value):
                    yield _Word(self.by_index[index], kind, word, ("rules", index, kind, j))

    def duplicate_words(self) -> Iterator[LintWarning]:
        """Reported at the rule that loses: the later one in precedence order."""
        seen: dict[str, list[_Word]] = {}
        rank = {rule.index: position for position, rule in enumerate(self.ruleset.rules)}
        for word in sorted(self.words(), key=lambda w: rank[w.rule.index]):
            key = normalise(word.word).lower()
            for earlier in seen.get(key, ()):
                if earlier.rule is not word.rule and _same_word(earlier, word):
                    yield self.warn(
                        word.path,
                        f"rule {word.rule.name!r}: {_WORD_LABEL[word.kind]} {word.word!r} is also "
                        f"used by rule {earlier.rule.name!r} (line {earlier.rule.line})",
                    )
                    break
            seen.setdefault(key, []).append(word)

    def shadowed_rules(self) -> Iterator[LintWarning]:
        rules = self.ruleset.rules
        for rank, rule in enumerate(rules):
            takers = _takers(rule, rules[:rank])
            if takers:
                names = " and ".join(f"rule {t.name!r} (line {t.line})" for t in takers)
                kind = rule.trigger.kind
                yield self.warn(
                    ("rules", rule.index, kind),
                    f"rule {rule.name!r} can never answer: {names} takes every message it matches first",
                )

    def regex_like_words(self) -> Iterator[LintWarning]:
        for word in self.words():
            found = _REGEX_SYNTAX.search(word.word)
            if found:
                yield self.warn(
                    word.path,
                    f"rule {word.rule.name!r}: {_WORD_LABEL[word.kind]} {word.word!r} contains regex "
                    f"syntax {found.group()!r} but is matched literally; use regex: for a pattern",
                )

    def slow_regexes(self) -> Iterator[LintWarning]:
        for rule in self.ruleset.rules:
            pattern = rule.trigger.pattern
            if rule.trigger.kind == "regex" and pattern is not None and _backtracks(pattern):
                yield self.warn(
                    ("rules", rule.index, "regex"),
                    f"rule {rule.name!r}: regex {pattern.pattern!r} has a repeat inside a repeat "
                    "(like (a+)+) or repeated identical alternatives; some messages can make it "
                    "run for a very long time",
                )

    def template_problems(self) -> Iterator[LintWarning]:
        scanner = _TemplateScanner(self.ruleset.path, self.doc)
        for index, spec in enumerate(self.specs):
            if index not in self.by_index:
                continue
            used: set[str] = set()
            for template in scanner.templates(index, spec):
                used |= template.names
                yield from scanner.undefined(template, spec["name"])
            if "source" in spec and "source" not in used:
                yield self.warn(
                    ("rules", index, "source"),
                    f"rule {spec['name']!r} fetches source {spec['source']!r}, "
                    "but none of its templates use `source`",
                )

    def unused_sources(self) -> Iterator[LintWarning]:
        used = {spec.get("source") for spec in self.specs}
        for name in self.doc.data.get("sources") or {}:
            if name not in used:
                yield self.warn(("sources", name), f"source {name!r} is not used by any rule", key=True)

    def empty_urls(self) -> Iterator[LintWarning]:
        for index, spec in enumerate(self.specs):
            for path, what in _url_fields(spec):
                value = _get(spec, path)
                if isinstance(value, str) and not value.strip():
                    message = f"rule {spec['name']!r}: {what} has an empty URL"
                    yield self.warn(("rules", index, *path), message)


def _same_word(a: _Word, b: _Word) -> bool:
    """Would both rules see the same message text as this word? Case only matters if both care."""
    if a.rule.trigger.case_sensitive and b.rule.trigger.case_sensitive:
        return normalise(a.word) == normalise(b.word)
    return True


# --- rules that can never answer -------------------------------------------------------------


def _takers(rule: Rule, before: Sequence[Rule]) -> list[Rule]:
    """Earlier rules that together take every message `rule` matches; empty if some get through."""
    wider = [h for h in before if _admits_all(h.scope, rule.scope)]
    if rule.trigger.kind == "regex":
        same = [h for h in wider if h.trigger.kind == "regex" and _same_pattern(h, rule)]
        return same[:1]
    if rule.trigger.kind not in _WORD_KINDS or not wider:
        return []
    takers: list[Rule] = []
    for word in rule.trigger.words:
        taker = next((h for h in wider if _covers(h, rule, word)), None)
        if taker is None:
            return []
        if taker not in takers:
            takers.append(taker)
    return takers


def _admits_all(wide: Scope, narrow: Scope) -> bool:
    """Does scope `wide` admit every message that `narrow` admits?"""
    return (
        wide.chat in ("any", narrow.chat)
        and _within(narrow.conversations, wide.conversations)
        and _within(narrow.senders, wide.senders)
        and (narrow.admins_only or not wide.admins_only)
    )


def _within(narrow: frozenset[str], wide: frozenset[str]) -> bool:
    # An empty set means "anyone", which only an empty set contains.
    return not wide or (bool(narrow) and narrow <= wide)


def _same_pattern(a: Rule, b: Rule) -> bool:
    pa, pb = a.trigger.pattern, b.trigger.pattern
    return pa is not None and pb is not None and (pa.pattern, pa.flags) == (pb.pattern, pb.flags)


def _covers(taker: Rule, rule: Rule, word: str) -> bool:
    """Does `taker` match every text that `rule` matches through `word`?

    Sound by construction: a keyword rule sees exactly `word` (in any case when it ignores case);
    a command sees `word` then a space or the end; a contains rule sees `word` between the boundaries
    its own pattern demands, which are the ones taker's pattern would check at a shared edge.
    """
    t, kind = taker.trigger, rule.trigger.kind
    if rule.trigger.case_sensitive is False and t.case_sensitive and word.lower() != word.upper():
        return False
    if t.kind == "keywords":
        return kind == "keywords" and t.fold(word) in t.words
    if t.kind == "command":
        return kind in ("keywords", "command") and t.fold(word.split(" ")[0]) in t.words
    if t.pattern is None or (t.kind == "regex" and kind != "keywords"):
        return False
    texts = {word, word.upper()} if not rule.trigger.case_sensitive else {word}
    return all(t.pattern.search(text) for text in texts)


# --- regexes that can backtrack for ever -----------------------------------------------------


def _backtracks(pattern: re.Pattern[str]) -> bool:
    parsed = sre_parse.parse(pattern.pattern, pattern.flags)
    fold = bool(pattern.flags & re.IGNORECASE)
    return _has_ambiguous_repeat(list(parsed), fold)


def _has_ambiguous_repeat(items: list[tuple[Any, Any]], fold: bool) -> bool:
    for op, av in items:
        if op in (sre.MAX_REPEAT, sre.MIN_REPEAT) and _unbounded(av[1]) and _ambiguous(list(av[2]), fold):
            return True
        if any(_has_ambiguous_repeat(child, fold) for child in _children(op, av)):
            return True
    return False


def _unbounded(maximum: int) -> bool:
    return maximum > 1


def _children(op: Any, av: Any) -> list[list[tuple[Any, Any]]]:
    """The sub-sequences inside one parsed item (groups, alternatives, repeats, lookarounds)."""
    if op in _REPEATS:
        return [list(av[2])]
    if op is sre.SUBPATTERN:
        return [list(av[3])]
    if op is sre.BRANCH:
        return [list(branch) for branch in av[1]]
    if op in (sre.ASSERT, sre.ASSERT_NOT):
        return [list(av[1])]
    if op is sre.ATOMIC_GROUP:
        return [list(av)]
    if op is sre.GROUPREF_EXISTS:
        return [list(b) for b in av[1:] if b is not None]
    return []


def _ambiguous(body: list[tuple[Any, Any]], fold: bool) -> bool:
    """Can one string be split between iterations of a repeat of `body` in many ways?

    Yes when `body` holds identical alternatives, or an inner repeat and no required character that
    the inner repeats cannot eat (that character pins where each iteration ends: `(\\d+\\.)+` is fine).
    """
    if _has_twin_branches(body):
        return True
    inner = [item for item in _walk(body) if item[0] in _REPEATS and _unbounded(item[1][1])]
    if not inner:
        return False
    eaten = frozenset().union(*(_chars(list(item[1][2]), fold) for item in inner))
    return not any(_chars([item], fold).isdisjoint(eaten) for item in _required_chars(body))


def _has_twin_branches(body: list[tuple[Any, Any]]) -> bool:
    for op, av in _walk(body):
        if op is sre.BRANCH:
            shapes = [repr(list(branch)) for branch in av[1]]
            if len(set(shapes)) < len(shapes):
                return True
    return False


def _walk(items: list[tuple[Any, Any]]) -> Iterator[tuple[Any, Any]]:
    for op, av in items:
        yield op, av
        for child in _children(op, av):
            yield from _walk(child)


def _required_chars(body: list[tuple[Any, Any]]) -> Iterator[tuple[Any, Any]]:
    """Single-character items every iteration must match, looking through plain groups."""
    for op, av in body:
        if op is sre.SUBPATTERN:
            yield from _required_chars(list(av[3]))
        elif op in (sre.LITERAL, sre.NOT_LITERAL, sre.IN, sre.ANY):
            yield op, av


def _chars(items: list[tuple[Any, Any]], fold: bool) -> frozenset[str]:
    """Which characters of a sample alphabet these items may consume (over-approximated)."""
    found: set[str] = set()
    for op, av in _walk(items):
        found |= _leaf_chars(op, av)
    return frozenset(c.lower() for c in found) if fold else frozenset(found)


def _leaf_chars(op: Any, av: Any) -> frozenset[str]:
    if op is sre.LITERAL:
        return frozenset(chr(av))
    if op is sre.NOT_LITERAL:
        return _ALPHABET - {chr(av)}
    if op is sre.IN:
        return frozenset(c for c in _ALPHABET if _in_set(av, c))
    if op in (sre.ANY, sre.GROUPREF):
        return _ALPHABET
    return frozenset()


_CATEGORIES = {
    sre.CATEGORY_DIGIT: str.isdigit,
    sre.CATEGORY_WORD: lambda c: c.isalnum() or c == "_",
    sre.CATEGORY_SPACE: str.isspace,
}


def _in_set(items: list[tuple[Any, Any]], char: str) -> bool:
    negate = bool(items) and items[0][0] is sre.NEGATE
    hit = any(_in_item(op, av, char) for op, av in items)
    return hit != negate


def _in_item(op: Any, av: Any, char: str) -> bool:
    if op is sre.LITERAL:
        return chr(av) == char
    if op is sre.RANGE:
        return bool(av[0] <= ord(char) <= av[1])
    if op is sre.CATEGORY:
        for category, test in _CATEGORIES.items():
            if av is category:
                return bool(test(char))
        return True  # a negated category: assume it may match
    return False


# --- templates -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Template:
    """One template of a rule: its text, the names it reads, and how to place a line of it."""

    text: str
    names: frozenset[str]
    ast: nodes.Template
    file: str
    first_line: int
    column: int | None


class _TemplateScanner:
    def __init__(self, rules_path: Path, doc: yamldoc.YamlDocument) -> None:
        self.env = make_environment(templates_dir(rules_path))
        self.doc = doc
        self.file = str(rules_path)
        self.known = frozenset(_context_names()) | frozenset(self.env.globals)
        self.reported: set[tuple[str, int, str]] = set()

    def templates(self, index: int, spec: Mapping[str, Any]) -> Iterator[_Template]:
        for key in ("template", "on_error"):
            if key in spec:
                yield from self.from_file(spec[key], set())
        for path in _inline_fields(spec):
            value = _get(spec, path)
            if isinstance(value, str):
                yield self.inline(("rules", index, *path), value)

    def from_file(self, name: str, seen: set[str]) -> Iterator[_Template]:
        """The file and every template it includes or extends, each once."""
        if name in seen:
            return
        seen.add(name)
        try:
            text, filename, _ = self.env.loader.get_source(self.env, name)  # type: ignore[union-attr]
        except jinja2.TemplateNotFound:
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
        return _Template(text, names, ast, file, first_line, column)

    def undefined(self, template: _Template, rule: str) -> Iterator[LintWarning]:
        for name in sorted(template.names - self.known):
            lineno = _first_use(template.ast, name)
            line = template.first_line + lineno - 1
            if (template.file, line, name) in self.reported:
                continue  # a template file shared by several rules is reported once
            self.reported.add((template.file, line, name))
            column = _column(template, lineno, name) if template.file != self.file else 1
            if template.column and lineno == 1:
                column = template.column
            yield LintWarning(
                template.file,
                line,
                column,
                f"rule {rule!r}: template variable {name!r} is not defined; "
                f"templates see: {', '.join(sorted(_context_names()))}",
            )


def _context_names() -> list[str]:
    """The variables rendering.build_context gives every template, asked of it, not copied."""
    match = Match(_Named("lint"), "")
    message = examples.example_message({})
    return list(build_context(match, message, None, (), datetime.datetime(2000, 1, 1)))


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
