"""When a schedule fires: durations, `cron` and `every` timings, and their slots in a time zone.

Pure computation on aware datetimes: nothing here reads a clock or sleeps (the runner does).
The one look at the system is `server_zone`, and only for a schedule that names no timezone.

A slot is an instant. Both kinds of timing place their slots on the local clock of the
schedule's zone, so replicas and reloads compute the same slots from the same config:

- `cron`: a slot at the first moment the local clock reads a time the expression matches.
  A time the clocks skip (spring forward) fires when they jump past it; a time they repeat
  (fall back) fires once, the first time. A daily job neither vanishes nor runs twice.
- `every`: a slot whenever the local clock reads a whole multiple of the interval counted
  from 1970-01-01 00:00 local time: `15m` at :00 :15 :30 :45, `6h` at 00/06/12/18, `1d` at
  midnight. In UTC that is simply k × interval seconds since the epoch. An interval longer
  than a clock change treats the change as cron does (`2h` is `0 */2 * * *`); one no longer
  than the change (up to 1h for ordinary DST) stays one interval apart in real time straight
  through it, firing in both readings of a repeated hour.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from responder.zones import load_zone

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

MIN_EVERY_S = 1
MAX_EVERY_S = 366 * 86_400
# A window longer than a day would resend yesterday's message after a restart, and the slot
# ledger would have to remember claims that long.
MAX_CATCH_UP_S = 86_400

_UNITS = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}
_DURATION = re.compile(r"(?:[0-9]+[dhms])+")
_PART = re.compile(r"([0-9]+)([dhms])")
_EXAMPLES = "e.g. 30s, 5m, 1h30m or 1d (a bare number is seconds)"

CRON_FIELDS = "minute hour day-of-month month day-of-week"
# Zone offsets are probed this far apart to find a change between two instants; no zone
# changes its offset twice within six hours.
_PROBE_S = 6 * 3_600
# Far more steps than any clock change needs; hitting it means a bug, not a schedule.
_MAX_STEPS = 100_000


def parse_every(text: str | int) -> float:
    """Seconds in an `every:` duration: `30s`, `5m`, `1h30m`, `1d`, or a bare number of seconds.

    Whole seconds only, from 1 s to 366 days; units largest first, each at most once.
    Raises ValueError with a message fit for a config error.
    """
    return float(_parse_duration("every", text, MAX_EVERY_S))


def parse_catch_up(text: str | int | None) -> float | None:
    """Seconds in an optional `catch_up:` window (the `every` syntax, at most one day); None if absent."""
    if text is None:
        return None
    return float(_parse_duration("catch_up", text, MAX_CATCH_UP_S))


def format_duration(seconds: float) -> str:
    """The `every` syntax for a whole number of seconds: 5400 -> `1h30m`."""
    rest = int(seconds)
    parts = []
    for unit, size in _UNITS.items():
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def _parse_duration(key: str, value: str | int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"{key} must be a duration, {_EXAMPLES}; got {type(value).__name__}")
    text = str(value).strip()
    if re.fullmatch(r"[0-9]+", text):
        seconds = int(text)
    elif text.startswith("-"):
        raise ValueError(f"{key} must be positive, got {text!r}")
    elif re.search(r"[0-9]\.[0-9]", text):
        raise ValueError(f"{key} takes whole numbers, {_EXAMPLES}; got {text!r}")
    elif re.fullmatch(r"[0-9]+ms", text):
        raise ValueError(f"{key} is at least 1s (whole seconds); got {text!r}")
    elif _DURATION.fullmatch(text):
        parts = [(int(count), unit) for count, unit in _PART.findall(text)]
        units = [unit for _, unit in parts]
        order = list(_UNITS)
        if units != sorted(set(units), key=order.index):
            raise ValueError(f"{key} lists each unit once, largest first (like 1h30m); got {text!r}")
        seconds = sum(count * _UNITS[unit] for count, unit in parts)
    else:
        raise ValueError(f"{key} must be a duration, {_EXAMPLES}; got {text!r}")
    if seconds < MIN_EVERY_S:
        raise ValueError(f"{key} must be at least 1s, got {text!r}")
    if seconds > maximum:
        raise ValueError(f"{key} must be at most {format_duration(maximum)}, got {text!r}")
    return seconds


def server_zone() -> str:
    """This machine's IANA zone name: $TZ, else where /etc/localtime links, else /etc/timezone, else UTC.

    Only a name will do (not the bare offset `datetime.astimezone()` gives), because the zone's
    rules decide DST and the name is what makes two schedules' timings equal.
    """
    candidates = []
    environ_tz = os.environ.get("TZ", "").lstrip(":")
    if environ_tz:
        candidates.append(_zone_name_of_path(environ_tz) if environ_tz.startswith("/") else environ_tz)
    with contextlib.suppress(OSError):
        candidates.append(_zone_name_of_path(os.readlink("/etc/localtime")))
    try:
        with open("/etc/timezone", encoding="utf-8") as file:
            candidates.append(file.read().strip())
    except OSError:
        pass
    for name in candidates:
        try:
            load_zone(name)
        except ValueError:
            continue
        return name
    return "UTC"


def _zone_name_of_path(path: str) -> str:
    """`/usr/share/zoneinfo/posix/Asia/Shanghai` -> `Asia/Shanghai`."""
    _, found, name = path.partition("zoneinfo/")
    if not found:
        return path
    for variant in ("posix/", "right/"):
        name = name.removeprefix(variant)
    return name


def check_cron(expression: str) -> str:
    """The expression with its whitespace normalised; ValueError if it is not five valid fields."""
    if not isinstance(expression, str):
        raise ValueError(f"cron must be a string of five fields ({CRON_FIELDS})")
    fields = expression.split()
    if len(fields) == 1 and fields[0].startswith("@"):
        raise ValueError(f"cron takes five fields ({CRON_FIELDS}): write {fields[0]} out, e.g. 0 0 * * *")
    if len(fields) != 5:
        raise ValueError(
            f"cron takes five fields ({CRON_FIELDS}), e.g. '0 9 * * 1-5'; got {len(fields)} in {expression!r}"
        )
    for item in (item for f in fields for item in f.split(",")):
        # croniter's H (hashed) and R (random) pick times per process: replicas would disagree.
        if re.match(r"[hr](?:$|[(/])", item, re.IGNORECASE):
            raise ValueError(f"cron {expression!r}: H and R (hashed or random times) are not supported")
    normalised = " ".join(fields)
    # croniter is imported where it is used: 1.7 MiB of idle RSS a bot without cron never needs.
    from croniter import CroniterBadDateError, CroniterError, croniter

    try:
        croniter(normalised, datetime(2000, 1, 1)).get_next(datetime)
    except CroniterBadDateError as exc:
        raise ValueError(f"cron {expression!r} never fires (no date matches)") from exc
    except (CroniterError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"cron {expression!r} is not valid: {exc}") from exc
    return normalised


@dataclass(frozen=True, slots=True)
class Timing:
    """When a schedule fires: a cron expression or an `every` interval, in one IANA zone.

    Equal values mean the same timing: the runner keeps a schedule's next slot and state
    across a reload when its Timing compares equal. Build with `from_cron` / `from_every`
    (or `make_timing`); the constructor validates too.
    """

    cron: str | None
    every_s: int | None
    zone: str
    _tz: ZoneInfo = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if (self.cron is None) == (self.every_s is None):
            raise ValueError("a schedule takes either cron or every, not both and not neither")
        if self.cron is not None and check_cron(self.cron) != self.cron:
            raise ValueError(f"cron {self.cron!r} is not normalised: build it with Timing.from_cron")
        if self.every_s is not None and (
            isinstance(self.every_s, bool)
            or not isinstance(self.every_s, int)
            or not MIN_EVERY_S <= self.every_s <= MAX_EVERY_S
        ):
            raise ValueError(f"every must be whole seconds from 1 to {MAX_EVERY_S}, got {self.every_s!r}")
        object.__setattr__(self, "_tz", load_zone(self.zone))

    @classmethod
    def from_cron(cls, expression: str, timezone: str | None = None) -> Timing:
        """Five cron fields read on the local clock of `timezone` (default: the server's zone)."""
        return cls(check_cron(expression), None, server_zone() if timezone is None else timezone)

    @classmethod
    def from_every(cls, every: str | int, timezone: str | None = None) -> Timing:
        """An `every:` duration (see parse_every) aligned to `timezone`'s clock (default: the server's)."""
        return cls(None, int(parse_every(every)), server_zone() if timezone is None else timezone)

    @property
    def tz(self) -> ZoneInfo:
        return self._tz

    def __str__(self) -> str:
        if self.cron is not None:
            return f"cron '{self.cron}' {self.zone}"
        assert self.every_s is not None
        return f"every {format_duration(self.every_s)} {self.zone}"

    def next_after(self, t: datetime) -> datetime:
        """The first slot strictly after `t` (aware), in this timing's zone."""
        return self._at(self._next(_epoch(t)))

    def latest_at_or_before(self, t: datetime) -> datetime | None:
        """The last slot at or before `t` (aware), or None if there never was one."""
        found = self._latest(_epoch(t))
        return None if found is None else self._at(found)

    def slots_between(self, a: datetime, b: datetime) -> Iterator[datetime]:
        """The slots after `a` up to and including `b`, in order; lazy, so a caller may stop early."""
        ts, end = _epoch(a), _epoch(b)
        while (ts := self._next(ts)) <= end:
            yield self._at(ts)

    def _at(self, ts: int) -> datetime:
        return datetime.fromtimestamp(ts, self._tz)

    def _next(self, after: float) -> int:
        return self._cron_next(after) if self.cron is not None else self._every_next(after)

    def _latest(self, at: float) -> int | None:
        found = self._cron_before(at) if self.cron is not None else self._every_before(at)
        if found is None:
            return None
        # The rough answer may be early (a repeated hour, a clock change): walk up to `at`.
        while (following := self._next(found)) <= at:
            found = following
        return found

    # cron: the expression is matched against naive local wall times, each mapped to the first
    # moment the clock reads it (or later). That map never goes backwards, so slots stay in order.

    def _cron_next(self, after: float) -> int:
        from croniter import croniter  # see check_cron

        assert self.cron is not None
        wall = datetime.fromtimestamp(after, self._tz).replace(tzinfo=None)
        times = croniter(self.cron, wall)
        for _ in range(_MAX_STEPS):
            # A wall time after `after`'s may still map before it, in the second pass of a
            # repeated hour; those were fired the first time round.
            ts = self._first_reading(times.get_next(datetime))
            if ts > after:
                return ts
        raise RuntimeError(f"no cron slot found after {after} for {self}")

    def _cron_before(self, at: float) -> int | None:
        from croniter import CroniterBadDateError, croniter  # see check_cron

        assert self.cron is not None
        wall = datetime.fromtimestamp(at, self._tz).replace(tzinfo=None)
        try:
            return self._first_reading(croniter(self.cron, wall).get_prev(datetime))
        except CroniterBadDateError:
            return None

    def _first_reading(self, wall: datetime) -> int:
        """The first instant the local clock reads `wall`, or the jump past it if the clocks skip it."""
        first = wall.replace(tzinfo=self._tz, fold=0)  # PEP 495: fold=0 is the earlier reading
        ts = int(first.timestamp())
        if datetime.fromtimestamp(ts, self._tz).replace(tzinfo=None) == wall:
            return ts
        # A skipped time: fold=1 reads it with the offset after the jump, fold=0 with the one
        # before, and the jump itself lies between the two.
        return self._change_at(int(wall.replace(tzinfo=self._tz, fold=1).timestamp()), ts)

    # every: within a stretch of constant UTC offset, slots are the instants whose local time is
    # a multiple of the interval; at each offset change the module docstring's rule decides.

    def _every_next(self, after: float) -> int:
        step = self.every_s
        assert step is not None
        start = math.floor(after) + 1
        for _ in range(_MAX_STEPS):
            offset = self._offset(start)
            candidate = start + (-(start + offset)) % step
            change = self._change_between(start, candidate, offset)
            if change is None:
                return candidate
            jump = self._offset(change) - offset
            if jump > 0 and step > jump and (-(change + offset)) % step < jump:
                return change  # the clocks skipped a multiple: fire as they jump, like cron
            # After the clocks go back, local times read again fired the first time round,
            # unless the interval fits inside the repeat (then it keeps its real-time pace).
            start = change - jump if jump < 0 and step > -jump else change
        raise RuntimeError(f"no slot found after {after} for {self}")

    def _every_before(self, at: float) -> int | None:
        step = self.every_s
        assert step is not None
        # Slots are at most an interval plus a clock change apart; look back further each time.
        reach = step
        while reach <= step + 2 * 86_400:
            found = self._every_next(at - reach)
            if found <= at:
                return found
            reach *= 2
        return None

    def _offset(self, ts: int) -> int:
        offset = datetime.fromtimestamp(ts, self._tz).utcoffset()
        assert offset is not None  # a ZoneInfo always has one
        return int(offset.total_seconds())

    def _change_between(self, start: int, end: int, offset: int) -> int | None:
        """The first instant in (start, end] whose UTC offset is not `offset`, if any."""
        low = start
        while low < end:
            high = min(low + _PROBE_S, end)
            if self._offset(high) != offset:
                return self._change_at(low, high)
            low = high
        return None

    def _change_at(self, low: int, high: int) -> int:
        """The instant in (low, high] where the offset changes, given exactly one change there."""
        before = self._offset(low)
        while high - low > 1:
            middle = (low + high) // 2
            if self._offset(middle) == before:
                low = middle
            else:
                high = middle
        return high


def make_timing(
    *, cron: str | None = None, every: str | int | None = None, timezone: str | None = None
) -> Timing:
    """A Timing from a schedule's `cron` or `every` and `timezone` keys; ValueError unless exactly one."""
    if (cron is None) == (every is None):
        raise ValueError("a schedule takes either cron or every, not both and not neither")
    if cron is not None:
        return Timing.from_cron(cron, timezone)
    assert every is not None
    return Timing.from_every(every, timezone)


def next_fire_times(timing: Timing, now: datetime, count: int = 3) -> list[datetime]:
    """The next `count` slots after `now`, for `responder check`."""
    times: list[datetime] = []
    t = now
    for _ in range(count):
        t = timing.next_after(t)
        times.append(t)
    return times


def _epoch(t: datetime) -> float:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"an aware datetime is needed, got naive {t.isoformat()}")
    return t.timestamp()


def slot_iso(slot: datetime) -> str:
    """The slot in UTC, `2024-03-10T07:00:00Z`: the same text on every replica whatever its zone."""
    return slot.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"
