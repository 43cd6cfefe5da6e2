"""The OpenAPI as a sink: where a reply goes when its sessionWebhook has expired or is gone, and
where schedules and pushes always speak. Sends as the app's robot, to the message's group
(`openConversationId` = its conversationId) or, in a 1:1 chat, to the sender's staff id.

What differs from the sessionWebhook lives in the client's encoder (dingtalk.openapi): no
@-mention (the sender's name is written in the text instead) and 15,000 bytes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from functools import partial
from typing import Any, Protocol

import aiohttp

from responder.delivery.budget import DEFAULT_MAX_WAIT_S
from responder.delivery.openapi import OpenApiClient
from responder.delivery.sinks import Delivery, Route, Undeliverable
from responder.dingtalk import Message, Reply
from responder.dingtalk.openapi import Unsendable, encode_message
from responder.metrics import Metrics
from responder.rules.model import RuleSet, Target
from responder.settings import Connection

VIA = "openapi"
Sender = Callable[[Reply], Awaitable[Delivery]]


class Speaking(Protocol):
    """Where schedules and pushes speak: the OpenAPI, or (offline) a recording of it."""

    @property
    def name(self) -> str: ...

    def to(self, target: Target) -> Route: ...


class RecordingSink:
    """Offline (`responder try --push`, examples): what the OpenAPI would be sent, per target."""

    name = "offline"

    def __init__(self) -> None:
        self.sent: list[tuple[Target, dict[str, Any]]] = []

    def to(self, target: Target) -> Route:
        return Route(time.monotonic(), partial(self._keep, target), self.name)

    async def _keep(self, target: Target, reply: Reply) -> Delivery:
        try:
            message = encode_message(reply)
        except Unsendable as exc:
            return Delivery(False, f"openapi_unsendable: {exc}", definite=True)
        self.sent.append((target, {"msgKey": message.msg_key, "msgParam": json.loads(message.msg_param)}))
        return Delivery(True)


def openapi_sink(
    connection: Connection, session: aiohttp.ClientSession, metrics: Metrics
) -> OpenApiSink | None:
    """The OpenAPI sink, when the credentials are set (restart-only, like the client)."""
    if not connection.speaks_openapi:
        return None
    client = OpenApiClient(
        session,
        api_base=connection.api_base,
        client_id=connection.client_id,
        client_secret=connection.client_secret,
        robot_code=connection.robot_code or None,
        metrics=metrics,
        monthly_call_cap=connection.openapi_monthly_calls,
    )
    return OpenApiSink(client)


class OpenApiSink:
    name = VIA

    def __init__(self, client: OpenApiClient, max_wait_s: float = DEFAULT_MAX_WAIT_S) -> None:
        self._client = client
        self._max_wait_s = max_wait_s

    def route(self, message: Message, ruleset: RuleSet) -> Route:
        if message.is_group:
            return self.to_group(message.conversation_id)
        if message.sender_staff_id:
            return self.to_user(message.sender_staff_id)
        raise Undeliverable("openapi_no_recipient")  # a 1:1 chat with someone outside the org

    def to(self, target: Target) -> Route:
        """Where a schedule or push speaks: a group, or one person's 1:1 chat."""
        return self.to_group(target.id) if target.kind == "conversation" else self.to_user(target.id)

    def to_group(self, conversation_id: str) -> Route:
        return self._route(partial(self._client.send_to_group, conversation_id))

    def to_user(self, staff_id: str) -> Route:
        return self._route(partial(self._client.send_to_user, staff_id))

    def _route(self, send: Sender) -> Route:
        async def labelled(reply: Reply) -> Delivery:
            return replace(await send(reply), via=VIA)

        # No expiry: a late reply may wait for DingTalk's budget as long as any reply may.
        return Route(time.monotonic() + self._max_wait_s, labelled, VIA)
