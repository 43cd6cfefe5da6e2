"""Turn a matched rule into a Reply with sandboxed Jinja2 templates. Pure apart from the clock.

Message text, sender names and source data only ever enter templates as context values; they are
never compiled. The reply is assembled as a Reply value from rendered strings, never as JSON text.
Every reply renders within one Budget (engine/sandbox.py): its output and time are bounded.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import jinja2
from jinja2 import meta, nodes

from responder import __version__
from responder.dingtalk import Button, FeedLink, Mention, Message, Reply
from responder.engine.markdown import ESCAPE_KEY, MARKDOWN_TYPES, URL_SCHEMES
from responder.engine.matching import Match, Matchable
from responder.engine.sandbox import Budget, BudgetedSandbox, RenderBudgetExceeded
from responder.sources.base import SourceResult

MAX_URL_BYTES = 4096
PICTURE_SCHEMES = frozenset({"http", "https"})
_MEDIA_ID = re.compile(r"@[A-Za-z0-9_\-]{4,256}")


class RenderError(Exception):
    """A template failed at render time. `reason` is `budget` (output, time or a value too large
    to build) or `error` (an undefined variable, a sandbox refusal, recursion, a bad filter)."""

    def __init__(self, message: str, reason: str = "error") -> None:
        super().__init__(message)
        self.reason = reason


# A part of a reply: a template, or (a str) the text of one without a single Jinja tag, which
# needs no template object at load time and no render per message (see static_text).
Part = jinja2.Template | str
# What starts a tag under make_environment's settings (no line statements or line comments).
_JINJA_OPENERS = ("{{", "{%", "{#")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def static_text(source: str) -> str | None:
    """What Jinja would render from `source`, or None if Jinja would see a tag in it."""
    if any(opener in source for opener in _JINJA_OPENERS):
        return None
    # Jinja's lexer writes every line break as "\n"; _render strips the ends as for templates.
    return "\n".join(_LINE_BREAK.split(source)).strip()


def make_environment(loader: jinja2.BaseLoader) -> BudgetedSandbox:
    return BudgetedSandbox(
        loader=loader,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )


@dataclass(frozen=True, slots=True)
class ButtonTemplate:
    title: Part
    url: Part


@dataclass(frozen=True, slots=True)
class LinkTemplate:
    title: Part
    url: Part
    picture: Part


@dataclass(frozen=True, slots=True)
class ReplyTemplate:
    """Everything a rule renders, compiled at load time."""

    msgtype: str
    body: Part | None
    on_error: Part | None = None
    title: Part | None = None
    url: Part | None = None
    picture: Part | None = None
    single_button: ButtonTemplate | None = None
    buttons: tuple[ButtonTemplate, ...] = ()
    horizontal_buttons: bool = False
    links: tuple[LinkTemplate, ...] = ()
    at_sender: bool = True
    # Set when every part reads only what a snapshot fixes (see stable_reads): the rendered
    # reply is then kept per visible-rules list, in `memo`, which lives and dies with the snapshot.
    stable: StableReads | None = None
    memo: dict[tuple[int, ...], Reply] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class StableReads:
    """A reply whose templates read nothing that varies per message except, maybe, `rules`."""

    reads_rules: bool


_STABLE = {reads_rules: StableReads(reads_rules) for reads_rules in (False, True)}  # one each, shared
# What a snapshot fixes: `rule` and `bot`, and `rules` once the asker's visible rules are known.
STABLE_NAMES = frozenset({"rule", "rules", "bot"})
# Nondeterministic filters: a cached result would freeze them.
_IMPURE_FILTERS = frozenset({"random", "shuffle"})
MAX_MEMO_ENTRIES = 64


def template_reads(environment: jinja2.Environment, ast: nodes.Template) -> frozenset[str] | None:
    """The names a parsed template reads (globals aside); None if it includes or imports another
    template or calls an impure filter, since then what it reads cannot be told from its text."""
    if any(True for _ in meta.find_referenced_templates(ast)):
        return None
    if any(node.name in _IMPURE_FILTERS for node in ast.find_all(nodes.Filter)):
        return None
    return frozenset(meta.find_undeclared_variables(ast) - set(environment.globals))


def stable_reads(reads: Sequence[frozenset[str] | None]) -> StableReads | None:
    """StableReads when a reply's templates, each's template_reads, read only STABLE_NAMES."""
    names: set[str] = set()
    for read in reads:
        if read is None:
            return None
        names |= read
    return _STABLE["rules" in names] if names <= STABLE_NAMES else None


def build_context(
    match: Match[Matchable],
    message: Message,
    source: SourceResult | None,
    rules: Sequence[Mapping[str, Any]],
    now: datetime.datetime,
) -> dict[str, Any]:
    """The variables every template sees (documented in the README)."""
    return {
        "text": match.text,
        "args": list(match.args),
        "args_text": match.args_text,
        "groups": dict(match.groups),
        "sender": {
            "nick": message.sender_nick,
            "staff_id": message.sender_staff_id,
            "is_admin": message.is_admin,
        },
        "conversation": {
            "id": message.conversation_id,
            "title": message.conversation_title,
            "is_group": message.is_group,
            "type": "group" if message.is_group else "private",
        },
        "message_type": message.msgtype,
        "spoken": message.msgtype == "audio",
        "parts": [
            {"type": part.kind, "text": part.text, "download_code": part.download_code}
            for part in message.parts
        ],
        "quoted": _quoted(message),
        "now": now,
        "source": source,
        "rules": rules,
        "rule": {"name": match.rule.name},
        "bot": {"name": "responder", "version": __version__},
    }


def announcement_context(source: SourceResult | None, now: datetime.datetime) -> dict[str, Any]:
    """What a schedule's or push's templates see besides `schedule`/`payload`."""
    return {"now": now, "source": source, "bot": {"name": "responder", "version": __version__}}


def _quoted(message: Message) -> dict[str, str] | None:
    quoted = message.quoted
    return None if quoted is None else {"type": quoted.msgtype, "text": quoted.text}


def render(
    template: ReplyTemplate, context: Mapping[str, Any], mention: Mention | None, budget: Budget | None = None
) -> Reply:
    """Render every part of the reply within one budget (or take it from the snapshot's memo:
    the same bytes). Raises RenderError."""
    source = context.get("source")
    body = template.body
    if template.on_error is not None and isinstance(source, SourceResult) and not source.ok:
        body = template.on_error
    key = _memo_key(template, context)
    if key is not None and (kept := template.memo.get(key)) is not None:
        return replace(kept, mention=mention)
    reply = _render_reply(template, body, context, mention, budget)
    if key is not None:
        if len(template.memo) >= MAX_MEMO_ENTRIES:  # scopes that yield many different lists
            template.memo.clear()
        template.memo[key] = replace(reply, mention=None)
    return reply


def _memo_key(template: ReplyTemplate, context: Mapping[str, Any]) -> tuple[int, ...] | None:
    """The asker's visible rules, by identity: their entries belong to the snapshot, which also
    owns the memo, so an id here always means the same entry."""
    if template.stable is None:
        return None
    return tuple(map(id, context.get("rules", ()))) if template.stable.reads_rules else ()


def _render_reply(
    template: ReplyTemplate,
    body: Part | None,
    context: Mapping[str, Any],
    mention: Mention | None,
    budget: Budget | None,
) -> Reply:
    environment = _environment_of(template)
    if environment is None:
        return _assemble(template, body, context, mention)
    try:
        with environment.spending(budget or Budget()):
            return _assemble(template, body, context, mention)
    except RenderBudgetExceeded as exc:  # also raised by the interval timer, outside _render
        raise RenderError(str(exc), reason="budget") from exc


def _environment_of(template: ReplyTemplate) -> BudgetedSandbox | None:
    parts = [template.body, template.title, template.url, *(link.title for link in template.links)]
    found = next((part.environment for part in parts if isinstance(part, jinja2.Template)), None)
    return found if isinstance(found, BudgetedSandbox) else None


def _assemble(
    template: ReplyTemplate, body: Part | None, context: Mapping[str, Any], mention: Mention | None
) -> Reply:
    # Markdown fields print values escaped; URL fields never are (they are checked instead).
    text_context = {**context, ESCAPE_KEY: template.msgtype in MARKDOWN_TYPES}
    url_context = {**context, ESCAPE_KEY: False}
    return Reply(
        msgtype=template.msgtype,
        text=_render(body, text_context),
        title=_render(template.title, text_context),
        url=_render_url(template.url, url_context),
        picture=_render_url(template.picture, url_context, picture=True),
        single_button=_button(template.single_button, text_context, url_context),
        buttons=tuple(b for b in (_button(t, text_context, url_context) for t in template.buttons) if b),
        horizontal_buttons=template.horizontal_buttons,
        links=tuple(_link(t, text_context, url_context) for t in template.links),
        mention=mention,
    )


def sender_mention(message: Message) -> Mention | None:
    """In groups the sender is @-mentioned (by staff id, or by nick for people outside the org)."""
    if not message.is_group or not (message.sender_staff_id or message.sender_nick):
        return None
    return Mention(message.sender_staff_id, message.sender_nick)


def _render(template: Part | None, context: Mapping[str, Any]) -> str:
    if template is None:
        return ""
    if isinstance(template, str):
        return template
    environment = template.environment
    try:
        if isinstance(environment, BudgetedSandbox):
            return environment.render(template, context).strip()
        return template.render(context).strip()
    except RenderBudgetExceeded as exc:
        raise RenderError(str(exc), reason="budget") from exc
    except RecursionError as exc:
        raise RenderError(f"{_where(exc)}RecursionError: the template calls itself too deeply") from exc
    except Exception as exc:  # a template must never leave a message unanswered
        raise RenderError(f"{_where(exc)}{type(exc).__name__}: {exc}") from exc


_INLINE = "rules.yaml-inline"


def inline_origin(rules_file: str, first_line: int) -> str:
    """The name an inline template is compiled under, so its failures point into rules.yaml."""
    return f"<{_INLINE}:{first_line}:{rules_file}>"


def _where(exc: BaseException) -> str:
    """`file:line: ` of the template line that failed (Jinja maps traceback frames to template
    lines), or "" if no frame is a template's."""
    found = ""
    traceback = exc.__traceback__
    while traceback is not None:
        filename, line = traceback.tb_frame.f_code.co_filename, traceback.tb_lineno
        if filename.startswith(f"<{_INLINE}:"):
            first, rules_file = filename[len(_INLINE) + 2 : -1].split(":", 1)
            found = f"{rules_file}:{int(first) + line - 1}: "
        elif not filename.endswith(".py") and not filename.startswith("<"):
            found = f"{filename}:{line}: "
        traceback = traceback.tb_next
    return found


