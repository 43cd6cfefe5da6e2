"""Scheduler on virtual time: each slot once, missed and caught-up slots, reloads, the ledger."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from responder.delivery.claims import Claim, InMemoryLedger
from responder.metrics import Metrics
from responder.schedule.runner import Scheduler, slot_key
from responder.schedule.timing import Timing
from tests.schedule.virtual_time import WallClock, run_virtual, until

HOUR = 3600.0
DAY = 24 * HOUR
START = datetime(2024, 5, 1, 0, 10, tzinfo=UTC)
HOURLY = Timing.from_every("1h", "UTC")
MINUTELY = Timing.from_every("1m", "UTC")


@dataclass(frozen=True)
class Spec:
    """What the integrator's compiled schedule will look like to the runner, plus a payload."""

    name: str
    timing: Timing
    catch_up_s: float | None = None
    text: str = ""


@dataclass
class Call:
    name: str
    slot: datetime
    at: float  # the wall clock when fire was called
    spec: Spec


@dataclass
class Recorder:
    """The fire callback: records each call; `hold` makes fires wait; `answer` is the result."""

    clock: Callable[[], float]
    calls: list[Call] = field(default_factory=list)
    answer: str = "sent"
    hold: asyncio.Event | None = None
    running: int = 0
    most_running: int = 0
    busy_for: float = 0.0

    async def fire(self, spec: Spec, slot: datetime) -> str:
        self.calls.append(Call(spec.name, slot, self.clock(), spec))
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            if self.hold is not None:
                await self.hold.wait()
            if self.busy_for:
                await asyncio.sleep(self.busy_for)
        finally:
            self.running -= 1
        return self.answer

    def slots(self, name: str | None = None) -> list[datetime]:
        return [call.slot for call in self.calls if name is None or call.name == name]


def loop_ledger() -> InMemoryLedger:
    """An in-memory ledger whose TTLs run on the (virtual) loop's clock."""
    return InMemoryLedger(clock=asyncio.get_running_loop().time)


def scheduler(
    specs: list[Spec], recorder: Recorder, clock: Callable[[], float], **options: object
) -> Scheduler[Spec]:
    options.setdefault("ledger", loop_ledger())
    return Scheduler(specs, recorder.fire, clock=clock, **options)  # type: ignore[arg-type]


def at(*args: int, zone: ZoneInfo | None = None) -> datetime:
    return datetime(*args, tzinfo=zone or UTC)  # type: ignore[misc]


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def missed_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith("schedule_slot_missed")]


Scenario = Callable[[WallClock], Awaitable[None]]


def test_a_day_of_hourly_slots_fires_each_slot_once_on_time(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="responder.schedule.runner")
    metrics = Metrics()
    seen: dict[str, object] = {}

    async def scenario(clock: WallClock) -> None:
        recorder = Recorder(clock)
        runner = scheduler([Spec("hourly", HOURLY)], recorder, clock, metrics=metrics)
        runner.start()
        await asyncio.sleep(DAY)
        await runner.stop()
        seen.update(recorder=recorder, status=runner.status())

    run_virtual(scenario, START)
    recorder = seen["recorder"]
    assert isinstance(recorder, Recorder)
    assert recorder.slots() == [START.replace(minute=0) + timedelta(hours=h) for h in range(1, 25)]
    assert all(abs(call.at - call.slot.timestamp()) < 0.01 for call in recorder.calls)
    # 00:00 had passed 10 minutes before start-up, with no catch_up: missed, said quietly
    # in the log and not counted (a fresh deployment has missed nothing of its own).
    [line] = missed_lines(caplog)
    assert line.levelno == logging.INFO
    assert "slot=2024-05-01T00:00:00+00:00 missed=1" in line.getMessage()
    assert "reason=not_running" in line.getMessage()
    [status] = seen["status"]  # type: ignore[misc]
    assert status["counts"] == {"sent": 24}
    assert status["last_slot"] == "2024-05-02T00:00:00+00:00"
    assert status["next_fire"] == "2024-05-02T01:00:00+00:00"
    assert status["timing"] == "every 1h UTC"
    assert sample(metrics, "responder_schedule_fires_total", schedule="hourly", result="sent") == 24
    assert sample(metrics, "responder_schedule_next_fire_timestamp_seconds", schedule="hourly") == (
        at(2024, 5, 2, 1).timestamp()
    )


