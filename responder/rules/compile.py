"""Compile validated rules.yaml data into a RuleSet: triggers, scopes, templates, sources.

Runs after the schema and ${ENV} steps; collects every semantic problem (duplicate names, bad
regexes, template syntax, unknown sources) with its position before giving up.
"""

from __future__ import annotations

import functools
import textwrap
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import jinja2

from responder.engine.cooldowns import Cooldown
from responder.engine.matching import SPECIAL_KINDS, Matcher, Scope, Trigger, compile_trigger
from responder.engine.rendering import (
    ButtonTemplate,
    LinkTemplate,
    Part,
    ReplyTemplate,
    inline_origin,
    make_environment,
    stable_reads,
    static_text,
    template_reads,
)
from responder.rules import schema, yamldoc
from responder.rules.announce import compile_pushes, compile_schedules
from responder.rules.model import MATCH_KINDS, CatalogueEntry, Rule, RulesError, RuleSet
from responder.rules.problems import Problem
from responder.rules.templates import TemplateFileError, TemplateFiles
from responder.settings import Connection, DingTalkSettings, Policy, StateSettings
from responder.sources import SourceConfigError, compile_source
from responder.sources.base import SourceSpec
from responder.state.urls import url_password, url_problem

RESERVED_PATH_PREFIX = "/-/"
_KEYS_BY_MSGTYPE = {
    "text": {"template", "body"},
    "markdown": {"template", "body", "title"},
    "link": {"template", "body", "title", "url", "picture"},
    "actionCard": {"template", "body", "title", "button", "buttons", "button_orientation"},
    "feedCard": {"links"},
}
_REPLY_KEYS = set().union(*_KEYS_BY_MSGTYPE.values())
# Not merged into a rule's mapping: keys a msgtype does not take must stay visibly absent.
RULE_DEFAULTS = schema.defaults("rule")


def compile_ruleset(
    path: Path, doc: yamldoc.YamlDocument, data: Mapping[str, Any], sha256: str, text: str = ""
) -> RuleSet:
    """Raises RulesError listing every problem found."""
    return replace(_Compiler(path, doc, data).run(sha256), text=text)


