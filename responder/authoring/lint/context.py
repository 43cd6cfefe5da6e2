"""The shared view of one rules file that every lint check reads."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from responder.rules import yamldoc
from responder.rules.model import Rule, RuleSet
from responder.rules.problems import Problem, warning

_WORD_KINDS = ("keywords", "command", "contains")


@dataclass(frozen=True, slots=True)
class _Word:
    rule: Rule
    kind: str
    word: str
    path: yamldoc.Path


class LintContext:
    """What every check reads: the compiled rules, the parsed file, and how to point at a line."""

    def __init__(self, ruleset: RuleSet, doc: yamldoc.YamlDocument) -> None:
        self.ruleset = ruleset
        self.doc = doc
        self.file = str(ruleset.path)
        self.specs: list[Mapping[str, Any]] = doc.data["rules"]
        self.by_index = {rule.index: rule for rule in ruleset.rules}

    def warn(self, path: yamldoc.Path, message: str, *, key: bool = False) -> Problem:
        position = self.doc.key_position(path) if key else self.doc.position(path)
        return warning(self.file, position.line, position.column, message)

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
