"""Problem: one thing wrong (or probably wrong) in a rules file, at its file:line:col.

The one type for load errors, lint warnings and failed examples, so `check`, reload status and
the playground all print them the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

SEVERITIES = ("error", "warning")


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    line: int
    column: int
    message: str
    severity: str = "error"
    # More lines shown under the message, indented (a diff, the actual reply).
    detail: str = ""

    def __str__(self) -> str:
        label = "warning: " if self.severity == "warning" else ""
        head = f"{self.file}:{self.line}:{self.column}: {label}{self.message}"
        if not self.detail:
            return head
        return head + "\n" + "\n".join("    " + line for line in self.detail.splitlines())

    @property
    def is_warning(self) -> bool:
        return self.severity == "warning"


def warning(file: str, line: int, column: int, message: str) -> Problem:
    return Problem(file, line, column, message, severity="warning")
