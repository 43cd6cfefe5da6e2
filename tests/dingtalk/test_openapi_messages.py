"""The OpenAPI wire format: msgKey + msgParam byte for byte, what cannot be sent, the mention as
plain text, the 15,000-byte cap, request bodies and the meaning of DingTalk's answers."""

from __future__ import annotations

import json

import pytest

from responder.dingtalk import TRUNCATION_MARKER, Button, FeedLink, Mention, Reply
from responder.dingtalk.openapi import (
    MAX_MSG_PARAM_BYTES,
    MSG_PARAMS,
    AccessToken,
    AnswerError,
    ErrorKind,
    OpenApiMessage,
    Unsendable,
    classify_error,
    encode_message,
    group_send_body,
    parse_batch_send_answer,
    parse_token_answer,
    reply_shape,
    sendable_reason,
    token_request_body,
    user_send_body,
)


def buttons(count: int) -> tuple[Button, ...]:
    return tuple(Button(f"B{n}", f"https://b.example/{n}") for n in range(1, count + 1))


CARD = {"msgtype": "actionCard", "title": "T", "text": "### body"}

# Each expected msgParam is written out by hand from the protocol sheet's table (section D), not
# derived from MSG_PARAMS, so a typo in the table fails here.
MAPPINGS = [
    (Reply("text", text="hi"), "sampleText", '{"content":"hi"}'),
    (Reply("markdown", title="T", text="**b**"), "sampleMarkdown", '{"title":"T","text":"**b**"}'),
    (
        Reply("link", title="T", text="x", url="https://m.example/", picture="https://p.example/1.png"),
        "sampleLink",
        '{"text":"x","title":"T","picUrl":"https://p.example/1.png","messageUrl":"https://m.example/"}',
    ),
    (
        Reply(**CARD, single_button=Button("Go", "https://g.example/")),
        "sampleActionCard",
        '{"title":"T","text":"### body","singleTitle":"Go","singleURL":"https://g.example/"}',
    ),
    (
        Reply(**CARD, buttons=buttons(1)),
        "sampleActionCard",
        '{"title":"T","text":"### body","singleTitle":"B1","singleURL":"https://b.example/1"}',
    ),
    (
        Reply(**CARD, buttons=buttons(2)),
        "sampleActionCard2",
        '{"title":"T","text":"### body","actionTitle1":"B1","actionURL1":"https://b.example/1",'
        '"actionTitle2":"B2","actionURL2":"https://b.example/2"}',
    ),
    (
        Reply(**CARD, buttons=buttons(3)),
        "sampleActionCard3",
        '{"title":"T","text":"### body","actionTitle1":"B1","actionURL1":"https://b.example/1",'
        '"actionTitle2":"B2","actionURL2":"https://b.example/2",'
        '"actionTitle3":"B3","actionURL3":"https://b.example/3"}',
    ),
    (
        Reply(**CARD, buttons=buttons(4)),
        "sampleActionCard4",
        '{"title":"T","text":"### body","actionTitle1":"B1","actionURL1":"https://b.example/1",'
        '"actionTitle2":"B2","actionURL2":"https://b.example/2",'
        '"actionTitle3":"B3","actionURL3":"https://b.example/3",'
        '"actionTitle4":"B4","actionURL4":"https://b.example/4"}',
    ),
    (
        Reply(**CARD, buttons=buttons(5)),
        "sampleActionCard5",
        '{"title":"T","text":"### body","actionTitle1":"B1","actionURL1":"https://b.example/1",'
        '"actionTitle2":"B2","actionURL2":"https://b.example/2",'
        '"actionTitle3":"B3","actionURL3":"https://b.example/3",'
        '"actionTitle4":"B4","actionURL4":"https://b.example/4",'
        '"actionTitle5":"B5","actionURL5":"https://b.example/5"}',
    ),
    (
        Reply(**CARD, buttons=buttons(2), horizontal_buttons=True),
        "sampleActionCard6",
        '{"title":"T","text":"### body","buttonTitle1":"B1","buttonUrl1":"https://b.example/1",'
        '"buttonTitle2":"B2","buttonUrl2":"https://b.example/2"}',
    ),
]


