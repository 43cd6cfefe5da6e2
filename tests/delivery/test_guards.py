"""Cooldowns, OutboundBudget and Gate on virtual time: no test waits in real time."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from dataclasses import replace

import pytest

from responder.delivery.budget import OutboundBudget, monotonic_deadline
from responder.delivery.gate import Gate
from responder.dingtalk import Message
from responder.engine.cooldowns import Cooldown, Cooldowns

FAR = 1e12  # a deadline that never binds


class FakeTime:
    """A virtual clock; sleepers wake only when the test advances it."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(seconds, 0.0), next(self._order), future))
        await future

    @property
    def sleepers(self) -> int:
        return sum(not future.done() for _, _, future in self._sleepers)

    async def advance(self, seconds: float) -> None:
        target = self.now + seconds
        await run_ready()
        while self._sleepers and self._sleepers[0][0] <= target:
            wake_at, _, future = heapq.heappop(self._sleepers)
            if future.done():  # its sleeper was cancelled
                continue
            self.now = wake_at
            future.set_result(None)
            await run_ready()
        self.now = target


async def run_ready() -> None:
    """Let every task that is ready run to its next await; no time passes."""
    for _ in range(10):
        await asyncio.sleep(0)


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


def make_message(**changes: object) -> Message:
    message = Message(
        msg_id="msg1",
        msgtype="text",
        text="ip",
        conversation_id="cidGROUP",
        is_group=True,
        conversation_title="ops",
        sender_nick="Zhang San",
        sender_staff_id="user123",
        sender_id="$:LWCP_v1:$SENDER",
        is_admin=False,
        session_webhook="https://oapi.dingtalk.com/robot/sendBySession?session=x",
        session_webhook_expires_ms=None,
        created_ms=None,
        robot_code="dingROBOT",
    )
    return replace(message, **changes)  # type: ignore[arg-type]


# Cooldowns


async def test_second_hit_inside_the_window_is_refused_and_allowed_after_it(
    fake_time: FakeTime,
) -> None:
    cooldowns = Cooldowns(clock=fake_time)
    rule = Cooldown(per="sender", seconds=30)
    assert await cooldowns.check("ip", rule, "alice")
    fake_time.now += 29.9
    assert not await cooldowns.check("ip", rule, "alice")
    fake_time.now += 0.1
    assert await cooldowns.check("ip", rule, "alice")


async def test_max_hits_allows_a_burst_then_slides(fake_time: FakeTime) -> None:
    cooldowns = Cooldowns(clock=fake_time)
    rule = Cooldown(per="conversation", seconds=30, max_hits=3)
    allowed = []
    for _ in range(4):
        allowed.append(await cooldowns.check("ip", rule, "cid1"))
        fake_time.now += 5
    assert allowed == [True, True, True, False]
    fake_time.now = 1030  # the hit at 1000 has left the window, those at 1005 and 1010 have not
    assert await cooldowns.check("ip", rule, "cid1")
    assert not await cooldowns.check("ip", rule, "cid1")
    fake_time.now = 1035
    assert await cooldowns.check("ip", rule, "cid1")


async def test_refused_hits_do_not_extend_the_cooldown(fake_time: FakeTime) -> None:
    cooldowns = Cooldowns(clock=fake_time)
    rule = Cooldown(per="sender", seconds=30)
    assert await cooldowns.check("ip", rule, "alice")
    for _ in range(29):
        fake_time.now += 1
        assert not await cooldowns.check("ip", rule, "alice")
    fake_time.now += 1
    assert await cooldowns.check("ip", rule, "alice")


async def test_keys_and_rules_cool_down_independently(fake_time: FakeTime) -> None:
    cooldowns = Cooldowns(clock=fake_time)
    rule = Cooldown(per="sender", seconds=30)
    assert await cooldowns.check("ip", rule, "alice")
    assert await cooldowns.check("ip", rule, "bob")
    assert await cooldowns.check("time", rule, "alice")
    assert not await cooldowns.check("ip", rule, "alice")


async def test_global_cooldown_ignores_the_key(fake_time: FakeTime) -> None:
    cooldowns = Cooldowns(clock=fake_time)
    rule = Cooldown(per="global", seconds=30)
    assert await cooldowns.check("deploy", rule, "alice")
    assert not await cooldowns.check("deploy", rule, "bob")


