"""The Redis backend's guards against Debian's real redis-server: two "replicas" (two backends
in this process, each with its own connection) agree on claims, cooldowns, the send budget and
backoffs; a dead or hanging Redis makes each guard answer from memory at once, and a Redis that
comes back is used again."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from responder.delivery.claims import Claim
from responder.delivery.pipeline import Guards
from responder.engine.cooldowns import Cooldown
from responder.metrics import Metrics
from responder.settings import AppOptions, StateSettings
from responder.state import StateBackend, open_state
from tests.conftest import eventually
from tests.process import metric
from tests.redis_server import RedisServer

Open = Callable[..., Awaitable[tuple[StateBackend, Metrics]]]


def settings_for(url: str, **changes: object) -> StateSettings:
    values: dict[str, object] = {
        "backend": "redis",
        "url": url,
        "key_prefix": "test:",
        "timeout_s": 0.25,
        "connect_timeout_s": 1.0,
    }
    values.update(changes)
    return StateSettings(**values)  # type: ignore[arg-type]


@pytest.fixture
async def open_backend() -> AsyncIterator[Open]:
    opened: list[StateBackend] = []

    async def open_(url: str, **changes: object) -> tuple[StateBackend, Metrics]:
        metrics = Metrics()
        backend = await open_state(settings_for(url, **changes), metrics)
        opened.append(backend)
        return backend, metrics

    yield open_
    for backend in opened:
        await backend.close()


@pytest.fixture
async def replicas(redis_server: RedisServer, open_backend: Open) -> tuple[Guards, Guards]:
    options = AppOptions(sends_per_window=3, send_window_s=60)
    first, _ = await open_backend(redis_server.url)
    second, _ = await open_backend(redis_server.url)
    return first.guards(options), second.guards(options)


def up(metrics: Metrics) -> float | None:
    return metric(metrics.exposition().decode(), "responder_state_backend_up")


# Claims


async def test_a_message_is_claimed_once_among_replicas(replicas: tuple[Guards, Guards]) -> None:
    a, b = replicas
    assert await a.claims.claim("msg1") is Claim.NEW
    assert await b.claims.claim("msg1") is Claim.IN_FLIGHT
    await a.claims.complete("msg1", "sent")
    assert await b.claims.claim("msg1") is Claim.DONE
    assert await a.claims.claim("msg1") is Claim.DONE


async def test_a_released_message_may_be_answered_by_another_replica(replicas: tuple[Guards, Guards]) -> None:
    a, b = replicas
    assert await a.claims.claim("msg1") is Claim.NEW
    await a.claims.release("msg1")
    assert await b.claims.claim("msg1") is Claim.NEW


async def test_a_late_release_never_erases_a_done(replicas: tuple[Guards, Guards]) -> None:
    a, b = replicas
    assert await a.claims.claim("msg1") is Claim.NEW
    await a.claims.complete("msg1", "sent")
    await b.claims.release("msg1")
    assert await b.claims.claim("msg1") is Claim.DONE


async def test_concurrent_claims_of_one_message_elect_one_owner(
    redis_server: RedisServer, open_backend: Open
) -> None:
    backends = [(await open_backend(redis_server.url))[0] for _ in range(4)]
    ledgers = [backend.guards(AppOptions()).claims for backend in backends]
    answers = await asyncio.gather(*(ledger.claim("msg-race") for ledger in ledgers for _ in range(5)))
    assert answers.count(Claim.NEW) == 1
    assert set(answers) == {Claim.NEW, Claim.IN_FLIGHT}


async def test_slot_ledgers_and_the_msgid_ledger_never_share_keys(
    redis_server: RedisServer, open_backend: Open
) -> None:
    backend, _ = await open_backend(redis_server.url)
    messages, slots = backend.guards(AppOptions()).claims, backend.ledger("slot", 900)
    assert await messages.claim("same-key") is Claim.NEW
    assert await slots.claim("same-key") is Claim.NEW


async def test_key_prefix_separates_robots_on_one_redis(
    redis_server: RedisServer, open_backend: Open
) -> None:
    one, _ = await open_backend(redis_server.url, key_prefix="robot-one:")
    two, _ = await open_backend(redis_server.url, key_prefix="robot-two:")
    assert await one.guards(AppOptions()).claims.claim("msg1") is Claim.NEW
    assert await two.guards(AppOptions()).claims.claim("msg1") is Claim.NEW


# Cooldowns


async def test_a_cooldown_set_on_one_replica_holds_on_the_other(replicas: tuple[Guards, Guards]) -> None:
    a, b = replicas
    rule = Cooldown(per="sender", seconds=60, reply="slow down")
    assert await a.cooldowns.check("ip", rule, "alice")
    assert not await b.cooldowns.check("ip", rule, "alice")
    assert await b.cooldowns.check("ip", rule, "bob")
    assert await b.cooldowns.notice_due("ip", rule, "alice")
    assert not await a.cooldowns.notice_due("ip", rule, "alice")


async def test_max_hits_are_counted_across_replicas(replicas: tuple[Guards, Guards]) -> None:
    a, b = replicas
    rule = Cooldown(per="conversation", seconds=60, max_hits=2)
    assert [await g.cooldowns.check("ip", rule, "cid1") for g in (a, b, a, b)] == [True, True, False, False]


async def test_a_changed_cooldown_starts_fresh_counters(replicas: tuple[Guards, Guards]) -> None:
    a, b = replicas
    assert await a.cooldowns.check("ip", Cooldown(per="sender", seconds=60), "alice")
    assert await b.cooldowns.check("ip", Cooldown(per="sender", seconds=30), "alice")


async def test_the_window_slides_on_the_servers_clock(replicas: tuple[Guards, Guards]) -> None:
    a, b = replicas
    rule = Cooldown(per="sender", seconds=0.2)
    assert await a.cooldowns.check("ip", rule, "alice")
    assert not await b.cooldowns.check("ip", rule, "alice")
    await eventually(lambda: True)  # yield once; the window itself is waited for below
    deadline = time.monotonic() + 5
    while not await b.cooldowns.check("ip", rule, "alice"):
        assert time.monotonic() < deadline, "the cooldown never ended"
        await asyncio.sleep(0.02)  # polling under a deadline


# The send budget


async def test_the_budget_is_one_budget_for_both_replicas(replicas: tuple[Guards, Guards]) -> None:
    a, b = replicas
    now = time.monotonic()
    granted = [await g.budget.acquire("cid1", now) for g in (a, b, a, b, a)]
    assert granted == [True, True, True, False, False]
    assert await b.budget.acquire("cid2", now)  # other conversations are not affected


async def test_a_waiter_gets_the_next_slot_freed_on_any_replica(
    redis_server: RedisServer, open_backend: Open
) -> None:
    options = AppOptions(sends_per_window=1, send_window_s=0.3)
    a = (await open_backend(redis_server.url))[0].guards(options)
    b = (await open_backend(redis_server.url))[0].guards(options)
    started = time.monotonic()
    assert await a.budget.acquire("cid1", started)
    assert not await b.budget.acquire("cid1", started)  # no wait allowed: refused at once
    assert await b.budget.acquire("cid1", started + 5)  # waits for the window to pass
    assert time.monotonic() - started >= 0.25


async def test_a_backoff_on_one_replica_silences_the_conversation_on_the_other(
    replicas: tuple[Guards, Guards],
) -> None:
    a, b = replicas
    await a.budget.backoff("cid1", 60)
    far = time.monotonic() + 30
    assert not await b.budget.acquire("cid1", far)  # blocked past any deadline: refused at once
    assert await b.budget.acquire("cid2", far)


async def test_a_second_conversation_refused_blocks_the_robot_on_every_replica(
    replicas: tuple[Guards, Guards], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = replicas
    await a.budget.backoff("cid1", 60)
    await b.budget.backoff("cid2", 60)
    assert "outbound_backoff_escalated" in caplog.text
    assert not await a.budget.acquire("cid3", time.monotonic() + 30)


async def test_backoff_all_blocks_every_replica(replicas: tuple[Guards, Guards]) -> None:
    a, b = replicas
    await a.budget.backoff_all(60)
    assert not await b.budget.acquire("cid9", time.monotonic() + 30)


# Redis unavailable


async def test_a_stopped_redis_makes_every_guard_answer_from_memory_and_a_restarted_one_is_used_again(
    redis_server: RedisServer, open_backend: Open, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    backend, metrics = await open_backend(redis_server.url)
    guards = backend.guards(AppOptions())
    assert up(metrics) == 1
    await redis_server.stop()
    for i in range(10):
        assert await guards.claims.claim(f"down{i}") is Claim.NEW
        await guards.claims.complete(f"down{i}", "sent")
    assert await guards.claims.claim("down0") is Claim.DONE  # the in-memory twin remembers
    assert await guards.cooldowns.check("ip", Cooldown(per="sender", seconds=60), "alice")
    assert await guards.budget.acquire("cid1", time.monotonic())
    assert up(metrics) == 0
    assert backend.status()["reachable"] is False
    assert caplog.text.count("state_backend_unavailable") == 1  # one line, not one per call

    await redis_server.start_again()  # empty: nothing was saved
    await eventually(lambda: up(metrics) == 1, timeout=10)
    assert backend.status()["reachable"] is True
    recovered = [m for r in caplog.records if (m := r.getMessage()).startswith("state_backend_recovered")]
    assert recovered and "fallbacks=" in recovered[0] and "fallbacks=0" not in recovered[0]
    # A message this replica answered during the outage is still known here, and now to all.
    assert await guards.claims.claim("down3") is Claim.DONE
    others = (await open_backend(redis_server.url))[0].guards(AppOptions())
    assert await others.claims.claim("down3") is Claim.DONE
    assert await guards.claims.claim("fresh") is Claim.NEW
    assert await others.claims.claim("fresh") is Claim.IN_FLIGHT


async def test_redis_down_at_start_up_is_reported_at_once(tmp_path: object, open_backend: Open) -> None:
    from tests.redis_server import free_port

    backend, metrics = await open_backend(f"redis://127.0.0.1:{free_port()}/0")
    assert up(metrics) == 0
    status = backend.status()
    assert status["reachable"] is False and "ConnectionError" in status["last_error"]
    assert await backend.guards(AppOptions()).claims.claim("msg1") is Claim.NEW


async def test_a_hanging_redis_costs_each_call_at_most_the_timeout_and_then_nothing() -> None:
    """A server that accepts and never answers: calls wait out the timeout until the breaker
    opens, and from then on none reaches it."""
    requests: list[bytes] = []
    writers: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        while chunk := await reader.read(4096):
            requests.append(chunk)

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    url = f"redis://127.0.0.1:{server.sockets[0].getsockname()[1]}/0"
    metrics = Metrics()
    backend = await open_state(settings_for(url, timeout_s=0.1, connect_timeout_s=0.1), metrics)
    try:
        claims = backend.guards(AppOptions()).claims
        assert up(metrics) == 0  # the first probe already timed out
        seen = len(requests)
        assert [await claims.claim(f"m{i}") for i in range(20)] == [Claim.NEW] * 20
        assert len(requests) == seen  # the open breaker kept every call away from it
    finally:
        await backend.close()
        server.close()
        for writer in writers:
            writer.close()
        await server.wait_closed()


def test_the_url_shown_never_carries_the_password() -> None:
    from responder.state.urls import display_url, url_password

    url = "redis://user:p%40ss-w0rd@redis.internal:6380/2"
    assert display_url(url) == "redis://redis.internal:6380/2"
    assert url_password(url) == "p@ss-w0rd"
