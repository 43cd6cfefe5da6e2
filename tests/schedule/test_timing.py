"""Timing: cron and `every` slots on a zone's local clock, through DST changes, and equality."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from responder.schedule.timing import Timing, make_timing, next_fire_times, server_zone, slot_iso

NEW_YORK = ZoneInfo("America/New_York")
SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")
# 2024 in New York: clocks spring forward 02:00 -> 03:00 on 10 March (07:00Z) and fall back
# 02:00 -> 01:00 on 3 November (06:00Z).
SPRING = datetime(2024, 3, 10, tzinfo=NEW_YORK)
FALL = datetime(2024, 11, 3, tzinfo=NEW_YORK)


def local_day(timing: Timing, day: datetime) -> list[datetime]:
    """The slots from `day`'s local midnight (inclusive) to the next midnight (exclusive)."""
    zone = day.tzinfo
    start = datetime(day.year, day.month, day.day, tzinfo=zone)
    following = start.date() + timedelta(days=1)
    end = datetime(following.year, following.month, following.day, tzinfo=zone)
    return list(timing.slots_between(start - timedelta(seconds=1), end - timedelta(seconds=1)))


def hhmm(slots: list[datetime]) -> list[str]:
    return [slot.strftime("%H:%M%z") for slot in slots]


def gaps(slots: list[datetime]) -> set[float]:
    """Real seconds between neighbours (subtracting datetimes of one zone would give wall time)."""
    return {b.timestamp() - a.timestamp() for a, b in itertools.pairwise(slots)}


# cron


def test_cron_weekdays_at_nine_in_shanghai_which_has_no_dst() -> None:
    timing = Timing.from_cron("0 9 * * 1-5", "Asia/Shanghai")
    week = list(timing.slots_between(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 8, tzinfo=UTC)))
    # 1 January 2024 was a Monday; 09:00 in Shanghai is 01:00Z all year.
    assert [slot.isoformat() for slot in week] == [f"2024-01-0{d}T09:00:00+08:00" for d in range(1, 6)]
    assert {slot.astimezone(UTC).hour for slot in week} == {1}


def test_cron_hourly_on_the_spring_forward_day_has_23_slots_and_no_2am() -> None:
    slots = local_day(Timing.from_cron("0 * * * *", "America/New_York"), SPRING)
    assert len(slots) == 23
    assert "02:00-0500" not in hhmm(slots) and "02:00-0400" not in hhmm(slots)
    assert hhmm(slots)[:4] == ["00:00-0500", "01:00-0500", "03:00-0400", "04:00-0400"]
    assert gaps(slots) == {3600}


def test_cron_at_a_time_the_clocks_skip_fires_when_they_jump() -> None:
    timing = Timing.from_cron("30 2 * * *", "America/New_York")
    slots = list(timing.slots_between(SPRING - timedelta(days=1), SPRING + timedelta(days=1, hours=12)))
    assert [slot.isoformat() for slot in slots] == [
        "2024-03-09T02:30:00-05:00",
        "2024-03-10T03:00:00-04:00",  # 02:30 never happened: fired as the clocks jumped to 03:00
        "2024-03-11T02:30:00-04:00",
    ]


def test_cron_at_a_time_the_clocks_repeat_fires_once_the_first_time() -> None:
    timing = Timing.from_cron("30 1 * * *", "America/New_York")
    slots = local_day(timing, FALL)
    assert [slot.isoformat() for slot in slots] == ["2024-11-03T01:30:00-04:00"]  # not again at -05:00
    hourly = local_day(Timing.from_cron("0 * * * *", "America/New_York"), FALL)
    assert len(hourly) == 24  # 25 hours long, the repeated 01:00 fires once
    assert hhmm(hourly)[:4] == ["00:00-0400", "01:00-0400", "02:00-0500", "03:00-0500"]


