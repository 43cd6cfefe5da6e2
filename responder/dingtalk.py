"""The DingTalk wire protocol, sans I/O: callback signatures, callback bodies, reply JSON.

This module performs no I/O and knows nothing of rules. Camel-case wire names live here only;
see shared/dingtalk-protocol.md sections 1, 2 and 4 for the facts it encodes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

MAX_REPLY_BYTES = 20_000
TRUNCATION_MARKER = "\n\n…(truncated)"
MAX_JSON_DEPTH = 32
MENTIONABLE = frozenset({"text", "markdown"})  # the only types whose `at` DingTalk documents
_TIMESTAMP = re.compile(r"[0-9]{13}")


class SignatureError(Exception):
    """The callback's timestamp/sign headers do not prove it came from DingTalk."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MessageError(ValueError):
    """The callback body is not a DingTalk message we can read."""


def sign(secret: str, timestamp: str) -> str:
    """Base64(HMAC-SHA256(secret, timestamp + "\\n" + secret)), the callback `sign` header."""
    string_to_sign = f"{timestamp}\n{secret}".encode()
    digest = hmac.new(secret.encode(), string_to_sign, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_signature(headers: Mapping[str, str], secrets: Sequence[str], now_ms: int, window_ms: int) -> None:
    """Raise SignatureError unless `timestamp` is fresh and `sign` matches one of `secrets`.

    The signature covers only timestamp and secret, not the body; the window limits replays.
    """
    timestamp = headers.get("timestamp")
    signature = headers.get("sign")
    if timestamp is None or signature is None:
        raise SignatureError("missing_header")
    if not _TIMESTAMP.fullmatch(timestamp):
        raise SignatureError("malformed_timestamp")
    skew = int(timestamp) - now_ms
    if skew > window_ms:
        raise SignatureError("timestamp_in_future")
    if -skew > window_ms:
        raise SignatureError("timestamp_expired")
    presented = signature.encode("utf-8", "replace")
    # Check every secret, so timing does not reveal which one matched.
    matched = False
    for secret in secrets:
        matched |= hmac.compare_digest(sign(secret, timestamp).encode("ascii"), presented)
    if not matched:
        raise SignatureError("bad_signature")


@dataclass(frozen=True, slots=True)
class Message:
    """One incoming robot message, as the rest of responder sees it."""

    msg_id: str
    msgtype: str
    text: str
    conversation_id: str
    is_group: bool
    conversation_title: str
    sender_nick: str
    sender_staff_id: str
    sender_id: str
    is_admin: bool
    session_webhook: str
    session_webhook_expires_ms: int | None
    created_ms: int | None
    robot_code: str

    @property
    def is_text(self) -> bool:
        return self.msgtype == "text"


def offline_message(
    text: str,
    *,
    msg_id: str,
    conversation_id: str,
    nick: str,
    staff_id: str,
    is_group: bool = True,
    is_admin: bool = False,
    msgtype: str = "text",
    created_ms: int | None = None,
) -> Message:
    """A message shaped like DingTalk's with nowhere to reply to: for try, examples, the playground."""
    return Message(
        msg_id=msg_id,
        msgtype=msgtype,
        text=text,
        conversation_id=conversation_id,
        is_group=is_group,
        conversation_title="responder" if is_group else "",
        sender_nick=nick,
        sender_staff_id=staff_id,
        sender_id="",
        is_admin=is_admin,
        session_webhook="",
        session_webhook_expires_ms=None,
        created_ms=created_ms,
        robot_code="",
    )


def parse_message(body: bytes) -> Message:
    """Decode a callback body (HTTP body or Stream `data`). Raises MessageError with a reason."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MessageError(f"body is not UTF-8 (byte {exc.start})") from None
    if _nesting_depth(text) > MAX_JSON_DEPTH:
        raise MessageError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MessageError(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise MessageError("JSON nested too deeply") from None
    except ValueError as exc:  # e.g. an integer literal longer than Python converts (4300 digits)
        raise MessageError(f"malformed JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise MessageError("body must be a JSON object")
    return message_from_dict(payload)


def message_from_dict(payload: Mapping[str, Any]) -> Message:
    fields = _Fields(payload)
    msgtype = fields.string("msgtype", required=True)
    text = ""
    if msgtype == "text":
        text = _Fields(fields.mapping("text")).string("content", required=True)
    conversation_type = fields.string("conversationType", required=True)
    if conversation_type not in ("1", "2"):
        raise MessageError('conversationType must be "1" (private) or "2" (group)')
    return Message(
        msg_id=fields.string("msgId", required=True),
        msgtype=msgtype,
        text=text,
        conversation_id=fields.string("conversationId"),
        is_group=conversation_type == "2",
        conversation_title=fields.string("conversationTitle"),
        sender_nick=fields.string("senderNick"),
        sender_staff_id=fields.string("senderStaffId"),
        sender_id=fields.string("senderId"),
        is_admin=fields.boolean("isAdmin"),
        session_webhook=fields.string("sessionWebhook"),
        session_webhook_expires_ms=fields.integer("sessionWebhookExpiredTime"),
        created_ms=fields.integer("createAt"),
        robot_code=fields.string("robotCode"),
    )


class _Fields:
    """Typed access to a JSON object; wrong types become MessageError naming the field."""

    def __init__(self, payload: Mapping[str, Any]) -> None:
        self._payload = payload

    def string(self, name: str, *, required: bool = False) -> str:
        value = self._payload.get(name)
        if value is None:
            if required:
                raise MessageError(f"missing field {name!r}")
            return ""
        if not isinstance(value, str):
            raise MessageError(f"field {name!r} must be a string")
        if _SURROGATE.search(value):
            # JSON allows "\ud800"; such text could never be sent back as UTF-8.
            raise MessageError(f"field {name!r} contains an unpaired surrogate")
        return value

    def boolean(self, name: str) -> bool:
        value = self._payload.get(name, False)
        if not isinstance(value, bool):
            raise MessageError(f"field {name!r} must be a boolean")
        return value

    def integer(self, name: str) -> int | None:
        # The doc table says String for createAt, real payloads send numbers: accept both.
        value = self._payload.get(name)
        if value is None:
            return None
        if isinstance(value, bool):
            raise MessageError(f"field {name!r} must be a number")
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 20:
            return int(value)
        raise MessageError(f"field {name!r} must be a number")

    def mapping(self, name: str) -> Mapping[str, Any]:
        value = self._payload.get(name)
        if not isinstance(value, dict):
            raise MessageError(f"field {name!r} must be an object")
        return value


_SURROGATE = re.compile("[\ud800-\udfff]")
_JSON_STRUCTURE = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _nesting_depth(text: str) -> int:
    """Deepest bracket nesting, ignoring brackets inside strings; checked before json.loads."""
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return 0  # cannot nest deeper than it has brackets: skip the scan (the common case)
    depth = deepest = 0
    for token in _JSON_STRUCTURE.finditer(text):
        char = token.group()
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


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

    Too long: a feedCard first loses entries from its end, then the text, the title and the
    button or entry titles are cut (in that order) with a visible marker. URLs are never cut.
    The mention is kept unless even the cut reply cannot hold it (an absurdly long nick).
    """
    if _fits(reply, max_bytes):
        return _encode(reply)
    shortened = _shorten(reply, max_bytes)
    if reply.mention is not None and not _fits(shortened, max_bytes):
        shortened = _shorten(replace(reply, mention=None), max_bytes)
    return _encode(shortened)


def _shorten(reply: Reply, max_bytes: int) -> Reply:
    if reply.msgtype == "feedCard":
        reply = _drop_feed_entries(reply, max_bytes)
    field = 0
    while not _fits(reply, max_bytes) and field < len(_cuttable(reply)):
        value, rebuild, marker = _cuttable(reply)[field]  # rebuilt each time: it closes over `reply`
        reply = _cut(value, rebuild, marker, max_bytes)
        field += 1
    return reply


def dumps(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _fits(reply: Reply, max_bytes: int) -> bool:
    return len(dumps(_encode(reply))) <= max_bytes


def _drop_feed_entries(reply: Reply, max_bytes: int) -> Reply:
    links = reply.links
    while len(links) > 1 and not _fits(replace(reply, links=links), max_bytes):
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


def _cut(value: str, rebuild: Callable[[str], Reply], marker: str, max_bytes: int) -> Reply:
    """The longest prefix of `value` (plus marker) that fits, found by bisection on the real
    encoded size, because JSON escaping makes bytes on the wire differ from characters."""
    if not value:
        return rebuild(value)
    low, high = 0, len(value)
    while low < high:
        middle = (low + high + 1) // 2
        if _fits(rebuild(value[:middle] + marker), max_bytes):
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