def test_cron_slots_fire_at_their_zones_local_time() -> None:
    shanghai = ZoneInfo("Asia/Shanghai")
    recorders: list[Recorder] = []

    async def scenario(clock: WallClock) -> None:
        recorder = Recorder(clock)
        recorders.append(recorder)
        weekdays = Timing.from_cron("0 9,18 * * 1-5", "Asia/Shanghai")
        runner = scheduler([Spec("report", weekdays)], recorder, clock)
        runner.start()
        await asyncio.sleep(7 * DAY)
        await runner.stop()

    run_virtual(scenario, at(2024, 5, 6, zone=shanghai))  # a Monday, local midnight
    slots = recorders[0].slots()
    assert len(slots) == 10
    assert {slot.strftime("%a %H:%M%z") for slot in slots[:2]} == {"Mon 09:00+0800", "Mon 18:00+0800"}
    assert all(slot.tzinfo == shanghai for slot in slots)
    assert all(abs(call.at - call.slot.timestamp()) < 0.01 for call in recorders[0].calls)


def test_slots_passed_while_the_machine_slept_are_missed_with_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="responder.schedule.runner")
    recorders: list[Recorder] = []

    async def scenario(clock: WallClock) -> None:
        recorder = Recorder(clock)
        recorders.append(recorder)
        runner = scheduler([Spec("m", MINUTELY)], recorder, clock)
        runner.start()
        await asyncio.sleep(600.5)  # to 00:20:00.5, having fired 00:10 (at start-up) … 00:20
        clock.jump(630)  # the wall clock moves on to 00:31:00.5 while nothing runs
        await asyncio.sleep(300)
        await runner.stop()

    run_virtual(scenario, START)
    fired = recorders[0].slots()
    minutes = [slot.minute for slot in fired]
    assert minutes == list(range(10, 21)) + list(range(32, 36))
    [line] = missed_lines(caplog)
    assert line.levelno == logging.WARNING
    # It woke at 00:31:30 (its 00:21 deadline, on the stepped clock): 00:21 … 00:31 are gone.
    assert "slot=2024-05-01T00:31:00+00:00 missed=11" in line.getMessage()
    assert "reason=late" in line.getMessage()


@pytest.mark.parametrize(("catch_up_s", "caught_up"), [(None, False), (HOUR, True), (10 * 60.0, False)])
def test_catch_up_fires_only_the_latest_missed_slot_within_the_window(
    caplog: pytest.LogCaptureFixture, catch_up_s: float | None, caught_up: bool
) -> None:
    caplog.set_level(logging.INFO, logger="responder.schedule.runner")
    seen: list[object] = []

    async def scenario(clock: WallClock) -> None:
        recorder = Recorder(clock)
        runner = scheduler([Spec("h", HOURLY, catch_up_s)], recorder, clock)
        runner.start()
        await asyncio.sleep(HOUR + 0.5)  # 01:20, 01:00 fired
        clock.jump(3 * HOUR)  # asleep until 04:20 wall time: 02:00, 03:00 and 04:00 passed
        await asyncio.sleep(HOUR)  # to 05:20 on the wall clock
        await runner.stop()
        seen.extend([recorder, runner.status()])

    # At start-up 00:00 is 20 minutes late, so the same window decides it.
    run_virtual(scenario, START.replace(minute=20))
    recorder, [status] = seen  # type: ignore[misc]
    assert isinstance(recorder, Recorder)
    hours = [slot.hour for slot in recorder.slots()]
    if caught_up:
        assert hours == [0, 1, 4, 5]  # 04:00 once, 21 minutes late; 02:00 and 03:00 missed
        assert "schedule_slot_caught_up name=h slot=2024-05-01T04:00:00+00:00 late_s=1260" in caplog.text
        assert status["counts"] == {"missed": 2, "sent": 4}
    else:
        assert hours == [1, 5]
        assert "caught_up" not in caplog.text
        assert status["counts"] == {"missed": 3, "sent": 2}


