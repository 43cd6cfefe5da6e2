"""OpenApiClient: sends replies through DingTalk's robot OpenAPI, to groups and 1:1 chats, on
one shared ClientSession. It owns the access token (cached, fetched once for all waiters,
fetched again once on an auth error), the backoff after QPS and quota refusals and the monthly
call cap. Every send ends in a Delivery, never an exception. Choosing this channel, queueing
and retrying a failed send are the caller's business; the wire format is `dingtalk.openapi`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import aiohttp

from responder.delivery.openapi_http import Answer, post_json
from responder.delivery.openapi_limits import MonthlyCallCap, RefusalBackoff
from responder.delivery.openapi_token import TokenCache
from responder.delivery.sinks import Delivery
from responder.dingtalk import Reply
from responder.dingtalk import openapi as wire
from responder.dingtalk.openapi import AccessToken, AnswerError, ErrorKind
from responder.metrics import Metrics

log = logging.getLogger(__name__)

API_TOKEN = "token"
API_GROUP = "group_send"
API_USER = "user_send"
_PATHS = {API_GROUP: wire.GROUP_SEND_PATH, API_USER: wire.USER_SEND_PATH}
_REFUSALS = (ErrorKind.QPS_LIMITED, ErrorKind.QUOTA_EXHAUSTED)
BodyBuilder = Callable[[wire.OpenApiMessage], dict[str, Any]]


def _one_user_body(robot_code: str, staff_id: str, message: wire.OpenApiMessage) -> dict[str, Any]:
    return wire.user_send_body(robot_code, [staff_id], message)


class OpenApiClient:
    """Sends to groups (`send_to_group`) and to one person (`send_to_user`) as the app's robot."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        api_base: str,
        client_id: str,
        client_secret: str,
        robot_code: str | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        monthly_call_cap: int | None = None,
        timeout_s: float = 10.0,
        connect_timeout_s: float = 5.0,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 60.0,
    ) -> None:
        self._session = session
        self._base = api_base.rstrip("/")
        self._client_id = client_id
        self._client_secret = client_secret
        self._robot_code = robot_code or client_id  # an internal app's robot code is its AppKey
        self._metrics = metrics if metrics is not None else Metrics()
        # The connect phase gets its own, shorter timeout because aiohttp then raises
        # ConnectionTimeoutError, which (unlike the total timeout) proves nothing was sent.
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, connect=min(connect_timeout_s, timeout_s))
        self._tokens = TokenCache(self._fetch_token, monotonic)
        self._backoff = RefusalBackoff(backoff_initial_s, backoff_max_s, monotonic)
        self._calls = MonthlyCallCap(monthly_call_cap, clock, self._metrics.openapi_calls_this_month.set)

    def __repr__(self) -> str:
        return f"OpenApiClient(api_base={self._base!r}, client_id={self._client_id!r})"

    async def send_to_group(self, conversation_id: str, reply: Reply) -> Delivery:
        """Send `reply` to the group `conversation_id` (the callback's conversationId)."""
        build = partial(wire.group_send_body, self._robot_code, conversation_id)
        return await self._send(API_GROUP, reply, build)

    async def send_to_user(self, staff_id: str, reply: Reply) -> Delivery:
        """Send `reply` in the robot's 1:1 chat with `staff_id` (the callback's senderStaffId)."""
        build = partial(_one_user_body, self._robot_code, staff_id)
        return await self._send(API_USER, reply, build, staff_id)

    async def _send(self, api: str, reply: Reply, build: BodyBuilder, staff_id: str = "") -> Delivery:
        try:
            body = build(wire.encode_message(reply))
        except wire.Unsendable as exc:
            log.warning("openapi_unsendable api=%s reason=%s", api, exc.reason)
            return Delivery(False, "openapi_unsendable", definite=True)
        try:
            return await self._call(api, _PATHS[api], body, staff_id)
        except Exception:
            # A bug, not a network condition: the caller still gets a result, not a traceback.
            log.exception("openapi_send_crashed api=%s", api)
            return Delivery(False, "openapi_internal_error")

    async def _call(self, api: str, path: str, body: Mapping[str, Any], staff_id: str) -> Delivery:
        """One metered call, and one more with a fresh token if DingTalk rejects the token."""
        delivery, rejected_token = await self._attempt(api, path, body, staff_id)
        if rejected_token is None:
            return delivery
        self._tokens.drop(rejected_token)
        delivery, rejected_token = await self._attempt(api, path, body, staff_id)
        if rejected_token is not None:
            self._tokens.drop(rejected_token)  # so the next send starts with a fresh one
        return delivery

    async def _attempt(
        self, api: str, path: str, body: Mapping[str, Any], staff_id: str
    ) -> tuple[Delivery, str | None]:
        refusal = self._local_refusal()
        if refusal is not None:
            return refusal, None
        token = await self._tokens.get()
        if token is None:
            return Delivery(False, "openapi_token_failed", definite=True), None
        if not self._calls.reserve():  # checked again: concurrent sends may have used it up
            return self._refuse_here("call_cap"), None
        answer = await post_json(self._session, self._base + path, body, self._timeout, token)
        self._metrics.openapi_calls.labels(api, answer.result).inc()
        error = answer.error
        if error is not None and error.kind is ErrorKind.TOKEN_INVALID:
            return self._failed(api, answer, error), token
        return self._settle(api, answer, staff_id), None

    def _local_refusal(self) -> Delivery | None:
        if self._calls.reached:
            return self._refuse_here("call_cap")
        if self._backoff.active:
            return self._refuse_here("backoff")
        return None

    def _refuse_here(self, reason: str) -> Delivery:
        self._metrics.openapi_refusals.labels(reason).inc()
        return Delivery(False, f"openapi_{reason}", definite=True)

    def _settle(self, api: str, answer: Answer, staff_id: str) -> Delivery:
        if answer.failure:
            log.warning("openapi_send_failed api=%s reason=%s", api, answer.failure)
            return Delivery(False, f"openapi_{answer.failure}", definite=answer.definite)
        error = answer.error
        if error is not None:
            return self._failed(api, answer, error)
        self._backoff.succeeded()
        return self._per_user(answer.body, staff_id) if api == API_USER else Delivery(True)

    def _failed(self, api: str, answer: Answer, error: wire.ApiError) -> Delivery:
        if error.kind in _REFUSALS:
            wait_s = self._backoff.refused()
            self._metrics.openapi_refusals.labels(error.kind.value).inc()
            log.warning("openapi_refused api=%s kind=%s backoff_s=%.1f", api, error.kind, wait_s)
        log.warning(
            "openapi_send_failed api=%s status=%d code=%s requestid=%s",
            api,
            answer.status,
            error.code,
            error.request_id,
        )
        return Delivery(False, f"openapi_{error.kind}", definite=error.kind.definite)

    def _per_user(self, raw: bytes, staff_id: str) -> Delivery:
        """batchSend answers 200 even for a user it did not deliver to."""
        try:
            result = wire.parse_batch_send_answer(raw)
        except AnswerError:
            return Delivery(True)  # 200 means accepted; the lists are only a refinement
        if staff_id in result.invalid_staff_ids:
            return Delivery(False, "openapi_invalid_user", definite=True)
        if staff_id in result.flow_controlled_staff_ids:
            self._metrics.openapi_refusals.labels("flow_controlled").inc()
            return Delivery(False, "openapi_flow_controlled", definite=True)
        return Delivery(True)

    async def _fetch_token(self) -> AccessToken | None:
        body = wire.token_request_body(self._client_id, self._client_secret)
        answer = await post_json(self._session, self._base + wire.TOKEN_PATH, body, self._timeout)
        if answer.accepted:
            try:
                token = wire.parse_token_answer(answer.body)
            except AnswerError:
                answer = Answer(answer.status, failure="bad_answer")
            else:
                self._metrics.openapi_calls.labels(API_TOKEN, "ok").inc()
                return token
        self._metrics.openapi_calls.labels(API_TOKEN, answer.result).inc()
        error = answer.error
        log.warning(
            "openapi_token_failed status=%d reason=%s code=%s",
            answer.status,
            answer.result,
            error.code if error is not None else "",
        )
        return None
