"""Which rule answers a message: normalisation, triggers, scopes and the rule index. Pure.

Semantics (also in the README): keywords equal the whole message; a command is the first word and
the rest are its args; contains finds a whole word (`ip` never fires on `tip`); regex is searched,
with RE2 (engine/regex.py), in time linear in the message.
Keywords and commands are found by dictionary lookup; regex and contains rules are scanned, in
order of priority (highest first) and then file order, only while they could still win.
"""

from __future__ import annotations

import heapq
import re
import unicodedata
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from responder.dingtalk import Message
from responder.engine.regex import Regex, compile_regex

# Rule kinds that take no words: each is at most one rule, tried only in its own situation.
SPECIAL_KINDS = ("fallback", "non_text", "empty")
GROUP_ONLY = "scope: group chats only"
PRIVATE_ONLY = "scope: private chats only"
ADMINS_ONLY = "scope: admins only"
# Refusals the sender is told about (keys of defaults.not_allowed); the others stay invisible.
TELLABLE_REFUSALS = {GROUP_ONLY: "group_only", PRIVATE_ONLY: "private_only", ADMINS_ONLY: "admins_only"}
_SENTENCE_END = "。．.!！?？,，、;；"
_ASCII_WORD = re.compile(r"[0-9A-Za-z_]")
_LEADING_MENTION = re.compile(r"@\S*\s*")


def normalise(text: str) -> str:
    """NFKC (full-width letters are ASCII, U+3000 a space), strip, drop one leading @Name token DingTalk
    may leave, and fold whitespace runs into one space."""
    text = unicodedata.normalize("NFKC", text).strip()
    if text.startswith("@"):
        text = _LEADING_MENTION.sub("", text, count=1)
    return " ".join(text.split())


@dataclass(frozen=True, slots=True)
class Scope:
    chat: str = "any"
    conversations: frozenset[str] = frozenset()
    senders: frozenset[str] = frozenset()
    admins_only: bool = False

    def refusal(self, message: Message) -> str | None:
        """Why this scope excludes `message`, or None when it admits it.

        Conversations and senders come first: a rule meant for other groups or people stays
        invisible. Only then who the sender is and where they are, which they can be told.
        """
        if self.conversations and message.conversation_id not in self.conversations:
            return "scope: conversation not listed"
        if self.senders and message.sender_staff_id not in self.senders:
            return "scope: sender not listed"
        if self.chat == "group" and not message.is_group:
            return GROUP_ONLY
        if self.chat == "private" and message.is_group:
            return PRIVATE_ONLY
        if self.admins_only and not message.is_admin:
            return ADMINS_ONLY
        return None


@dataclass(frozen=True, slots=True)
class Trigger:
    """How a rule matches: keywords, command, regex, contains, or one of the SPECIAL_KINDS."""

    kind: str
    words: tuple[str, ...] = ()
    case_sensitive: bool = False
    pattern: Regex | re.Pattern[str] | None = None  # Regex for regex, re.Pattern for contains

    def fold(self, text: str) -> str:
        return text if self.case_sensitive else text.lower()


def compile_trigger(kind: str, value: str | Sequence[str] | bool, *, case_sensitive: bool) -> Trigger:
    """Build a trigger at load time. Raises ValueError (RegexError for a regex RE2 cannot run)."""
    if kind in SPECIAL_KINDS:
        return Trigger(kind)
    flags = 0 if case_sensitive else re.IGNORECASE
    if kind == "regex":
        assert isinstance(value, str)
        return Trigger(
            kind, case_sensitive=case_sensitive, pattern=compile_regex(value, case_sensitive=case_sensitive)
        )
    if isinstance(value, bool):
        raise ValueError(f"{kind} takes words, not true/false")
    words = tuple(normalise(w) for w in ([value] if isinstance(value, str) else value))
    if not all(words):
        raise ValueError("a word is empty once normalised (whitespace, or a leading @Name, is dropped)")
    if not case_sensitive:
        words = tuple(w.lower() for w in words)
    pattern = re.compile("|".join(_whole_word(w) for w in words), flags) if kind == "contains" else None
    return Trigger(kind, words, case_sensitive, pattern)