class _Compiler:
    def __init__(self, path: Path, doc: yamldoc.YamlDocument, data: Mapping[str, Any]) -> None:
        self.file = str(path)
        self.doc = doc
        self.data = data
        self.templates = path.parent / "templates"
        self.template_files = TemplateFiles(self.templates)
        self.env = make_environment(self.template_files)
        self._file_reads: dict[str, frozenset[str] | None] = {}
        self.problems: list[Problem] = []

    def run(self, sha256: str) -> RuleSet:
        dingtalk = self.dingtalk(self.data.get("dingtalk", {}))
        state = self.state(self.data.get("state", {}))
        sources = self.sources(self.data.get("sources", {}))
        defaults = schema.with_defaults("defaults", self.data.get("defaults", {}))
        compiled = [self.rule(i, spec, defaults, sources) for i, spec in enumerate(self.data["rules"])]
        rules = [rule for rule in compiled if rule is not None]
        self.check_unique(rules)
        speaks = dingtalk.connection.speaks_openapi
        pushes = compile_pushes(self, self.data.get("pushes", []), sources, speaks)
        schedules = compile_schedules(self, self.data.get("schedules", []), sources, speaks)
        if self.problems:
            raise RulesError(sorted(self.problems, key=lambda p: (p.file, p.line, p.column)))
        ordered = tuple(sorted(rules, key=lambda r: (-r.priority, r.index)))
        return RuleSet(
            path=Path(self.file),
            sha256=sha256,
            dingtalk=dingtalk,
            state=state,
            rules=ordered,
            matcher=Matcher(
                ordered,
                voice_as_text=defaults["voice_as_text"],
            ),
            sources=MappingProxyType(sources),
            catalogue=tuple(_catalogue_entry(spec) for spec in self.data["rules"] if not spec.get("hidden")),
            not_allowed=MappingProxyType(_not_allowed(defaults)),
            pushes=pushes,
            schedules=schedules,
            secrets=frozenset(filter(None, [url_password(state.url)])),
        )

    def file_reads(self, name: str) -> frozenset[str] | None:
        """template_reads of a template file that compiled, once per file however many rules use it."""
        if name not in self._file_reads:
            source = self.template_files.get_source(self.env, name)[0]
            self._file_reads[name] = template_reads(self.env, self.env.parse(source))
        return self._file_reads[name]

    def problem(self, path: yamldoc.Path, message: str, *, at_key: bool = False) -> None:
        """Record a problem at the value of `path`, or at its key (`at_key`: for unwanted keys)."""
        position = self.doc.key_position(path) if at_key else self.doc.position(path)
        self.problems.append(Problem(self.file, position.line, position.column, message))

    def dingtalk(self, given: Mapping[str, Any]) -> DingTalkSettings:
        spec = schema.with_defaults("dingtalk", given)
        secrets = spec.get("app_secret", ())
        secrets = (secrets,) if isinstance(secrets, str) else tuple(secrets)
        if spec["callback_path"].startswith(RESERVED_PATH_PREFIX):
            self.problem(("dingtalk", "callback_path"), "dingtalk.callback_path: /-/ is reserved")
        mode = spec["mode"]
        if mode != "http" and not (spec.get("client_id") and spec.get("client_secret")):
            self.problem(("dingtalk", "mode"), f"dingtalk.mode {mode} needs client_id and client_secret")
        connection = Connection(
            callback_path=spec["callback_path"],
            mode=mode,
            client_id=spec.get("client_id", ""),
            client_secret=spec.get("client_secret", ""),
            api_base=spec["api_base"].rstrip("/"),
            robot_code=spec.get("robot_code") or spec.get("client_id", ""),
            openapi_monthly_calls=spec.get("openapi_monthly_calls"),
        )
        policy = Policy(
            app_secrets=tuple(s for s in secrets if s),
            reply=spec["reply"],
            session_webhook_origins=tuple(o.lower().rstrip("/") for o in spec["session_webhook_origins"]),
            timestamp_window_ms=spec["timestamp_window_s"] * 1000,
            webhook_timeout_s=float(spec["webhook_timeout_s"]),
            late_reply=spec.get("late_reply") or ("openapi" if connection.speaks_openapi else "drop"),
        )
        if policy.late_reply == "openapi" and not connection.speaks_openapi:
            self.problem(
                ("dingtalk", "late_reply"), "dingtalk.late_reply openapi needs client_id and client_secret"
            )
        return DingTalkSettings(connection, policy)

    def state(self, given: Mapping[str, Any]) -> StateSettings:
        spec = schema.with_defaults("state", given)
        url = spec.get("url", "")
        if spec["backend"] == "redis" and not url:
            self.problem(("state", "backend"), "state.backend redis needs state.url (redis://HOST:PORT/DB)")
        elif spec["backend"] == "redis":
            problem = url_problem(url)
            if problem is not None:
                self.problem(("state", "url"), f"state.url {problem}")
        elif url:
            self.problem(("state", "url"), "state.url is read only with backend: redis: set it, or drop url")
        return StateSettings(
            backend=spec["backend"],
            url=url,
            key_prefix=spec["key_prefix"],
            timeout_s=float(spec["timeout_s"]),
            connect_timeout_s=float(spec["connect_timeout_s"]),
        )

    def sources(self, specs: Mapping[str, Any]) -> dict[str, SourceSpec]:
        compiled = {}
        for name, spec in specs.items():
            try:
                compiled[name] = compile_source(name, spec)
            except SourceConfigError as exc:
                self.problem(("sources", name, *exc.path), f"source {name!r}: {exc.message}")
        return compiled

    def rule(
        self,
        index: int,
        spec: Mapping[str, Any],
        defaults: Mapping[str, Any],
        sources: Mapping[str, SourceSpec],
    ) -> Rule | None:
        at: yamldoc.Path = ("rules", index)
        defaults = schema.with_defaults("defaults", defaults)
        label = f"rule {spec['name']!r}: "
        before = len(self.problems)
        self.check_reply_keys(at, spec, label)
        trigger = self.trigger(at, spec, defaults, label)
        reply = self.reply(at, spec, defaults, label)
        source = self.source(at, spec, sources, label)
        if trigger is None or reply is None or len(self.problems) > before:
            return None
        return Rule(
            name=spec["name"],
            index=index,
            line=self.doc.position(at).line,
            priority=spec.get("priority", RULE_DEFAULTS["priority"]),
            description=spec.get("description", ""),
            hidden=spec.get("hidden", RULE_DEFAULTS["hidden"]),
            trigger=trigger,
            scope=_scope(spec.get("scope", {})),
            reply=reply,
            source=source,
            fixture=spec.get("fixture"),
            cooldown=_cooldown(spec.get("cooldown")),
        )

    def check_reply_keys(self, at: yamldoc.Path, spec: Mapping[str, Any], label: str) -> None:
        allowed = _KEYS_BY_MSGTYPE[spec["msgtype"]]
        for key in sorted((_REPLY_KEYS - allowed) & spec.keys()):
            self.problem((*at, key), f"{label}{key} does not apply to msgtype {spec['msgtype']}", at_key=True)
        if "on_error" in spec and "source" not in spec:
            self.problem((*at, "on_error"), f"{label}on_error needs a source", at_key=True)
        if "fixture" in spec and "source" not in spec:
            self.problem((*at, "fixture"), f"{label}fixture needs a source", at_key=True)

    def trigger(
        self, at: yamldoc.Path, spec: Mapping[str, Any], defaults: Mapping[str, Any], label: str
    ) -> Trigger | None:
        kind = next(k for k in MATCH_KINDS if k in spec)
        case_sensitive = spec.get("case_sensitive", defaults["case_sensitive"])
        try:
            return compile_trigger(kind, spec[kind], case_sensitive=case_sensitive)
        except ValueError as exc:  # RegexError too: "rule 'x': regex: <why>"
            self.problem((*at, kind), f"{label}{kind}: {exc}")
            return None

    def source(
        self,
        at: yamldoc.Path,
        spec: Mapping[str, Any],
        sources: Mapping[str, SourceSpec],
        label: str,
    ) -> SourceSpec | None:
        name = spec.get("source")
        if name is None:
            return None
        if name not in sources:
            known = ", ".join(sorted(sources)) or "none are defined"
            self.problem((*at, "source"), f"{label}unknown source {name!r} (known: {known})")
            return None
        return sources[name]

    def reply(
        self, at: yamldoc.Path, spec: Mapping[str, Any], defaults: Mapping[str, Any], label: str
    ) -> ReplyTemplate | None:
        t = _TemplateCompiler(self, at, spec, label)
        buttons = spec.get("buttons", ())
        reply = ReplyTemplate(
            msgtype=spec["msgtype"],
            body=t.body(),
            on_error=t.file("on_error"),
            title=t.inline("title"),
            url=t.inline("url"),
            picture=t.inline("picture"),
            single_button=t.button(("button",), spec.get("button")),
            buttons=tuple(filter(None, (t.button(("buttons", i), b) for i, b in enumerate(buttons)))),
            horizontal_buttons=spec.get("button_orientation", RULE_DEFAULTS["button_orientation"])
            == "horizontal",
            links=tuple(t.link(i, link) for i, link in enumerate(spec.get("links", ()))),
            at_sender=spec.get("at_sender", defaults["at_sender"]),
        )
        # A source (and its on_error) is per message; anything else may be kept per snapshot.
        if "source" in spec or "on_error" in spec:
            return reply
        return replace(reply, stable=stable_reads(t.reads))

    def check_unique(self, rules: list[Rule]) -> None:
        specs = self.data["rules"]
        first: dict[str, int] = {}
        singletons: dict[str, int] = {}
        for index, spec in enumerate(specs):
            name = spec["name"]
            if name in first:
                line = self.doc.position(("rules", first[name])).line
                self.problem(("rules", index, "name"), f"rule name {name!r} is already used on line {line}")
            first.setdefault(name, index)
            for kind in SPECIAL_KINDS:
                if kind in spec and kind in singletons:
                    line = self.doc.position(("rules", singletons[kind])).line
                    self.problem(
                        ("rules", index, kind),
                        f"rule {name!r}: only one rule may be {kind}; another is on line {line}",
                    )
                elif kind in spec:
                    singletons[kind] = index


