"""The state backend's circuit breaker: opens after consecutive failures, closes on a success."""

from __future__ import annotations

import pytest

from responder.state.breaker import Breaker


def test_it_opens_on_the_third_failure_in_a_row_and_says_so_once() -> None:
    breaker = Breaker(failures_to_open=3)
    assert [breaker.failed() for _ in range(5)] == [False, False, True, False, False]
    assert breaker.is_open


def test_a_success_between_failures_keeps_it_closed() -> None:
    breaker = Breaker(failures_to_open=3)
    for _ in range(10):
        breaker.failed()
        breaker.failed()
        assert not breaker.succeeded()
    assert not breaker.is_open


def test_a_success_closes_it_and_says_so_once() -> None:
    breaker = Breaker(failures_to_open=1)
    assert breaker.failed()
    assert breaker.succeeded()
    assert not breaker.succeeded()
    assert not breaker.is_open
    assert breaker.failed()  # the count started afresh


def test_trip_opens_it_at_once() -> None:
    breaker = Breaker(failures_to_open=3)
    assert breaker.trip() and breaker.is_open
    assert not breaker.trip() and not breaker.failed()


def test_a_threshold_below_one_is_refused() -> None:
    with pytest.raises(ValueError):
        Breaker(failures_to_open=0)