@pytest.mark.parametrize(
    ("reply", "key", "param"), MAPPINGS, ids=[m[1] + str(i) for i, m in enumerate(MAPPINGS)]
)
def test_every_msg_key_mapping_is_byte_exact(reply: Reply, key: str, param: str) -> None:
    assert encode_message(reply) == OpenApiMessage(key, param)


def test_the_table_has_exactly_the_keys_the_mappings_cover() -> None:
    assert set(MSG_PARAMS) == {key for _, key, _ in MAPPINGS}


def test_single_button_ignores_orientation() -> None:
    reply = Reply(**CARD, single_button=Button("Go", "https://g.example/"), horizontal_buttons=True)
    assert encode_message(reply).msg_key == "sampleActionCard"


def test_json_escapes_and_cjk_survive_the_round_trip() -> None:
    text = '第一行\n"引号" \\ 反斜杠'
    assert json.loads(encode_message(Reply("text", text=text)).msg_param) == {"content": text}


# Mentions


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (Reply("text", text="hi", mention=Mention("user123", "张三")), {"content": "@张三 hi"}),
        (Reply("text", text="hi", mention=Mention("user123", "")), {"content": "@user123 hi"}),
        (Reply("text", text="hi", mention=Mention("", "张三")), {"content": "@张三 hi"}),
        (
            Reply("markdown", title="T", text="body", mention=Mention("user123", "张三")),
            {"title": "T", "text": "body\n\n@张三"},
        ),
        (Reply("text", text="hi", mention=Mention("", "")), {"content": "hi"}),
    ],
)
def test_mention_is_plain_text_prefix_or_suffix_preferring_the_nick(reply: Reply, expected: dict) -> None:
    assert json.loads(encode_message(reply).msg_param) == expected


@pytest.mark.parametrize(
    "reply",
    [
        Reply("link", title="T", text="x", url="https://m.example/", mention=Mention("u", "张三")),
        Reply(**CARD, buttons=buttons(2), mention=Mention("u", "张三")),
    ],
)
def test_cards_and_links_carry_no_mention(reply: Reply) -> None:
    assert "张三" not in encode_message(reply).msg_param


@pytest.mark.parametrize("reply", [r for r, _, _ in MAPPINGS])
def test_no_at_field_anywhere(reply: Reply) -> None:
    message = encode_message(Reply(**{**_fields(reply), "mention": Mention("user123", "张三")}))
    body = group_send_body("dingROBOT", "cidX==", message)
    assert "at" not in body and "at" not in json.loads(message.msg_param)
    assert "atUserIds" not in json.dumps(body)


def _fields(reply: Reply) -> dict:
    return {name: getattr(reply, name) for name in Reply.__dataclass_fields__}


# What cannot be sent

UNSENDABLE = [
    Reply("feedCard", links=(FeedLink("t", "https://a.example/", "https://p.example/"),)),
    Reply(**CARD, buttons=buttons(6)),
    Reply(**CARD, buttons=buttons(10)),
    Reply(**CARD, buttons=buttons(3), horizontal_buttons=True),
    Reply(**CARD, buttons=buttons(1), horizontal_buttons=True),
    Reply(**CARD),
    Reply("image", text="x"),
]


@pytest.mark.parametrize("reply", UNSENDABLE, ids=lambda r: f"{r.msgtype}-{len(r.buttons)}")
def test_what_the_api_cannot_carry_is_unsendable(reply: Reply) -> None:
    with pytest.raises(Unsendable) as caught:
        encode_message(reply)
    assert caught.value.reason == sendable_reason(*reply_shape(reply))
    assert caught.value.reason