def test_cron_daily_keeps_its_local_time_across_both_changes() -> None:
    timing = Timing.from_cron("0 9 * * *", "America/New_York")
    slots = list(timing.slots_between(datetime(2024, 3, 8, tzinfo=UTC), datetime(2024, 11, 6, tzinfo=UTC)))
    assert {slot.strftime("%H:%M") for slot in slots} == {"09:00"}
    real = [b.timestamp() - a.timestamp() for a, b in itertools.pairwise(slots)]
    assert (real.count(23 * 3600), real.count(25 * 3600)) == (1, 1)  # the nights the clocks change
    assert set(real) == {23 * 3600, 24 * 3600, 25 * 3600}
    around = list(timing.slots_between(SPRING - timedelta(days=1), SPRING + timedelta(days=1)))
    assert [slot.utcoffset() for slot in around] == [timedelta(hours=-5), timedelta(hours=-4)]


def test_cron_refusals_say_what_is_wrong() -> None:
    cases = {
        "0 9 * *": "five fields",
        "0 0 9 * * *": "five fields",
        "@daily": "write @daily out",
        "61 * * * *": "not valid",
        "0 0 31 2 *": "never fires",
        "H 9 * * *": "H and R",
        "0 9 * * R": "H and R",
        "0 9 * * mon/x": "not valid",
    }
    for expression, message in cases.items():
        with pytest.raises(ValueError, match=message):
            Timing.from_cron(expression, "UTC")
    Timing.from_cron("0 9 * * MON-FRI", "UTC")  # names are cron, not the R of random
    Timing.from_cron("0 9 1 MAR,APR *", "UTC")


# every


def test_every_is_aligned_to_the_epoch_in_utc_whatever_the_start() -> None:
    timing = Timing.from_every("1h30m", "UTC")
    starts = [datetime(2024, 5, 1, 7, 13, 22, tzinfo=UTC), datetime(2024, 5, 1, 6, 0, 1, tzinfo=UTC)]
    firsts = [timing.next_after(start) for start in starts]
    assert firsts == [datetime(2024, 5, 1, 7, 30, tzinfo=UTC)] * 2
    assert all(int(first.timestamp()) % 5400 == 0 for first in firsts)


def test_every_follows_the_local_clock_for_long_intervals() -> None:
    six_hours = local_day(Timing.from_every("6h", "Asia/Shanghai"), datetime(2024, 6, 1, tzinfo=SHANGHAI))
    assert hhmm(six_hours) == ["00:00+0800", "06:00+0800", "12:00+0800", "18:00+0800"]
    daily = Timing.from_every("1d", "Asia/Shanghai").next_after(datetime(2024, 6, 1, 12, tzinfo=UTC))
    assert daily.isoformat() == "2024-06-02T00:00:00+08:00"  # local midnight, not 08:00 (UTC midnight)
    kolkata = Timing.from_every("1h", "Asia/Kolkata")  # +05:30
    assert kolkata.next_after(datetime(2024, 6, 1, 10, 5, tzinfo=UTC)).strftime("%M") == "00"


def test_every_up_to_an_hour_keeps_its_real_time_pace_through_dst() -> None:
    timing = Timing.from_every("30m", "America/New_York")
    spring, fall = local_day(timing, SPRING), local_day(timing, FALL)
    assert (len(spring), len(fall)) == (46, 50)  # 23 and 25 hours of half hours
    assert gaps(spring) == gaps(fall) == {1800}
    assert hhmm(fall).count("01:30-0400") == hhmm(fall).count("01:30-0500") == 1


def test_every_longer_than_a_change_treats_it_like_cron() -> None:
    two_hours = Timing.from_every("2h", "Europe/Berlin")  # Berlin: 02:00 -> 03:00, then 03:00 -> 02:00
    spring = local_day(two_hours, datetime(2024, 3, 31, tzinfo=BERLIN))
    assert hhmm(spring)[:3] == ["00:00+0100", "03:00+0200", "04:00+0200"]  # 02:00 fired at the jump
    fall = local_day(two_hours, datetime(2024, 10, 27, tzinfo=BERLIN))
    assert hhmm(fall)[:3] == ["00:00+0200", "02:00+0200", "04:00+0100"]  # 02:00 once, not twice
    daily = Timing.from_every("1d", "America/New_York")
    days = list(daily.slots_between(SPRING - timedelta(days=1), SPRING + timedelta(days=2)))
    assert hhmm(days) == ["00:00-0500", "00:00-0400", "00:00-0400"]
    assert gaps(days) == {23 * 3600, 24 * 3600}


# equality, zones, queries


