"""The robot OpenAPI's wire format, sans I/O: `messages` maps a Reply to msgKey + msgParam (the
one table of field spellings) and says what cannot be sent; `api` builds the request bodies and
reads DingTalk's answers. Nothing here opens a socket, caches a token or decides a retry;
`responder.delivery.openapi` does those.

See shared/dingtalk-protocol.md, section "OpenAPI sending (robot)".
"""

from responder.dingtalk.openapi.api import (
    DEFAULT_TOKEN_LIFETIME_S,
    GROUP_SEND_PATH,
    MAX_USER_IDS,
    TOKEN_HEADER,
    TOKEN_PATH,
    USER_SEND_PATH,
    AccessToken,
    AnswerError,
    ApiError,
    BatchSendResult,
    ErrorKind,
    classify_error,
    group_send_body,
    parse_batch_send_answer,
    parse_token_answer,
    token_request_body,
    user_send_body,
)
from responder.dingtalk.openapi.messages import (
    MAX_MSG_PARAM_BYTES,
    MAX_STACKED_BUTTONS,
    MSG_PARAMS,
    OpenApiMessage,
    Unsendable,
    encode_message,
    msg_key,
    msg_param,
    reply_shape,
    sendable_reason,
)

__all__ = [
    "DEFAULT_TOKEN_LIFETIME_S",
    "GROUP_SEND_PATH",
    "MAX_MSG_PARAM_BYTES",
    "MAX_STACKED_BUTTONS",
    "MAX_USER_IDS",
    "MSG_PARAMS",
    "TOKEN_HEADER",
    "TOKEN_PATH",
    "USER_SEND_PATH",
    "AccessToken",
    "AnswerError",
    "ApiError",
    "BatchSendResult",
    "ErrorKind",
    "OpenApiMessage",
    "Unsendable",
    "classify_error",
    "encode_message",
    "group_send_body",
    "msg_key",
    "msg_param",
    "parse_batch_send_answer",
    "parse_token_answer",
    "reply_shape",
    "sendable_reason",
    "token_request_body",
    "user_send_body",
]
