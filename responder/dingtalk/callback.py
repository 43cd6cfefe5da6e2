"""Callback bodies, sans I/O: the JSON DingTalk POSTs (or pushes over Stream) becomes a Message.

Camel-case wire names live in this package only; see shared/dingtalk-protocol.md section 2.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_JSON_DEPTH = 32
# Identifiers DingTalk sends are 20-60 bytes; these caps leave room and bound what a forged body
# can make every map, log line and metric hold.
MAX_ID_BYTES = 256
MAX_NAME_BYTES = 512  # nicks and group titles, up to ~170 CJK characters
MAX_URL_BYTES = 2048
MAX_QUOTED_CHARS = 4096  # the quoted text templates see
MAX_PARTS = 64
TYPED_TYPES = frozenset({"text", "richText"})  # the types whose `text` the sender typed


class MessageError(ValueError):
    """The callback body is not a DingTalk message we can read."""


@dataclass(frozen=True, slots=True)
class MessagePart:
    """One part of a rich-text message: `text`, or a `picture` (by its download code)."""

    kind: str
    text: str = ""
    download_code: str = ""


@dataclass(frozen=True, slots=True)
class Quoted:
    """The message a reply quotes (`text.repliedMsg`): its type, and its text where it has one
    (a card or a picture has none)."""

    msgtype: str
    text: str
    msg_id: str = ""
    sender_id: str = ""


@dataclass(frozen=True, slots=True)
class Message:
    """One incoming robot message, as the rest of responder sees it.

    `text` is what the sender typed: a text message's content, or a rich-text message's text
    parts joined; empty for pictures, files, voice. `spoken` is DingTalk's transcription of a
    voice message. `quoted` is never part of `text`: matching uses only what the sender typed.
    """

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
    parts: tuple[MessagePart, ...] = ()
    spoken: str = ""
    quoted: Quoted | None = None


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
    quoted: Quoted | None = None,
) -> Message:
    """A message shaped like DingTalk's with nowhere to reply to: for try, examples, the playground.

    `text` is what the sender says: typed for text, the text part (beside a picture) for
    richText, the transcription for audio; other types carry none.
    """
    parts = (
        (MessagePart("text", text), MessagePart("picture", download_code="offline"))
        if msgtype == "richText"
        else ()
    )
    return Message(
        msg_id=msg_id,
        msgtype=msgtype,
        text=text if msgtype in TYPED_TYPES else "",
        parts=parts,
        spoken=text if msgtype == "audio" else "",
        quoted=quoted,
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
    return message_from_dict(parse_json_object(body))


def parse_json_object(body: bytes) -> dict[str, Any]:
    """A JSON object from untrusted bytes: UTF-8, bounded nesting, no duplicate keys.
    Raises MessageError with a reason."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MessageError(f"body is not UTF-8 (byte {exc.start})") from None
    if _nesting_depth(text) > MAX_JSON_DEPTH:
        raise MessageError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        payload = _DECODER.decode(text)
    except DuplicateKeyError as exc:
        raise MessageError(f"duplicate key {exc.key!r} in the JSON body") from None
    except json.JSONDecodeError as exc:
        raise MessageError(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise MessageError("JSON nested too deeply") from None
    except ValueError as exc:  # e.g. an integer literal longer than Python converts (4300 digits)
        raise MessageError(f"malformed JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise MessageError("body must be a JSON object")
    return payload


def message_from_dict(payload: Mapping[str, Any]) -> Message:
    fields = _Fields(payload)
    msgtype = fields.string("msgtype", required=True, max_bytes=MAX_ID_BYTES)
    text, spoken = "", ""
    parts: tuple[MessagePart, ...] = ()
    quoted: Quoted | None = None
    if msgtype == "text":
        body = _Fields(fields.mapping("text"))
        text = body.string("content", required=True)
        quoted = _quoted(body) if body.boolean("isReplyMsg") else None
    elif msgtype == "richText":
        parts = _rich_text_parts(_Fields(fields.optional_mapping("content")).sequence("richText"))
        text = " ".join(part.text for part in parts if part.kind == "text")
    elif msgtype == "audio":
        spoken = _Fields(fields.optional_mapping("content")).string("recognition")
    conversation_type = fields.string("conversationType", required=True)
    if conversation_type not in ("1", "2"):
        raise MessageError('conversationType must be "1" (private) or "2" (group)')
    return Message(
        msg_id=fields.string("msgId", required=True, max_bytes=MAX_ID_BYTES),
        msgtype=msgtype,
        text=text,
        conversation_id=fields.string("conversationId", max_bytes=MAX_ID_BYTES),
        is_group=conversation_type == "2",
        conversation_title=fields.string("conversationTitle", max_bytes=MAX_NAME_BYTES),
        sender_nick=fields.string("senderNick", max_bytes=MAX_NAME_BYTES),
        sender_staff_id=fields.string("senderStaffId", max_bytes=MAX_ID_BYTES),
        sender_id=fields.string("senderId", max_bytes=MAX_ID_BYTES),
        is_admin=fields.boolean("isAdmin"),
        session_webhook=fields.string("sessionWebhook", max_bytes=MAX_URL_BYTES),
        session_webhook_expires_ms=fields.integer("sessionWebhookExpiredTime"),
        created_ms=fields.integer("createAt"),
        robot_code=fields.string("robotCode", max_bytes=MAX_ID_BYTES),
        parts=parts,
        spoken=spoken,
        quoted=quoted,
    )


def _rich_text_parts(items: list[Any]) -> tuple[MessagePart, ...]:
    """Text parts (with or without `type: text`) and pictures; other parts (an @, an emoji
    image) are kept by kind only. Anything that is not an object is skipped, not refused."""
    parts: list[MessagePart] = []
    for item in items[:MAX_PARTS]:
        if not isinstance(item, dict):
            continue
        part = _Fields(item)
        kind = part.string("type", max_bytes=MAX_ID_BYTES) or ("text" if "text" in item else "unknown")
        code = part.string("downloadCode", max_bytes=MAX_URL_BYTES)
        parts.append(MessagePart(kind, part.string("text") if kind == "text" else "", code))
    return tuple(parts)


def _quoted(body: _Fields) -> Quoted | None:
    """`text.repliedMsg`: `content` is plain text, `{"text": ...}`, rich text, or a card's data."""
    replied = body.optional_mapping("repliedMsg")
    if not replied:
        return None
    fields = _Fields(replied)
    content = replied.get("content")
    if isinstance(content, str):
        text = content
    elif isinstance(content, dict) and isinstance(content.get("text"), str):
        text = content["text"]
    elif isinstance(content, dict) and isinstance(content.get("richText"), list):
        text = " ".join(p.text for p in _rich_text_parts(content["richText"]) if p.kind == "text")
    else:
        text = ""  # a card, a picture: nothing to quote as text
    return Quoted(
        msgtype=fields.string("msgType", max_bytes=MAX_ID_BYTES),
        text=text[:MAX_QUOTED_CHARS],  # context for templates only: cut, never refused
        msg_id=fields.string("msgId", max_bytes=MAX_ID_BYTES),
        sender_id=fields.string("senderId", max_bytes=MAX_ID_BYTES),
    )


class _Fields:
    """Typed access to a JSON object; wrong types become MessageError naming the field."""

    def __init__(self, payload: Mapping[str, Any]) -> None:
        self._payload = payload

    def string(self, name: str, *, required: bool = False, max_bytes: int | None = None) -> str:
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
        if max_bytes is not None and len(value) * 4 > max_bytes and len(value.encode()) > max_bytes:
            raise MessageError(f"field {name!r} is longer than {max_bytes} bytes")
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

    def optional_mapping(self, name: str) -> Mapping[str, Any]:
        """The object, or empty when absent (DingTalk omits parts of non-text bodies freely)."""
        value = self._payload.get(name)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise MessageError(f"field {name!r} must be an object")
        return value

    def sequence(self, name: str) -> list[Any]:
        value = self._payload.get(name, [])
        if not isinstance(value, list):
            raise MessageError(f"field {name!r} must be a list")
        return value


class DuplicateKeyError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json.loads keeps the last of two equal keys silently; a body with two `msgId`s (or two
    sessionWebhooks) is ambiguous, so it is refused."""
    mapping = dict(pairs)
    if len(mapping) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKeyError(key)
            seen.add(key)
    return mapping


_DECODER = json.JSONDecoder(object_pairs_hook=_refuse_duplicate_keys)  # stateless: one for all
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
