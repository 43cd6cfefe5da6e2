#!/usr/bin/env python3
"""What a hostile message costs the matcher as it grows, each figure next to a same-run baseline.

  contains  a contains rule (Python's re: escaped words between one-character lookarounds) on
            'ipip…' - every position starts a near-match and none is a whole word - against a
            message of the same length that no word starts in ('zz…')
  regex     a `^(a+)+$` rule (RE2) on 'aa…!' against a `^a+$` rule on the same message
  python    what RE2 replaced: Python's re on `^(a+)+$` for a few short 'aa…!', each step against
            the one before (it doubles per character; stops once a search takes --budget-s)

Linear means the ns-per-character columns stay flat as the message grows 10x and 100x, and the
ratios to the baseline stay put. Everything runs in-process through `load_rules` and
`matcher.find`, the path a callback takes, and checks which rule answered.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

import common

from responder.cli import sample_message
from responder.engine.matching import Matcher
from responder.rules.load import load_rules
from responder.rules.model import RuleSet

LENGTHS = (1_000, 10_000, 100_000)
RULES = """\
rules:
  - {name: ip, contains: [ip, ip address, 公网ip], msgtype: text, body: ip}
  - {name: only-as, regex: '^(a+)+$', msgtype: text, body: a}
  - {name: plain-as, regex: '^a+$', priority: -1, msgtype: text, body: a}
  - {name: unknown, fallback: true, priority: -2, msgtype: text, body: what?}
"""


def ns_per_find(matcher: Matcher, text: str, expected: str, loops: int) -> float:
    """common.ns_per_find for a group message saying `text`."""
    return common.ns_per_find(matcher, sample_message(text, "Bench", "bench", True, False), expected, loops)


def without(ruleset: RuleSet, *names: str) -> Matcher:
    """The index over the other rules, built exactly as compile_ruleset builds it."""
    return Matcher([r for r in ruleset.rules if r.name not in names])


def contains_section(ruleset: RuleSet, loops: int) -> None:
    print("\n== contains: 'ipip…' (a near-match at every position) vs 'zz…', ns per find (best of 5) ==")
    print(f"{'chars':>8}{'ip…':>12}{'ns/char':>9}{'zz…':>12}{'ns/char':>9}{'ratio':>8}")
    only_contains = without(ruleset, "only-as", "plain-as")
    for length in LENGTHS:
        hostile = ns_per_find(only_contains, "ip" * (length // 2), "unknown", loops)
        baseline = ns_per_find(only_contains, "z" * length, "unknown", loops)
        print(
            f"{length:>8}{hostile:>12.0f}{hostile / length:>9.2f}"
            f"{baseline:>12.0f}{baseline / length:>9.2f}{hostile / baseline:>7.2f}x"
        )


def regex_section(ruleset: RuleSet, loops: int) -> None:
    print("\n== regex (RE2): ^(a+)+$ vs ^a+$ on 'aa…!', ns per find (best of 5) ==")
    print(f"{'chars':>8}{'^(a+)+$':>12}{'ns/char':>9}{'^a+$':>12}{'ns/char':>9}{'ratio':>8}")
    nested = without(ruleset, "ip", "plain-as")
    plain = without(ruleset, "ip", "only-as")
    for length in LENGTHS:
        text = "a" * (length - 1) + "!"
        hostile = ns_per_find(nested, text, "unknown", loops)
        baseline = ns_per_find(plain, text, "unknown", loops)
        print(
            f"{length:>8}{hostile:>12.0f}{hostile / length:>9.2f}"
            f"{baseline:>12.0f}{baseline / length:>9.2f}{hostile / baseline:>7.2f}x"
        )


def python_section(budget_s: float) -> None:
    print(f"\n== python re (what RE2 replaced): ^(a+)+$ on 'a'*n+'!', until one search takes {budget_s} s ==")
    print(f"{'n':>4}{'seconds':>12}{'vs n-2':>9}")
    pattern = re.compile(r"^(a+)+$")
    before = 0.0
    for n in range(10, 40, 2):
        began = time.perf_counter()
        assert pattern.search("a" * n + "!") is None
        took = time.perf_counter() - began
        print(f"{n:>4}{took:>12.4f}{(f'{took / before:.2f}x' if before else ''):>9}")
        before = took
        if took > budget_s:
            break


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--loops", type=int, default=20, help="finds per timing (default 20)")
    parser.add_argument("--budget-s", type=float, default=1.0, help="stop python re past this (default 1)")
    args = parser.parse_args(argv)
    print(f"hostile-message bench, python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d %H:%M')}")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "rules.yaml"
        path.write_text(RULES, encoding="utf-8")
        (Path(folder) / "templates").mkdir()
        ruleset = load_rules(path, {})
    contains_section(ruleset, args.loops)
    regex_section(ruleset, args.loops)
    python_section(args.budget_s)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
