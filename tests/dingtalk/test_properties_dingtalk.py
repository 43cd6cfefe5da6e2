"""Property tests for responder.dingtalk: hostile input fails only in the documented ways.

The tests at the end pin down bugs these properties found.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from responder import dingtalk
from responder.dingtalk import (
    MAX_REPLY_BYTES,
    TRUNCATION_MARKER,
    Button,
    FeedLink,
    Mention,
    Message,
    MessageError,
    Reply,
    SignatureError,
    encode_reply,
    parse_message,
    sign,
    verify_signature,
)

VALID_BODY: dict[str, Any] = {
    "conversationId": "cidTEST0000000000000000000==",
    "atUsers": [{"dingtalkId": "$:LWCP_v1:$BOT"}, {"dingtalkId": "$:LWCP_v1:$U", "staffId": "u1"}],
    "chatbotCorpId": "dingTESTCORP0001",
    "chatbotUserId": "$:LWCP_v1:$BOT",
    "msgId": "msgTESTmsgTESTmsgTEST==",
    "senderNick": "张三",
    "isAdmin": False,
    "senderStaffId": "user123",
    "sessionWebhookExpiredTime": 1700005399000,
    "createAt": 1699999999000,
    "senderCorpId": "dingTESTCORP0001",
    "conversationType": "2",
    "senderId": "$:LWCP_v1:$SENDER==",
    "conversationTitle": "机器人测试群",
    "isInAtList": True,
    "sessionWebhook": "https://oapi.dingtalk.com/robot/sendBySession?session=0123456789abcdef",
    "text": {"content": " 部署 prod"},
    "robotCode": "dingTESTROBOTCODE",
    "msgtype": "text",
}
UNBOUNDED = 10**9
TEXT_FIELDS = {"text": "content", "markdown": "text", "link": "text", "actionCard": "text"}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text()
    | st.sampled_from(["1", "2", "text", "1700000000000", ""]),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)


def body_bytes(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


def assert_parses_or_refuses(body: bytes) -> None:
    try:
        message = parse_message(body)
    except MessageError:
        return
    assert isinstance(message, Message)
    assert isinstance(message.msg_id, str) and isinstance(message.text, str)


# parse_message


@given(st.binary(max_size=4096))
@example(b"[" * 100_000)
@example(b'{"a":' * 5000)
@example(b"\xef\xbb\xbf{}")
def test_arbitrary_bytes_raise_only_message_error(body: bytes) -> None:
    assert_parses_or_refuses(body)


@given(json_values)
def test_arbitrary_json_values_raise_only_message_error(value: Any) -> None:
    assert_parses_or_refuses(body_bytes(value))


@given(st.fixed_dictionaries({}, optional={key: json_values for key in VALID_BODY}))
def test_callback_shaped_objects_with_arbitrary_field_values_raise_only_message_error(
    value: dict[str, Any],
) -> None:
    assert_parses_or_refuses(body_bytes(value))


mutations = st.one_of(
    st.tuples(st.just("drop"), st.sampled_from(sorted(VALID_BODY))),
    st.tuples(st.just("set"), st.sampled_from(sorted(VALID_BODY)), json_values),
    st.tuples(st.just("set_text"), json_values),
)


def mutate(body: dict[str, Any], mutation: tuple[Any, ...]) -> dict[str, Any]:
    body = dict(body)
    if mutation[0] == "drop":
        body.pop(mutation[1], None)
    elif mutation[0] == "set":
        body[mutation[1]] = mutation[2]
    else:
        body["text"] = {"content": mutation[1]}
    return body


@given(st.lists(mutations, max_size=4))
def test_mutated_valid_bodies_raise_only_message_error(changes: list[tuple[Any, ...]]) -> None:
    body = VALID_BODY
    for change in changes:
        body = mutate(body, change)
    assert_parses_or_refuses(body_bytes(body))


@given(st.data())
def test_corrupted_bytes_of_a_valid_body_raise_only_message_error(data: st.DataObject) -> None:
    raw = bytearray(body_bytes(VALID_BODY))
    for _ in range(data.draw(st.integers(1, 5))):
        at = data.draw(st.integers(0, len(raw) - 1))
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip":
            raw[at] = data.draw(st.integers(0, 255))
        elif action == "cut":
            del raw[at:]
            if not raw:
                break
        else:
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=8))
    assert_parses_or_refuses(bytes(raw))


def test_the_valid_body_parses() -> None:
    message = parse_message(body_bytes(VALID_BODY))
    assert message.msg_id == "msgTESTmsgTESTmsgTEST==" and message.text == " 部署 prod"


# encode_reply

short_text = st.text(max_size=60)
# Long texts are built by repetition: Hypothesis cannot draw 20 kB strings directly.
# Control characters and quotes stress JSON escaping (up to 6 bytes per character).
long_text = st.tuples(
    st.text(min_size=1, max_size=12) | st.sampled_from(["\x01", '"', "\\", "部署", "😀", "a"]),
    st.integers(1, 12_000),
).map(lambda chunk_times: chunk_times[0] * chunk_times[1])
# Right at the limit, where an encoder that cuts too eagerly would show.
near_limit_text = st.tuples(st.sampled_from(["a", "部", "\n"]), st.integers(0, 1500)).map(
    lambda chunk_less: (
        chunk_less[0] * ((MAX_REPLY_BYTES - chunk_less[1] - 100) // len(chunk_less[0].encode()))
    )
)
any_text = short_text | long_text | near_limit_text
# Always more than MAX_REPLY_BYTES of UTF-8 before any JSON escaping.
overlong_text = (
    st.text(min_size=1, max_size=12)
    .flatmap(
        lambda chunk: st.integers(
            MAX_REPLY_BYTES // len(chunk.encode()) + 1, 3 * MAX_REPLY_BYTES // len(chunk.encode())
        ).map(lambda times: chunk * times)
    )
    .filter(lambda text: len(text.encode()) > MAX_REPLY_BYTES)
)
buttons = st.builds(Button, title=short_text, url=short_text)
feed_links = st.builds(FeedLink, title=any_text, url=short_text, picture=short_text)


def text_replies(texts: st.SearchStrategy[str]) -> st.SearchStrategy[Reply]:
    """Every msgtype whose long part is a text that encode_reply may cut."""
    return st.one_of(
        st.builds(Reply, msgtype=st.just("text"), text=texts),
        st.builds(Reply, msgtype=st.just("markdown"), title=short_text, text=texts),
        st.builds(
            Reply,
            msgtype=st.just("link"),
            title=short_text,
            text=texts,
            url=short_text,
            picture=short_text,
        ),
        st.builds(
            Reply,
            msgtype=st.just("actionCard"),
            title=short_text,
            text=texts,
            single_button=st.none() | buttons,
            buttons=st.lists(buttons, max_size=10).map(tuple),
            horizontal_buttons=st.booleans(),
        ),
    )


mentions = st.none() | st.builds(Mention, staff_id=short_text, nick=short_text)


def with_mentions(replies: st.SearchStrategy[Reply]) -> st.SearchStrategy[Reply]:
    return replies.flatmap(lambda reply: mentions.map(lambda mention: replace(reply, mention=mention)))


def without_mention(reply: Reply, text: str) -> str:
    """The encoded text with the mention the encoder added taken off again."""
    if reply.mention is None:
        return text
    if reply.msgtype == "text":
        return text.removeprefix(reply.mention.token + " ")
    return text.removesuffix("\n\n" + reply.mention.token)


feed_cards = st.builds(Reply, msgtype=st.just("feedCard"), links=st.lists(feed_links, max_size=10).map(tuple))
replies = with_mentions(text_replies(any_text) | feed_cards)


def size(body: dict[str, Any]) -> int:
    return len(dingtalk.dumps(body))


def fits_when_cut(reply: Reply) -> bool:
    """Whether the contract can hold: what encode_reply may not cut fits on its own."""
    if reply.msgtype == "feedCard":
        first = replace(reply, links=reply.links[:1])
        return size(encode_reply(first, max_bytes=UNBOUNDED)) <= MAX_REPLY_BYTES
    rest = replace(reply, text=TRUNCATION_MARKER)
    return size(encode_reply(rest, max_bytes=UNBOUNDED)) <= MAX_REPLY_BYTES


property_settings = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@property_settings
@given(replies)
def test_encoded_reply_always_fits_in_twenty_thousand_bytes(reply: Reply) -> None:
    assume(fits_when_cut(reply))
    body = encode_reply(reply)
    assert size(body) <= MAX_REPLY_BYTES
    assert body["msgtype"] == reply.msgtype and reply.msgtype in body


@property_settings
@given(replies)
def test_reply_that_fits_is_encoded_unchanged(reply: Reply) -> None:
    full = encode_reply(reply, max_bytes=UNBOUNDED)
    assume(size(full) <= MAX_REPLY_BYTES)
    assert encode_reply(reply) == full


@property_settings
@given(with_mentions(text_replies(overlong_text)))
def test_cut_text_is_a_prefix_of_the_original_followed_by_the_marker(reply: Reply) -> None:
    assume(fits_when_cut(reply))
    kind = reply.msgtype
    body = encode_reply(reply)
    text = without_mention(reply, body[kind][TEXT_FIELDS[kind]])
    assert text.endswith(TRUNCATION_MARKER)
    assert reply.text.startswith(text.removesuffix(TRUNCATION_MARKER))


@property_settings
@given(
    text_replies(
        overlong_text.filter(lambda text: len(json.dumps(text, ensure_ascii=False)) == len(text) + 2)
    )
)
def test_cut_keeps_most_of_a_text_without_json_escapes(reply: Reply) -> None:
    assume(fits_when_cut(reply))
    assert size(encode_reply(reply)) > MAX_REPLY_BYTES * 9 // 10


@property_settings
@given(with_mentions(feed_cards))
def test_cut_feed_card_keeps_its_first_entries_in_order(reply: Reply) -> None:
    assume(fits_when_cut(reply) and reply.links)
    links = encode_reply(reply)["feedCard"]["links"]
    full = encode_reply(reply, max_bytes=UNBOUNDED)["feedCard"]["links"]
    assert len(links) >= 1 and links == full[: len(links)]


# verify_signature

timestamps = st.from_regex(r"[0-9]{13}", fullmatch=True)
header_names = st.sampled_from(["timestamp", "sign"]) | st.text(max_size=10)
header_values = st.text(max_size=64) | timestamps | st.sampled_from(["", " ", "=" * 44])


@given(
    st.dictionaries(header_names, header_values, max_size=4),
    st.lists(st.text(max_size=40), max_size=3),
    st.integers(-(2**63), 2**63),
    st.integers(0, 2**40),
)
def test_arbitrary_headers_raise_only_signature_error(
    headers: dict[str, str], secrets: list[str], now_ms: int, window_ms: int
) -> None:
    try:
        verify_signature(headers, secrets, now_ms, window_ms)
    except SignatureError as exc:
        assert exc.reason
    else:
        assert headers["sign"] in {sign(secret, headers["timestamp"]) for secret in secrets}


@given(timestamps, st.text(max_size=40), st.text(max_size=40), st.integers(0, 3_600_000))
def test_signature_verifies_only_with_its_own_secret_inside_the_window(
    timestamp: str, secret: str, other: str, skew_ms: int
) -> None:
    headers = {"timestamp": timestamp, "sign": sign(secret, timestamp)}
    verify_signature(headers, [other, secret], int(timestamp) + skew_ms, 3_600_000)
    assume(sign(other, timestamp) != headers["sign"])
    with pytest.raises(SignatureError):
        verify_signature(headers, [other], int(timestamp), 3_600_000)
    with pytest.raises(SignatureError):
        verify_signature(headers, [secret], int(timestamp) + 3_600_001, 3_600_000)


# Bugs the properties above found, kept as regression tests.


def test_integer_too_long_for_python_raises_message_error() -> None:
    body = b'{"msgId":"m","msgtype":"text","conversationType":"2","createAt":' + b"9" * 4301 + b"}"
    with pytest.raises(MessageError):
        parse_message(body)


def test_lone_surrogate_in_a_callback_is_refused() -> None:
    body = body_bytes(VALID_BODY).replace("部署".encode(), b"\\ud800")
    with pytest.raises(MessageError, match="surrogate"):
        parse_message(body)


def test_reply_with_an_oversized_title_still_fits() -> None:
    reply = Reply(msgtype="markdown", title="标" * 8000, text="body")
    assert size(encode_reply(reply)) <= MAX_REPLY_BYTES


def test_feed_card_with_one_oversized_entry_still_fits() -> None:
    reply = Reply(msgtype="feedCard", links=(FeedLink(title="x" * 30_000, url="u", picture="p"),))
    assert size(encode_reply(reply)) <= MAX_REPLY_BYTES


def test_long_json_text_is_cut_rather_than_emptied() -> None:
    rows = [{"name": f"host{i}", "ip": f"10.0.{i % 256}.{i % 200}"} for i in range(3000)]
    text = json.dumps(rows)[:100_000]  # quotes cost two bytes each on the wire
    body = encode_reply(Reply(msgtype="text", text=text))
    assert size(body) > MAX_REPLY_BYTES // 2