def test_equal_timings_are_the_same_timing() -> None:
    assert Timing.from_cron("0  9 * * *", "UTC") == Timing.from_cron("0 9 * * *", "UTC")
    ninety = Timing.from_every("90m", "UTC")
    assert ninety == Timing.from_every("1h30m", "UTC") == Timing.from_every(5400, "UTC")
    assert Timing.from_cron("0 9 * * *", "UTC") != Timing.from_cron("0 9 * * *", "Asia/Shanghai")
    assert Timing.from_every("1h", "UTC") != Timing.from_cron("0 * * * *", "UTC")
    assert len({Timing.from_every("1h", "UTC"), Timing.from_every("60m", "UTC")}) == 1
    assert str(Timing.from_every(5400, "UTC")) == "every 1h30m UTC"


def test_unknown_zones_and_mixed_keys_are_refused() -> None:
    for zone in ("Mars/Olympus", "../../etc/passwd", ""):
        with pytest.raises(ValueError, match="unknown time zone"):
            Timing.from_every("1h", zone)
    with pytest.raises(ValueError, match="either cron or every"):
        make_timing(cron="0 9 * * *", every="1h")
    with pytest.raises(ValueError, match="either cron or every"):
        make_timing()
    with pytest.raises(ValueError, match="aware datetime"):
        Timing.from_every("1h", "UTC").next_after(datetime(2024, 1, 1))


def test_the_default_zone_is_the_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    assert server_zone() == "Asia/Shanghai"
    assert make_timing(every="1h").zone == "Asia/Shanghai"
    monkeypatch.setenv("TZ", ":/usr/share/zoneinfo/Europe/Berlin")
    assert Timing.from_cron("0 9 * * *").zone == "Europe/Berlin"
    monkeypatch.setenv("TZ", "Not/AZone")
    assert server_zone() != "Not/AZone"  # falls through to the system's files, else UTC


def test_queries_are_strict_after_and_inclusive_at() -> None:
    timing = Timing.from_cron("0 9 * * *", "Asia/Shanghai")
    nine = datetime(2024, 1, 2, 9, tzinfo=SHANGHAI)
    assert timing.next_after(nine) == nine + timedelta(days=1)
    assert timing.latest_at_or_before(nine) == nine
    assert timing.latest_at_or_before(nine - timedelta(seconds=1)) == nine - timedelta(days=1)
    assert list(timing.slots_between(nine, nine + timedelta(days=2))) == [
        nine + timedelta(days=1),
        nine + timedelta(days=2),
    ]
    three = next_fire_times(timing, nine - timedelta(minutes=1))
    assert three == [nine + timedelta(days=d) for d in range(3)]
    assert slot_iso(nine) == "2024-01-02T01:00:00Z"


TIMINGS = [
    Timing.from_cron(expression, zone)
    for expression in ("0 9 * * *", "*/15 * * * *", "30 1,2 * * 0", "0 0 29 2 *")
    for zone in ("America/New_York", "Europe/Berlin", "America/Santiago", "Australia/Lord_Howe", "UTC")
] + [
    Timing.from_every(every, zone)
    for every in ("1s", "7m", "30m", "1h", "2h", "1d", "3d")
    for zone in ("America/New_York", "Asia/Shanghai", "America/Santiago", "Australia/Lord_Howe", "UTC")
]


@settings(max_examples=300, deadline=None)
@given(
    timing=st.sampled_from(TIMINGS),
    instant=st.integers(min_value=946_684_800, max_value=3_786_912_000),  # 2000 to 2090
    fraction=st.sampled_from([0.0, 0.25, 0.999]),
)
def test_next_and_latest_agree_everywhere(timing: Timing, instant: int, fraction: float) -> None:
    t = datetime.fromtimestamp(instant + fraction, UTC)
    following = timing.next_after(t)
    latest = timing.latest_at_or_before(t)
    assert following > t
    assert latest is not None and latest <= t
    assert timing.next_after(latest) == following  # no slot hides between them
    assert timing.latest_at_or_before(following) == following
    assert following.tzinfo is timing.tz
    if timing.every_s is not None:  # at most an interval plus a clock change apart
        assert following.timestamp() - latest.timestamp() <= timing.every_s + 24 * 3600