def _whole_word(word: str) -> str:
    """One contains word as a Python pattern that is linear in the message, so it may stay on `re`:
    the escaped word's literal characters, guarded by lookarounds of one character class each
    and nothing repeated. Each start position costs at most the word's length plus two steps, and
    an alternation of words at most the sum of their lengths, whatever the message: the time is
    linear in the message length (tests/engine/test_matching.py checks the shape)."""
    # Word boundaries only where the keyword itself starts or ends with an ASCII word character:
    # Chinese has no spaces between words, so `帮助` must still be found inside `请帮助我`.
    before = r"(?<![0-9A-Za-z_])" if _ASCII_WORD.match(word[0]) else ""
    after = r"(?![0-9A-Za-z_])" if _ASCII_WORD.match(word[-1]) else ""
    return before + re.escape(word) + after


class Matchable(Protocol):
    """What matching needs of a rule (the compiled Rule, or a stand-in in lint)."""

    @property
    def name(self) -> str: ...

    @property
    def trigger(self) -> Trigger: ...

    @property
    def scope(self) -> Scope: ...


R = TypeVar("R", bound=Matchable, covariant=True)
T = TypeVar("T", bound=Matchable)


@dataclass(frozen=True, slots=True)
class Match(Generic[R]):
    rule: R
    text: str
    args: tuple[str, ...] = ()
    args_text: str = ""
    groups: Mapping[str, str] = field(default_factory=dict)
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Verdict:
    """One line of `--explain`: a rule and why it did or did not take the message."""

    rule: str
    matched: bool
    reason: str


class Matcher(Generic[R]):
    """An index over rules in precedence order, built once per RuleSet."""

    def __init__(self, rules: Sequence[R], *, voice_as_text: bool = True) -> None:
        # `rules` arrive in precedence order: rank = position.
        self._rules = tuple(rules)
        self._voice_as_text = voice_as_text
        self._exact: dict[tuple[bool, str], list[int]] = {}
        self._command: dict[tuple[bool, str], list[int]] = {}
        self._scanned: list[int] = []
        self._special_ranks: dict[str, int] = {}
        for rank, rule in enumerate(self._rules):
            self._index(rank, rule.trigger)

    def _index(self, rank: int, trigger: Trigger) -> None:
        table = {"keywords": self._exact, "command": self._command}.get(trigger.kind)
        if table is not None:
            for word in trigger.words:
                # A command may be several words ("show ip"); it is indexed by its first word.
                key = word.split(" ", 1)[0] if trigger.kind == "command" else word
                ranks = table.setdefault((trigger.case_sensitive, key), [])
                if rank not in ranks:
                    ranks.append(rank)
        elif trigger.kind in ("regex", "contains"):
            self._scanned.append(rank)
        else:
            self._special_ranks[trigger.kind] = rank

    def find(self, message: Message) -> Match[R] | None:
        """The rule that answers `message`: the first candidate its scope admits, or None."""
        return first_admitted(self.candidates(message), message)

    def heard(self, message: Message) -> str | None:
        """The normalised words to match, or None when the message has none (non_text)."""
        return heard_text(message, voice_as_text=self._voice_as_text)

    def candidates(self, message: Message) -> Iterator[Match[R]]:
        """Every rule whose trigger matches `message`, in precedence order, ending with the
        fallback (for non-text messages only the non_text rule; for a bare @-mention the empty
        rule, then the fallback). Scopes are not checked here; lazily computed, so taking the
        first admitted one stops the scan."""
        text = self.heard(message)
        if text is None:
            yield from self._special("non_text", "", "non-text message")
            return
        if not text:
            yield from self._special("empty", "", "a bare @-mention")
        for rank in self._candidates(text) if text else ():
            match = _try(self._rules[rank], text)
            if match is not None:
                yield match
        yield from self._special("fallback", text, "nothing else matched")

    def explain(self, message: Message) -> list[Verdict]:
        """Every rule in precedence order with the reason it did or did not take `message`."""
        text = self.heard(message)
        winner = self.find(message)
        verdicts = []
        for rule in self._rules:
            match = _try(rule, text) if text else None
            refusal = rule.scope.refusal(message)
            verdicts.append(_verdict(rule, match, refusal, winner, message))
        return verdicts

    def _candidates(self, text: str) -> Iterator[int]:
        """Ranks worth trying, in precedence order: dictionary hits merged with scanned rules."""
        head = text.split(" ", 1)[0]
        hits: set[int] = set()
        for case_sensitive, fold in ((True, str), (False, str.lower)):
            hits.update(self._exact.get((case_sensitive, fold(text)), ()))
            hits.update(self._command.get((case_sensitive, fold(head)), ()))
        yield from heapq.merge(sorted(hits), self._scanned)

    def _special(self, kind: str, text: str, why: str) -> Iterator[Match[R]]:
        rank = self._special_ranks.get(kind)
        if rank is not None:
            yield Match(self._rules[rank], text, reason=why)


