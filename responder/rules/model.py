"""The compiled configuration: Rule, RuleSet and the errors that explain why a file was refused."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from responder.dingtalk import Message
from responder.engine.cooldowns import Cooldown
from responder.engine.matching import TELLABLE_REFUSALS, Matcher, Scope, Trigger
from responder.engine.rendering import ReplyTemplate
from responder.rules.problems import Problem
from responder.schedule.timing import Timing
from responder.settings import DingTalkSettings, StateSettings
from responder.sources.base import SourceSpec

MATCH_KINDS = ("keywords", "command", "regex", "contains", "fallback", "non_text", "empty")


class RulesError(Exception):
    """rules.yaml (or a template it names) cannot be loaded. str() lists every problem."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    index: int
    line: int
    priority: int
    description: str
    hidden: bool
    trigger: Trigger
    scope: Scope
    reply: ReplyTemplate
    # Source specs may hold secrets (headers from ${ENV}); keep them out of repr and logs.
    source: SourceSpec | None = field(default=None, repr=False)
    fixture: Any = field(default=None, repr=False)
    cooldown: Cooldown | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """Where responder speaks first: a group (`conversation`) or one person (`user`, a staff id)."""

    kind: str
    id: str

    @property
    def budget_key(self) -> str:
        """The send budget is per conversation: a group's id, or the person's 1:1 chat."""
        return self.id if self.kind == "conversation" else f"user:{self.id}"


@dataclass(frozen=True, slots=True)
class Announcement:
    """What a schedule or a push says: compiled like a rule's reply, sent through the OpenAPI."""

    name: str
    kind: str  # "schedule" or "push"
    line: int
    reply: ReplyTemplate
    source: SourceSpec | None = field(default=None, repr=False)
    fixture: Any = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class PushRoute:
    """`when` every (dotted path, allowed values) holds in the payload, the push goes to `targets`."""

    when: tuple[tuple[str, tuple[Any, ...]], ...]
    targets: tuple[Target, ...]

    def holds(self, payload: Any) -> bool:
        return all(_at_path(payload, path) in allowed for path, allowed in self.when)


@dataclass(frozen=True, slots=True)
class Push:
    announcement: Announcement
    token: str = field(repr=False)
    targets: tuple[Target, ...] = ()
    routes: tuple[PushRoute, ...] = ()

    def targets_for(self, payload: Any) -> tuple[Target, ...]:
        """The first route that holds chooses; else the push's own `to` (maybe none)."""
        return next((route.targets for route in self.routes if route.holds(payload)), self.targets)


@dataclass(frozen=True, slots=True)
class Schedule:
    """A message sent at each slot of its timing (the runner's ScheduleSpec)."""

    announcement: Announcement
    timing: Timing
    targets: tuple[Target, ...]
    catch_up_s: float | None = None

    @property
    def name(self) -> str:
        return self.announcement.name


def _at_path(payload: Any, path: str) -> Any:
    value = payload
    for step in path.split("."):
        if not isinstance(value, Mapping) or step not in value:
            return _MISSING
        value = value[step]
    return value


_MISSING = object()


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    """What templates see of one non-hidden rule (`info`), and who may see it (`scope`)."""

    info: Mapping[str, Any]
    scope: Scope


@dataclass(frozen=True, slots=True, weakref_slot=True)  # weakref: see store.retire_gradually
class RuleSet:
    """One immutable snapshot of the configuration; the server swaps whole snapshots."""

    path: Path
    sha256: str
    dingtalk: DingTalkSettings
    state: StateSettings
    rules: tuple[Rule, ...]
    matcher: Matcher[Rule] = field(repr=False)
    sources: Mapping[str, SourceSpec] = field(repr=False)
    catalogue: tuple[CatalogueEntry, ...] = field(repr=False)
    # The text it was compiled from: `check` re-reads positions and examples from it, not the disk.
    text: str = field(default="", repr=False)
    # Inbound pushes by name (POST /push/NAME).
    pushes: Mapping[str, Push] = field(default_factory=dict, repr=False)
    schedules: tuple[Schedule, ...] = field(default=(), repr=False)
    # What a sender is told when a rule's scope refuses who or where they are (TELLABLE_REFUSALS).
    not_allowed: Mapping[str, str] = field(default_factory=dict, repr=False)
    # Values ${VAR}s put into the settings, and the Redis password: logs and reports never show them.
    secrets: frozenset[str] = field(default=frozenset(), repr=False)

    @property
    def told_refusals(self) -> frozenset[str]:
        """The scope refusals a sender is told about (those with a `not_allowed` text)."""
        return frozenset(refusal for refusal, key in TELLABLE_REFUSALS.items() if self.not_allowed.get(key))

    def visible_rules(self, message: Message) -> list[Mapping[str, Any]]:
        """What `help` lists for the sender of `message`: the rules their scope lets them use."""
        return [entry.info for entry in self.catalogue if entry.scope.refusal(message) is None]

    def rule(self, name: str) -> Rule | None:
        return next((r for r in self.rules if r.name == name), None)
