"""The DingTalk Stream wire protocol, sans I/O: registration JSON, incoming frames, ACK frames.

No sockets here; see shared/dingtalk-protocol.md section 6 for the facts this module encodes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from yarl import URL

BOT_TOPIC = "/v1.0/im/bot/messages/get"
REGISTER_PATH = "/v1.0/gateway/connections/open"
CALLBACK = "CALLBACK"
SYSTEM = "SYSTEM"
EVENT = "EVENT"
PING = "ping"
DISCONNECT = "disconnect"

OK = 200
NOT_FOUND = 404
# For bot messages the gateway ignores `data`; this is what every official SDK sends.
BOT_ACK_DATA = '{"response": null}'
EVENT_ACK_DATA = '{"status": "SUCCESS", "message": "ignored"}'


class FrameError(ValueError):
    """A text frame from the gateway is not a Stream frame we can read."""


class RegistrationError(Exception):
    """`connections/open` did not give us an endpoint and a ticket."""

    def __init__(self, status: int | str) -> None:
        super().__init__(f"registration failed status={status}")
        self.status = status


@dataclass(frozen=True, slots=True)
class Frame:
    """One gateway → client frame. `data` stays the raw JSON string the gateway sent."""

    type: str
    topic: str
    message_id: str
    data: str


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where to connect. The ticket is single-use and secret-like, so it stays out of repr."""

    url: str
    ticket: str = field(repr=False)

    def connect_url(self) -> URL:
        return URL(self.url).update_query(ticket=self.ticket)


def registration_body(
    client_id: str, client_secret: str, ua: str, local_ip: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "clientId": client_id,
        "clientSecret": client_secret,
        "subscriptions": [{"type": CALLBACK, "topic": BOT_TOPIC}],
        "ua": ua,
    }
    if local_ip:
        body["localIp"] = local_ip
    return body


def parse_registration(payload: object) -> Endpoint:
    """The `connections/open` answer; raises RegistrationError("bad_body") if it is not usable."""
    if not isinstance(payload, Mapping):
        raise RegistrationError("bad_body")
    url, ticket = payload.get("endpoint"), payload.get("ticket")
    if not (isinstance(url, str) and url and isinstance(ticket, str) and ticket):
        raise RegistrationError("bad_body")
    if URL(url).scheme not in ("ws", "wss"):
        raise RegistrationError("bad_body")
    return Endpoint(url=url, ticket=ticket)


def parse_frame(text: str) -> Frame:
    """Decode a text frame; raises FrameError naming what is wrong."""
    try:
        payload = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise FrameError("malformed JSON") from None
    if not isinstance(payload, dict):
        raise FrameError("frame must be a JSON object")
    headers = payload.get("headers")
    if not isinstance(headers, dict):
        raise FrameError("missing headers")
    message_id = headers.get("messageId")
    if not isinstance(message_id, str) or not message_id:
        raise FrameError("missing headers.messageId")
    return Frame(
        type=_string(payload, "type"),
        topic=_string(headers, "topic"),
        message_id=message_id,
        data=_string(payload, "data"),
    )


def _string(mapping: Mapping[str, Any], name: str) -> str:
    value = mapping.get(name, "")
    if not isinstance(value, str):
        raise FrameError(f"{name} must be a string")
    return value


def encode_ack(message_id: str, *, code: int = OK, data: str = BOT_ACK_DATA) -> str:
    """One ACK frame; `data` is a JSON string inside the JSON, as the gateway expects."""
    return json.dumps(
        {
            "code": code,
            "headers": {"contentType": "application/json", "messageId": message_id},
            "message": "OK" if code == OK else "not supported",
            "data": data,
        },
        ensure_ascii=False,
    )


def disconnect_reason(data: str) -> str:
    """The `reason` of a SYSTEM disconnect frame, cut short for logging."""
    try:
        reason = json.loads(data).get("reason", "")
    except (ValueError, AttributeError):
        return "unknown"
    return str(reason)[:200] if reason else "unknown"