async def test_changed_cooldown_after_reload_starts_fresh_counters(fake_time: FakeTime) -> None:
    cooldowns = Cooldowns(clock=fake_time)
    assert await cooldowns.check("ip", Cooldown(per="sender", seconds=30), "alice")
    assert await cooldowns.check("ip", Cooldown(per="sender", seconds=10), "alice")
    assert not await cooldowns.check("ip", Cooldown(per="sender", seconds=30, reply="hi"), "alice")


async def test_notice_is_due_once_per_window(fake_time: FakeTime) -> None:
    cooldowns = Cooldowns(clock=fake_time)
    rule = Cooldown(per="sender", seconds=30, reply="slow down")
    assert await cooldowns.check("ip", rule, "alice")
    assert not await cooldowns.check("ip", rule, "alice")
    assert await cooldowns.notice_due("ip", rule, "alice")
    assert not await cooldowns.notice_due("ip", rule, "alice")
    fake_time.now += 30
    assert await cooldowns.notice_due("ip", rule, "alice")


def test_key_for_picks_sender_conversation_or_global() -> None:
    message = make_message()
    assert Cooldown(per="sender", seconds=1).key_for(message) == "user123"
    assert Cooldown(per="conversation", seconds=1).key_for(message) == "cidGROUP"
    assert Cooldown(per="global", seconds=1).key_for(message) == ""


def test_sender_outside_the_organisation_is_keyed_by_sender_id() -> None:
    message = make_message(sender_staff_id="")
    assert Cooldown(per="sender", seconds=1).key_for(message) == "$:LWCP_v1:$SENDER"


@pytest.mark.parametrize(
    ("per", "seconds", "max_hits"),
    [("user", 30, 1), ("sender", 0, 1), ("sender", 30, 0), ("sender", float("nan"), 1)],
)
def test_invalid_cooldown_is_refused(per: str, seconds: float, max_hits: int) -> None:
    with pytest.raises(ValueError):
        Cooldown(per=per, seconds=seconds, max_hits=max_hits)


async def test_cooldown_memory_stays_bounded_over_two_hundred_thousand_keys(
    fake_time: FakeTime,
) -> None:
    cooldowns = Cooldowns(clock=fake_time, max_keys=100_000)
    rule = Cooldown(per="sender", seconds=3600)
    for i in range(200_000):
        assert await cooldowns.check("ip", rule, f"user{i}")
        assert len(cooldowns) <= 100_000
    assert len(cooldowns) == 100_000
    assert not await cooldowns.check("ip", rule, "user199999")  # recent keys are remembered


async def test_expired_cooldown_counters_are_pruned(fake_time: FakeTime) -> None:
    cooldowns = Cooldowns(clock=fake_time)
    short, long = Cooldown(per="sender", seconds=10), Cooldown(per="sender", seconds=100)
    for i in range(1000):
        await cooldowns.check("long", long, f"user{i}")
        await cooldowns.check("short", short, f"user{i}")
    fake_time.now += 10
    await cooldowns.check("short", short, "someone")
    assert len(cooldowns) == 1001
    fake_time.now += 90
    await cooldowns.check("short", short, "someone")
    assert len(cooldowns) == 1


# OutboundBudget


async def test_twenty_sends_pass_at_once_and_the_twenty_first_waits_a_window(
    fake_time: FakeTime,
) -> None:
    budget = OutboundBudget(per_window=20, window_s=60, clock=fake_time, sleep=fake_time.sleep)
    for _ in range(20):
        assert await budget.acquire("cid1", FAR)
    waiter = asyncio.create_task(budget.acquire("cid1", FAR))
    await fake_time.advance(59.9)
    assert not waiter.done()
    await fake_time.advance(0.1)
    assert await asyncio.wait_for(waiter, 1)
    assert fake_time.now == 1060


async def test_slot_after_the_deadline_is_refused_without_waiting(fake_time: FakeTime) -> None:
    budget = OutboundBudget(per_window=2, window_s=60, clock=fake_time, sleep=fake_time.sleep)
    assert await budget.acquire("cid1", FAR)
    assert await budget.acquire("cid1", FAR)
    assert not await budget.acquire("cid1", fake_time.now + 59)
    assert fake_time.sleepers == 0


