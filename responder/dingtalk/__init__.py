"""The DingTalk wire protocol, sans I/O: nothing in this package opens a socket or knows a rule.

`signature` checks callback headers, `callback` turns bodies into Messages, `reply` encodes
Replies, `stream` is Stream mode's frame format, `openapi` the robot OpenAPI's msgKey/msgParam,
request bodies and answers. The names most callers need are re-exported here.
"""

from responder.dingtalk.callback import (
    Message,
    MessageError,
    MessagePart,
    Quoted,
    offline_message,
    parse_message,
)
from responder.dingtalk.reply import (
    MAX_REPLY_BYTES,
    TRUNCATION_MARKER,
    Button,
    FeedLink,
    Mention,
    Reply,
    encode_reply,
    mentioned_text,
)
from responder.dingtalk.signature import SignatureError, sign, verify_signature
from responder.jsontext import dumps

__all__ = [
    "MAX_REPLY_BYTES",
    "TRUNCATION_MARKER",
    "Button",
    "FeedLink",
    "Mention",
    "Message",
    "MessageError",
    "MessagePart",
    "Quoted",
    "Reply",
    "SignatureError",
    "dumps",
    "encode_reply",
    "mentioned_text",
    "offline_message",
    "parse_message",
    "sign",
    "verify_signature",
]
