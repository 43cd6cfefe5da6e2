"""The DingTalk wire protocol: signature vectors, signature checks, callback parsing.

Vectors and example bodies come from shared/dingtalk-protocol.md sections 2 and 9; the recorded
bodies live in tests/samples/ (text_group.json is the sheet's full example callback).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from responder.dingtalk import (
    MessageError,
    MessagePart,
    SignatureError,
    parse_message,
    sign,
    verify_signature,
)

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
HOUR_MS = 3_600_000

# (timestamp, secret, Base64 sign): protocol sheet section 9, rows 1-6.
VECTORS = [
    ("1577262236757", "this is a secret", "DJrE6qdyVGCQz9z5r2MDuNcNAhwYnuAkyj13cx169CA="),
    ("1577262236757", "this is secret", "hmPWwU+7lVdm3ZZz0r9tSfx0L4Q26jWOZr9+Gs6EZQM="),
    ("1613630252678", "this is a secret", "vvCa+SbFo2U3L2wdX28IUNl9lPHyXOsckruAsHHvuxQ="),
    ("1700000000000", "test-app-secret-not-real", "KsoFTIyez6XP7Xk+URCpKByr+cUY1U4i6z1Dah3Uw9Q="),
    ("1700000123456", "test-app-secret-not-real", "FqNfve0UELnkPCvh/3N0ir3k15WJxt9gzz3L5I/Jmsc="),
    (
        "1700000000008",
        "SECf0e1d2c3b4a5968778695a4b3c2d1e0f00112233445566778899aabbccddeeff",
        "K4k20IgjE2b+yqkwPI1ADehHk1+ucpgRZC2r/xx6iy8=",
    ),
]
VECTOR_IDS = [f"row{i}" for i in range(1, 7)]


def fullwidth(digits: str) -> str:
    """The same digits in full-width form (U+FF10..U+FF19), which str.isdigit() also accepts."""
    return "".join(chr(ord(d) + 0xFEE0) for d in digits)


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def sample_dict(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(sample(name))
    return data


def reason_of(headers: dict[str, str], secrets: list[str], now_ms: int) -> str:
    with pytest.raises(SignatureError) as caught:
        verify_signature(headers, secrets, now_ms, HOUR_MS)
    return caught.value.reason


@pytest.mark.parametrize(("timestamp", "secret", "expected"), VECTORS, ids=VECTOR_IDS)
def test_sign_matches_protocol_sheet_vector(timestamp: str, secret: str, expected: str) -> None:
    assert sign(secret, timestamp) == expected


@pytest.mark.parametrize(("timestamp", "secret", "expected"), VECTORS, ids=VECTOR_IDS)
def test_verify_accepts_sheet_vector_at_its_own_time(timestamp: str, secret: str, expected: str) -> None:
    verify_signature({"timestamp": timestamp, "sign": expected}, [secret], int(timestamp), HOUR_MS)


def test_verify_accepts_any_of_several_secrets_during_rotation() -> None:
    timestamp, secret, expected = VECTORS[3]
    headers = {"timestamp": timestamp, "sign": expected}
    for secrets in (["old-secret", secret], [secret, "new-secret"], ["a", "b", secret]):
        verify_signature(headers, secrets, int(timestamp), HOUR_MS)


def test_verify_rejects_when_no_secret_matches() -> None:
    timestamp, _, expected = VECTORS[3]
    headers = {"timestamp": timestamp, "sign": expected}
    assert reason_of(headers, ["old-secret", "new-secret"], int(timestamp)) == "bad_signature"


def test_verify_rejects_with_no_secrets_configured() -> None:
    timestamp, _, expected = VECTORS[3]
    assert reason_of({"timestamp": timestamp, "sign": expected}, [], int(timestamp)) == "bad_signature"


@pytest.mark.parametrize(
    "headers",
    [{}, {"timestamp": "1700000000000"}, {"sign": VECTORS[3][2]}],
    ids=["none", "no-sign", "no-timestamp"],
)
def test_verify_rejects_missing_header(headers: dict[str, str]) -> None:
    assert reason_of(headers, [VECTORS[3][1]], 1_700_000_000_000) == "missing_header"


@pytest.mark.parametrize(
    "timestamp",
    [
        "",
        "abc",
        "1700000000",
        "17000000000000",
        "+700000000000",
        " 1700000000000",
        fullwidth("1700000000000"),
        "1.7e12",
    ],
)
def test_verify_rejects_malformed_timestamp(timestamp: str) -> None:
    headers = {"timestamp": timestamp, "sign": sign(VECTORS[3][1], timestamp)}
    assert reason_of(headers, [VECTORS[3][1]], 1_700_000_000_000) == "malformed_timestamp"


def test_verify_rejects_stale_timestamp_just_past_the_window() -> None:
    timestamp, secret, expected = VECTORS[3]
    headers = {"timestamp": timestamp, "sign": expected}
    verify_signature(headers, [secret], int(timestamp) + HOUR_MS, HOUR_MS)
    assert reason_of(headers, [secret], int(timestamp) + HOUR_MS + 1) == "timestamp_expired"


def test_verify_rejects_timestamp_from_the_future() -> None:
    timestamp, secret, expected = VECTORS[3]
    headers = {"timestamp": timestamp, "sign": expected}
    verify_signature(headers, [secret], int(timestamp) - HOUR_MS, HOUR_MS)
    assert reason_of(headers, [secret], int(timestamp) - HOUR_MS - 1) == "timestamp_in_future"


@pytest.mark.parametrize(
    "bad_sign",
    [
        "",
        "KsoFTIyez6XP7Xk+URCpKByr+cUY1U4i6z1Dah3Uw9Q",  # padding dropped
        "KsoFTIyez6XP7Xk%2BURCpKByr%2BcUY1U4i6z1Dah3Uw9Q%3D",  # URL-encoded (custom-robot form)
        "ksoFTIyez6XP7Xk+URCpKByr+cUY1U4i6z1Dah3Uw9Q=",  # one letter's case
        "FqNfve0UELnkPCvh/3N0ir3k15WJxt9gzz3L5I/Jmsc=",  # another timestamp's sign
        "签名",
    ],
)
def test_verify_rejects_wrong_sign(bad_sign: str) -> None:
    timestamp, secret, _ = VECTORS[3]
    assert reason_of({"timestamp": timestamp, "sign": bad_sign}, [secret], int(timestamp)) == "bad_signature"


def test_parse_sheet_example_callback() -> None:
    message = parse_message(sample("text_group.json"))
    assert message.msg_id == "msgTESTmsgTESTmsgTEST=="
    assert message.msgtype == "text"
    assert (message.parts, message.spoken, message.quoted) == ((), "", None)
    assert message.text == " 部署 prod"
    assert message.conversation_id == "cidTEST0000000000000000000=="
    assert message.is_group
    assert message.conversation_title == "机器人测试群"
    assert message.sender_nick == "张三"
    assert message.sender_staff_id == "user123"
    assert message.sender_id == "$:LWCP_v1:$SENDERsenderSENDER=="
    assert message.is_admin is False
    assert message.session_webhook == (
        "https://oapi.dingtalk.com/robot/sendBySession?session=0123456789abcdef0123456789abcdef"
    )
    assert message.session_webhook_expires_ms == 1700005399000
    assert message.created_ms == 1699999999000
    assert message.robot_code == "dingTESTROBOTCODE"


def test_parse_private_chat_with_created_at_as_string() -> None:
    message = parse_message(sample("text_private_created_at_string.json"))
    assert message.created_ms == 1699999999000
    assert not message.is_group
    assert message.conversation_title == ""
    assert message.text == "hello DingTalk!"


def test_parse_ignores_unknown_fields() -> None:
    payload = sample_dict("text_group.json") | {"senderPlatform": "Win", "openThreadId": "t1", "x": [1, {}]}
    assert parse_message(json.dumps(payload).encode()).msg_id == "msgTESTmsgTESTmsgTEST=="


@pytest.mark.parametrize(
    ("name", "msgtype"),
    [
        ("picture.json", "picture"),
        ("rich_text.json", "richText"),
        ("audio.json", "audio"),
        ("file.json", "file"),
        ("video.json", "video"),
    ],
)
def test_parse_non_text_sample(name: str, msgtype: str) -> None:
    message = parse_message(sample(name))
    assert message.msgtype == msgtype
    assert message.sender_staff_id == "user123"
    if msgtype == "richText":  # its text parts are text; its pictures are parts by download code
        assert message.text == "看这张图"
        assert message.parts == (
            MessagePart("text", "看这张图"),
            MessagePart("picture", download_code="DLCODE001"),
        )
    elif msgtype == "audio":  # DingTalk's own transcription
        assert (message.text, message.spoken) == ("", "帮助")
    else:
        assert (message.text, message.parts, message.spoken) == ("", (), "")


def test_parse_rejects_non_utf8_body() -> None:
    body = sample("text_group.json").replace("张三".encode(), "张三".encode("gbk"))
    with pytest.raises(MessageError, match="not UTF-8"):
        parse_message(body)


@pytest.mark.parametrize("body", [b"", b"{", b'{"msgtype": "text",}', b"{'a': 1}", b"\xef\xbb\xbf{}"])
def test_parse_rejects_malformed_json(body: bytes) -> None:
    with pytest.raises(MessageError):
        parse_message(body)


@pytest.mark.parametrize("opener", ["[", '{"a":'])
def test_parse_rejects_deep_nesting_without_recursion(opener: str) -> None:
    body = (opener * 10_000).encode()
    with pytest.raises(MessageError, match="nested"):
        parse_message(body)


def test_parse_allows_brackets_inside_strings() -> None:
    payload = sample_dict("text_group.json")
    payload["text"] = {"content": "[" * 10_000}
    assert parse_message(json.dumps(payload).encode()).text == "[" * 10_000


@pytest.mark.parametrize("body", [b"[]", b'"text"', b"42", b"null", b"true"])
def test_parse_rejects_non_object(body: bytes) -> None:
    with pytest.raises(MessageError, match="JSON object"):
        parse_message(body)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("msgtype", 1),
        ("msgId", None),
        ("conversationType", 2),
        ("conversationType", "3"),
        ("text", "部署"),
        ("text", {"content": 5}),
        ("senderNick", ["张三"]),
        ("senderStaffId", 123),
        ("isAdmin", "true"),
        ("createAt", True),
        ("createAt", "soon"),
        ("createAt", 1.5),
        ("sessionWebhookExpiredTime", fullwidth("1700")),
        ("sessionWebhook", {"url": "x"}),
    ],
)
def test_parse_rejects_wrong_field_type(field: str, value: object) -> None:
    payload = sample_dict("text_group.json")
    payload[field] = value
    with pytest.raises(MessageError):
        parse_message(json.dumps(payload).encode())


@pytest.mark.parametrize("field", ["msgtype", "msgId", "conversationType", "text"])
def test_parse_rejects_missing_required_field(field: str) -> None:
    payload = sample_dict("text_group.json")
    del payload[field]
    with pytest.raises(MessageError):
        parse_message(json.dumps(payload).encode())
