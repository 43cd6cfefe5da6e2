"""The scheduler: one asyncio task that fires each schedule's slots once, on time or not at all.

It owns when a slot fires, is skipped or is caught up, the claim of each slot in a ledger, and
each schedule's status. What a schedule says and where it goes is not its business: the `fire`
callback (the delivery pipeline's) does that and answers a short result.

A slot's life: the runner wakes at it; if it is more than `tolerance_s` late (the process was
down, the loop blocked, the machine slept) it is missed, unless it is within the schedule's
`catch_up_s`, which fires the most recent missed slot once. A slot to fire is claimed in the
ledger under `schedule:<name>:<slot in UTC>`; only Claim.NEW fires, and the slot is completed
afterwards, so replicas sharing a ledger elect one firer per slot.

Once means once while the ledger remembers the slot: it must keep claims for at least
`tolerance_s` plus the longest catch_up (timing.MAX_CATCH_UP_S at most). An in-memory ledger
forgets on restart, so a restart within a slot's tolerance or catch_up fires it again; a
shared store prevents that. A fire that raised is completed too, never released.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

from responder.delivery.claims import OUTCOMES, Claim, MessageLedger
from responder.logs import quoted
from responder.metrics import Metrics
from responder.schedule.timing import Timing, slot_iso

log = logging.getLogger(__name__)

DEFAULT_TOLERANCE_S = 5.0
# Sleeps are cut to this so a wall clock stepped by NTP (or a resumed machine) is noticed soon.
DEFAULT_MAX_SLEEP_S = 60.0
# asyncio may wake a hair before the deadline; a slot this close counts as due.
_EARLY_S = 0.001
# Counting missed slots stops here: a week asleep with `every: 1s` must not stall the loop.
_MAX_COUNTED_MISSES = 1_000

# Results the runner records itself; anything else is what `fire` answered.
MISSED = "missed"  # too late, outside any catch_up window
BUSY = "busy"  # the schedule's previous fire is still running
NOT_OURS = "not_ours"  # the ledger says another firer (or an earlier run) has this slot
LEDGER_FULL = "ledger_full"  # the ledger answered OVERLOADED
LEDGER_FAILED = "ledger_failed"  # the claim raised
FAILED = "failed"  # fire raised


class ScheduleSpec(Protocol):
    """What the runner needs of a compiled schedule; the integrator's own type may carry more."""

    @property
    def name(self) -> str:
        """Unique among the schedules; part of the ledger key, status and metric labels."""
        ...

    @property
    def timing(self) -> Timing: ...

    @property
    def catch_up_s(self) -> float | None:
        """How late a missed slot may still fire once; None: never."""
        ...


SpecT = TypeVar("SpecT", bound=ScheduleSpec)
Clock = Callable[[], float]  # Unix seconds, like time.time
Sleep = Callable[[float], Awaitable[None]]


def slot_key(name: str, slot: datetime) -> str:
    """The ledger key of one slot of one schedule, the same on every replica."""
    return f"schedule:{name}:{slot_iso(slot)}"


def result_label(result: str) -> str:
    """The bounded part of a result, for metric labels and counts: `dropped:webhook_gone` -> `dropped`."""
    return result.partition(":")[0]


@dataclass(eq=False, slots=True)
class _Schedule(Generic[SpecT]):
    """One schedule's mutable state; kept across a reload while its name and Timing stay the same."""

    spec: SpecT
    next_slot: datetime | None
    # The slot before start-up: missed unless on time or within catch_up, and said so gently.
    before_start: bool = False
    last_slot: datetime | None = None
    last_result: str | None = None
    counts: Counter[str] = field(default_factory=Counter)
    firing: asyncio.Task[None] | None = None


