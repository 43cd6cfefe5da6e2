"""Compile what responder says first: `pushes:` (their targets and routes) and `schedules:`
(their timing) around Announcements, with the problems only a compiled file can show (a reply
the OpenAPI cannot carry, a short token, no credentials to send with, a cron that never fires).

Part of the compiler (rules/compile.py), which hands itself in for positions and problems.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

from responder.dingtalk.openapi import sendable_reason
from responder.rules import yamldoc
from responder.rules.model import Announcement, Push, PushRoute, Schedule, Target
from responder.schedule.timing import make_timing, parse_catch_up
from responder.sources.base import SourceSpec

if TYPE_CHECKING:
    from responder.rules.compile import _Compiler

T = TypeVar("T")
MIN_TOKEN_CHARS = 16
# Announcements mention nobody: the OpenAPI cannot @-mention.
_NO_MENTION = {"at_sender": False}


def compile_pushes(
    compiler: _Compiler,
    specs: Sequence[Mapping[str, Any]],
    sources: Mapping[str, SourceSpec],
    speaks: bool,
) -> Mapping[str, Push]:
    def build(at: yamldoc.Path, spec: Mapping[str, Any], label: str) -> Push | None:
        return _push(compiler, at, spec, sources, label, speaks)

    return MappingProxyType(_by_name(compiler, "pushes", "push", specs, build))


def _by_name(
    compiler: _Compiler,
    section: str,
    kind: str,
    specs: Sequence[Mapping[str, Any]],
    build: Callable[[yamldoc.Path, Mapping[str, Any], str], T | None],
) -> dict[str, T]:
    """Each spec of `section` built under its name, in file order; a name used twice is a problem
    at the second one, which is not built."""
    built: dict[str, T] = {}
    for index, spec in enumerate(specs):
        at: yamldoc.Path = (section, index)
        if spec["name"] in built:
            compiler.problem((*at, "name"), f"{kind} name {spec['name']!r} is already used")
            continue
        item = build(at, spec, f"{kind} {spec['name']!r}: ")
        if item is not None:
            built[spec["name"]] = item
    return built


def _push(
    compiler: _Compiler,
    at: yamldoc.Path,
    spec: Mapping[str, Any],
    sources: Mapping[str, SourceSpec],
    label: str,
    speaks: bool,
) -> Push | None:
    before = len(compiler.problems)
    announcement = compile_announcement(compiler, at, spec, sources, label, "push")
    token = spec["token"]
    if token and len(token) < MIN_TOKEN_CHARS:
        compiler.problem((*at, "token"), f"{label}token must be at least {MIN_TOKEN_CHARS} characters")
    if token and not speaks:
        needs = "pushes send through the OpenAPI: set dingtalk.client_id and client_secret"
        compiler.problem((*at, "name"), f"{label}{needs}")
    if "to" not in spec and "match" not in spec:
        compiler.problem((*at, "name"), f"{label}needs `to`, `match`, or both")
    if token:  # a disabled push may leave its targets' ${VAR}s unset
        check_targets(compiler, at, spec, label)
    routes = tuple(
        PushRoute(_conditions(entry["when"]), targets(entry["to"])) for entry in spec.get("match", ())
    )
    if announcement is None or len(compiler.problems) > before:
        return None
    return Push(announcement, token, targets(spec.get("to", ())), routes)


def compile_schedules(
    compiler: _Compiler,
    specs: Sequence[Mapping[str, Any]],
    sources: Mapping[str, SourceSpec],
    speaks: bool,
) -> tuple[Schedule, ...]:
    def build(at: yamldoc.Path, spec: Mapping[str, Any], label: str) -> Schedule | None:
        return _schedule(compiler, at, spec, sources, label, speaks)

    return tuple(_by_name(compiler, "schedules", "schedule", specs, build).values())


def _schedule(
    compiler: _Compiler,
    at: yamldoc.Path,
    spec: Mapping[str, Any],
    sources: Mapping[str, SourceSpec],
    label: str,
    speaks: bool,
) -> Schedule | None:
    before = len(compiler.problems)
    announcement = compile_announcement(compiler, at, spec, sources, label, "schedule")
    if not speaks:
        needs = "schedules send through the OpenAPI: set dingtalk.client_id and client_secret"
        compiler.problem((*at, "name"), f"{label}{needs}")
    check_targets(compiler, at, spec, label)
    timing = catch_up = None
    key = "cron" if "cron" in spec else "every"
    try:
        timing = make_timing(cron=spec.get("cron"), every=spec.get("every"), timezone=spec.get("timezone"))
    except ValueError as exc:
        wrong = "timezone" if "timezone" in spec and "zone" in str(exc).lower() else key
        compiler.problem((*at, wrong), f"{label}{exc}")
    try:
        catch_up = parse_catch_up(spec.get("catch_up"))
    except ValueError as exc:
        compiler.problem((*at, "catch_up"), f"{label}{exc}")
    if announcement is None or timing is None or len(compiler.problems) > before:
        return None
    return Schedule(announcement, timing, targets(spec["to"]), catch_up)


def compile_announcement(
    compiler: _Compiler,
    at: yamldoc.Path,
    spec: Mapping[str, Any],
    sources: Mapping[str, SourceSpec],
    label: str,
    kind: str,
) -> Announcement | None:
    """The reply part of a schedule or a push, compiled like a rule's; the OpenAPI must carry it."""
    compiler.check_reply_keys(at, spec, label)
    buttons = 1 if "button" in spec else len(spec.get("buttons", ()))
    horizontal = "button" not in spec and spec.get("button_orientation") == "horizontal"
    unsendable = sendable_reason(spec["msgtype"], buttons, horizontal)
    if unsendable:
        compiler.problem((*at, "msgtype"), f"{label}{unsendable}")
    reply = compiler.reply(at, spec, _NO_MENTION, label)
    source = compiler.source(at, spec, sources, label)
    if reply is None:
        return None
    return Announcement(
        spec["name"], kind, compiler.doc.position(at).line, reply, source, spec.get("fixture")
    )


def check_targets(compiler: _Compiler, at: yamldoc.Path, spec: Mapping[str, Any], label: str) -> None:
    """An empty id (a `${VAR:-}` left unset) would be refused by DingTalk at every send."""
    lists: list[tuple[yamldoc.Path, Sequence[Mapping[str, str]]]] = [((*at, "to"), spec.get("to", ()))]
    lists += [((*at, "match", i, "to"), entry["to"]) for i, entry in enumerate(spec.get("match", ()))]
    for path, entries in lists:
        for i, entry in enumerate(entries):
            for kind, value in entry.items():
                if not value:
                    compiler.problem((*path, i, kind), f"{label}`{kind}` is empty (is its variable set?)")


def targets(specs: Sequence[Mapping[str, str]]) -> tuple[Target, ...]:
    return tuple(_target(spec) for spec in specs)


def _target(spec: Mapping[str, str]) -> Target:
    return (
        Target("conversation", spec["conversation"])
        if "conversation" in spec
        else Target("user", spec["user"])
    )


def _conditions(when: Mapping[str, Any]) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    return tuple(
        (path, tuple(value) if isinstance(value, list) else (value,)) for path, value in when.items()
    )