class _TemplateCompiler:
    """Compiles one rule's templates, reporting syntax errors at their own file and line."""

    def __init__(self, owner: _Compiler, at: yamldoc.Path, spec: Mapping[str, Any], label: str) -> None:
        self.owner = owner
        self.at = at
        self.spec = spec
        self.label = label
        # What each compiled template reads, for stable_reads.
        self.reads: list[frozenset[str] | None] = []

    def body(self) -> Part | None:
        return self.file("template") if "template" in self.spec else self.inline("body")

    def inline(self, key: str) -> Part | None:
        source = self.spec.get(key)
        return None if source is None else self.compile((key,), source)

    def compile(self, path: yamldoc.Path, source: str) -> Part | None:
        static = static_text(source)  # most titles, and the bodies of big generated rule sets
        if static is not None:
            self.reads.append(frozenset())
            return static
        env = self.owner.env
        try:
            # Named after where it is written, so a render failure can say file:line.
            origin = inline_origin(self.owner.file, self.first_line(path))
            ast = env.parse(source, filename=origin)
            reads = template_reads(env, ast)  # before compiling, which folds constants in the tree
            code = env.compile(ast, filename=origin)
            template = env.template_class.from_code(env, code, env.make_globals(None))
            self.reads.append(reads)
            return template
        except jinja2.TemplateSyntaxError as exc:
            self.inline_problem(path, exc)
        except Exception as exc:  # e.g. `{{ 10**5000 }}`: Jinja folds the constant, then repr fails
            self.owner.problem((*self.at, *path), f"{self.label}{_cannot_compile(exc)}")
        return None

    def file(self, key: str) -> jinja2.Template | None:
        name = self.spec.get(key)
        if name is None:
            return None
        if Path(name).is_absolute() or ".." in Path(name).parts:
            self.owner.problem(
                (*self.at, key), f"{self.label}template {name!r} must name a file inside templates/"
            )
            return None
        try:
            template = self.owner.env.get_template(name)
            self.reads.append(self.owner.file_reads(name))
            return template
        except jinja2.TemplateSyntaxError as exc:
            where = exc.filename or str(self.owner.templates / name)
            self.owner.problems.append(Problem(where, exc.lineno, 1, f"{self.label}{exc.message}"))
        except TemplateFileError as exc:
            self.owner.problems.append(
                Problem(exc.filename, exc.line, exc.column, f"{self.label}{exc.reason}")
            )
        except jinja2.TemplateNotFound:
            self.owner.problem(
                (*self.at, key),
                f"{self.label}template file {name!r} not found in {self.owner.templates}",
            )
        except Exception as exc:
            where = str(self.owner.templates / name)
            self.owner.problems.append(Problem(where, 1, 1, f"{self.label}{_cannot_compile(exc)}"))
        return None

    def button(self, path: yamldoc.Path, spec: Mapping[str, str] | None) -> ButtonTemplate | None:
        if spec is None:
            return None
        title = self.compile((*path, "title"), spec["title"])
        url = self.compile((*path, "url"), spec["url"])
        return ButtonTemplate(title, url) if title and url else None

    def link(self, index: int, spec: Mapping[str, str]) -> LinkTemplate:
        parts = {k: self.compile(("links", index, k), spec[k]) for k in ("title", "url", "picture")}
        return LinkTemplate(**parts)  # type: ignore[arg-type]

    def first_line(self, path: yamldoc.Path) -> int:
        """The rules.yaml line of an inline template's first line (a `|` block starts below)."""
        full = (*self.at, *path)
        node = self.owner.doc.scalar(full)
        block = 1 if node is not None and node.style in ("|", ">") else 0
        return self.owner.doc.position(full).line + block

    def inline_problem(self, path: yamldoc.Path, exc: jinja2.TemplateSyntaxError) -> None:
        full = (*self.at, *path)
        position = self.owner.doc.position(full)
        node = self.owner.doc.scalar(full)
        block = 1 if node is not None and node.style in ("|", ">") else 0
        lineno = exc.lineno or 1
        if node is not None and node.style == ">":
            lineno = self.unfolded_lineno(node) or lineno
        line = position.line + block + lineno - 1
        column = position.column if (exc.lineno or 1) == 1 and not block else 1
        self.owner.problems.append(Problem(self.owner.file, line, column, f"{self.label}{exc.message}"))

    def unfolded_lineno(self, node: yamldoc.ScalarNode) -> int | None:
        """A `>` block folds its lines into one before Jinja numbers them; compile the block as
        written, line breaks kept, to find which of its lines is wrong."""
        raw = self.owner.doc.text[node.start_mark.index : node.end_mark.index]
        written = textwrap.dedent(raw.split("\n", 1)[1] if "\n" in raw else "")
        try:
            self.owner.env.parse(written)
        except jinja2.TemplateSyntaxError as exc:
            return exc.lineno
        return None


