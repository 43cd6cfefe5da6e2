"""StreamClient against a local fake gateway: ACKs, redelivery, reconnects, backoff, keepalive."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from dingtalk_stream.frames import AckMessage, Headers

from responder.dingtalk import Message
from responder.metrics import Metrics
from responder.transport.stream import StreamClient
from tests.fake_gateway import (
    CLIENT_ID,
    CLIENT_SECRET,
    FakeGateway,
    GatewayConnection,
    bot_body,
    callback_frame,
)

WAIT_S = 5.0


class Inbox:
    """A recording `submit`; `replies` imitates the pipeline's msgId dedupe."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.replies: list[str] = []
        self._queue: asyncio.Queue[Message] = asyncio.Queue()

    def __call__(self, message: Message) -> bool:
        self.messages.append(message)
        if message.msg_id not in self.replies:
            self.replies.append(message.msg_id)
        self._queue.put_nowait(message)
        return True  # accepted (the pipeline answers None when it is overloaded)

    async def next(self) -> Message:
        return await asyncio.wait_for(self._queue.get(), WAIT_S)


class SleepLog:
    """An injected backoff sleep: records each delay and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self._changed = asyncio.Condition()

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        async with self._changed:
            self._changed.notify_all()

    async def wait_for_count(self, count: int) -> None:
        async with asyncio.timeout(WAIT_S), self._changed:
            await self._changed.wait_for(lambda: len(self.delays) >= count)


async def sleep_forever(delay: float) -> None:
    await asyncio.Event().wait()


@dataclass
class Rig:
    gateway: FakeGateway
    client: StreamClient
    task: asyncio.Task[None]
    metrics: Metrics
    inbox: Inbox
    sleeps: SleepLog

    def frames(self, frame_type: str, result: str) -> float:
        labels = {"type": frame_type, "result": result}
        return self.metrics.registry.get_sample_value("responder_stream_frames_total", labels) or 0

    def reconnects(self) -> float:
        value = self.metrics.registry.get_sample_value("responder_stream_reconnects_total")
        return value or 0


StartRig = Callable[..., Awaitable[Rig]]


@pytest.fixture(autouse=True)
def info_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)


@pytest.fixture
async def start_rig(aiohttp_server: Any) -> AsyncIterator[StartRig]:
    session = aiohttp.ClientSession()
    tasks: list[asyncio.Task[None]] = []

    async def start(gateway: FakeGateway | None = None, submit: Any = None, **options: Any) -> Rig:
        gateway = gateway or FakeGateway()
        server = await aiohttp_server(gateway.app)
        metrics, inbox, sleeps = Metrics(), Inbox(), SleepLog()
        settings: dict[str, Any] = {
            "api_base": str(server.make_url("")),
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "submit": submit or inbox,
            "metrics": metrics,
            "rng": random.Random(1),
            "sleep": sleeps,
        }
        client = StreamClient(session, **(settings | options))
        task = asyncio.create_task(client.run())
        tasks.append(task)
        return Rig(gateway, client, task, metrics, inbox, sleeps)

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await session.close()


async def connected_rig(start_rig: StartRig, **options: Any) -> tuple[Rig, GatewayConnection]:
    rig = await start_rig(**options)
    conn = await rig.gateway.next_connection()
    await asyncio.wait_for(rig.client.connected.wait(), WAIT_S)
    return rig, conn


async def test_registers_with_credentials_bot_topic_and_json_accept(start_rig: StartRig) -> None:
    rig, _ = await connected_rig(start_rig, local_ip="10.0.0.5")
    (registration,) = rig.gateway.registrations
    assert registration.status == 200
    assert registration.body["clientId"] == CLIENT_ID
    assert registration.body["clientSecret"] == CLIENT_SECRET
    assert registration.body["subscriptions"] == [{"type": "CALLBACK", "topic": "/v1.0/im/bot/messages/get"}]
    assert registration.body["ua"].startswith("responder/")
    assert registration.body["localIp"] == "10.0.0.5"
    assert registration.headers["Accept"] == "application/json"
    assert rig.client.is_live
    assert rig.metrics.registry.get_sample_value("responder_stream_connected") == 1


async def test_callback_is_acked_like_the_sdk_and_submitted(start_rig: StartRig) -> None:
    rig, conn = await connected_rig(start_rig)
    ack = await conn.push_callback(bot_body(), message_id="212ca9d7_974_1898c159aa6_1783b")
    expected = AckMessage()
    expected.headers.message_id = "212ca9d7_974_1898c159aa6_1783b"
    expected.headers.content_type = Headers.CONTENT_TYPE_APPLICATION_JSON
    expected.message = "OK"
    expected.data = {"response": None}
    assert ack == expected.to_dict()
    message = await rig.inbox.next()
    assert (message.msg_id, message.text, message.is_group) == (
        "msgTESTmsgTESTmsgTEST==",
        " 部署 prod",
        True,
    )
    assert rig.frames("callback", "submitted") == 1


class SubmitAborted(BaseException):
    """Escapes every `except Exception`, so nothing after submit() can run."""


async def test_ack_is_on_the_wire_before_submit_is_called(start_rig: StartRig) -> None:
    def aborting_submit(message: Message) -> None:
        raise SubmitAborted(message.msg_id)

    rig, conn = await connected_rig(start_rig, submit=aborting_submit)
    await conn.send(callback_frame(bot_body(), "first_frame"))
    with pytest.raises(SubmitAborted):
        await asyncio.wait_for(rig.task, WAIT_S)
    ack = await conn.next_received()
    assert (ack["code"], ack["headers"]["messageId"]) == (200, "first_frame")


async def test_failing_submit_is_logged_and_the_stream_keeps_going(
    start_rig: StartRig, caplog: pytest.LogCaptureFixture
) -> None:
    inbox = Inbox()

    def flaky_submit(message: Message) -> None:
        if message.msg_id == "msgBoom":
            raise RuntimeError("engine exploded")
        inbox(message)

    rig, conn = await connected_rig(start_rig, submit=flaky_submit)
    assert (await conn.push_callback(bot_body("msgBoom")))["code"] == 200
    assert (await conn.push_callback(bot_body("msgFine")))["code"] == 200
    assert (await inbox.next()).msg_id == "msgFine"
    assert "stream_submit_failed msg_id=msgBoom" in caplog.text
    assert rig.frames("callback", "submit_failed") == 1


@pytest.mark.parametrize(
    "data",
    [
        "not json at all",
        json.dumps({"msgId": "m", "msgtype": "text", "text": {"content": "x"}}),
        json.dumps(bot_body() | {"conversationType": 2}),
    ],
)
async def test_malformed_message_is_still_acked_and_rejected(
    start_rig: StartRig, caplog: pytest.LogCaptureFixture, data: str
) -> None:
    rig, conn = await connected_rig(start_rig)
    ack = await conn.push_callback(data, message_id="bad_1")
    assert ack["code"] == 200
    await conn.push_callback(bot_body("msgAfter"))
    assert (await rig.inbox.next()).msg_id == "msgAfter"
    assert [m.msg_id for m in rig.inbox.messages] == ["msgAfter"]
    assert "stream_frame_rejected message_id=bad_1" in caplog.text
    assert rig.frames("callback", "rejected") == 1


async def test_unknown_callback_topic_is_acked_with_404_and_not_submitted(
    start_rig: StartRig,
) -> None:
    rig, conn = await connected_rig(start_rig)
    ack = await conn.push_callback(bot_body(), topic="/v1.0/card/instances/callback")
    assert ack["code"] == AckMessage.STATUS_NOT_IMPLEMENT
    await conn.push_callback(bot_body("msgAfter"))
    assert [(await rig.inbox.next()).msg_id] == ["msgAfter"] == [m.msg_id for m in rig.inbox.messages]
    assert rig.frames("callback", "unknown_topic") == 1


async def test_ping_is_answered_with_the_same_message_id_and_data(start_rig: StartRig) -> None:
    rig, conn = await connected_rig(start_rig)
    ack = await conn.ping("0f7c-opaque-value")
    assert ack["code"] == 200
    assert json.loads(ack["data"]) == {"opaque": "0f7c-opaque-value"}
    assert rig.frames("system", "pong") == 1


async def test_event_frame_is_acked_as_ignored(start_rig: StartRig) -> None:
    rig, conn = await connected_rig(start_rig)
    frame = callback_frame("{}", "ev_1") | {"type": "EVENT"}
    ack = await conn.request(frame)
    assert json.loads(ack["data"]) == {"status": "SUCCESS", "message": "ignored"}
    assert rig.frames("event", "ignored") == 1
    assert rig.inbox.messages == []


async def test_unreadable_frame_is_skipped_without_dropping_the_socket(
    start_rig: StartRig,
) -> None:
    rig, conn = await connected_rig(start_rig)
    await conn.ws.send_str("{this is not a frame")
    await conn.ws.send_bytes(b"\x00binary")
    assert (await conn.push_callback(bot_body()))["code"] == 200
    assert rig.frames("unknown", "malformed") == 2
    assert len(rig.gateway.connections) == 1 and not conn.closed.is_set()


async def test_disconnect_frame_leads_to_fresh_registration_and_new_ticket(
    start_rig: StartRig, caplog: pytest.LogCaptureFixture
) -> None:
    rig, first = await connected_rig(start_rig)
    await first.send_disconnect("persistent connection is timeout")
    second = await rig.gateway.next_connection()
    await asyncio.wait_for(first.closed.wait(), WAIT_S)
    assert len(rig.gateway.registrations) == 2
    assert first.ticket != second.ticket
    assert rig.gateway.rejected_tickets == []
    assert "stream_disconnect_requested reason='persistent connection is timeout'" in caplog.text
    await second.push_callback(bot_body())
    assert (await rig.inbox.next()).msg_id == "msgTESTmsgTESTmsgTEST=="


@pytest.mark.parametrize("how", ["abort", "close"])
async def test_lost_socket_is_reregistered_and_reconnected(
    start_rig: StartRig, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    rig, first = await connected_rig(start_rig)
    await first.push_callback(bot_body("msgBefore"))
    if how == "abort":
        first.abort()
    else:
        await first.close()
    second = await rig.gateway.next_connection()
    await second.push_callback(bot_body("msgAfter"))
    assert [(await rig.inbox.next()).msg_id for _ in range(2)] == ["msgBefore", "msgAfter"]
    assert len({first.ticket, second.ticket}) == 2
    assert rig.reconnects() == 1
    assert "stream_disconnected reason=" in caplog.text


async def test_liveness_follows_the_socket(start_rig: StartRig) -> None:
    rig, first = await connected_rig(start_rig, sleep=sleep_forever)
    assert rig.client.is_live
    first.abort()
    await asyncio.wait_for(rig.client.disconnected.wait(), WAIT_S)
    assert not rig.client.is_live
    assert rig.metrics.registry.get_sample_value("responder_stream_connected") == 0


async def test_frame_redelivered_on_same_socket_is_acked_again_and_left_to_the_ledger(
    start_rig: StartRig,
) -> None:
    rig, conn = await connected_rig(start_rig)
    frame = callback_frame(bot_body("msgOnce"), "dup_1")
    first, again = await conn.request(frame), await conn.request(frame)
    assert first == again and first["code"] == 200
    await conn.push_callback(bot_body("msgBarrier"))
    while len(rig.inbox.messages) < 3:
        await rig.inbox.next()
    # The transport hands both on; the pipeline's msgId ledger answers once (test_stream_e2e).
    assert [m.msg_id for m in rig.inbox.messages] == ["msgOnce", "msgOnce", "msgBarrier"]
    assert rig.inbox.replies == ["msgOnce", "msgBarrier"]
    assert rig.frames("callback", "submitted") == 3


async def test_frame_redelivered_after_reconnect_is_acked_and_handed_on(
    start_rig: StartRig,
) -> None:
    rig, first = await connected_rig(start_rig)
    # The gateway "loses" the ACK: it drops the socket right after reading it.
    await first.push_callback(bot_body("msgLost"), message_id="lost_1")
    first.abort()
    second = await rig.gateway.next_connection()
    assert (await second.push_callback(bot_body("msgLost"), message_id="lost_1"))["code"] == 200
    # Some reports say redeliveries may carry a new Stream messageId; msgId still matches.
    assert (await second.push_callback(bot_body("msgLost"), message_id="lost_2"))["code"] == 200
    await second.push_callback(bot_body("msgBarrier"))
    while len(rig.inbox.messages) < 4:
        await rig.inbox.next()
    assert rig.inbox.replies == ["msgLost", "msgBarrier"]


async def test_malformed_frame_is_acked_and_counted_as_rejected_each_time(
    start_rig: StartRig, caplog: pytest.LogCaptureFixture
) -> None:
    rig, conn = await connected_rig(start_rig)
    frame = callback_frame("not json", "bad_again")
    assert (await conn.request(frame))["code"] == (await conn.request(frame))["code"] == 200
    assert caplog.text.count("stream_frame_rejected message_id=bad_again") == 2
    assert rig.frames("callback", "rejected") == 2
    assert rig.inbox.messages == []


@pytest.mark.parametrize("failures", [[500], [401], [500, 401, 503]])
async def test_registration_failure_backs_off_then_succeeds(
    start_rig: StartRig, caplog: pytest.LogCaptureFixture, failures: list[int]
) -> None:
    gateway = FakeGateway(fail_registrations=list(failures))
    rig, conn = await connected_rig(start_rig, gateway=gateway, backoff_initial_s=1.0, backoff_max_s=60.0)
    assert [r.status for r in gateway.registrations] == [*failures, 200]
    ceilings = [2**n for n in range(len(failures))]
    assert len(rig.sleeps.delays) == len(failures)
    assert all(c / 2 <= d <= c for d, c in zip(rig.sleeps.delays, ceilings, strict=True))
    for status in failures:
        assert f"stream_registration_failed status={status}" in caplog.text
    await conn.push_callback(bot_body())
    assert (await rig.inbox.next()).msg_id == "msgTESTmsgTESTmsgTEST=="


async def test_wrong_secret_retries_forever_with_capped_backoff_and_never_logs_it(
    start_rig: StartRig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    rig = await start_rig(client_secret="wrong-secret-value", backoff_max_s=4.0)
    await rig.gateway.wait_for(lambda: len(rig.gateway.registrations) >= 6)
    assert {r.status for r in rig.gateway.registrations} == {401}
    assert all(2 <= d <= 4 for d in rig.sleeps.delays[2:5])
    assert not rig.client.is_live
    assert "wrong-secret-value" not in caplog.text
    assert "stream_registration_failed status=401" in caplog.text


async def test_unreachable_gateway_is_retried(
    start_rig: StartRig, unused_tcp_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    rig = await start_rig(api_base=f"http://127.0.0.1:{unused_tcp_port}")
    await rig.sleeps.wait_for_count(3)
    assert "stream_registration_failed status=ClientConnectorError" in caplog.text


async def test_rejected_ticket_counts_as_failed_attempt(
    start_rig: StartRig, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = FakeGateway()
    gateway.reject_next_ticket = True
    rig, _ = await connected_rig(start_rig, gateway=gateway)
    assert len(gateway.rejected_tickets) == 1
    assert len(rig.sleeps.delays) == 1
    assert "stream_connect_failed status=401" in caplog.text


async def test_backoff_resets_after_a_connection_that_carried_frames(start_rig: StartRig) -> None:
    gateway = FakeGateway(fail_registrations=[500, 500, 500])
    rig, first = await connected_rig(start_rig, gateway=gateway, backoff_initial_s=1.0)
    await first.push_callback(bot_body())
    first.abort()
    await rig.gateway.next_connection()
    *failures, after_healthy = rig.sleeps.delays
    assert failures[-1] >= 2  # third failure: ceiling 4 s
    assert 0.5 <= after_healthy <= 1.0


async def test_backoff_keeps_growing_after_a_connection_that_died_at_once(
    start_rig: StartRig,
) -> None:
    gateway = FakeGateway(fail_registrations=[500, 500, 500])
    rig, first = await connected_rig(start_rig, gateway=gateway, backoff_initial_s=1.0)
    first.abort()
    await rig.gateway.next_connection()
    assert 4 <= rig.sleeps.delays[-1] <= 8


async def test_backoff_resets_after_a_long_quiet_connection(start_rig: StartRig) -> None:
    now = [1000.0]
    gateway = FakeGateway(fail_registrations=[500, 500, 500])
    rig, first = await connected_rig(start_rig, gateway=gateway, backoff_initial_s=1.0, clock=lambda: now[0])
    now[0] += 30.0
    first.abort()
    await rig.gateway.next_connection()
    assert 0.5 <= rig.sleeps.delays[-1] <= 1.0


async def test_dead_socket_is_detected_within_two_keepalive_intervals(
    start_rig: StartRig, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = FakeGateway(answer_pings=False)
    keepalive_s = 0.2
    rig, first = await connected_rig(start_rig, gateway=gateway, keepalive_s=keepalive_s)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(first.closed.wait(), WAIT_S)
    elapsed = loop.time() - started
    assert first.pings >= 1
    assert elapsed < 2 * keepalive_s + 0.3, elapsed
    assert "stream_disconnected reason=heartbeat_timeout" in caplog.text
    gateway.answer_pings = True
    await rig.gateway.next_connection()


async def test_answered_keepalive_pings_keep_the_socket_up(start_rig: StartRig) -> None:
    rig, conn = await connected_rig(start_rig, keepalive_s=0.05)
    await rig.gateway.wait_for(lambda: conn.pings >= 4)
    assert not conn.closed.is_set()
    assert len(rig.gateway.connections) == 1


async def test_cancelling_run_closes_the_socket_and_clears_liveness(start_rig: StartRig) -> None:
    rig, conn = await connected_rig(start_rig)
    rig.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await rig.task
    await asyncio.wait_for(conn.closed.wait(), WAIT_S)
    assert not rig.client.is_live
    assert rig.metrics.registry.get_sample_value("responder_stream_connected") == 0


async def test_ticket_and_secret_never_appear_in_logs(
    start_rig: StartRig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    rig, first = await connected_rig(start_rig)
    await first.send_disconnect()
    await rig.gateway.next_connection()
    # aiohttp.access is the fake gateway's own server log, not ours.
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name != "aiohttp.access")
    assert "stream_connected" in ours
    for secret in [CLIENT_SECRET, *rig.gateway.tickets]:
        assert secret not in ours