def heard_text(message: Message, *, voice_as_text: bool) -> str | None:
    """What the sender said, normalised: typed text (a bare @-mention is ""), a rich-text
    message's text parts, a voice message's transcription (when `voice_as_text`); None for a
    message with no words (a picture, a file, rich text that is only pictures)."""
    if message.msgtype == "text":
        return normalise(message.text)
    if message.msgtype == "richText":
        return normalise(message.text) or None
    if message.msgtype == "audio" and voice_as_text:
        # Transcriptions end a sentence ("帮助。"); a typed keyword never does.
        return normalise(message.spoken).rstrip(_SENTENCE_END).rstrip() or None
    return None


def first_admitted(candidates: Iterable[Match[T]], message: Message) -> Match[T] | None:
    """The first matching rule whose scope admits the message; a refused rule lets the next try."""
    return next((m for m in candidates if m.rule.scope.refusal(message) is None), None)


@dataclass(frozen=True, slots=True)
class Choice(Generic[R]):
    """The scope step's verdict: the rule that answers, or the rule the sender asked for but may
    not use here (`refusal` says why, one of TELLABLE_REFUSALS), or neither."""

    match: Match[R] | None = None
    refused: Match[R] | None = None
    refusal: str = ""


def choose(candidates: Iterable[Match[T]], message: Message, tell: Collection[str] = ()) -> Choice[T]:
    """The first candidate the scope admits, unless the sender asked for a rule they may not use
    (a refusal in `tell`: admins only, group or private chats only) and only the fallback would
    answer instead: then they are told, rather than told they were not understood."""
    told: Match[T] | None = None
    why = ""
    for match in candidates:
        refusal = match.rule.scope.refusal(message)
        if refusal is None:
            if told is not None and match.rule.trigger.kind in SPECIAL_KINDS:
                break
            return Choice(match)
        if told is None and refusal in tell:
            told, why = match, refusal
    return Choice(refused=told, refusal=why) if told is not None else Choice()


def _try(rule: T, text: str) -> Match[T] | None:
    trigger = rule.trigger
    folded = trigger.fold(text)
    if trigger.kind == "keywords" and folded in trigger.words:
        return Match(rule, text, reason=f"keyword {folded!r}")
    if trigger.kind == "command":
        for command in trigger.words:
            if folded == command or folded.startswith(command + " "):
                # Split the original text by words, not by the folded command's length: folding
                # can change a word's length (`İ` lower-cases to two characters).
                words = command.count(" ") + 1
                parts = text.split(" ", words)
                rest = parts[words] if len(parts) > words else ""
                said = " ".join(parts[:words])
                return Match(rule, text, tuple(rest.split()), rest, reason=f"command {said!r}")
    if trigger.kind in ("regex", "contains") and trigger.pattern is not None:
        found = trigger.pattern.search(text)
        if found:
            groups = {k: v for k, v in found.groupdict().items() if v is not None}
            return Match(rule, text, groups=groups, reason=f"{trigger.kind} {found.group()!r}")
    return None


def _verdict(
    rule: T,
    match: Match[T] | None,
    refusal: str | None,
    winner: Match[T] | None,
    message: Message,
) -> Verdict:
    if winner is not None and winner.rule is rule:
        return Verdict(rule.name, True, winner.reason)
    if rule.trigger.kind in SPECIAL_KINDS:
        return Verdict(rule.name, False, f"{rule.trigger.kind}: not needed" if refusal is None else refusal)
    if match is None:
        return Verdict(rule.name, False, f"{rule.trigger.kind} did not match")
    if refusal is not None:
        return Verdict(rule.name, False, f"matched {match.reason}, but {refusal}")
    return Verdict(rule.name, False, f"matched {match.reason}, but a rule before it won")
