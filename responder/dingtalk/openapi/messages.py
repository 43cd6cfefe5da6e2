"""Which msgKey and msgParam carry a Reply through the robot OpenAPI: the one table of field
spellings, what cannot be carried (`Unsendable`, `sendable_reason`), the mention as plain text
and the 15,000-byte cap. Sans I/O; request bodies and answers are in `api`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from types import MappingProxyType

from responder.dingtalk.reply import MENTIONABLE, Button, Reply, fit_reply

MAX_MSG_PARAM_BYTES = 15_000  # UTF-8 bytes of the msgParam string itself [HD-GM]
MAX_STACKED_BUTTONS = 5


class Unsendable(Exception):
    """The OpenAPI cannot carry this reply; `reason` says why in words fit for a load error."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


Getter = Callable[[Reply], str]


def _text(reply: Reply) -> str:
    """The text with the mention written out: the OpenAPI has no `at` field and does not @ anyone
    [HD-GM], so the mention is plain text, by nick where there is one (more readable than an id)."""
    mention = reply.mention
    name = (mention.nick or mention.staff_id) if mention is not None else ""
    if not name or reply.msgtype not in MENTIONABLE:
        return reply.text
    if reply.msgtype == "text":
        return f"@{name} {reply.text}"
    return f"{reply.text}\n\n@{name}"


def _title(reply: Reply) -> str:
    return reply.title


def _url(reply: Reply) -> str:
    return reply.url


def _picture(reply: Reply) -> str:
    return reply.picture


def _buttons(reply: Reply) -> tuple[Button, ...]:
    return (reply.single_button,) if reply.single_button is not None else reply.buttons


def _button_title(reply: Reply, number: int) -> str:
    return _buttons(reply)[number - 1].title


def _button_url(reply: Reply, number: int) -> str:
    return _buttons(reply)[number - 1].url


def _numbered(title_key: str, url_key: str, count: int) -> tuple[tuple[str, Getter], ...]:
    """`{title_key}1`, `{url_key}1` … `{title_key}N`, `{url_key}N` for buttons 1..N."""
    return tuple(
        pair
        for n in range(1, count + 1)
        for pair in (
            (f"{title_key}{n}", partial(_button_title, number=n)),
            (f"{url_key}{n}", partial(_button_url, number=n)),
        )
    )


_CARD = (("title", _title), ("text", _text))

# THE table: msgKey -> the msgParam fields in the order they are written and what fills each.
# Every OpenAPI field spelling lives here and nowhere else.
#
# Verified on the official page [HD-MT]: sampleText, sampleMarkdown, and `text`, `title` of
# sampleLink. The rows marked UNVERIFIED rest on the protocol sheet's transcription [FS3P] and on
# third-party code that agrees with it. Checked 2026 against official code, which cannot settle
# them: the generated SDK types msgParam as an opaque string (aliyun/dingtalk-sdk
# dingtalk/python/alibabacloud_dingtalk/robot_1_0/models.py `OrgGroupSendRequest`,
# `BatchSendOTORequest`; dingtalk/java/.../dingtalkrobot_1_0/models/OrgGroupSendRequest.java),
# and no open-dingtalk repository uses a msgKey (developerpedia @211653f,
# dingtalk-stream-sdk-python @8d8bb1c, -java @4ccaa3d, -go @d8d6e1f, -nodejs @d9d346b,
# dingtalk-tutorial-python/-java/-go). Agreeing third-party code:
#   sampleLink         jhj12064/jhj_cloud jhj_waibu/.../dingtalk/model/bo/RobotLinkMsgBodyBO.java
#   sampleActionCard   jhj12064/jhj_cloud .../RobotSampleActionCard.java;
#                      hp-coder/dingtalk-module src/main/java/com/hp/dingtalk/pojo/message/bot/
#                      DingActionCardMsg.java (`singleURL` via @SerializedName)
#   sampleActionCard2  jhj12064/jhj_cloud .../RobotSampleActionCard2.java (actionTitle1, actionURL1,
#     ..5              …); hp-coder/dingtalk-module DingActionCardMsg.java has actionURL1..5 but
#                      `actionTitle` (no digit) for button 1, which the sheet lists as a bug
#   sampleActionCard6  hp-coder/dingtalk-module DingActionCardMsg.java (buttonTitle1, buttonUrl1,
#                      buttonTitle2, buttonUrl2); jhj12064/jhj_cloud
#                      .../RobotOfficialActionCardMsg1.java has the same four for horizontal buttons
MSG_PARAMS: Mapping[str, tuple[tuple[str, Getter], ...]] = MappingProxyType(
    {
        "sampleText": (("content", _text),),
        "sampleMarkdown": (("title", _title), ("text", _text)),
        # UNVERIFIED after `text`, `title`:
        "sampleLink": (("text", _text), ("title", _title), ("picUrl", _picture), ("messageUrl", _url)),
        # UNVERIFIED (all rows below):
        "sampleActionCard": (
            *_CARD,
            ("singleTitle", partial(_button_title, number=1)),
            ("singleURL", partial(_button_url, number=1)),
        ),
        "sampleActionCard2": _CARD + _numbered("actionTitle", "actionURL", 2),  # stacked buttons
        "sampleActionCard3": _CARD + _numbered("actionTitle", "actionURL", 3),
        "sampleActionCard4": _CARD + _numbered("actionTitle", "actionURL", 4),
        "sampleActionCard5": _CARD + _numbered("actionTitle", "actionURL", 5),
        "sampleActionCard6": _CARD + _numbered("buttonTitle", "buttonUrl", 2),  # side by side; `Url`
    }
)

