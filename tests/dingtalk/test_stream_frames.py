"""The Stream wire format, cross-checked against the official dingtalk-stream package."""

from __future__ import annotations

import json
import random

import pytest
from dingtalk_stream.frames import (
    AckMessage,
    CallbackMessage,
    EventMessage,
    Headers,
    SystemMessage,
)
from dingtalk_stream.handlers import EventHandler, SystemHandler

from responder.dingtalk.stream import (
    BOT_TOPIC,
    EVENT_ACK_DATA,
    Endpoint,
    FrameError,
    RegistrationError,
    encode_ack,
    parse_frame,
    parse_registration,
    registration_body,
)
from responder.transport.backoff import Backoff
from tests.fake_gateway import callback_frame, make_frame, make_headers, system_frame

BODY = {"msgId": "msgA", "msgtype": "text", "text": {"content": " hi"}, "conversationType": "2"}


def test_bot_ack_is_byte_for_byte_what_the_official_sdk_sends() -> None:
    sdk = AckMessage()
    sdk.headers.message_id = "212ca9d7_974_1898c159aa6_1783b"
    sdk.headers.content_type = Headers.CONTENT_TYPE_APPLICATION_JSON
    sdk.message = "OK"
    sdk.data = {"response": None}
    assert json.loads(encode_ack("212ca9d7_974_1898c159aa6_1783b")) == sdk.to_dict()


async def test_ping_ack_matches_the_official_sdk_system_handler() -> None:
    frame = system_frame("ping", {"opaque": "0f7c-opaque"}, "ping_1")
    sdk = (await SystemHandler().raw_process(SystemMessage.from_dict(frame))).to_dict()
    ours = json.loads(encode_ack("ping_1", data=parse_frame(json.dumps(frame)).data))
    assert ours["headers"] == sdk["headers"]
    assert (ours["code"], ours["message"]) == (sdk["code"], sdk["message"])
    assert json.loads(ours["data"]) == json.loads(sdk["data"]) == {"opaque": "0f7c-opaque"}


async def test_event_ack_has_the_status_field_the_gateway_requires() -> None:
    frame = make_frame("EVENT", make_headers("ev_1", "chat_update"), "{}")
    sdk = await EventHandler().raw_process(EventMessage.from_dict(frame))
    ours = json.loads(encode_ack("ev_1", data=EVENT_ACK_DATA))
    assert ours["headers"] == sdk.to_dict()["headers"]
    assert json.loads(ours["data"]) == {"status": "SUCCESS", "message": "ignored"}


def test_not_found_ack_carries_code_404() -> None:
    ack = json.loads(encode_ack("m1", code=404))
    assert (ack["code"], ack["headers"]["messageId"]) == (AckMessage.STATUS_NOT_IMPLEMENT, "m1")


def test_callback_frame_built_by_sdk_classes_parses_with_data_kept_as_string() -> None:
    raw = callback_frame(BODY, "mid_1")
    frame = parse_frame(json.dumps(raw))
    sdk = CallbackMessage.from_dict(raw)
    assert (frame.type, frame.topic, frame.message_id) == ("CALLBACK", BOT_TOPIC, "mid_1")
    assert sdk.headers.topic == frame.topic and sdk.headers.message_id == frame.message_id
    assert json.loads(frame.data) == sdk.data == BODY


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("not json", "malformed JSON"),
        ("[1]", "JSON object"),
        ('{"type":"CALLBACK"}', "missing headers"),
        ('{"type":"CALLBACK","headers":{"topic":"x"}}', "messageId"),
        ('{"type":"CALLBACK","headers":{"messageId":"m"},"data":{"a":1}}', "data must be"),
    ],
)
def test_unreadable_frames_raise_frame_error_naming_the_problem(text: str, reason: str) -> None:
    with pytest.raises(FrameError, match=reason):
        parse_frame(text)


def test_registration_body_subscribes_to_bot_messages_only() -> None:
    body = registration_body("id", "secret", "responder/1", None)
    assert body == {
        "clientId": "id",
        "clientSecret": "secret",
        "subscriptions": [{"type": "CALLBACK", "topic": "/v1.0/im/bot/messages/get"}],
        "ua": "responder/1",
    }
    assert registration_body("id", "s", "ua", "10.0.0.5")["localIp"] == "10.0.0.5"


def test_connect_url_carries_the_ticket_url_encoded_and_repr_hides_it() -> None:
    endpoint = parse_registration({"endpoint": "wss://gw.example/connect", "ticket": "a+b/c=d"})
    assert str(endpoint.connect_url()) == "wss://gw.example/connect?ticket=a%2Bb/c%3Dd"
    assert endpoint.connect_url().query["ticket"] == "a+b/c=d"
    assert "a+b" not in repr(endpoint)


@pytest.mark.parametrize(
    "payload",
    [
        None,
        [],
        {"endpoint": "wss://x/c"},
        {"ticket": "t"},
        {"endpoint": "https://x", "ticket": "t"},
    ],
)
def test_unusable_registration_answers_raise_bad_body(payload: object) -> None:
    with pytest.raises(RegistrationError) as info:
        parse_registration(payload)
    assert info.value.status == "bad_body"


def test_backoff_doubles_within_jitter_band_up_to_the_cap_and_resets() -> None:
    backoff = Backoff(1.0, 60.0, random.Random(7))
    delays = [backoff.next_delay() for _ in range(10)]
    ceilings = [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True)), delays
    backoff.reset()
    assert 0.5 <= backoff.next_delay() <= 1.0


def test_backoff_jitter_spreads_clients_apart() -> None:
    first = {Backoff(1.0, 60.0, random.Random(seed)).next_delay() for seed in range(20)}
    assert len(first) == 20


def test_backoff_rejects_nonsense_bounds() -> None:
    with pytest.raises(ValueError):
        Backoff(0, 60, random.Random())
    with pytest.raises(ValueError):
        Backoff(10, 1, random.Random())


def test_endpoint_is_a_frozen_value() -> None:
    endpoint = Endpoint(url="ws://x/c", ticket="t")
    with pytest.raises(AttributeError):
        endpoint.ticket = "u"  # type: ignore[misc]