@pytest.mark.parametrize(
    ("since_slot_s", "catch_up_s", "fires_at_start"),
    [(180, None, False), (180, 300, True), (2, None, True), (600, 300, False)],
)
def test_at_start_up_the_slot_before_now_is_on_time_caught_up_or_missed(
    since_slot_s: int, catch_up_s: float | None, fires_at_start: bool
) -> None:
    recorders: list[Recorder] = []
    start = at(2024, 5, 1, 9) + timedelta(seconds=since_slot_s)

    async def scenario(clock: WallClock) -> None:
        recorder = Recorder(clock)
        recorders.append(recorder)
        runner = scheduler([Spec("h", HOURLY, catch_up_s)], recorder, clock)
        runner.start()
        await asyncio.sleep(HOUR)
        await runner.stop()

    run_virtual(scenario, start)
    calls = recorders[0].calls
    if fires_at_start:
        assert calls[0].slot == at(2024, 5, 1, 9)
        assert calls[0].at == pytest.approx(start.timestamp())
    assert [call.slot.hour for call in calls] == ([9, 10] if fires_at_start else [10])


def test_a_restart_within_catch_up_does_not_fire_again_when_the_ledger_is_shared() -> None:
    counts: list[int] = []

    async def scenario(clock: WallClock) -> None:
        recorder = Recorder(clock)
        spec = Spec("h", HOURLY, catch_up_s=30 * 60)
        shared = loop_ledger()
        first = scheduler([spec], recorder, clock, ledger=shared)
        first.start()
        await asyncio.sleep(30 * 60)  # fires 01:00 (00:00 was 40 minutes gone at start-up)
        await first.stop()
        counts.append(len(recorder.calls))
        second = scheduler([spec], recorder, clock, ledger=shared)  # restarted at 01:10
        second.start()
        await asyncio.sleep(1)
        await second.stop()
        counts.append(len(recorder.calls))
        assert second.status()[0]["counts"] == {"not_ours": 1}
        forgetful = scheduler([spec], recorder, clock)  # a fresh ledger knows nothing
        forgetful.start()
        await asyncio.sleep(1)
        await forgetful.stop()
        counts.append(len(recorder.calls))

    run_virtual(scenario, START.replace(minute=40))
    assert counts == [1, 1, 2]


def test_update_keeps_unchanged_schedules_restarts_changed_ones_and_stops_removed_ones() -> None:
    metrics = Metrics()
    seen: dict[str, object] = {}
    update_at = at(2024, 5, 1, 3, 10)

    async def scenario(clock: WallClock) -> None:
        recorder = Recorder(clock)
        old = [
            Spec("same", HOURLY, text="old"),
            Spec("retimed", Timing.from_cron("30 * * * *", "UTC")),
            Spec("removed", HOURLY),
        ]
        runner = scheduler(old, recorder, clock, metrics=metrics)
        runner.start()
        await asyncio.sleep(3 * HOUR)
        assert clock() == update_at.timestamp()
        runner.update(
            [
                Spec("same", Timing.from_every("60m", "UTC"), text="new"),  # an equal Timing
                Spec("retimed", Timing.from_every("2h", "UTC")),
                Spec("added", Timing.from_every("15m", "UTC")),
            ]
        )
        await asyncio.sleep(3 * HOUR)
        await runner.stop()
        seen.update(recorder=recorder, status={s["name"]: s for s in runner.status()})

    run_virtual(scenario, START)
    recorder, status = seen["recorder"], seen["status"]
    assert isinstance(recorder, Recorder) and isinstance(status, dict)
    for name in ("same", "retimed", "added"):
        slots = recorder.slots(name)
        assert len(slots) == len(set(slots)), f"{name} fired a slot twice"
    same = [call for call in recorder.calls if call.name == "same"]
    assert [call.slot.hour for call in same] == [1, 2, 3, 4, 5, 6]
    assert [call.spec.text for call in same] == ["old"] * 3 + ["new"] * 3  # the new spec fires
    assert status["same"]["counts"] == {"sent": 6}  # its state carried over
    assert [slot.strftime("%H:%M") for slot in recorder.slots("retimed")] == [
        "00:30",
        "01:30",
        "02:30",
        "04:00",
        "06:00",
    ]
    assert status["retimed"]["counts"] == {"sent": 2}  # a new timing starts afresh, from now
    assert recorder.slots("added")[0] == at(2024, 5, 1, 3, 15)
    assert [slot.hour for slot in recorder.slots("removed")] == [1, 2, 3]
    assert set(status) == {"same", "retimed", "added"}
    assert sample(metrics, "responder_schedule_next_fire_timestamp_seconds", schedule="removed") is None