_KEY_BY_MSGTYPE = {"text": "sampleText", "markdown": "sampleMarkdown", "link": "sampleLink"}
# Orientation is chosen by the key: there is no orientation field and no sampleActionCard1.
_STACKED_KEYS = {
    1: "sampleActionCard",
    2: "sampleActionCard2",
    3: "sampleActionCard3",
    4: "sampleActionCard4",
    5: "sampleActionCard5",
}
_SIDE_BY_SIDE_KEYS = {2: "sampleActionCard6"}


def _key_for(msgtype: str, buttons: int, horizontal: bool) -> str | None:
    if msgtype != "actionCard":
        return _KEY_BY_MSGTYPE.get(msgtype)
    return (_SIDE_BY_SIDE_KEYS if horizontal else _STACKED_KEYS).get(buttons)


def sendable_reason(msgtype: str, buttons: int = 0, horizontal: bool = False) -> str | None:
    """None if the OpenAPI can carry a reply of this shape, else why not.

    Meant for load time (schedules, pushes): the shape is known from the template. `buttons` is
    how many buttons an actionCard has; a single `button:` counts as 1 with horizontal=False,
    because the orientation lays out several buttons only.
    """
    if _key_for(msgtype, buttons, horizontal) is not None:
        return None
    if msgtype == "feedCard":
        return "a feedCard cannot be sent through the OpenAPI (DingTalk has no msgKey for it)"
    if msgtype != "actionCard":
        return f"msgtype {msgtype!r} has no OpenAPI msgKey"
    if buttons < 1:
        return "an actionCard needs at least one button"
    if horizontal:
        return f"the OpenAPI puts buttons side by side only for exactly 2, not {buttons}"
    return f"the OpenAPI stacks at most {MAX_STACKED_BUTTONS} buttons, not {buttons}"


def reply_shape(reply: Reply) -> tuple[str, int, bool]:
    """(msgtype, buttons, horizontal) of a rendered reply, as `sendable_reason` takes them."""
    if reply.single_button is not None:
        return reply.msgtype, 1, False
    return reply.msgtype, len(reply.buttons), reply.horizontal_buttons


def msg_key(reply: Reply) -> str:
    """The msgKey that carries `reply`; raises Unsendable naming why there is none."""
    shape = reply_shape(reply)
    key = _key_for(*shape)
    if key is None:
        raise Unsendable(sendable_reason(*shape) or "unsendable")
    return key


@dataclass(frozen=True, slots=True)
class OpenApiMessage:
    """What the OpenAPI sends: a template key and its parameters as JSON text."""

    msg_key: str
    msg_param: str


def msg_param(key: str, reply: Reply) -> str:
    """The msgParam JSON text for `reply` under `key`, with no size check."""
    params = {name: get(reply) for name, get in MSG_PARAMS[key]}
    return json.dumps(params, ensure_ascii=False, separators=(",", ":"))


def _param_fits(reply: Reply, key: str, max_bytes: int) -> bool:
    return len(msg_param(key, reply).encode("utf-8")) <= max_bytes


def encode_message(reply: Reply, max_bytes: int = MAX_MSG_PARAM_BYTES) -> OpenApiMessage:
    """`reply` as msgKey + msgParam, msgParam cut to `max_bytes` UTF-8 bytes like every reply
    (text, then title, then button titles, with a visible marker; never a URL).

    Raises Unsendable for a shape the API cannot carry, and for a reply whose URLs alone do not
    fit: DingTalk would refuse it, and a refusal is a metered call.
    """
    key = msg_key(reply)
    fits = partial(_param_fits, key=key, max_bytes=max_bytes)
    fitted = fit_reply(reply, fits)
    if not fits(fitted):
        raise Unsendable(f"the reply does not fit in {max_bytes} bytes even with its text cut")
    return OpenApiMessage(key, msg_param(key, fitted))
