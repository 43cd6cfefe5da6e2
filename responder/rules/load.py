"""rules.yaml -> RuleSet: read, validate, interpolate, compile. The one loader for serve, check and reload.

load_rules never logs and never exits: it returns an immutable RuleSet or raises RulesError listing
every problem as `file:line:col: message`. Everything that can fail fails here, not on a request.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from responder.rules import schema, yamldoc
from responder.rules.compile import compile_ruleset
from responder.rules.files import (
    FileReadError,
    FileTooLargeError,
    FileUnstableError,
    read_stable,
    wait_until_settled,
)
from responder.rules.model import RulesError, RuleSet
from responder.rules.problems import Problem

MAX_RULES_BYTES = 1024 * 1024
# Shorter interpolated values (a port, `true`) are left in messages: hiding them would hide
# the message itself, and they are not secrets.
MIN_SCRUBBED_CHARS = 4
_SPEAKER_KEYS = frozenset({"token", "to", "match"})  # what ${VAR} may fill in pushes and schedules
_ENV_REFERENCE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def templates_dir(rules_path: Path) -> Path:
    return rules_path.parent / "templates"


def load_rules(
    path: Path, environ: Mapping[str, str], *, content: bytes | None = None, settle_s: float = 0.0
) -> RuleSet:
    """Load and compile `path` (or `content`, already read from it). Raises RulesError, and
    nothing else: whatever goes wrong is a problem report, never a traceback.

    `settle_s` > 0 (reloads) first waits until neither the file nor a template has changed for
    that long, so a file still being written is not loaded half-way.
    """
    substituted: set[str] = set()
    try:
        if settle_s > 0:
            _settle(path, settle_s)
        return _load(path, environ, content, substituted)
    except RulesError as exc:
        raise RulesError([_scrubbed(p, substituted) for p in exc.problems]) from None
    except Exception as exc:  # a bug of ours or a library's: still a report, and the next reload runs
        problem = Problem(str(path), 1, 1, f"cannot load: {type(exc).__name__}: {exc}")
        raise RulesError([_scrubbed(problem, substituted)]) from exc


def _load(path: Path, environ: Mapping[str, str], content: bytes | None, substituted: set[str]) -> RuleSet:
    name = str(path)
    raw = _read(path) if content is None else content
    if len(raw) > MAX_RULES_BYTES:
        raise RulesError([Problem(name, 1, 1, f"file is larger than {MAX_RULES_BYTES} bytes")])
    try:
        text = raw.decode("utf-8")
        doc = yamldoc.parse(text, name)
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - raw.rfind(b"\n", 0, exc.start)
        raise RulesError([Problem(name, line, column, "not UTF-8: save the file as UTF-8")]) from None
    except yamldoc.YamlError as exc:
        raise RulesError([_at(name, p) for p in exc.problems]) from None
    try:
        problems = [_at(name, p) for p in schema.validate(doc)]
        if problems:
            raise RulesError(problems)
        interpolated = interpolate(doc, environ)
        substituted.update(interpolated.values)
        if interpolated.problems:
            raise RulesError([_at(name, p) for p in interpolated.problems])
        sha256 = content_sha256(raw, templates_dir(path))
        ruleset = compile_ruleset(path, doc, interpolated.data, sha256, text)
    finally:
        doc.release()
    # A Redis URL from ${REDIS_URL} is shown (as display_url) with its password, already among
    # ruleset.secrets, hidden: the host an operator needs to see is not a secret.
    shown = {ruleset.state.url} if ruleset.state.url else set()
    return replace(ruleset, secrets=ruleset.secrets | (interpolated.values - shown))


def _settle(path: Path, settle_s: float) -> None:
    try:
        wait_until_settled([path, *_template_files(templates_dir(path))], settle_s)
    except FileUnstableError as exc:
        raise RulesError([Problem(str(path), 1, 1, f"not loaded: {exc.reason}")]) from None


def _template_files(templates: Path) -> list[Path]:
    return [t for t in sorted(templates.rglob("*")) if t.is_file()] if templates.is_dir() else []


def _scrubbed(problem: Problem, values: set[str]) -> Problem:
    """`problem` with every interpolated value (a token, a password) replaced by `***`."""
    message, detail = problem.message, problem.detail
    for value in sorted(values, key=len, reverse=True):
        if len(value) >= MIN_SCRUBBED_CHARS:
            message, detail = message.replace(value, "***"), detail.replace(value, "***")
    return replace(problem, message=message, detail=detail)


def _read(path: Path) -> bytes:
    """Read the file only once two consecutive reads agree (editors and kubelet swap files)."""
    try:
        return read_stable(path, max_bytes=MAX_RULES_BYTES)
    except FileTooLargeError:
        raise RulesError([Problem(str(path), 1, 1, f"file is larger than {MAX_RULES_BYTES} bytes")]) from None
    except FileReadError as exc:
        raise RulesError([Problem(str(path), 1, 1, f"cannot read: {exc.reason}")]) from None


def content_sha256(raw: bytes, templates: Path) -> str:
    """Hash of the rules file and every template file, so unchanged content reloads as a no-op."""
    digest = hashlib.sha256(raw)
    for template in sorted(templates.rglob("*")) if templates.is_dir() else ():
        if template.is_file():
            digest.update(b"\0" + str(template.relative_to(templates)).encode() + b"\0")
            digest.update(template.read_bytes())
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class Interpolated:
    """`data` with ${VAR}s replaced, the problems found, and the values put in (to keep them
    out of every message: a `${TOKEN}` inside a URL must not come back in an error about it)."""

    data: dict[str, Any]
    problems: list[yamldoc.YamlProblem]
    values: frozenset[str]


def interpolate(doc: yamldoc.YamlDocument, environ: Mapping[str, str]) -> Interpolated:
    """Replace ${VAR} and ${VAR:-default} in the dingtalk, state and sources sections, and in the
    token and targets of pushes and schedules ($$ is a `$`).

    Templates are left alone: they are Jinja2 and may contain a literal `${`. Problems name only
    variables, never values.
    """
    substitution = _Substitution(doc, environ)
    data = dict(doc.data)
    for section in ("dingtalk", "state", "sources"):
        if section in data:
            data[section] = substitution.apply(data[section], (section,))
    for section in ("pushes", "schedules"):  # their templates stay Jinja: only these keys
        items = data.get(section)
        if not isinstance(items, list):
            continue  # absent, or a shape the schema reports
        data[section] = [_apply_to_speaker(substitution, item, (section, i)) for i, item in enumerate(items)]
    return Interpolated(data, substitution.problems, frozenset(substitution.values))


def _apply_to_speaker(substitution: _Substitution, item: Any, at: yamldoc.Path) -> Any:
    if not isinstance(item, dict):
        return item
    return {
        key: substitution.apply(value, (*at, key)) if key in _SPEAKER_KEYS else value
        for key, value in item.items()
    }


class _Substitution:
    def __init__(self, doc: yamldoc.YamlDocument, environ: Mapping[str, str]) -> None:
        self.doc = doc
        self.environ = environ
        self.problems: list[yamldoc.YamlProblem] = []
        self.values: set[str] = set()

    def apply(self, value: Any, path: yamldoc.Path) -> Any:
        if isinstance(value, dict):
            return {k: self.apply(v, (*path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.apply(v, (*path, i)) for i, v in enumerate(value)]
        if not isinstance(value, str):
            return value
        return _ENV_REFERENCE.sub(lambda found: self._value(found, path), value)

    def _value(self, found: re.Match[str], path: yamldoc.Path) -> str:
        if found.group() == "$$":
            return "$"
        name, default = found.group(1), found.group(2)
        if name in self.environ and not _is_utf8(self.environ[name]):
            return self._problem(path, f"{name} is not valid UTF-8")
        if name in self.environ:
            self.values.add(self.environ[name])
            return self.environ[name]
        if default is not None:
            return default
        return self._problem(path, f"environment variable {name} is not set")

    def _problem(self, path: yamldoc.Path, message: str) -> str:
        where = ".".join(str(p) for p in path)
        self.problems.append(yamldoc.YamlProblem(self.doc.position(path), f"{where}: {message}"))
        return ""


def _is_utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # os.environ keeps undecodable bytes as lone surrogates
        return False
    return True


def _at(name: str, problem: yamldoc.YamlProblem) -> Problem:
    return Problem(name, problem.position.line, problem.position.column, problem.message)
