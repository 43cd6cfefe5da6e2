"""OpenApiClient against a local fake of api.dingtalk.com: the token's life, refusals and backoff,
the monthly call cap, definite and ambiguous failures, and secrets kept out of logs."""

from __future__ import annotations

import asyncio
import datetime
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from responder.delivery.openapi import OpenApiClient
from responder.delivery.sinks import Delivery
from responder.dingtalk import Button, FeedLink, Mention, Reply
from responder.metrics import Metrics
from tests.fake_openapi import APP_KEY, APP_SECRET, FakeOpenApi, Fault

GROUP = "cidTEST0000000000000000000=="
TEXT = Reply("text", text="部署完成", mention=Mention("user123", "张三"))
START = datetime.datetime(2026, 5, 31, 23, 0, tzinfo=datetime.UTC).timestamp()


class FakeClock:
    """Wall time for the call cap's month, monotonic time for token expiry and backoff."""

    def __init__(self) -> None:
        self.wall = START
        self.mono = 10_000.0

    def time(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


@dataclass
class Rig:
    fake: FakeOpenApi
    server: TestServer
    session: aiohttp.ClientSession
    clock: FakeClock
    metrics: Metrics

    @property
    def api_base(self) -> str:
        return str(self.server.make_url(""))

    def client(self, **options: Any) -> OpenApiClient:
        settings: dict[str, Any] = {
            "api_base": self.api_base,
            "client_id": APP_KEY,
            "client_secret": APP_SECRET,
            "metrics": self.metrics,
            "clock": self.clock.time,
            "monotonic": self.clock.monotonic,
        }
        return OpenApiClient(self.session, **(settings | options))

    def sample(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def rig(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> AsyncIterator[Rig]:
    clock = FakeClock()
    fake = FakeOpenApi(clock=clock.monotonic)
    server = await aiohttp_server(fake.app)
    async with aiohttp.ClientSession() as session:
        yield Rig(fake, server, session, clock, Metrics())
        fake.release()  # before the server's teardown, which would wait for hung handlers


def assert_failed(delivery: Delivery, reason: str, *, definite: bool) -> None:
    assert (delivery.ok, delivery.reason, delivery.definite) == (False, reason, definite)


async def test_group_send_delivers_the_message_as_dingtalk_expects(rig: Rig) -> None:
    delivery = await rig.client().send_to_group(GROUP, TEXT)
    assert delivery.ok
    (send,) = rig.fake.sends
    assert send.body == {
        "robotCode": APP_KEY,
        "openConversationId": GROUP,
        "msgKey": "sampleText",
        "msgParam": '{"content":"@张三 部署完成"}',
    }
    assert send.token in rig.fake.tokens
    assert rig.fake.rejections == []
    assert rig.sample("responder_openapi_calls_total", api="group_send", result="ok") == 1
    assert rig.sample("responder_openapi_calls_total", api="token", result="ok") == 1


async def test_user_send_goes_to_batch_send_with_one_user(rig: Rig) -> None:
    client = rig.client(robot_code="dingROBOT")
    rig.fake.robot_code = "dingROBOT"
    delivery = await client.send_to_user("user123", Reply("markdown", title="T", text="**hi**"))
    assert delivery.ok
    (send,) = rig.fake.sends
    assert send.path == "/v1.0/robot/oToMessages/batchSend"
    assert send.body["userIds"] == ["user123"] and send.body["robotCode"] == "dingROBOT"
    assert send.msg_param == {"title": "T", "text": "**hi**"}


async def test_robot_code_defaults_to_the_client_id(rig: Rig) -> None:
    rig.fake.robot_code = "dingOTHER"
    delivery = await rig.client().send_to_group(GROUP, TEXT)
    assert_failed(delivery, "openapi_bad_request", definite=True)
    assert rig.fake.sends[0].body["robotCode"] == APP_KEY


@pytest.mark.parametrize(
    ("listed", "reason", "refusals"),
    [
        ("invalid_staff_ids", "openapi_invalid_user", 0),
        ("flow_controlled_staff_ids", "openapi_flow_controlled", 1),
    ],
)
async def test_batch_send_lists_turn_a_200_into_a_definite_failure(
    rig: Rig, listed: str, reason: str, refusals: int
) -> None:
    getattr(rig.fake, listed).add("user123")
    delivery = await rig.client().send_to_user("user123", TEXT)
    assert_failed(delivery, reason, definite=True)
    assert rig.sample("responder_openapi_refusals_total", reason="flow_controlled") == refusals


# The token


async def test_token_is_fetched_once_for_fifty_concurrent_sends(rig: Rig) -> None:
    client = rig.client()
    deliveries = await asyncio.gather(*(client.send_to_group(GROUP, TEXT) for _ in range(50)))
    assert all(d.ok for d in deliveries)
    assert len(rig.fake.token_calls) == 1
    assert len(rig.fake.sends) == 50
    assert {send.token for send in rig.fake.sends} == set(rig.fake.tokens)


async def test_token_is_reused_until_five_minutes_before_it_expires(rig: Rig) -> None:
    client = rig.client()
    assert (await client.send_to_group(GROUP, TEXT)).ok
    rig.clock.advance(7200 - 300 - 1)
    assert (await client.send_to_group(GROUP, TEXT)).ok
    assert len(rig.fake.token_calls) == 1
    rig.clock.advance(1)
    assert (await client.send_to_group(GROUP, TEXT)).ok
    assert len(rig.fake.token_calls) == 2
    assert rig.fake.sends[2].token != rig.fake.sends[0].token


async def test_a_short_lived_token_is_reused_but_never_past_its_expiry(rig: Rig) -> None:
    rig.fake.token_lifetime_s = 20
    client = rig.client()
    assert (await client.send_to_group(GROUP, TEXT)).ok
    rig.clock.advance(17.9)  # the margin is a tenth of a short lifetime
    assert (await client.send_to_group(GROUP, TEXT)).ok
    rig.clock.advance(0.2)
    assert (await client.send_to_group(GROUP, TEXT)).ok
    assert len(rig.fake.token_calls) == 2
    assert rig.fake.rejections == []


async def test_expired_token_answer_refreshes_once_and_retries_once(rig: Rig) -> None:
    client = rig.client()
    rig.fake.inject(Fault.EXPIRED_TOKEN, times=1)
    delivery = await client.send_to_group(GROUP, TEXT)
    assert delivery.ok
    endpoints = [c.path.rsplit("/", 1)[-1] for c in rig.fake.calls]
    assert endpoints == ["accessToken", "send", "accessToken", "send"]
    first, retry = rig.fake.sends
    assert first.token != retry.token and first.body == retry.body


async def test_a_token_that_really_expired_is_replaced(rig: Rig) -> None:
    client = rig.client()
    assert (await client.send_to_group(GROUP, TEXT)).ok
    rig.fake.expire_tokens()
    assert (await client.send_to_group(GROUP, TEXT)).ok
    assert len(rig.fake.token_calls) == 2 and [s.status for s in rig.fake.sends] == [200, 400, 200]


async def test_a_token_rejected_twice_gives_up_after_one_retry(rig: Rig) -> None:
    client = rig.client()
    rig.fake.inject(Fault.EXPIRED_TOKEN)
    assert_failed(await client.send_to_group(GROUP, TEXT), "openapi_token_invalid", definite=True)
    assert (len(rig.fake.token_calls), len(rig.fake.sends)) == (2, 2)
    rig.fake.clear_faults()
    assert (await client.send_to_group(GROUP, TEXT)).ok
    assert len(rig.fake.token_calls) == 3  # the rejected token was not kept


async def test_wrong_secret_is_a_definite_token_failure_without_a_send(rig: Rig) -> None:
    client = rig.client(client_secret="not-the-secret")
    assert_failed(await client.send_to_group(GROUP, TEXT), "openapi_token_failed", definite=True)
    assert rig.fake.sends == [] and rig.fake.token_calls[0].status == 400
    assert rig.sample("responder_openapi_calls_total", api="token", result="bad_request") == 1


async def test_concurrent_waiters_share_one_failed_token_fetch(rig: Rig) -> None:
    client = rig.client(client_secret="not-the-secret")
    deliveries = await asyncio.gather(*(client.send_to_group(GROUP, TEXT) for _ in range(10)))
    assert {d.reason for d in deliveries} == {"openapi_token_failed"}
    assert len(rig.fake.token_calls) == 1


# Refusals and backoff


async def test_qps_refusal_backs_off_then_resumes_once_it_ends(rig: Rig) -> None:
    client = rig.client()
    rig.fake.inject(Fault.QPS_LIMIT, times=1)
    assert_failed(await client.send_to_group(GROUP, TEXT), "openapi_qps_limited", definite=True)
    assert_failed(await client.send_to_group(GROUP, TEXT), "openapi_backoff", definite=True)
    assert len(rig.fake.sends) == 1  # the fail-fast send made no call
    rig.clock.advance(1.0)
    assert (await client.send_to_group(GROUP, TEXT)).ok
    assert rig.sample("responder_openapi_refusals_total", reason="qps_limited") == 1
    assert rig.sample("responder_openapi_refusals_total", reason="backoff") == 1


async def test_backoff_doubles_per_refusal_up_to_a_minute_and_resets_on_success(rig: Rig) -> None:
    client = rig.client()
    rig.fake.inject(Fault.QPS_LIMIT)
    assert_failed(await client.send_to_group(GROUP, TEXT), "openapi_qps_limited", definite=True)
    waits = [await seconds_until_a_call(rig, client) for _ in range(8)]
    assert waits == [1, 2, 4, 8, 16, 32, 60, 60]
    rig.fake.clear_faults()
    assert await seconds_until_a_call(rig, client) == 60  # this call succeeds
    rig.fake.inject(Fault.QPS_LIMIT, times=1)
    assert_failed(await client.send_to_group(GROUP, TEXT), "openapi_qps_limited", definite=True)
    assert await seconds_until_a_call(rig, client) == 1


async def seconds_until_a_call(rig: Rig, client: OpenApiClient) -> int:
    """Seconds on the fake clock until a send reaches the fake again (whatever it answers)."""
    sends = len(rig.fake.sends)
    for waited in range(1, 121):
        rig.clock.advance(1)
        if (await client.send_to_group(GROUP, TEXT)).reason != "openapi_backoff":
            assert len(rig.fake.sends) == sends + 1
            return waited
    raise AssertionError("no call within two minutes")


async def test_a_burst_refused_together_lengthens_the_backoff_once(rig: Rig) -> None:
    client = rig.client()
    assert (await client.send_to_group(GROUP, TEXT)).ok  # token in hand, so the burst is concurrent
    rig.fake.inject(Fault.QPS_LIMIT, times=5)
    deliveries = await asyncio.gather(*(client.send_to_group(GROUP, TEXT) for _ in range(5)))
    assert {d.reason for d in deliveries} == {"openapi_qps_limited"}
    rig.clock.advance(1.0)
    assert (await client.send_to_group(GROUP, TEXT)).ok


async def test_quota_exhausted_is_final_counted_and_backs_off(rig: Rig) -> None:
    client = rig.client()
    rig.fake.inject(Fault.QUOTA_EXHAUSTED)
    assert_failed(await client.send_to_group(GROUP, TEXT), "openapi_quota_exhausted", definite=True)
    assert len(rig.fake.sends) == 1  # no retry
    assert rig.sample("responder_openapi_refusals_total", reason="quota_exhausted") == 1
    assert rig.sample("responder_openapi_calls_total", api="group_send", result="quota_exhausted") == 1
    assert_failed(await client.send_to_group(GROUP, TEXT), "openapi_backoff", definite=True)
    rig.fake.clear_faults()  # e.g. the org upgraded: service resumes at the next probe
    rig.clock.advance(1.0)
    assert (await client.send_to_group(GROUP, TEXT)).ok


# Ambiguous and definite failures


@pytest.mark.parametrize(
    ("fault", "reason"),
    [(Fault.SERVER_ERROR, "openapi_server_error"), (Fault.GATEWAY_TIMEOUT, "openapi_server_error")],
)
async def test_server_errors_are_ambiguous_results_not_exceptions(
    rig: Rig, fault: Fault, reason: str
) -> None:
    rig.fake.inject(fault, times=1)
    client = rig.client()
    assert_failed(await client.send_to_group(GROUP, TEXT), reason, definite=False)
    assert len(rig.fake.sends) == 1  # a 5xx may have been delivered: never resent here
    assert (await client.send_to_group(GROUP, TEXT)).ok  # and it does not back off


async def test_a_hang_is_an_ambiguous_timeout(rig: Rig) -> None:
    rig.fake.inject(Fault.HANG, times=1)
    client = rig.client(timeout_s=0.5)
    sending = asyncio.create_task(client.send_to_group(GROUP, TEXT))
    await rig.fake.wait_for(lambda: len(rig.fake.sends) == 1)  # the request was written
    assert_failed(await sending, "openapi_timeout", definite=False)
    assert rig.fake.sends[0].fault is Fault.HANG
    assert rig.sample("responder_openapi_calls_total", api="group_send", result="timeout") == 1


async def test_a_reset_after_the_request_is_ambiguous(rig: Rig) -> None:
    rig.fake.inject(Fault.RESET, times=1)
    client = rig.client()
    assert_failed(await client.send_to_group(GROUP, TEXT), "openapi_connection_lost", definite=False)
    assert len(rig.fake.sends) == 1
    assert (await client.send_to_group(GROUP, TEXT)).ok


async def test_a_hung_token_endpoint_is_a_definite_failure(rig: Rig) -> None:
    rig.fake.inject(Fault.HANG, times=1, endpoint="token")
    client = rig.client(timeout_s=0.3)
    assert_failed(await client.send_to_group(GROUP, TEXT), "openapi_token_failed", definite=True)
    assert rig.fake.sends == []


async def test_connection_refused_is_definite(rig: Rig) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    client = rig.client(api_base=f"http://127.0.0.1:{closed_port}")
    assert_failed(await client.send_to_group(GROUP, TEXT), "openapi_token_failed", definite=True)
    assert rig.sample("responder_openapi_calls_total", api="token", result="connection_failed") == 1


async def test_a_send_that_cannot_connect_is_definite(rig: Rig) -> None:
    client = rig.client()
    assert (await client.send_to_group(GROUP, TEXT)).ok
    await rig.server.close()
    assert_failed(await client.send_to_group(GROUP, TEXT), "openapi_connection_failed", definite=True)


@pytest.mark.parametrize(
    "reply",
    [
        Reply("feedCard", links=(FeedLink("t", "https://a.example/", "https://p.example/"),)),
        Reply(
            "actionCard", title="T", text="x", buttons=tuple(Button(f"{n}", "https://b/") for n in range(6))
        ),
    ],
)
async def test_unsendable_replies_are_refused_without_a_call(rig: Rig, reply: Reply) -> None:
    assert_failed(await rig.client().send_to_group(GROUP, reply), "openapi_unsendable", definite=True)
    assert rig.fake.calls == []


async def test_an_oversized_reply_arrives_cut_within_the_limit(rig: Rig) -> None:
    assert (await rig.client().send_to_group(GROUP, Reply("text", text="字" * 20_000))).ok
    assert rig.fake.rejections == []
    assert rig.fake.sends[0].msg_param["content"].endswith("…(truncated)")


# The monthly call cap


async def test_call_cap_refuses_without_a_network_call_until_the_month_turns(rig: Rig) -> None:
    client = rig.client(monthly_call_cap=2)
    assert (await client.send_to_group(GROUP, TEXT)).ok
    assert (await client.send_to_user("user123", TEXT)).ok
    calls = len(rig.fake.calls)
    assert_failed(await client.send_to_group(GROUP, TEXT), "openapi_call_cap", definite=True)
    assert len(rig.fake.calls) == calls
    assert rig.sample("responder_openapi_calls_this_month") == 2
    assert rig.sample("responder_openapi_refusals_total", reason="call_cap") == 1
    rig.clock.advance(3600)  # 2026-06-01 00:00 UTC
    assert (await client.send_to_group(GROUP, TEXT)).ok
    assert rig.sample("responder_openapi_calls_this_month") == 1


async def test_call_cap_counts_sends_and_retries_but_not_tokens(rig: Rig) -> None:
    client = rig.client(monthly_call_cap=3)
    rig.fake.inject(Fault.EXPIRED_TOKEN, times=1)
    assert (await client.send_to_group(GROUP, TEXT)).ok  # 2 token calls, 2 metered sends
    assert rig.sample("responder_openapi_calls_this_month") == 2
    assert (await client.send_to_group(GROUP, TEXT)).ok
    assert_failed(await client.send_to_group(GROUP, TEXT), "openapi_call_cap", definite=True)


async def test_concurrent_sends_never_pass_the_cap(rig: Rig) -> None:
    client = rig.client(monthly_call_cap=5)
    deliveries = await asyncio.gather(*(client.send_to_group(GROUP, TEXT) for _ in range(20)))
    assert sum(d.ok for d in deliveries) == 5 and len(rig.fake.sends) == 5
    assert {d.reason for d in deliveries if not d.ok} == {"openapi_call_cap"}


# Secrets


async def test_secret_and_tokens_never_appear_in_logs_reprs_or_results(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = rig.client(timeout_s=0.3)
    results: list[Delivery] = [await client.send_to_group(GROUP, TEXT)]
    for fault in (Fault.EXPIRED_TOKEN, Fault.QPS_LIMIT, Fault.SERVER_ERROR, Fault.HANG, Fault.RESET):
        rig.fake.inject(fault, times=1)
        results.append(await client.send_to_group(GROUP, TEXT))
        rig.clock.advance(60)
    results.append(await rig.client(client_secret="wrong-" + APP_SECRET).send_to_group(GROUP, TEXT))
    assert len(rig.fake.tokens) >= 2 and caplog.records
    secrets = [APP_SECRET, *rig.fake.tokens]
    exposed = caplog.text + repr(client) + repr(results) + repr(client._tokens)
    assert [s for s in secrets if s in exposed] == []
