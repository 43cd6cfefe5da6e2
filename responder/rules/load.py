"""rules.yaml -> RuleSet: read, validate, interpolate, compile. The one loader for serve, check and reload.

load_rules never logs and never exits: it returns an immutable RuleSet or raises RulesError listing
every problem as `file:line:col: message`. Everything that can fail fails here, not on a request.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from responder.rules import schema, yamldoc
from responder.rules.compile import compile_ruleset
from responder.rules.files import FileReadError, FileTooLargeError, read_stable
from responder.rules.model import RulesError, RuleSet
from responder.rules.problems import Problem

MAX_RULES_BYTES = 1024 * 1024
_ENV_REFERENCE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def templates_dir(rules_path: Path) -> Path:
    return rules_path.parent / "templates"


def load_rules(path: Path, environ: Mapping[str, str], *, content: bytes | None = None) -> RuleSet:
    """Load and compile `path` (or `content`, already read from it). Raises RulesError."""
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
    problems = [_at(name, p) for p in schema.validate(doc)]
    if problems:
        raise RulesError(problems)
    data, env_problems = interpolate(doc, environ)
    if env_problems:
        raise RulesError([_at(name, p) for p in env_problems])
    return compile_ruleset(path, doc, data, content_sha256(raw, templates_dir(path)), text)


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


def interpolate(
    doc: yamldoc.YamlDocument, environ: Mapping[str, str]
) -> tuple[dict[str, Any], list[yamldoc.YamlProblem]]:
    """Replace ${VAR} and ${VAR:-default} in the dingtalk and sources sections ($$ is a `$`).

    Templates are left alone: they are Jinja2 and may contain a literal `${`. Values never appear
    in problems, only variable names, so secrets stay out of error output.
    """
    problems: list[yamldoc.YamlProblem] = []
    data = dict(doc.data)
    for section in ("dingtalk", "sources"):
        if section in data:
            data[section] = _substitute(data[section], (section,), doc, environ, problems)
    return data, problems


def _substitute(
    value: Any,
    path: yamldoc.Path,
    doc: yamldoc.YamlDocument,
    environ: Mapping[str, str],
    problems: list[yamldoc.YamlProblem],
) -> Any:
    if isinstance(value, dict):
        return {k: _substitute(v, (*path, k), doc, environ, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, (*path, i), doc, environ, problems) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def where() -> str:
        return ".".join(str(p) for p in path)

    def replace(found: re.Match[str]) -> str:
        if found.group() == "$$":
            return "$"
        name, default = found.group(1), found.group(2)
        if name in environ and not _is_utf8(environ[name]):
            problems.append(yamldoc.YamlProblem(doc.position(path), f"{where()}: {name} is not valid UTF-8"))
            return ""
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        problems.append(
            yamldoc.YamlProblem(doc.position(path), f"{where()}: environment variable {name} is not set")
        )
        return ""

    return _ENV_REFERENCE.sub(replace, value)


def _is_utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # os.environ keeps undecodable bytes as lone surrogates
        return False
    return True


def _at(name: str, problem: yamldoc.YamlProblem) -> Problem:
    return Problem(name, problem.position.line, problem.position.column, problem.message)