class Scheduler(Generic[SpecT]):
    """Fires `fire(spec, slot)` once per slot of each schedule; cancel `run()` (or `stop()`) to end.

    `clock` is wall time in Unix seconds; `sleep` waits that many seconds. Both are injectable
    so tests can run a day of slots at once. A slot is passed to `fire` as an aware datetime in
    the schedule's zone; `fire` answers `sent`, `skipped[:reason]` or `dropped:<reason>`.
    """

    def __init__(
        self,
        specs: Iterable[SpecT],
        fire: Callable[[SpecT, datetime], Awaitable[str]],
        ledger: MessageLedger,
        *,
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
        tolerance_s: float = DEFAULT_TOLERANCE_S,
        max_sleep_s: float = DEFAULT_MAX_SLEEP_S,
        metrics: Metrics | None = None,
    ) -> None:
        if tolerance_s < 0:
            raise ValueError("tolerance_s must not be negative")
        if max_sleep_s <= 0:
            raise ValueError("max_sleep_s must be positive")
        self._fire = fire
        self._ledger = ledger
        self._clock = clock
        self._sleep = sleep
        self._tolerance_s = tolerance_s
        self._max_sleep_s = max_sleep_s
        self._metrics = metrics
        self._schedules: dict[str, _Schedule[SpecT]] = {}
        self._in_flight: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._started = False
        self._task: asyncio.Task[None] | None = None
        self.update(specs)

    # -- the schedule list

    def update(self, specs: Iterable[SpecT]) -> None:
        """Replace the schedules (on reload): unchanged name and Timing keep their next slot and
        state (and take the new spec), new ones start from now, removed ones stop.

        A fire in progress finishes. Raises ValueError, changing nothing, on duplicate names.
        """
        new_specs = list(specs)
        names = [spec.name for spec in new_specs]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"duplicate schedule names: {', '.join(duplicates)}")
        now = self._now()
        kept: dict[str, _Schedule[SpecT]] = {}
        for spec in new_specs:
            old = self._schedules.get(spec.name)
            if self._started and old is not None and old.spec.timing == spec.timing:
                old.spec = spec
                kept[spec.name] = old
            else:
                # A new or retimed schedule starts after now, so it cannot repeat a slot its
                # old timing fired (or is firing).
                kept[spec.name] = self._schedule_from(spec, now)
        for name in self._schedules.keys() - kept.keys():
            if self._metrics is not None:
                self._metrics.schedule_next_fire.remove(name)
        self._schedules = kept
        for schedule in kept.values():
            self._publish_next(schedule)
        self._wake.set()

    def _schedule_from(self, spec: SpecT, now: datetime) -> _Schedule[SpecT]:
        return _Schedule(spec, self._next_or_none(spec, now))

    def _next_or_none(self, spec: SpecT, now: datetime) -> datetime | None:
        try:
            return spec.timing.next_after(now)
        except Exception:  # a timing bug stops that schedule, never the runner
            log.exception("schedule_timing_failed name=%s", quoted(spec.name))
            return None

    # -- running

    def start(self) -> asyncio.Task[None]:
        """`run()` in a task of the running loop; the same task on later calls. `stop()` ends it."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run(), name="scheduler")
        return self._task

    async def stop(self) -> None:
        """Cancel the task from `start()` and wait until it has stopped (fires in progress too)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])

    async def run(self) -> None:
        """Fire slots until cancelled. Nothing `fire` or the ledger does ends it."""
        if self._started:
            raise RuntimeError("this Scheduler is already running (or has run)")
        self._started = True
        self._begin_all()
        try:
            while True:
                self._wake.clear()
                try:
                    for schedule in list(self._schedules.values()):
                        self._take_due(schedule)
                    wait = self._seconds_to_next()
                except Exception:  # a bug here must not end every schedule; retry after a pause
                    log.exception("scheduler_iteration_failed")
                    wait = self._max_sleep_s
                await self._wait(wait)
        finally:
            # A fire cut short may already have sent: its claim is left to expire, not
            # released, so no replica repeats a message that may have gone out.
            tasks = list(self._in_flight)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _begin_all(self) -> None:
        """At start-up the most recent slot before now is due: on time, caught up, or missed."""
        now = self._now()
        for schedule in self._schedules.values():
            try:
                previous = schedule.spec.timing.latest_at_or_before(now)
            except Exception:
                log.exception("schedule_timing_failed name=%s", quoted(schedule.spec.name))
                previous = None
            if previous is not None:
                schedule.next_slot, schedule.before_start = previous, True
            else:
                schedule.next_slot = self._next_or_none(schedule.spec, now)
            self._publish_next(schedule)

    def _take_due(self, schedule: _Schedule[SpecT]) -> None:
        """If the schedule's next slot has come: fire it, catch it up or count it missed, and
        move on to the following slot, all before any await, so an update never sees it twice."""
        slot = schedule.next_slot
        now_ts = self._clock()
        if slot is None or slot.timestamp() > now_ts + _EARLY_S:
            return
        spec = schedule.spec
        timing = spec.timing
        now = datetime.fromtimestamp(max(now_ts, slot.timestamp()), timing.tz)
        try:
            following = timing.next_after(slot)
            if following <= now:  # woken late past several slots: only the latest may fire
                latest = timing.latest_at_or_before(now) or slot
                following = timing.next_after(latest)
            else:
                latest = slot
        except Exception:
            log.exception("schedule_timing_failed name=%s", quoted(spec.name))
            schedule.next_slot = None
            self._publish_next(schedule)
            return
        before_start, schedule.before_start = schedule.before_start, False
        schedule.next_slot = following
        self._publish_next(schedule)

        late_s = now_ts - latest.timestamp()
        on_time = late_s <= self._tolerance_s
        caught_up = not on_time and spec.catch_up_s is not None and late_s <= spec.catch_up_s
        if not (on_time or caught_up):
            self._missed(schedule, latest, self._count_slots(timing, slot, latest), before_start)
            return
        if latest != slot:  # the ones before the latest are missed even when it fires
            self._missed(schedule, _slot_before(timing, latest), self._count_slots(timing, slot, latest) - 1)
        if caught_up:
            log.info(
                "schedule_slot_caught_up name=%s slot=%s late_s=%.1f",
                quoted(spec.name),
                latest.isoformat(),
                late_s,
            )
        if schedule.firing is not None and not schedule.firing.done():
            log.warning("schedule_slot_busy name=%s slot=%s", quoted(spec.name), latest.isoformat())
            self._record(schedule, latest, BUSY)
            return
        task = asyncio.get_running_loop().create_task(self._claim_and_fire(schedule, spec, latest))
        schedule.firing = task
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    def _count_slots(self, timing: Timing, first: datetime, last: datetime) -> int:
        """How many slots lie in [first, last]; past _MAX_COUNTED_MISSES, any larger number."""
        later = itertools.islice(timing.slots_between(first, last), _MAX_COUNTED_MISSES + 1)
        return 1 + sum(1 for _ in later)

    def _missed(
        self, schedule: _Schedule[SpecT], last_missed: datetime, count: int, before_start: bool = False
    ) -> None:
        """Log (one line for any number) and count `count` missed slots, the latest `last_missed`."""
        name = schedule.spec.name
        shown = f"{_MAX_COUNTED_MISSES}+" if count > _MAX_COUNTED_MISSES else str(count)
        count = min(count, _MAX_COUNTED_MISSES)  # what was counted, not what was guessed
        # Before start-up nobody knows whether the previous process fired it: say so quietly.
        level = logging.INFO if before_start else logging.WARNING
        log.log(
            level,
            "schedule_slot_missed name=%s slot=%s missed=%s late_s=%.1f reason=%s",
            quoted(name),
            last_missed.isoformat(),
            shown,
            self._clock() - last_missed.timestamp(),
            "not_running" if before_start else "late",
        )
        if before_start:
            # Not counted: a fresh deployment (or a restart) has no slot of its own to miss, and
            # a `missed` alert on every restart would teach people to ignore it.
            return
        schedule.counts[MISSED] += count
        if self._metrics is not None:
            self._metrics.schedule_fires.labels(name, MISSED).inc(count)
        if schedule.last_slot is None or last_missed > schedule.last_slot:
            schedule.last_slot, schedule.last_result = last_missed, MISSED

    async def _claim_and_fire(self, schedule: _Schedule[SpecT], spec: SpecT, slot: datetime) -> None:
        name = spec.name
        key = slot_key(name, slot)
        try:
            claim = await self._ledger.claim(key)
        except Exception:
            log.exception("schedule_claim_failed name=%s slot=%s", quoted(name), slot.isoformat())
            self._record(schedule, slot, LEDGER_FAILED)
            return
        if claim is Claim.OVERLOADED:
            log.warning(
                "schedule_slot_dropped name=%s slot=%s reason=ledger_full", quoted(name), slot.isoformat()
            )
            self._record(schedule, slot, LEDGER_FULL)
            return
        if claim is not Claim.NEW:
            log.debug(
                "schedule_slot_not_ours name=%s slot=%s claim=%s", quoted(name), slot.isoformat(), claim.value
            )
            self._record(schedule, slot, NOT_OURS)
            return
        started = time.monotonic()
        try:
            result = await self._fire(spec, slot)
        except Exception:
            log.exception("schedule_fire_failed name=%s slot=%s", quoted(name), slot.isoformat())
            result = FAILED
        if not isinstance(result, str):  # the callback broke its contract; count it, carry on
            log.error(
                "schedule_fire_failed name=%s slot=%s answer=%r", quoted(name), slot.isoformat(), result
            )
            result = FAILED
        # A failed fire is completed too (as dropped): retrying it elsewhere could send twice.
        outcome = result_label(result)
        try:
            await self._ledger.complete(key, outcome if outcome in OUTCOMES else "dropped")
        except Exception:
            log.exception("schedule_complete_failed name=%s slot=%s", quoted(name), slot.isoformat())
        log.info(
            "schedule_fired name=%s slot=%s result=%s duration_ms=%.1f",
            quoted(name),
            slot.isoformat(),
            quoted(result),
            (time.monotonic() - started) * 1000,
        )
        self._record(schedule, slot, result)

    def _record(self, schedule: _Schedule[SpecT], slot: datetime, result: str) -> None:
        schedule.last_slot, schedule.last_result = slot, result
        label = result_label(result)
        schedule.counts[label] += 1
        if self._metrics is not None:
            self._metrics.schedule_fires.labels(schedule.spec.name, label).inc()

    def _seconds_to_next(self) -> float | None:
        slots = [s.next_slot.timestamp() for s in self._schedules.values() if s.next_slot is not None]
        if not slots:
            return None  # nothing to do until an update
        return min(max(0.0, min(slots) - self._clock()), self._max_sleep_s)

    async def _wait(self, seconds: float | None) -> None:
        """Sleep `seconds` (None: indefinitely), or less if `update` changes the schedules."""
        waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(self._wake.wait())]
        if seconds is not None:
            waiters.append(asyncio.ensure_future(self._sleep(seconds)))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def _publish_next(self, schedule: _Schedule[SpecT]) -> None:
        if self._metrics is None:
            return
        gauge = self._metrics.schedule_next_fire
        if schedule.next_slot is None:
            gauge.remove(schedule.spec.name)
        else:
            gauge.labels(schedule.spec.name).set(schedule.next_slot.timestamp())

    # -- status

    def status(self) -> list[dict[str, Any]]:
        """Per schedule, for /-/status: timing, next fire, last slot and result, counts by result."""
        return [
            {
                "name": name,
                "timing": str(schedule.spec.timing),
                "next_fire": None if schedule.next_slot is None else schedule.next_slot.isoformat(),
                "last_slot": None if schedule.last_slot is None else schedule.last_slot.isoformat(),
                "last_result": schedule.last_result,
                "firing": schedule.firing is not None and not schedule.firing.done(),
                "counts": dict(sorted(schedule.counts.items())),
            }
            for name, schedule in self._schedules.items()
        ]


def _slot_before(timing: Timing, slot: datetime) -> datetime:
    """The slot just before `slot` (which is one)."""
    found = timing.latest_at_or_before(datetime.fromtimestamp(slot.timestamp() - 1, slot.tzinfo))
    assert found is not None  # a later slot exists, so an earlier one did
    return found
