"""Ways a rules file breaks in real life, each of which once crashed the reload task: used by the
reload battery (tests/test_reliability.py) and mixed into the soak's SIGHUPs (bench/soak.py).

Each breaker spoils a rules file that uses the template `version.md.j2`; `repair` writes a
good template again (the rules text itself is the caller's to rewrite).
"""

from __future__ import annotations

import codecs
import os
from collections.abc import Callable
from pathlib import Path

from responder.rules.templates import MAX_TEMPLATE_BYTES

TEMPLATE = "version.md.j2"
Breaker = Callable[[Path], None]


def template_of(rules: Path) -> Path:
    return rules.parent / "templates" / TEMPLATE


def repair(rules: Path, text: str) -> None:
    """A good template again, saved with Notepad's BOM (which must be dropped)."""
    template = template_of(rules)
    template.parent.mkdir(parents=True, exist_ok=True)
    if template.is_symlink() or template.exists():
        template.unlink()
    template.write_bytes(codecs.BOM_UTF8 + text.encode())


def gbk_template(rules: Path) -> None:
    template_of(rules).write_bytes("版本".encode("gbk"))


def symlink_out(rules: Path) -> None:
    (rules.parent / "secret.txt").write_text("hunter2", encoding="utf-8")
    template_of(rules).unlink()
    os.symlink(rules.parent / "secret.txt", template_of(rules))


def oversized_template(rules: Path) -> None:
    template_of(rules).write_bytes(b"x" * (MAX_TEMPLATE_BYTES + 1))


def dotdot_name(rules: Path) -> None:
    rules.write_text(rules.read_text().replace(f"template: {TEMPLATE}", "template: ../rules.yaml"))


def huge_repeat_count(rules: Path) -> None:
    rules.write_text(rules.read_text() + "  - {name: r, regex: 'a{4294967296}', msgtype: text, body: x}\n")


def fifo_template(rules: Path) -> None:
    template_of(rules).unlink()
    os.mkfifo(template_of(rules))


BREAKERS: list[Breaker] = [
    gbk_template,
    symlink_out,
    oversized_template,
    dotdot_name,
    huge_repeat_count,
    fifo_template,
]