def test_an_added_schedule_wakes_a_runner_that_sleeps_long() -> None:
    recorders: list[Recorder] = []

    async def scenario(clock: WallClock) -> None:
        recorder = Recorder(clock)
        recorders.append(recorder)
        runner = scheduler([Spec("daily", Timing.from_every("1d", "UTC"))], recorder, clock, max_sleep_s=DAY)
        runner.start()
        await asyncio.sleep(100.5)
        soon = Spec("soon", Timing.from_every("5s", "UTC"))
        runner.update([Spec("daily", Timing.from_every("1d", "UTC")), soon])
        await until(lambda: recorder.calls)
        await runner.stop()

    run_virtual(scenario, START)
    [call] = recorders[0].calls
    assert call.slot == START + timedelta(seconds=105)
    assert call.at == pytest.approx(call.slot.timestamp(), abs=0.01)


@pytest.mark.parametrize("retime", [False, True])
def test_an_update_during_a_fire_never_fires_that_slot_again(retime: bool) -> None:
    seen: list[object] = []

    async def scenario(clock: WallClock) -> None:
        recorder = Recorder(clock, hold=asyncio.Event())
        runner = scheduler([Spec("h", HOURLY, text="old")], recorder, clock)
        runner.start()
        await until(lambda: recorder.running)  # 01:00 is firing, and stays so
        timing = Timing.from_every("30m", "UTC") if retime else HOURLY
        runner.update([Spec("h", timing, text="new")])
        await asyncio.sleep(60)
        assert recorder.hold is not None
        recorder.hold.set()
        await asyncio.sleep(2 * HOUR)
        await runner.stop()
        seen.extend([recorder, runner.status()])

    run_virtual(scenario, START)
    recorder, [status] = seen  # type: ignore[misc]
    assert isinstance(recorder, Recorder)
    slots = [slot.strftime("%H:%M") for slot in recorder.slots()]
    assert slots == (["01:00", "01:30", "02:00", "02:30", "03:00"] if retime else ["01:00", "02:00", "03:00"])
    assert [call.spec.text for call in recorder.calls][1:] == ["new"] * (len(slots) - 1)
    if not retime:  # the kept schedule recorded its in-flight 01:00 when it finished
        assert status["counts"] == {"sent": 3}


def test_a_slot_whose_previous_fire_still_runs_is_busy_not_overlapped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[object] = []

    async def scenario(clock: WallClock) -> None:
        recorder = Recorder(clock, busy_for=2.5)
        runner = scheduler([Spec("s", Timing.from_every("1s", "UTC"))], recorder, clock)
        runner.start()
        await asyncio.sleep(9.5)
        await runner.stop()
        seen.extend([recorder, runner.status()])

    run_virtual(scenario, START)
    recorder, [status] = seen  # type: ignore[misc]
    assert isinstance(recorder, Recorder)
    assert recorder.most_running == 1
    # 00:10:00 (the start-up slot) fires, :01 :02 are busy, :03 fires, …
    assert [slot.second for slot in recorder.slots()] == [0, 3, 6, 9]
    assert status["counts"] == {"busy": 6, "sent": 3}  # :09 was cut short by stop()
    assert caplog.text.count("schedule_slot_busy") == 6


def test_a_fire_that_raises_is_logged_counted_and_the_next_slot_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics()
    seen: list[object] = []

    async def scenario(clock: WallClock) -> None:
        recorder = Recorder(clock)

        async def fire(spec: Spec, slot: datetime) -> str:
            if slot.hour == 2:
                raise RuntimeError("template blew up")
            if slot.hour == 3:
                return None  # type: ignore[return-value]  # a callback that breaks its contract
            return await recorder.fire(spec, slot)

        ledger = loop_ledger()
        runner = Scheduler([Spec("h", HOURLY)], fire, ledger, clock=clock, metrics=metrics)
        runner.start()
        await asyncio.sleep(2 * HOUR)  # 02:10
        # The failed slot is settled, not released: another replica must not send it later.
        claim = await ledger.claim(slot_key("h", at(2024, 5, 1, 2)))
        await asyncio.sleep(2 * HOUR)
        await runner.stop()
        seen.extend([recorder, runner.status(), claim])

    run_virtual(scenario, START)
    recorder, [status], claim = seen  # type: ignore[misc]
    assert isinstance(recorder, Recorder)
    assert [slot.hour for slot in recorder.slots()] == [1, 4]
    assert status["counts"] == {"failed": 2, "sent": 2}
    assert claim is Claim.DONE
    assert "schedule_fire_failed name=h slot=2024-05-01T02:00:00+00:00" in caplog.text
    assert "RuntimeError: template blew up" in caplog.text
    assert "schedule_fire_failed name=h slot=2024-05-01T03:00:00+00:00 answer=None" in caplog.text
    assert sample(metrics, "responder_schedule_fires_total", schedule="h", result="failed") == 2


