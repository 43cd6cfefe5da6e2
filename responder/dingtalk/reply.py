"""Reply JSON, sans I/O: the five message types with DingTalk's exact field spellings, the
@-mention, and the 20,000-byte cap (cut with a visible marker, never in a URL). The cutting
(`fit_reply`) takes any channel's size test; the OpenAPI's msgParam encoding is in `openapi`.

See shared/dingtalk-protocol.md section 4.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from responder.jsontext import dumps

MAX_REPLY_BYTES = 20_000
TRUNCATION_MARKER = "\n\n…(truncated)"
MENTIONABLE = frozenset({"text", "markdown"})  # the only types whose `at` DingTalk documents


@dataclass(frozen=True, slots=True)
class Button:
    title: str
    url: str


@dataclass(frozen=True, slots=True)
class FeedLink:
    title: str
    url: str
    picture: str


@dataclass(frozen=True, slots=True)
class Mention:
    """Who a reply @-mentions. How (and whether) that is written depends on the channel."""

    staff_id: str
    nick: str

    @property
    def token(self) -> str:
        """`@staffId`, which DingTalk highlights with `atUserIds`, or a plain `@nick` without one."""
        return f"@{self.staff_id or self.nick}"


@dataclass(frozen=True, slots=True)
class Reply:
    """A rendered reply, independent of the wire spelling of each message type.

    `text` is what the template produced; the mention is added when the reply is encoded for a
    channel, so cutting an over-long text never cuts the mention.
    """

    msgtype: str
    text: str = ""
    title: str = ""
    url: str = ""
    picture: str = ""
    single_button: Button | None = None
    buttons: tuple[Button, ...] = ()
    horizontal_buttons: bool = False
    links: tuple[FeedLink, ...] = ()
    mention: Mention | None = None


def encode_reply(reply: Reply, max_bytes: int = MAX_REPLY_BYTES) -> dict[str, Any]:
    """The reply JSON object exactly as DingTalk expects it, kept under `max_bytes` of UTF-8 JSON.

    Too long: cut as `fit_reply` says.
    """
    return _encode(fit_reply(reply, partial(_fits, max_bytes=max_bytes)))


Fits = Callable[[Reply], bool]


def fit_reply(reply: Reply, fits: Fits) -> Reply:
    """`reply` unchanged if `fits(reply)`, else a shortened copy for which it (usually) holds.

    A feedCard first loses entries from its end, then the text, the title and the button or
    entry titles are cut (in that order) with a visible marker. URLs are never cut. The mention
    is kept unless even the cut reply cannot hold it (an absurdly long nick). `fits` is the
    channel's own size test on its own encoding, so every channel cuts the same way.
    """
    if fits(reply):
        return reply
    shortened = _shorten(reply, fits)
    if reply.mention is not None and not fits(shortened):
        shortened = _shorten(replace(reply, mention=None), fits)
    return shortened


def _shorten(reply: Reply, fits: Fits) -> Reply:
    if reply.msgtype == "feedCard":
        reply = _drop_feed_entries(reply, fits)
    field = 0
    while not fits(reply) and field < len(_cuttable(reply)):
        value, rebuild, marker = _cuttable(reply)[field]  # rebuilt each time: it closes over `reply`
        reply = _cut(value, rebuild, marker, fits)
        field += 1
    return reply


def _fits(reply: Reply, max_bytes: int) -> bool:
    return len(dumps(_encode(reply))) <= max_bytes


def _drop_feed_entries(reply: Reply, fits: Fits) -> Reply:
    links = reply.links
    while len(links) > 1 and not fits(replace(reply, links=links)):
        links = links[:-1]
    return replace(reply, links=links)


Rebuild = Callable[[str], Reply]


def _cuttable(reply: Reply) -> list[tuple[str, Rebuild, str]]:
    """Each text field that may be shortened, with how to rebuild the reply around a new value."""
    fields: list[tuple[str, Rebuild, str]] = [
        (reply.text, partial(_with_text, reply), TRUNCATION_MARKER),
        (reply.title, partial(_with_title, reply), "…"),
    ]
    if reply.single_button is not None:
        fields.append((reply.single_button.title, partial(_with_single_button_title, reply), "…"))
    for i, button in enumerate(reply.buttons):
        fields.append((button.title, partial(_with_button_title, reply, i), "…"))
    for i, link in enumerate(reply.links):
        fields.append((link.title, partial(_with_link_title, reply, i), "…"))
    return fields


def _with_text(reply: Reply, text: str) -> Reply:
    return replace(reply, text=text)


def _with_title(reply: Reply, title: str) -> Reply:
    return replace(reply, title=title)


def _with_single_button_title(reply: Reply, title: str) -> Reply:
    assert reply.single_button is not None
    return replace(reply, single_button=replace(reply.single_button, title=title))


def _with_button_title(reply: Reply, index: int, title: str) -> Reply:
    buttons = list(reply.buttons)
    buttons[index] = replace(buttons[index], title=title)
    return replace(reply, buttons=tuple(buttons))


def _with_link_title(reply: Reply, index: int, title: str) -> Reply:
    links = list(reply.links)
    links[index] = replace(links[index], title=title)
    return replace(reply, links=tuple(links))


def _cut(value: str, rebuild: Rebuild, marker: str, fits: Fits) -> Reply:
    """The longest prefix of `value` (plus marker) that fits, found by bisection on the real
    encoded size, because JSON escaping makes bytes on the wire differ from characters."""
    if not value:
        return rebuild(value)
    low, high = 0, len(value)
    while low < high:
        middle = (low + high + 1) // 2
        if fits(rebuild(value[:middle] + marker)):
            low = middle
        else:
            high = middle - 1
    return rebuild(value[:low] + marker)


def mentioned_text(reply: Reply) -> str:
    """The text as the conversation shows it: text replies start with the mention, markdown
    replies end with it (DingTalk highlights it only if the token is in the text)."""
    if reply.mention is None or reply.msgtype not in MENTIONABLE:
        return reply.text
    if reply.msgtype == "text":
        return f"{reply.mention.token} {reply.text}"
    return f"{reply.text}\n\n{reply.mention.token}"


def _encode(reply: Reply) -> dict[str, Any]:
    encoder = _ENCODERS[reply.msgtype]
    body: dict[str, Any] = {"msgtype": reply.msgtype, reply.msgtype: encoder(reply)}
    mention = reply.mention
    if mention is not None and mention.staff_id and reply.msgtype in MENTIONABLE:
        body["at"] = {"atUserIds": [mention.staff_id], "isAtAll": False}
    return body


def _text(reply: Reply) -> dict[str, Any]:
    return {"content": mentioned_text(reply)}


def _markdown(reply: Reply) -> dict[str, Any]:
    return {"title": reply.title, "text": mentioned_text(reply)}


def _link(reply: Reply) -> dict[str, Any]:
    return {
        "title": reply.title,
        "text": reply.text,
        "messageUrl": reply.url,
        "picUrl": reply.picture,
    }


def _action_card(reply: Reply) -> dict[str, Any]:
    card: dict[str, Any] = {
        "title": reply.title,
        "text": reply.text,
        "btnOrientation": "1" if reply.horizontal_buttons else "0",
    }
    if reply.single_button is not None:
        card["singleTitle"] = reply.single_button.title
        card["singleURL"] = reply.single_button.url
    else:
        card["btns"] = [{"title": b.title, "actionURL": b.url} for b in reply.buttons]
    return card


def _feed_card(reply: Reply) -> dict[str, Any]:
    links = [{"title": x.title, "messageURL": x.url, "picURL": x.picture} for x in reply.links]
    return {"links": links}


_ENCODERS = {
    "text": _text,
    "markdown": _markdown,
    "link": _link,
    "actionCard": _action_card,
    "feedCard": _feed_card,
}
