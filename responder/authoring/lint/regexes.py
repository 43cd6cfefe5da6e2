"""Regexes that can backtrack for ever: a repeat inside a repeat, or repeated identical alternatives."""

from __future__ import annotations

import re
from collections.abc import Iterator
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

from responder.authoring.lint.context import LintContext
from responder.rules.problems import Problem


def slow_regexes(ctx: LintContext) -> Iterator[Problem]:
    for rule in ctx.ruleset.rules:
        pattern = rule.trigger.pattern
        if rule.trigger.kind == "regex" and pattern is not None and _backtracks(pattern):
            yield ctx.warn(
                ("rules", rule.index, "regex"),
                f"rule {rule.name!r}: regex {pattern.pattern!r} has a repeat inside a repeat "
                "(like (a+)+) or repeated identical alternatives; some messages can make it "
                "run for a very long time",
            )


_REPEATS = (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT)

_ALPHABET = frozenset(map(chr, range(32, 127))) | frozenset("\t\n\u00e9\u4e2d\u3000")


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
