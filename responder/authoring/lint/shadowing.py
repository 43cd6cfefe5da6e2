"""Rules that can never answer, because earlier rules take every message they match."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from responder.authoring.lint.context import _WORD_KINDS, LintContext
from responder.engine.matching import Scope
from responder.rules.model import Rule
from responder.rules.problems import Problem


def shadowed_rules(ctx: LintContext) -> Iterator[Problem]:
    rules = ctx.ruleset.rules
    for rank, rule in enumerate(rules):
        takers = _takers(rule, rules[:rank])
        if takers:
            names = " and ".join(f"rule {t.name!r} (line {t.line})" for t in takers)
            kind = rule.trigger.kind
            yield ctx.warn(
                ("rules", rule.index, kind),
                f"rule {rule.name!r} can never answer: {names} takes every message it matches first",
            )


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
    # Regex compares the pattern RE2 runs and whether case matters.
    return a.trigger.pattern is not None and a.trigger.pattern == b.trigger.pattern


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
