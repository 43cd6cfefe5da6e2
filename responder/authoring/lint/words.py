"""Keywords, commands and contains words: duplicates across rules, and regex syntax in a word."""

from __future__ import annotations

import re
from collections.abc import Iterator

from responder.authoring.lint.context import LintContext, _Word
from responder.engine.matching import normalise
from responder.rules.problems import Problem


def duplicate_words(ctx: LintContext) -> Iterator[Problem]:
    """Reported at the rule that loses: the later one in precedence order."""
    seen: dict[str, list[_Word]] = {}
    rank = {rule.index: position for position, rule in enumerate(ctx.ruleset.rules)}
    for word in sorted(ctx.words(), key=lambda w: rank[w.rule.index]):
        key = normalise(word.word).lower()
        for earlier in seen.get(key, ()):
            if earlier.rule is not word.rule and _same_word(earlier, word):
                yield ctx.warn(
                    word.path,
                    f"rule {word.rule.name!r}: {_WORD_LABEL[word.kind]} {word.word!r} is also "
                    f"used by rule {earlier.rule.name!r} (line {earlier.rule.line})",
                )
                break
        seen.setdefault(key, []).append(word)


def regex_like_words(ctx: LintContext) -> Iterator[Problem]:
    for word in ctx.words():
        found = _REGEX_SYNTAX.search(word.word)
        if found:
            yield ctx.warn(
                word.path,
                f"rule {word.rule.name!r}: {_WORD_LABEL[word.kind]} {word.word!r} contains regex "
                f"syntax {found.group()!r} but is matched literally; use regex: for a pattern",
            )


_WORD_LABEL = {"keywords": "keyword", "command": "command", "contains": "contains word"}

_REGEX_SYNTAX = re.compile(r"\\[A-Za-z.\\]|\.[*+?]|^\^.|.\$$|\[[^\]]+\]|.\|.|\(\?|\{\d+(?:,\d*)?\}")


def _same_word(a: _Word, b: _Word) -> bool:
    """Would both rules see the same message text as this word? Case only matters if both care."""
    if a.rule.trigger.case_sensitive and b.rule.trigger.case_sensitive:
        return normalise(a.word) == normalise(b.word)
    return True
