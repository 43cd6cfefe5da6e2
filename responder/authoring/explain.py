"""The `try --explain` table: every rule in precedence order and why it did or did not answer."""

from __future__ import annotations

from collections.abc import Sequence

from responder.engine.matching import Verdict


def format_verdicts(verdicts: Sequence[Verdict]) -> str:
    """The `try --explain` table: one line per rule in precedence order, ✓ for the one that answered."""
    width = max((len(v.rule) for v in verdicts), default=0)
    lines = [f"{'✓' if v.matched else '✗'} {v.rule:<{width}}  {v.reason}" for v in verdicts]
    return "\n".join(lines)
