"""Turn a matched rule into a Reply with sandboxed Jinja2 templates. Pure apart from the clock.

Message text, sender names and source data only ever enter templates as context values; they are
never compiled. The reply is assembled as a Reply value from rendered strings, never as JSON text.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from responder import __version__
from responder.dingtalk import Button, FeedLink, Mention, Message, Reply
from responder.engine.matching import Match, Matchable
from responder.sources.base import SourceResult


class RenderError(Exception):
    """A template failed at render time (undefined variable, sandbox violation, bad filter)."""


def make_environment(templates_dir: Path) -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(
        loader=jinja2.FileSystemLoader(templates_dir),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )


@dataclass(frozen=True, slots=True)
class ButtonTemplate:
    title: jinja2.Template
    url: jinja2.Template


@dataclass(frozen=True, slots=True)
class LinkTemplate:
    title: jinja2.Template
    url: jinja2.Template
    picture: jinja2.Template


@dataclass(frozen=True, slots=True)
class ReplyTemplate:
    """Everything a rule renders, compiled at load time."""

    msgtype: str
    body: jinja2.Template | None
    on_error: jinja2.Template | None = None
    title: jinja2.Template | None = None
    url: jinja2.Template | None = None
    picture: jinja2.Template | None = None
    single_button: ButtonTemplate | None = None
    buttons: tuple[ButtonTemplate, ...] = ()
    horizontal_buttons: bool = False
    links: tuple[LinkTemplate, ...] = ()
    at_sender: bool = True


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
        "now": now,
        "source": source,
        "rules": rules,
        "rule": {"name": match.rule.name},
        "bot": {"name": "responder", "version": __version__},
    }


def render(template: ReplyTemplate, context: Mapping[str, Any], message: Message) -> Reply:
    """Render every part of the reply. Raises RenderError with the template's own message."""
    source = context.get("source")
    body = template.body
    if template.on_error is not None and isinstance(source, SourceResult) and not source.ok:
        body = template.on_error
    return Reply(
        msgtype=template.msgtype,
        text=_render(body, context),
        title=_render(template.title, context),
        url=_render(template.url, context),
        picture=_render(template.picture, context),
        single_button=_button(template.single_button, context),
        buttons=tuple(b for b in (_button(t, context) for t in template.buttons) if b),
        horizontal_buttons=template.horizontal_buttons,
        links=tuple(_link(t, context) for t in template.links),
        mention=sender_mention(message) if template.at_sender else None,
    )


def sender_mention(message: Message) -> Mention | None:
    """In groups the sender is @-mentioned (by staff id, or by nick for people outside the org)."""
    if not message.is_group or not (message.sender_staff_id or message.sender_nick):
        return None
    return Mention(message.sender_staff_id, message.sender_nick)


def _render(template: jinja2.Template | None, context: Mapping[str, Any]) -> str:
    if template is None:
        return ""
    try:
        return template.render(context).strip()
    except jinja2.TemplateError as exc:
        raise RenderError(f"{type(exc).__name__}: {exc}") from exc
    except (TypeError, ValueError, ArithmeticError, LookupError, AttributeError) as exc:
        raise RenderError(f"{type(exc).__name__}: {exc}") from exc


def _button(template: ButtonTemplate | None, context: Mapping[str, Any]) -> Button | None:
    if template is None:
        return None
    return Button(_render(template.title, context), _render(template.url, context))


def _link(template: LinkTemplate, context: Mapping[str, Any]) -> FeedLink:
    return FeedLink(
        _render(template.title, context),
        _render(template.url, context),
        _render(template.picture, context),
    )