def _cannot_compile(exc: Exception) -> str:
    return f"cannot compile this template: {type(exc).__name__}: {exc}"


def _cooldown(given: Mapping[str, Any] | None) -> Cooldown | None:
    if given is None:
        return None
    spec = schema.with_defaults("cooldown", given)
    return Cooldown(spec["per"], float(spec["seconds"]), spec["max"], spec.get("reply"))


def _scope(given: Mapping[str, Any]) -> Scope:
    spec = schema.with_defaults("scope", given)
    return _shared_scope(
        Scope(
            chat=spec["chat"],
            conversations=frozenset(spec.get("conversations", ())),
            senders=frozenset(spec.get("senders", ())),
            admins_only=spec["admins_only"],
        )
    )


@functools.lru_cache(maxsize=1024)
def _shared_scope(scope: Scope) -> Scope:
    """One object for equal scopes (most rules have the default one): a 10,000-rule snapshot is
    fewer objects for every garbage collection to walk."""
    return scope


def _not_allowed(defaults: Mapping[str, Any]) -> dict[str, str]:
    given = defaults["not_allowed"]
    return {**schema.defaults("defaults")["not_allowed"], **given}


def _catalogue_entry(spec: Mapping[str, Any]) -> CatalogueEntry:
    return CatalogueEntry(_catalogue_info(spec), _scope(spec.get("scope", {})))


def _catalogue_info(spec: Mapping[str, Any]) -> Mapping[str, Any]:
    """What `help` templates see of a rule: name, description, kind and the words that trigger it."""
    kind = next(k for k in MATCH_KINDS if k in spec)
    words = spec[kind] if kind in ("keywords", "command", "contains") else []
    words = [words] if isinstance(words, str) else list(words)
    return MappingProxyType(
        {
            "name": spec["name"],
            "description": spec.get("description", ""),
            "kind": kind,
            "words": words,
        }
    )
