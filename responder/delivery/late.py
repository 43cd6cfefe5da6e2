"""The OpenAPI as a sink: where a reply goes when its sessionWebhook has expired or is gone, and
where schedules and pushes always speak. Sends as the app's robot, to the message's group
(`openConversationId` = its conversationId) or, in a 1:1 chat, to the sender's staff id.

What differs from the sessionWebhook lives in the client's encoder (dingtalk.openapi): no
@-mention (the sender's name is written in the text instead) and 15,000 bytes.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from functools import partial

from responder.delivery.budget import DEFAULT_MAX_WAIT_S
from responder.delivery.openapi import OpenApiClient
from responder.delivery.sinks import Delivery, Route, Undeliverable
from responder.dingtalk import Message, Reply
from responder.rules.model import RuleSet

VIA = "openapi"
Sender = Callable[[Reply], Awaitable[Delivery]]


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

    def to_group(self, conversation_id: str) -> Route:
        return self._route(partial(self._client.send_to_group, conversation_id))

    def to_user(self, staff_id: str) -> Route:
        return self._route(partial(self._client.send_to_user, staff_id))

    def _route(self, send: Sender) -> Route:
        async def labelled(reply: Reply) -> Delivery:
            return replace(await send(reply), via=VIA)

        # No expiry: a late reply may wait for DingTalk's budget as long as any reply may.
        return Route(time.monotonic() + self._max_wait_s, labelled, VIA)