def _button(
    template: ButtonTemplate | None, context: Mapping[str, Any], url_context: Mapping[str, Any]
) -> Button | None:
    if template is None:
        return None
    return Button(_render(template.title, context), _render_url(template.url, url_context))


def _link(template: LinkTemplate, context: Mapping[str, Any], url_context: Mapping[str, Any]) -> FeedLink:
    return FeedLink(
        _render(template.title, context),
        _render_url(template.url, url_context),
        _render_url(template.picture, url_context, picture=True),
    )


def _render_url(template: Part | None, context: Mapping[str, Any], *, picture: bool = False) -> str:
    """A URL field: http(s), or a DingTalk in-app link (`dingtalk://`, `dtmd://`); a picture may
    also be a DingTalk media id (`@lADP…`). URLs are never cut to fit a reply (a cut URL opens the
    wrong page), so a URL that echoes a long message is a render failure, not an oversized reply."""
    url = _render(template, context)
    if len(url.encode()) > MAX_URL_BYTES:
        raise RenderError(f"a URL longer than {MAX_URL_BYTES} bytes ({len(url.encode())})", reason="budget")
    if url and not _allowed_url(url, picture=picture):
        scheme = url.split(":", 1)[0][:20] if ":" in url else url[:20]
        raise RenderError(f"a URL must be http(s), dingtalk:// or dtmd://, not {scheme!r}")
    return url


def _allowed_url(url: str, *, picture: bool) -> bool:
    if picture and _MEDIA_ID.fullmatch(url):
        return True
    scheme, separator, rest = url.partition("://")
    allowed = PICTURE_SCHEMES if picture else URL_SCHEMES
    return bool(separator) and scheme.lower() in allowed and bool(rest)
