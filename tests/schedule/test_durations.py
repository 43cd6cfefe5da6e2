"""`every:` and `catch_up:` durations: what is accepted, and what each refusal says."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from responder.schedule.timing import (
    MAX_CATCH_UP_S,
    MAX_EVERY_S,
    format_duration,
    parse_catch_up,
    parse_every,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("5m", 300),
        ("1h30m", 5400),
        ("1d", 86_400),
        ("1d2h3m4s", 93_784),
        ("90", 90),
        (90, 90),
        (" 15m ", 900),
        ("1s", 1),
        ("366d", MAX_EVERY_S),
    ],
)
def test_every_accepts_units_and_bare_seconds(text: str | int, seconds: int) -> None:
    assert parse_every(text) == seconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0", "at least 1s"),
        ("0s", "at least 1s"),
        ("0m0s", "at least 1s"),
        ("-5m", "must be positive"),
        ("", "must be a duration"),
        ("soon", "must be a duration"),
        ("5 minutes", "must be a duration"),
        ("5M", "must be a duration"),
        ("1.5h", "whole numbers"),
        ("0.5s", "whole numbers"),
        ("500ms", "at least 1s"),
        ("30m1h", "largest first"),
        ("1h1h", "largest first"),
        ("367d", "at most 366d"),
        ("99999999999999999999d", "at most 366d"),
        (True, "got bool"),
        (1.5, "got float"),
        (None, "got NoneType"),
    ],
)
def test_every_refuses_with_a_message_a_config_error_can_show(text: object, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        parse_every(text)  # type: ignore[arg-type]
    assert str(caught.value).startswith("every ")


def test_catch_up_is_optional_and_at_most_a_day() -> None:
    assert parse_catch_up(None) is None
    assert parse_catch_up("10m") == 600
    assert parse_catch_up("1d") == MAX_CATCH_UP_S
    with pytest.raises(ValueError, match=r"^catch_up must be at most 1d"):
        parse_catch_up("25h")
    with pytest.raises(ValueError, match=r"^catch_up must be at least 1s"):
        parse_catch_up("0s")


@given(st.integers(min_value=1, max_value=MAX_EVERY_S))
def test_format_duration_reads_back_as_the_same_seconds(seconds: int) -> None:
    text = format_duration(seconds)
    assert parse_every(text) == seconds
    assert format_duration(5400) == "1h30m"