async def test_refused_waiter_does_not_take_a_slot(fake_time: FakeTime) -> None:
    budget = OutboundBudget(per_window=1, window_s=60, clock=fake_time, sleep=fake_time.sleep)
    assert await budget.acquire("cid1", FAR)
    assert not await budget.acquire("cid1", fake_time.now + 10)
    waiter = asyncio.create_task(budget.acquire("cid1", FAR))
    await fake_time.advance(60)
    assert await asyncio.wait_for(waiter, 1)
    assert fake_time.now == 1060


async def test_no_caller_waits_longer_than_max_wait(fake_time: FakeTime) -> None:
    budget = OutboundBudget(per_window=1, window_s=60, clock=fake_time, sleep=fake_time.sleep, max_wait_s=120)
    assert await budget.acquire("cid1", FAR)
    waiters = [asyncio.create_task(budget.acquire("cid1", FAR)) for _ in range(3)]
    await fake_time.advance(180)
    assert [await asyncio.wait_for(w, 1) for w in waiters] == [True, True, False]


async def test_conversations_have_separate_budgets(fake_time: FakeTime) -> None:
    budget = OutboundBudget(per_window=1, clock=fake_time, sleep=fake_time.sleep)
    assert await budget.acquire("cid1", FAR)
    assert await budget.acquire("cid2", FAR)
    assert not await budget.acquire("cid1", fake_time.now + 1)


async def test_concurrent_senders_never_exceed_the_limit_in_any_window(
    fake_time: FakeTime,
) -> None:
    budget = OutboundBudget(
        per_window=20, window_s=61, clock=fake_time, sleep=fake_time.sleep, max_wait_s=FAR
    )
    sent_at: list[tuple[float, int]] = []

    async def send(n: int) -> None:
        assert await budget.acquire("cid1", FAR)
        sent_at.append((fake_time.now, n))

    senders = asyncio.gather(*(send(n) for n in range(100)))
    await fake_time.advance(61 * 5)
    await asyncio.wait_for(senders, 1)
    times = [t for t, _ in sent_at]
    assert len(times) == 100
    assert [n for _, n in sent_at] == list(range(100))  # first come, first served
    assert max(sum(t <= u < t + 61 for u in times) for t in times) == 20
    assert times[-1] == 1000 + 61 * 4


async def test_deadlines_decide_at_once_who_will_be_served(fake_time: FakeTime) -> None:
    budget = OutboundBudget(per_window=1, window_s=60, clock=fake_time, sleep=fake_time.sleep)
    assert await budget.acquire("cid1", FAR)
    first = asyncio.create_task(budget.acquire("cid1", fake_time.now + 60))
    second = asyncio.create_task(budget.acquire("cid1", fake_time.now + 90))
    third = asyncio.create_task(budget.acquire("cid1", fake_time.now + 120))
    await run_ready()
    assert second.done() and not second.result()  # its slot would be at +120
    await fake_time.advance(120)
    assert await asyncio.wait_for(first, 1)
    assert await asyncio.wait_for(third, 1)


async def test_cancelled_waiter_gives_its_slot_back(fake_time: FakeTime) -> None:
    budget = OutboundBudget(per_window=1, window_s=60, clock=fake_time, sleep=fake_time.sleep)
    assert await budget.acquire("cid1", FAR)
    cancelled = asyncio.create_task(budget.acquire("cid1", FAR))
    await run_ready()
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    waiter = asyncio.create_task(budget.acquire("cid1", fake_time.now + 60))
    await fake_time.advance(60)
    assert await asyncio.wait_for(waiter, 1)


async def test_backoff_blocks_the_conversation_until_it_ends(fake_time: FakeTime) -> None:
    budget = OutboundBudget(clock=fake_time, sleep=fake_time.sleep, max_wait_s=FAR)
    await budget.backoff("cid1", 600)
    assert not await budget.acquire("cid1", fake_time.now + 599)
    assert await budget.acquire("cid2", fake_time.now)
    waiter = asyncio.create_task(budget.acquire("cid1", fake_time.now + 601))
    await fake_time.advance(599)
    assert not waiter.done()
    await fake_time.advance(1)
    assert await asyncio.wait_for(waiter, 1)


async def test_backoff_during_a_wait_postpones_the_waiter(fake_time: FakeTime) -> None:
    budget = OutboundBudget(per_window=1, window_s=60, clock=fake_time, sleep=fake_time.sleep, max_wait_s=FAR)
    assert await budget.acquire("cid1", FAR)
    patient = asyncio.create_task(budget.acquire("cid1", fake_time.now + 1000))
    hurried = asyncio.create_task(budget.acquire("cid1", fake_time.now + 200))
    await fake_time.advance(30)
    await budget.backoff("cid1", 600)  # throttled until 1630
    await fake_time.advance(100)
    assert not patient.done()
    assert hurried.done() and not hurried.result()
    await fake_time.advance(500)
    assert await asyncio.wait_for(patient, 1)
    assert fake_time.now == 1630


