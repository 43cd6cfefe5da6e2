"""A fake of api.dingtalk.com's robot OpenAPI on a local aiohttp app: the token endpoint, the group
send and the 1:1 batchSend, checked the way dingtalk-protocol.md ("OpenAPI sending (robot)") says
DingTalk checks them, with fault modes for the failures a client must survive.

It shares no code with responder: the msgKey table below is written from the protocol sheet.
Codes the sheet marks unverified are best guesses, so tests should assert on status classes and
on what the client does, not on these strings. Usage (any test):

    fake = FakeOpenApi()
    server = await aiohttp_server(fake.app)
    api_base = str(server.make_url(""))        # pass as OpenApiClient(api_base=...)
    fake.inject(Fault.QPS_LIMIT, times=1)      # the next send is refused; times=None: until cleared
    ...
    fake.sends[0].msg_param                    # every call is recorded, msgParam decoded
    fake.release()                             # at teardown: let hung requests finish
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from aiohttp import web

APP_KEY = "dingTESTAPPKEY"
APP_SECRET = "test-openapi-secret-not-real"
TOKEN_PATH = "/v1.0/oauth2/accessToken"
GROUP_PATH = "/v1.0/robot/groupMessages/send"
USER_PATH = "/v1.0/robot/oToMessages/batchSend"
TOKEN_HEADER = "x-acs-dingtalk-access-token"
MAX_MSG_PARAM_BYTES = 15_000
MAX_USER_IDS = 20
WAIT_S = 5.0


def _buttons(title: str, url: str, count: int) -> set[str]:
    return {f"{key}{n}" for n in range(1, count + 1) for key in (title, url)}


# msgKey -> the msgParam fields, from the sheet's section D (2..5: stacked buttons). Keys without
# fields are known to DingTalk and accepted unchecked (responder does not send them).
PARAM_FIELDS: dict[str, set[str] | None] = {
    "sampleText": {"content"},
    "sampleMarkdown": {"title", "text"},
    "sampleLink": {"text", "title", "picUrl", "messageUrl"},
    "sampleActionCard": {"title", "text", "singleTitle", "singleURL"},
    **{
        f"sampleActionCard{n}": {"title", "text"} | _buttons("actionTitle", "actionURL", n)
        for n in (2, 3, 4, 5)
    },
    "sampleActionCard6": {"title", "text"} | _buttons("buttonTitle", "buttonUrl", 2),
    "sampleImageMsg": None,
    "sampleAudio": None,
    "sampleFile": None,
    "sampleVideo": None,
}
GROUP_FIELDS = {"robotCode", "openConversationId", "msgKey", "msgParam", "coolAppCode", "token"}
USER_FIELDS = {"robotCode", "userIds", "msgKey", "msgParam"}


class Fault(StrEnum):
    EXPIRED_TOKEN = "expired_token"  # 400 InvalidAuthentication, DingTalk's answer to an expired token
    QPS_LIMIT = "qps_limit"  # 403 Forbidden.AccessDenied.QpsLimitForAppkeyAndApi
    QUOTA_EXHAUSTED = "quota_exhausted"  # 403 Forbidden.AccessDenied.ApiCountLimitForOrg
    SERVER_ERROR = "server_error"  # 500 unknownError
    GATEWAY_TIMEOUT = "gateway_timeout"  # 504 with an empty body, after DingTalk's 3 s
    HANG = "hang"  # read the request, then answer nothing until release()
    RESET = "reset"  # read the request, then drop the connection without answering


_FAULT_ANSWERS = {
    Fault.EXPIRED_TOKEN: (400, "InvalidAuthentication", "不合法的access_token"),
    Fault.QPS_LIMIT: (403, "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi", "qps limit"),
    Fault.QUOTA_EXHAUSTED: (403, "Forbidden.AccessDenied.ApiCountLimitForOrg", "本月api调用量已超过限制"),
    Fault.SERVER_ERROR: (500, "unknownError", "未知错误"),
}


class Rejected(Exception):
    """What DingTalk would answer to an invalid request."""

    def __init__(self, status: int, code: str, message: str = "") -> None:
        super().__init__(code)
        self.status, self.code, self.message = status, code, message


@dataclass
class Call:
    """One request as the fake saw it; `status` is None when it hung or was reset."""

    path: str
    headers: dict[str, str]
    body: Any
    msg_param: Any = None
    status: int | None = None
    code: str = ""  # DingTalk's error code in the answer, if any
    fault: Fault | None = None  # the injected fault this call met

    @property
    def token(self) -> str | None:
        return self.headers.get(TOKEN_HEADER)


@dataclass
class _Injected:
    fault: Fault
    remaining: int | None  # None: until cleared


@dataclass
class FakeOpenApi:
    app_key: str = APP_KEY
    app_secret: str = APP_SECRET
    robot_code: str = ""  # defaults to app_key, as for an internal app
    token_lifetime_s: int = 7200
    clock: Callable[[], float] = time.monotonic
    """What token expiry is measured on; share the client's fake clock to expire tokens."""
    invalid_staff_ids: set[str] = field(default_factory=set)
    flow_controlled_staff_ids: set[str] = field(default_factory=set)
    calls: list[Call] = field(default_factory=list)
    base: str = ""  # where it listens, once served (the `openapi` fixture in conftest sets it)

    def __post_init__(self) -> None:
        self.robot_code = self.robot_code or self.app_key
        self.tokens: dict[str, float] = {}  # issued token -> expiry on `clock`
        self._faults: dict[str, list[_Injected]] = {"token": [], "send": []}
        self._released = asyncio.Event()
        self._changed = asyncio.Condition()
        self._serial = itertools.count(1)
        self.app = web.Application()
        self.app.router.add_post(TOKEN_PATH, self._token)
        self.app.router.add_post(GROUP_PATH, self._send)
        self.app.router.add_post(USER_PATH, self._send)

    # What tests use

    @property
    def token_calls(self) -> list[Call]:
        return [c for c in self.calls if c.path == TOKEN_PATH]

    @property
    def sends(self) -> list[Call]:
        return [c for c in self.calls if c.path != TOKEN_PATH]

    @property
    def rejections(self) -> list[Call]:
        """Calls refused for being malformed (not for an injected fault)."""
        return [c for c in self.calls if c.code and c.fault is None]

    def inject(self, fault: Fault, times: int | None = None, endpoint: str = "send") -> None:
        """Apply `fault` to the next `times` calls to `endpoint` ("send" or "token"), or to all."""
        self._faults[endpoint].append(_Injected(fault, times))

    def clear_faults(self) -> None:
        for faults in self._faults.values():
            faults.clear()

    def expire_tokens(self) -> None:
        """Every token issued so far stops working, as after its lifetime."""
        self.tokens.clear()

    def release(self) -> None:
        self._released.set()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = WAIT_S) -> None:
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(predicate)

    # The endpoints

    async def _token(self, request: web.Request) -> web.StreamResponse:
        call = await self._record(request)
        fault = self._next_fault("token")
        if fault is not None:
            return await self._apply(fault, request, call)
        body = call.body
        if not isinstance(body, dict) or (body.get("appKey"), body.get("appSecret")) != (
            self.app_key,
            self.app_secret,
        ):
            rejected = Rejected(400, "invalidClientIdOrSecret", "无效的clientId或者clientSecret")
            return await self._answer(call, rejected)
        token = f"fake-token-{next(self._serial)}-{uuid.uuid4().hex[:8]}"
        self.tokens[token] = self.clock() + self.token_lifetime_s
        return await self._answer(call, {"accessToken": token, "expireIn": self.token_lifetime_s})

    async def _send(self, request: web.Request) -> web.StreamResponse:
        call = await self._record(request)
        try:
            self._check_token(call)
        except Rejected as rejected:
            return await self._answer(call, rejected)
        fault = self._next_fault("send")
        if fault is not None:
            return await self._apply(fault, request, call)
        try:
            self._check_send(call)
        except Rejected as rejected:
            return await self._answer(call, rejected)
        return await self._answer(call, self._accepted(call))

    # Checks, in the order DingTalk's gateway plausibly applies them

    def _check_token(self, call: Call) -> None:
        token = call.token
        if not token:
            raise Rejected(400, "AuthenticationFailed.MissingParameter", f"缺少参数：{TOKEN_HEADER}")
        expiry = self.tokens.get(token)
        if expiry is None or self.clock() >= expiry:
            raise Rejected(400, "InvalidAuthentication", "不合法的access_token")

    def _check_send(self, call: Call) -> None:
        body = call.body
        if not isinstance(body, dict):
            raise Rejected(400, "invalidParameter.param.invalid", "body must be a JSON object")
        allowed = GROUP_FIELDS if call.path == GROUP_PATH else USER_FIELDS
        unknown = sorted(set(body) - allowed)  # e.g. an `at` field, which the API does not have
        if unknown:
            raise Rejected(400, "invalidParameter.param.invalid", f"unknown fields {unknown}")
        if not body.get("robotCode"):
            raise Rejected(400, "invalidParameter.robotCode.empty")
        if body["robotCode"] != self.robot_code:
            raise Rejected(400, "invalidParameter.robotCode.auth")
        self._check_receiver(call.path, body)
        self._check_message(call, body)

    def _check_receiver(self, path: str, body: dict[str, Any]) -> None:
        if path == GROUP_PATH:
            if not isinstance(body.get("openConversationId"), str) or not body["openConversationId"]:
                raise Rejected(400, "invalid.openConversationId", "无效的openConversationId")
            return
        ids = body.get("userIds")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
            raise Rejected(400, "invalidParameter.userIds.empty")
        if len(ids) > MAX_USER_IDS:
            raise Rejected(400, "invalidParameter.userIds.overMax")

    def _check_message(self, call: Call, body: dict[str, Any]) -> None:
        key = body.get("msgKey")
        if not key:
            raise Rejected(400, "invalidParameter.msgKey.empty")
        if key not in PARAM_FIELDS:
            raise Rejected(400, "invalidParameter.msgKey.invalid", "Invalid msgKey")
        raw = body.get("msgParam")
        if not isinstance(raw, str):
            raise Rejected(400, "invalidParameter.msgParam.invalid", "msgParam must be a JSON string")
        if len(raw.encode("utf-8")) > MAX_MSG_PARAM_BYTES:
            raise Rejected(400, "invalidParameter.msgParam.tooLong")
        try:
            call.msg_param = json.loads(raw)
        except ValueError:
            raise Rejected(400, "invalidParameter.msgParam.invalid", "must be in JSON format") from None
        expected = PARAM_FIELDS[key]
        if not isinstance(call.msg_param, dict) or (expected is not None and set(call.msg_param) != expected):
            raise Rejected(400, "invalidParameter.msgParam.invalid", f"{key} takes {sorted(expected or ())}")

    def _accepted(self, call: Call) -> dict[str, Any]:
        answer: dict[str, Any] = {"processQueryKey": f"pqk-{next(self._serial)}"}
        if call.path == USER_PATH:
            ids = call.body["userIds"]
            answer["invalidStaffIdList"] = [i for i in ids if i in self.invalid_staff_ids]
            answer["flowControlledStaffIdList"] = [i for i in ids if i in self.flow_controlled_staff_ids]
        return answer

    # Plumbing

    async def _record(self, request: web.Request) -> Call:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        call = Call(request.path, dict(request.headers), body)
        self.calls.append(call)
        return call

    def _next_fault(self, endpoint: str) -> Fault | None:
        faults = self._faults[endpoint]
        if not faults:
            return None
        head = faults[0]
        if head.remaining is not None:
            head.remaining -= 1
            if head.remaining <= 0:
                faults.pop(0)
        return head.fault

    async def _apply(self, fault: Fault, request: web.Request, call: Call) -> web.StreamResponse:
        call.fault = fault
        if fault is Fault.HANG:
            await self._notify()
            await self._released.wait()
            return web.Response(status=504)
        if fault is Fault.RESET:
            await self._notify()
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=500)  # never reaches the client: the socket is gone
        if fault is Fault.GATEWAY_TIMEOUT:
            call.status = 504
            await self._notify()
            return web.Response(status=504)
        status, code, message = _FAULT_ANSWERS[fault]
        return await self._answer(call, Rejected(status, code, message))

    async def _answer(self, call: Call, answer: dict[str, Any] | Rejected) -> web.Response:
        if isinstance(answer, Rejected):
            call.status, call.code = answer.status, answer.code
            body = {"code": answer.code, "requestid": str(uuid.uuid4()).upper(), "message": answer.message}
            await self._notify()
            return web.json_response(body, status=answer.status)
        call.status = 200
        await self._notify()
        return web.json_response(answer)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()
