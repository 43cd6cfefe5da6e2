"""InMemoryLedger: dedupe on msgId with a fake clock, concurrency and bounded memory."""

from __future__ import annotations

import asyncio

import pytest

from responder.delivery.claims import DEFAULT_TTL_S, Claim, InMemoryLedger, MessageLedger


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ledger(clock: FakeClock) -> InMemoryLedger:
    return InMemoryLedger(clock=clock)


def test_in_memory_ledger_satisfies_the_protocol(ledger: InMemoryLedger) -> None:
    store: MessageLedger = ledger
    assert store is ledger


async def test_first_claim_is_new_and_redelivery_while_answering_is_in_flight(
    ledger: InMemoryLedger,
) -> None:
    assert await ledger.claim("msg1") is Claim.NEW
    assert await ledger.claim("msg1") is Claim.IN_FLIGHT
    assert await ledger.claim("msg2") is Claim.NEW


async def test_redelivery_after_completion_is_done(ledger: InMemoryLedger) -> None:
    await ledger.claim("msg1")
    await ledger.complete("msg1", "sent")
    assert await ledger.claim("msg1") is Claim.DONE


@pytest.mark.parametrize("outcome", ["sent", "skipped", "dropped"])
async def test_every_outcome_marks_the_message_done(ledger: InMemoryLedger, outcome: str) -> None:
    await ledger.claim("msg1")
    await ledger.complete("msg1", outcome)
    assert await ledger.claim("msg1") is Claim.DONE


async def test_unknown_outcome_is_rejected(ledger: InMemoryLedger) -> None:
    await ledger.claim("msg1")
    with pytest.raises(ValueError, match="outcome"):
        await ledger.complete("msg1", "maybe")


async def test_released_message_can_be_claimed_again_by_a_redelivery(
    ledger: InMemoryLedger,
) -> None:
    await ledger.claim("msg1")
    await ledger.release("msg1")
    assert await ledger.claim("msg1") is Claim.NEW


async def test_release_after_completion_keeps_the_message_done(ledger: InMemoryLedger) -> None:
    await ledger.claim("msg1")
    await ledger.complete("msg1", "sent")
    await ledger.release("msg1")
    assert await ledger.claim("msg1") is Claim.DONE


async def test_done_message_is_forgotten_after_the_ttl(ledger: InMemoryLedger, clock: FakeClock) -> None:
    await ledger.claim("msg1")
    await ledger.complete("msg1", "sent")
    clock.now += DEFAULT_TTL_S - 1
    assert await ledger.claim("msg1") is Claim.DONE
    clock.now += 1
    assert await ledger.claim("msg1") is Claim.NEW


async def test_redelivery_sixty_seconds_later_is_still_deduplicated(
    ledger: InMemoryLedger, clock: FakeClock
) -> None:
    await ledger.claim("msg1")
    clock.now += 61
    assert await ledger.claim("msg1") is Claim.IN_FLIGHT
    await ledger.complete("msg1", "sent")
    clock.now += 61
    assert await ledger.claim("msg1") is Claim.DONE


async def test_abandoned_claim_expires_after_its_lease(clock: FakeClock) -> None:
    ledger = InMemoryLedger(clock=clock, lease_s=120)
    await ledger.claim("msg1")
    clock.now += 119
    assert await ledger.claim("msg1") is Claim.IN_FLIGHT
    clock.now += 1
    assert await ledger.claim("msg1") is Claim.NEW


def test_ttl_shorter_than_ten_minutes_is_refused() -> None:
    with pytest.raises(ValueError, match="ttl_s"):
        InMemoryLedger(ttl_s=599)


async def test_ttl_is_configurable(clock: FakeClock) -> None:
    ledger = InMemoryLedger(ttl_s=3600, clock=clock)
    await ledger.claim("msg1")
    await ledger.complete("msg1", "skipped")
    clock.now += 3599
    assert await ledger.claim("msg1") is Claim.DONE


async def test_concurrent_claims_of_one_message_have_exactly_one_owner(
    ledger: InMemoryLedger,
) -> None:
    claims = await asyncio.gather(*(ledger.claim("msg1") for _ in range(50)))
    assert claims.count(Claim.NEW) == 1
    assert claims.count(Claim.IN_FLIGHT) == 49


async def test_concurrent_deliveries_answer_each_message_once(ledger: InMemoryLedger) -> None:
    answered: list[str] = []
    arrived = 0
    all_arrived = asyncio.Event()

    async def deliver(msg_id: str) -> None:
        nonlocal arrived
        claim = await ledger.claim(msg_id)
        arrived += 1
        if arrived == 100:
            all_arrived.set()
        if claim is not Claim.NEW:
            return
        await all_arrived.wait()  # every redelivery arrives while the owner is answering
        answered.append(msg_id)
        await ledger.complete(msg_id, "sent")

    await asyncio.gather(*(deliver(f"msg{i % 10}") for i in range(100)))
    assert sorted(answered) == sorted(f"msg{i}" for i in range(10))


async def test_memory_stays_bounded_when_two_hundred_thousand_messages_complete(
    clock: FakeClock,
) -> None:
    ledger = InMemoryLedger(clock=clock, max_entries=100_000)
    for i in range(200_000):
        await ledger.claim(f"msg{i}")
        await ledger.complete(f"msg{i}", "sent")
        assert len(ledger) <= 100_000
    assert len(ledger) == 100_000
    # The oldest DONE entries went first; the newest are still remembered.
    assert await ledger.claim("msg199999") is Claim.DONE
    assert await ledger.claim("msg0") is Claim.NEW


async def test_full_of_in_flight_claims_answers_overloaded(clock: FakeClock) -> None:
    ledger = InMemoryLedger(clock=clock, max_entries=3)
    assert [await ledger.claim(f"msg{i}") for i in range(3)] == [Claim.NEW] * 3
    assert await ledger.claim("msg3") is Claim.OVERLOADED
    assert len(ledger) == 3
    await ledger.complete("msg0", "sent")
    assert await ledger.claim("msg3") is Claim.NEW  # evicts the DONE msg0
    assert await ledger.claim("msg0") is Claim.OVERLOADED


async def test_two_hundred_thousand_in_flight_claims_never_exceed_the_bound(
    clock: FakeClock,
) -> None:
    ledger = InMemoryLedger(clock=clock, max_entries=100_000)
    claims = [await ledger.claim(f"msg{i}") for i in range(200_000)]
    assert len(ledger) == 100_000
    assert claims.count(Claim.NEW) == 100_000
    assert claims.count(Claim.OVERLOADED) == 100_000


async def test_expired_entries_free_room_for_new_claims(clock: FakeClock) -> None:
    ledger = InMemoryLedger(clock=clock, max_entries=2, lease_s=60)
    await ledger.claim("msg0")
    await ledger.claim("msg1")
    clock.now += 60
    assert await ledger.claim("msg2") is Claim.NEW
    assert ledger.in_flight == 1
