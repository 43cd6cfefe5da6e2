"""Lint: things in a loadable rules.yaml that are probably mistakes, reported as warnings.

The loader refuses what cannot work; this module points at what works but likely is not what the
author meant: duplicate keywords, rules that can never answer, keywords written as regexes, template
variables nothing provides, unused sources, empty URLs. There is no check for slow regexes: they run
on RE2, which cannot backtrack. Every check is conservative: a warning should be worth reading.
`review` runs lint and the examples together for `responder check`.
"""

from __future__ import annotations

from dataclasses import dataclass

from responder.authoring import examples
from responder.authoring.lint import references, shadowing, templates, words
from responder.authoring.lint.context import LintContext
from responder.rules import yamldoc
from responder.rules.model import RuleSet
from responder.rules.problems import Problem


@dataclass(frozen=True, slots=True)
class Review:
    """What `responder check` found beyond loading: lint problems (warnings, and errors for what
    can only ever fail, such as an undefined template variable) and example results."""

    warnings: tuple[Problem, ...]
    examples: examples.ExampleReport | None

    def lines(self) -> list[str]:
        failures = self.examples.failures if self.examples else ()
        return [str(w) for w in self.warnings] + [str(f) for f in failures]

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.warnings if not p.is_warning)

    def ok(self, *, strict: bool) -> bool:
        failed = self.examples is not None and self.examples.failed > 0
        warned = any(p.is_warning for p in self.warnings)
        return not failed and not self.errors and not (strict and warned)

    def summary(self) -> str:
        warnings = len(self.warnings) - len(self.errors)
        parts = [f"{warnings} warning{'' if warnings == 1 else 's'}"]
        if self.errors:
            parts.insert(0, f"{len(self.errors)} error{'' if len(self.errors) == 1 else 's'}")
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


def lint(ruleset: RuleSet, doc: yamldoc.YamlDocument) -> list[Problem]:
    """Every warning for `ruleset` (compiled from `doc`), in file order."""
    ctx = LintContext(ruleset, doc)
    found = [
        *words.duplicate_words(ctx),
        *shadowing.shadowed_rules(ctx),
        *words.regex_like_words(ctx),
        *templates.template_problems(ctx),
        *references.unused_sources(ctx),
        *references.empty_urls(ctx),
    ]
    return sorted(
        set(found), key=lambda w: (w.file != str(ruleset.path), w.file, w.line, w.column, w.message)
    )