@pytest.mark.parametrize(
    ("shape", "words"),
    [
        (("feedCard", 0, False), "feedCard"),
        (("actionCard", 6, False), "at most 5"),
        (("actionCard", 3, True), "exactly 2"),
        (("actionCard", 0, False), "at least one button"),
        (("voice", 0, False), "'voice'"),
    ],
)
def test_sendable_reason_explains_the_refusal(shape: tuple[str, int, bool], words: str) -> None:
    reason = sendable_reason(*shape)
    assert reason is not None and words in reason


@pytest.mark.parametrize(
    "shape",
    [("text", 0, False), ("markdown", 0, False), ("link", 0, False), ("actionCard", 1, False)]
    + [("actionCard", n, False) for n in range(2, 6)]
    + [("actionCard", 2, True)],
)
def test_sendable_shapes_have_no_reason(shape: tuple[str, int, bool]) -> None:
    assert sendable_reason(*shape) is None


# The 15,000-byte cap


def param_bytes(message: OpenApiMessage) -> int:
    return len(message.msg_param.encode("utf-8"))


@pytest.mark.parametrize("filler", ["字", "a", '"', "\n"])
def test_long_text_is_cut_under_the_cap_with_the_marker(filler: str) -> None:
    text = filler * 20_000
    message = encode_message(Reply("text", text=text))
    content = json.loads(message.msg_param)["content"]
    assert param_bytes(message) <= MAX_MSG_PARAM_BYTES
    assert content.endswith(TRUNCATION_MARKER)
    assert text.startswith(content.removesuffix(TRUNCATION_MARKER))
    assert param_bytes(message) > MAX_MSG_PARAM_BYTES - 20  # cut to the cap, not far below it


def test_text_just_under_the_cap_is_not_cut() -> None:
    text = "a" * (MAX_MSG_PARAM_BYTES - len('{"content":""}'))
    message = encode_message(Reply("text", text=text))
    assert param_bytes(message) == MAX_MSG_PARAM_BYTES
    assert json.loads(message.msg_param)["content"] == text


def test_cutting_keeps_the_mention_and_the_urls() -> None:
    long_urls = tuple(Button(f"B{n}", f"https://b.example/{'x' * 2000}{n}") for n in range(1, 4))
    reply = Reply(**{**CARD, "text": "正文" * 10_000}, buttons=long_urls)
    params = json.loads(encode_message(reply).msg_param)
    assert [params[f"actionURL{n}"] for n in range(1, 4)] == [b.url for b in long_urls]
    assert params["text"].endswith(TRUNCATION_MARKER)

    markdown = encode_message(Reply("markdown", title="T", text="长" * 9000, mention=Mention("u", "张三")))
    assert json.loads(markdown.msg_param)["text"].endswith(f"{TRUNCATION_MARKER}\n\n@张三")
    assert param_bytes(markdown) <= MAX_MSG_PARAM_BYTES


def test_urls_that_cannot_fit_make_the_reply_unsendable() -> None:
    reply = Reply("link", title="T", text="x", url="https://m.example/" + "x" * MAX_MSG_PARAM_BYTES)
    with pytest.raises(Unsendable, match="does not fit"):
        encode_message(reply)


# Request bodies


def test_group_and_user_bodies() -> None:
    message = OpenApiMessage("sampleText", '{"content":"hi"}')
    assert group_send_body("dingROBOT", "cidX==", message) == {
        "robotCode": "dingROBOT",
        "openConversationId": "cidX==",
        "msgKey": "sampleText",
        "msgParam": '{"content":"hi"}',
    }
    assert user_send_body("dingROBOT", ["u1", "u2"], message) == {
        "robotCode": "dingROBOT",
        "userIds": ["u1", "u2"],
        "msgKey": "sampleText",
        "msgParam": '{"content":"hi"}',
    }