async def test_backoff_in_a_second_conversation_throttles_the_whole_robot(
    fake_time: FakeTime,
) -> None:
    budget = OutboundBudget(clock=fake_time, sleep=fake_time.sleep, max_wait_s=FAR)
    await budget.backoff("cid1", 600)
    assert await budget.acquire("cid3", fake_time.now)
    await budget.backoff("cid2", 600)
    assert not await budget.acquire("cid3", fake_time.now + 599)
    waiter = asyncio.create_task(budget.acquire("cid3", fake_time.now + 600))
    await fake_time.advance(600)
    assert await asyncio.wait_for(waiter, 1)


async def test_backoff_after_the_previous_one_ended_stays_local(fake_time: FakeTime) -> None:
    budget = OutboundBudget(clock=fake_time, sleep=fake_time.sleep)
    await budget.backoff("cid1", 600)
    fake_time.now += 600
    await budget.backoff("cid2", 600)
    assert await budget.acquire("cid3", fake_time.now)


async def test_backoff_all_blocks_every_conversation(fake_time: FakeTime) -> None:
    budget = OutboundBudget(clock=fake_time, sleep=fake_time.sleep)
    await budget.backoff_all(600)
    assert not await budget.acquire("cid1", fake_time.now + 599)
    assert not await budget.acquire("cid2", fake_time.now + 599)


async def test_budget_memory_stays_bounded_over_two_hundred_thousand_conversations(
    fake_time: FakeTime,
) -> None:
    budget = OutboundBudget(clock=fake_time, sleep=fake_time.sleep, max_conversations=100_000)
    for i in range(200_000):
        assert await budget.acquire(f"cid{i}", fake_time.now)
        assert len(budget) <= 100_000
        fake_time.now += 0.001  # idle lanes are forgotten a window later


async def test_budget_full_of_live_conversations_refuses_new_ones(fake_time: FakeTime) -> None:
    budget = OutboundBudget(clock=fake_time, sleep=fake_time.sleep, max_conversations=1000)
    results = [await budget.acquire(f"cid{i}", FAR) for i in range(2000)]
    assert results == [True] * 1000 + [False] * 1000
    assert len(budget) == 1000
    assert await budget.acquire("cid5", FAR)  # known conversations keep their lane
    fake_time.now += 61
    assert await budget.acquire("cid1999", FAR)


def test_monotonic_deadline_converts_the_webhook_expiry() -> None:
    deadline = monotonic_deadline(expires_ms=1_700_005_400_000, now_ms=1_700_000_000_000, now=50.0)
    assert deadline == 50.0 + 5400 - 5


# Gate


def test_gate_admits_up_to_its_limit_and_refuses_beyond() -> None:
    gate = Gate(2)
    first, second, third = gate.try_enter(), gate.try_enter(), gate.try_enter()
    assert first and second and not third
    first.release()
    assert gate.try_enter()


def test_gate_pass_releases_once_however_often_it_is_released() -> None:
    gate = Gate(1)
    admitted = gate.try_enter()
    admitted.release()
    admitted.release()
    refused = gate.try_enter(), gate.try_enter()
    assert [bool(p) for p in refused] == [True, False]
    refused[1].release()
    assert gate.in_use == 1


def test_gate_pass_as_context_manager_releases_on_error() -> None:
    gate = Gate(1)
    with pytest.raises(RuntimeError), gate.try_enter() as admitted:
        assert admitted
        raise RuntimeError("handler failed")
    assert gate.in_use == 0


async def test_gate_sheds_concurrent_work_beyond_its_limit() -> None:
    gate = Gate(3)
    release = asyncio.Event()

    async def handle() -> bool:
        with gate.try_enter() as admitted:
            if not admitted:
                return False
            await release.wait()
            return True

    handlers = [asyncio.create_task(handle()) for _ in range(10)]
    await run_ready()
    assert gate.in_use == 3
    release.set()
    results = await asyncio.gather(*handlers)
    assert results.count(True) == 3
    assert gate.in_use == 0
