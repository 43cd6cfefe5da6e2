"""`responder send`: one message from a script, into groups or 1:1 chats, through the OpenAPI.

It takes the path every other message takes (claim, render, the per-conversation budget, send,
account), in a pipeline of its own that lives as long as the command, with guards from the
rules' state backend: with `state.backend: redis` it spends the same budget as the servers. The
text on the command line is data, never template source: it is the `text` a fixed `{{ text }}`
template prints, so a markdown message escapes it like any value. A template file is the way to
send markup.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import jinja2

from responder.delivery.jobs import Job
from responder.delivery.late import openapi_sink
from responder.delivery.pipeline import Handled, Pipeline
from responder.engine.answer import Fixtures
from responder.engine.rendering import ReplyTemplate, make_environment
from responder.metrics import Metrics
from responder.rules.model import Announcement, RuleSet, Target
from responder.rules.templates import TemplateFiles
from responder.settings import AppOptions
from responder.state import open_state

NAME = "send"


class SendError(Exception):
    """The command cannot send at all (no credentials, a template that does not load)."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    targets: tuple[Target, ...]
    msgtype: str  # text or markdown
    text: str | None = None  # what --text sends, as data
    template: Path | None = None  # or a Jinja2 file, rendered in the sandbox
    title: str | None = None  # markdown's notification preview


def announcement_for(outgoing: Outgoing) -> Announcement:
    """The message as a one-off announcement: a fixed template for the text, or the file."""
    if outgoing.template is not None:
        environment = make_environment(TemplateFiles(outgoing.template.parent.resolve()))
        try:
            body = environment.get_template(outgoing.template.name)
        except (jinja2.TemplateError, OSError) as exc:
            raise SendError(f"{outgoing.template}: {exc}") from None
    else:
        environment = make_environment(jinja2.DictLoader({}))
        body = environment.from_string("{{ text }}")
    title = environment.from_string("{{ title }}") if outgoing.msgtype == "markdown" else None
    reply = ReplyTemplate(msgtype=outgoing.msgtype, body=body, title=title, at_sender=False)
    return Announcement(NAME, NAME, 0, reply)


async def send(outgoing: Outgoing, ruleset: RuleSet, options: AppOptions | None = None) -> list[Handled]:
    """Send to every target; how each ended, in the order of `outgoing.targets`."""
    announcement = announcement_for(outgoing)
    extra = {"text": outgoing.text or "", "title": outgoing.title or ""}
    run = uuid.uuid4().hex  # a script's second run is a second message, never a duplicate
    jobs = [
        Job(f"{NAME}:{run}:{target.kind}:{target.id}", announcement, target, extra)
        for target in outgoing.targets
    ]
    async with aiohttp.ClientSession() as session:
        metrics = Metrics()
        sink = openapi_sink(ruleset.dingtalk.connection, session, metrics)
        if sink is None:
            raise SendError("sending needs dingtalk.client_id and client_secret (the app's AppKey/AppSecret)")
        backend = await open_state(ruleset.state, metrics)
        try:
            guards = backend.guards(options or AppOptions())
            pipeline = Pipeline(lambda: ruleset, Fixtures(), guards, metrics)
            started = [pipeline.announce(job, sink) for job in jobs]
            return [await task for task in started if task is not None]
        finally:
            await backend.close()


def targets_from(conversations: Sequence[str], users: Sequence[str]) -> tuple[Target, ...]:
    return (
        *(Target("conversation", c) for c in conversations),
        *(Target("user", u) for u in users),
    )