@pytest.mark.parametrize("count", [0, 21])
def test_user_body_takes_one_to_twenty_ids(count: int) -> None:
    with pytest.raises(ValueError, match="1 to 20"):
        user_send_body("dingROBOT", [f"u{n}" for n in range(count)], OpenApiMessage("sampleText", "{}"))
    user_send_body("dingROBOT", [f"u{n}" for n in range(20)], OpenApiMessage("sampleText", "{}"))


# The token endpoint


def test_token_request_and_answer() -> None:
    assert token_request_body("dingKEY", "s3cret") == {"appKey": "dingKEY", "appSecret": "s3cret"}
    token = parse_token_answer(b'{"accessToken":"tok-123","expireIn":7200}')
    assert token == AccessToken("tok-123", 7200.0)
    assert "tok-123" not in repr(token)


@pytest.mark.parametrize("expire_in", ["0", "-5", '"7200"', "null", "true"])
def test_unusable_expire_in_means_the_documented_two_hours(expire_in: str) -> None:
    token = parse_token_answer(b'{"accessToken":"t","expireIn":%s}' % expire_in.encode())
    assert token.expires_in_s == 7200.0


@pytest.mark.parametrize("raw", [b"", b"[]", b'{"expireIn":7200}', b'{"accessToken":""}', b"\xff"])
def test_token_answer_without_a_token_raises_without_echoing_the_body(raw: bytes) -> None:
    with pytest.raises(AnswerError) as caught:
        parse_token_answer(raw)
    assert "7200" not in str(caught.value)


# Answers


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (400, {"code": "InvalidAuthentication", "message": "不合法的access_token"}, ErrorKind.TOKEN_INVALID),
        (401, {}, ErrorKind.TOKEN_INVALID),
        (403, {"code": "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi"}, ErrorKind.QPS_LIMITED),
        (403, {"code": "Forbidden.AccessDenied.QpsLimitForApi"}, ErrorKind.QPS_LIMITED),
        (429, {}, ErrorKind.QPS_LIMITED),
        (403, {"code": "Forbidden.AccessDenied.ApiCountLimitForOrg"}, ErrorKind.QUOTA_EXHAUSTED),
        (403, {"code": "Forbidden.AccessDenied.AccessTokenPermissionDenied"}, ErrorKind.PERMISSION),
        (400, {"code": "invalidParameter.msgKey.invalid"}, ErrorKind.BAD_REQUEST),
        (400, {"code": "AuthenticationFailed.MissingParameter"}, ErrorKind.BAD_REQUEST),
        (403, {"code": "Forbidden.SomethingElse"}, ErrorKind.BAD_REQUEST),
        (404, None, ErrorKind.BAD_REQUEST),
        (500, {"code": "unknownError"}, ErrorKind.SERVER_ERROR),
        (504, None, ErrorKind.SERVER_ERROR),
    ],
)
def test_error_answers_are_classified(status: int, body: dict | None, kind: ErrorKind) -> None:
    raw = b"<html>gateway</html>" if body is None else json.dumps({**body, "requestid": "RID-1"}).encode()
    error = classify_error(status, raw)
    assert (error.status, error.kind) == (status, kind)
    assert error.code == (body or {}).get("code", "")
    assert error.request_id == ("" if body is None else "RID-1")
    assert error.kind.definite is (kind is not ErrorKind.SERVER_ERROR)


def test_batch_send_answer_lists() -> None:
    raw = b'{"processQueryKey":"PQK","invalidStaffIdList":["u2"],"flowControlledStaffIdList":["u3",7]}'
    result = parse_batch_send_answer(raw)
    assert (result.process_query_key, result.invalid_staff_ids, result.flow_controlled_staff_ids) == (
        "PQK",
        ("u2",),
        ("u3",),
    )
    assert parse_batch_send_answer(b'{"processQueryKey":"PQK"}').invalid_staff_ids == ()
    with pytest.raises(AnswerError):
        parse_batch_send_answer(b"not json")
