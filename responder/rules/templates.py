"""Template files, read the way rules.yaml is read: from inside `templates/` only, bounded in
size, UTF-8 (a leading BOM dropped), and with errors that point at a file, line and column.

A Jinja2 loader; it parses nothing. Used when rules compile and when a template includes another.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from pathlib import Path

import jinja2

MAX_TEMPLATE_BYTES = 256 * 1024


class TemplateFileError(jinja2.TemplateError):
    """A template file exists but cannot be used; carries where, for a `file:line:col` report."""

    def __init__(self, filename: str, line: int, column: int, message: str) -> None:
        super().__init__(message)
        self.filename = filename
        self.line = line
        self.column = column
        self.reason = message


class TemplateFiles(jinja2.BaseLoader):
    def __init__(self, root: Path, max_bytes: int = MAX_TEMPLATE_BYTES) -> None:
        self.root = root
        self.max_bytes = max_bytes

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        path = self._inside(template)
        raw = path.read_bytes()
        return decode_template(raw, str(self.root / template)), str(self.root / template), lambda: True

    def _inside(self, template: str) -> Path:
        """The file `template` names, refused if it is outside `root` by name or by symlink."""
        parts = Path(template).parts
        if Path(template).is_absolute() or ".." in parts:
            raise TemplateFileError(
                template, 1, 1, f"template {template!r} must be a path inside {self.root}"
            )
        path = self.root / template
        try:
            resolved = path.resolve(strict=True)
        except (FileNotFoundError, NotADirectoryError):
            raise jinja2.TemplateNotFound(template) from None
        except OSError as exc:  # a symlink loop, a permission problem
            raise TemplateFileError(str(path), 1, 1, f"cannot read: {exc.strerror or exc}") from None
        if not resolved.is_relative_to(self.root.resolve()):
            raise TemplateFileError(str(path), 1, 1, f"resolves outside {self.root} (a symlink?); not used")
        if not resolved.is_file():
            raise jinja2.TemplateNotFound(template)
        size = resolved.stat().st_size
        if size > self.max_bytes:
            raise TemplateFileError(
                str(path), 1, 1, f"template is {size} bytes, over the limit of {self.max_bytes}"
            )
        return resolved


def decode_template(raw: bytes, filename: str) -> str:
    """UTF-8 text of a template file; a BOM (Notepad adds one) would otherwise land in the reply."""
    raw = raw.removeprefix(codecs.BOM_UTF8)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - raw.rfind(b"\n", 0, exc.start)
        raise TemplateFileError(filename, line, column, "not UTF-8: save the file as UTF-8") from None