def test_two_replicas_racing_on_one_ledger_fire_each_slot_exactly_once() -> None:
    seen: list[object] = []

    async def scenario(clock: WallClock) -> None:
        ledger = loop_ledger()  # what a shared store will be for replicas
        fired: list[tuple[str, datetime]] = []

        def replica(name: str) -> Callable[[Spec, datetime], Awaitable[str]]:
            async def fire(spec: Spec, slot: datetime) -> str:
                fired.append((name, slot))
                await asyncio.sleep(0.5)  # hold the claim while the other replica tries
                return "sent"

            return fire

        def skewed() -> float:
            # Replica b's clock runs 0.2 s ahead in even hours and behind in odd ones, so
            # each replica wins some slots and loses others.
            now = clock()
            return now + (0.2 if int(now // HOUR) % 2 == 0 else -0.2)

        spec = Spec("m", MINUTELY)
        a = Scheduler([spec], replica("a"), ledger, clock=clock)
        b = Scheduler([spec], replica("b"), ledger, clock=skewed)
        a.start()
        b.start()
        await asyncio.sleep(DAY - 30)  # 00:10 (at start-up) to 00:09 the next day
        await asyncio.gather(a.stop(), b.stop())
        seen.extend([fired, a.status()[0]["counts"], b.status()[0]["counts"]])

    run_virtual(scenario, START)
    fired, a_counts, b_counts = seen  # type: ignore[misc]
    slots = [slot for _, slot in fired]  # type: ignore[attr-defined]
    assert len(slots) == len(set(slots)) == 24 * 60
    assert {winner for winner, _ in fired} == {"a", "b"}  # type: ignore[attr-defined]
    assert a_counts["sent"] + b_counts["sent"] == 24 * 60
    assert a_counts["not_ours"] == b_counts["sent"] and b_counts["not_ours"] == a_counts["sent"]


def test_a_full_ledger_drops_the_slot_and_a_broken_one_never_stops_the_runner(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[object] = []

    class UnreachableLedger:
        """A shared store that is down: every call fails."""

        async def claim(self, msg_id: str) -> Claim:
            raise ConnectionError("store unreachable")

        async def complete(self, msg_id: str, outcome: str) -> None:
            raise ConnectionError("store unreachable")

        async def release(self, msg_id: str) -> None:
            raise ConnectionError("store unreachable")

    async def scenario(clock: WallClock) -> None:
        recorder = Recorder(clock)
        full = InMemoryLedger(max_entries=1)
        assert await full.claim("someone else's message") is Claim.NEW  # in flight, so not evictable
        crowded = scheduler([Spec("h", HOURLY)], recorder, clock, ledger=full)
        broken = scheduler([Spec("h", HOURLY)], recorder, clock, ledger=UnreachableLedger())
        crowded.start()
        broken.start()
        await asyncio.sleep(3 * HOUR)
        await asyncio.gather(crowded.stop(), broken.stop())
        seen.extend([recorder, crowded.status()[0]["counts"], broken.status()[0]["counts"]])

    run_virtual(scenario, START)
    recorder, crowded, broken = seen  # type: ignore[misc]
    assert isinstance(recorder, Recorder)
    assert recorder.calls == []
    assert crowded == {"ledger_full": 3}
    assert broken == {"ledger_failed": 3}
    assert caplog.text.count("schedule_claim_failed") == 3


def test_a_result_is_kept_whole_in_status_and_by_its_first_word_in_counts() -> None:
    metrics = Metrics()
    seen: list[object] = []

    async def scenario(clock: WallClock) -> None:
        recorder = Recorder(clock, answer="dropped:webhook_expired")
        ledger = loop_ledger()
        runner = scheduler([Spec("h", HOURLY)], recorder, clock, ledger=ledger, metrics=metrics)
        runner.start()
        await asyncio.sleep(HOUR)
        await runner.stop()
        seen.extend([runner.status()[0], await ledger.claim(slot_key("h", at(2024, 5, 1, 1)))])

    run_virtual(scenario, START)
    status, claim = seen
    assert isinstance(status, dict)
    assert status["last_result"] == "dropped:webhook_expired"
    assert status["counts"] == {"dropped": 1}
    assert claim is Claim.DONE
    assert sample(metrics, "responder_schedule_fires_total", schedule="h", result="dropped") == 1


def test_stopping_cancels_a_fire_in_progress_and_leaves_its_claim_to_expire() -> None:
    seen: list[object] = []

    async def scenario(clock: WallClock) -> None:
        recorder = Recorder(clock, hold=asyncio.Event())
        ledger = loop_ledger()
        runner = scheduler([Spec("h", HOURLY)], recorder, clock, ledger=ledger)
        task = runner.start()
        await until(lambda: recorder.running)
        await runner.stop()
        seen.extend([task.done(), recorder.running, await ledger.claim(slot_key("h", at(2024, 5, 1, 1)))])
        idle = scheduler([Spec("noon", Timing.from_cron("0 12 * * *", "UTC"))], recorder, clock)
        idle_task = idle.start()
        await asyncio.sleep(1)
        await idle.stop()
        seen.append(idle_task.cancelled())

    run_virtual(scenario, START)
    # Maybe it sent: no replica may take the slot over; the lease runs out instead.
    assert seen == [True, 0, Claim.IN_FLIGHT, True]


def test_duplicate_names_are_refused_and_change_nothing() -> None:
    async def scenario(clock: WallClock) -> None:
        recorder = Recorder(clock)
        with pytest.raises(ValueError, match="duplicate schedule names: a"):
            scheduler([Spec("a", HOURLY), Spec("a", MINUTELY)], recorder, clock)
        runner = scheduler([Spec("a", HOURLY)], recorder, clock)
        with pytest.raises(ValueError, match="duplicate"):
            runner.update([Spec("b", HOURLY), Spec("b", HOURLY)])
        assert [s["name"] for s in runner.status()] == ["a"]
        with pytest.raises(ValueError, match="tolerance_s"):
            scheduler([], recorder, clock, tolerance_s=-1)

    run_virtual(scenario, START)


def test_a_week_asleep_costs_one_line_and_a_bounded_count(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="responder.schedule.runner")
    seen: list[object] = []

    async def scenario(clock: WallClock) -> None:
        recorder = Recorder(clock)
        runner = scheduler([Spec("s", Timing.from_every("1s", "UTC"))], recorder, clock)
        runner.start()
        await asyncio.sleep(0.5)
        clock.jump(7 * DAY)
        await asyncio.sleep(2)
        await runner.stop()
        seen.extend([recorder, runner.status()[0]])

    run_virtual(scenario, START)
    recorder, status = seen
    assert isinstance(recorder, Recorder) and isinstance(status, dict)
    [line] = missed_lines(caplog)
    assert "missed=1000+" in line.getMessage()
    assert status["counts"]["missed"] == 1000
    # It woke at its next second, a week on: that one is on time, the 604 800 before it are not.
    assert "slot=2024-05-08T00:10:00+00:00" in line.getMessage()
    assert [slot - START for slot in recorder.slots()] == [
        timedelta(0),
        timedelta(days=7, seconds=1),
        timedelta(days=7, seconds=2),
    ]


def test_schedules_given_before_start_are_listed_and_begin_when_it_runs() -> None:
    seen: list[object] = []

    async def scenario(clock: WallClock) -> None:
        recorder = Recorder(clock)
        runner = scheduler([Spec("a", HOURLY)], recorder, clock)
        runner.update([Spec("a", HOURLY), Spec("b", HOURLY, catch_up_s=HOUR)])  # a reload before start
        seen.append([(s["name"], s["next_fire"]) for s in runner.status()])
        await asyncio.sleep(5 * 60)  # started late: 00:15, b catches up 00:00
        runner.start()
        await asyncio.sleep(1)
        await runner.stop()
        seen.append([(call.name, call.slot.hour) for call in recorder.calls])

    run_virtual(scenario, START)
    assert seen == [
        [("a", "2024-05-01T01:00:00+00:00"), ("b", "2024-05-01T01:00:00+00:00")],
        [("b", 0)],
    ]
