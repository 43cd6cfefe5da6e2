"""The robot OpenAPI's requests and answers, sans I/O: the paths, the bodies of the group and
1:1 sends and of the token endpoint, and what DingTalk's answers mean (`classify_error`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from responder.dingtalk.openapi.messages import OpenApiMessage

TOKEN_PATH = "/v1.0/oauth2/accessToken"
GROUP_SEND_PATH = "/v1.0/robot/groupMessages/send"
USER_SEND_PATH = "/v1.0/robot/oToMessages/batchSend"  # capital T here; 1:1 recall spells it `oto`
TOKEN_HEADER = "x-acs-dingtalk-access-token"
MAX_USER_IDS = 20  # per batchSend call [HD-OTO]; one error text says 100, stay at 20
# When the token answer has no usable expireIn; the documented lifetime is 7200 s.
DEFAULT_TOKEN_LIFETIME_S = 7200.0


class AnswerError(ValueError):
    """An answer that is not what the API documents. Never carries the body (it may hold a token)."""


def group_send_body(robot_code: str, conversation_id: str, message: OpenApiMessage) -> dict[str, Any]:
    """The body of POST /v1.0/robot/groupMessages/send; `conversation_id` is the callback's."""
    return {
        "robotCode": robot_code,
        "openConversationId": conversation_id,
        "msgKey": message.msg_key,
        "msgParam": message.msg_param,
    }


def user_send_body(robot_code: str, staff_ids: Sequence[str], message: OpenApiMessage) -> dict[str, Any]:
    """The body of POST /v1.0/robot/oToMessages/batchSend. Raises ValueError for 0 or > 20 ids."""
    if not 1 <= len(staff_ids) <= MAX_USER_IDS:
        raise ValueError(f"batchSend takes 1 to {MAX_USER_IDS} userIds, not {len(staff_ids)}")
    return {
        "robotCode": robot_code,
        "userIds": list(staff_ids),
        "msgKey": message.msg_key,
        "msgParam": message.msg_param,
    }


def token_request_body(app_key: str, app_secret: str) -> dict[str, str]:
    """The body of POST /v1.0/oauth2/accessToken (no auth header; not metered)."""
    return {"appKey": app_key, "appSecret": app_secret}


@dataclass(frozen=True, slots=True)
class AccessToken:
    value: str = field(repr=False)
    expires_in_s: float


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        answer = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return answer if isinstance(answer, dict) else None


def parse_token_answer(raw: bytes) -> AccessToken:
    """The token in a 200 answer `{"accessToken", "expireIn"}`; raises AnswerError otherwise.

    A missing or non-positive expireIn means the documented 7200 s.
    """
    answer = _json_object(raw)
    token = answer.get("accessToken") if answer is not None else None
    if not isinstance(token, str) or not token:
        raise AnswerError("token answer without an accessToken")
    assert answer is not None
    expire_in = answer.get("expireIn")
    if isinstance(expire_in, bool) or not isinstance(expire_in, int | float) or expire_in <= 0:
        return AccessToken(token, DEFAULT_TOKEN_LIFETIME_S)
    return AccessToken(token, float(expire_in))


class ErrorKind(StrEnum):
    TOKEN_INVALID = "token_invalid"  # drop the token, fetch a new one, retry once
    QPS_LIMITED = "qps_limited"  # refused for the next second or so: back off
    QUOTA_EXHAUSTED = "quota_exhausted"  # the org's monthly calls are used up: back off
    PERMISSION = "permission"  # the app lacks qyapi_robot_sendmsg: final
    BAD_REQUEST = "bad_request"  # any other 4xx: final, retrying sends the same mistake
    SERVER_ERROR = "server_error"  # 5xx (504 after DingTalk's 3 s): the message may have gone out

    @property
    def definite(self) -> bool:
        """True when DingTalk certainly did not send the message."""
        return self is not ErrorKind.SERVER_ERROR


# By the last dotted segment of `code`, so `Forbidden.AccessDenied.X` and a bare `X` agree.
_KIND_BY_CODE = {
    "InvalidAuthentication": ErrorKind.TOKEN_INVALID,
    "QpsLimitForAppkeyAndApi": ErrorKind.QPS_LIMITED,
    "QpsLimitForApi": ErrorKind.QPS_LIMITED,
    "ApiCountLimitForOrg": ErrorKind.QUOTA_EXHAUSTED,
    "AccessTokenPermissionDenied": ErrorKind.PERMISSION,
}


@dataclass(frozen=True, slots=True)
class ApiError:
    """A non-2xx answer: `code` and `request_id` are DingTalk's, empty when the body had none."""

    status: int
    kind: ErrorKind
    code: str = ""
    request_id: str = ""


def classify_error(status: int, raw: bytes) -> ApiError:
    """What a non-2xx answer `{"code", "message", "requestid"}` means for the caller."""
    answer = _json_object(raw) or {}
    code = answer.get("code")
    code = code if isinstance(code, str) else ""
    request_id = answer.get("requestid")
    request_id = request_id if isinstance(request_id, str) else ""
    return ApiError(status, _kind(status, code), code, request_id)


def _kind(status: int, code: str) -> ErrorKind:
    if status >= 500:
        return ErrorKind.SERVER_ERROR
    if status == 401:  # unobserved from DingTalk, but clients treat it as an expired token
        return ErrorKind.TOKEN_INVALID
    by_code = _KIND_BY_CODE.get(code.rsplit(".", 1)[-1])
    if by_code is not None:
        return by_code
    return ErrorKind.QPS_LIMITED if status == 429 else ErrorKind.BAD_REQUEST


@dataclass(frozen=True, slots=True)
class BatchSendResult:
    """A 200 from batchSend, which can still mean "not delivered" for some users."""

    process_query_key: str = ""
    invalid_staff_ids: tuple[str, ...] = ()
    flow_controlled_staff_ids: tuple[str, ...] = ()  # throttled per user: "retry later"


def parse_batch_send_answer(raw: bytes) -> BatchSendResult:
    """Raises AnswerError if the 200 body is not a JSON object; missing lists are empty."""
    answer = _json_object(raw)
    if answer is None:
        raise AnswerError("batchSend answer is not a JSON object")
    key = answer.get("processQueryKey")
    return BatchSendResult(
        key if isinstance(key, str) else "",
        _string_list(answer.get("invalidStaffIdList")),
        _string_list(answer.get("flowControlledStaffIdList")),
    )


def _string_list(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(item for item in value if isinstance(item, str))
