"""A snapshot is built without full collections and with a 1 ms GIL switch interval, and both are
the interpreter's as they were once the last build ends, however builds overlap. A replaced
snapshot's rules are freed off the event loop once nothing uses it."""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from responder.rules import store
from responder.rules.load import load_rules
from responder.rules.model import Rule, RuleSet
from responder.rules.store import (
    BUILD_SWITCH_INTERVAL_S,
    NO_FULL_COLLECTIONS,
    RuleStore,
    loop_friendly_build,
    retire_gradually,
)
from tests.conftest import RulesWriter, eventually

RULES = "rules:\n  - {name: hi, keywords: [hi], msgtype: text, body: hello}\n"
Conditions = tuple[tuple[int, int, int], float]


@pytest.fixture
def interpreter() -> Iterator[Conditions]:
    """The test's starting conditions (700/10/10 thresholds, a 5 ms interval), put back after."""
    saved = gc.get_threshold(), sys.getswitchinterval()
    gc.set_threshold(700, 10, 10)
    sys.setswitchinterval(0.005)
    yield (700, 10, 10), 0.005
    gc.set_threshold(*saved[0])
    sys.setswitchinterval(saved[1])


def conditions() -> Conditions:
    return gc.get_threshold(), sys.getswitchinterval()


BUILDING: Conditions = ((700, 10, NO_FULL_COLLECTIONS), BUILD_SWITCH_INTERVAL_S)


def test_a_build_holds_off_full_collections_and_shortens_the_interval(interpreter: Conditions) -> None:
    with loop_friendly_build:
        assert conditions() == BUILDING
    assert conditions() == interpreter


def test_overlapping_builds_restore_only_when_the_last_ends(interpreter: Conditions) -> None:
    inside, release = threading.Event(), threading.Event()

    def other_build() -> None:
        with loop_friendly_build:
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=other_build)
    with loop_friendly_build:
        thread.start()
        assert inside.wait(10)
    assert conditions() == BUILDING  # the other build is still running
    release.set()
    thread.join(10)
    assert conditions() == interpreter


def test_a_failing_build_restores_too(interpreter: Conditions) -> None:
    with pytest.raises(RuntimeError), loop_friendly_build:
        raise RuntimeError("the loader crashed")
    assert conditions() == interpreter


async def test_a_reload_runs_the_loader_under_those_conditions(
    write_rules: RulesWriter, interpreter: Conditions
) -> None:
    path: Path = write_rules(RULES)
    seen: list[Conditions] = []

    def loader(rules_path: Path, environ: Mapping[str, str], **options: Any) -> RuleSet:
        seen.append(conditions())
        return load_rules(rules_path, environ, **options)

    store = RuleStore(load_rules(path, {}), {}, loader=loader, settle_s=0)
    path.write_text(RULES.replace("hello", "hello again"), encoding="utf-8")
    status = await store.reload()
    assert status.last_ok and status.generation == 2
    assert seen == [BUILDING]
    assert conditions() == interpreter


def _rules_named(name: str) -> int:
    return sum(1 for o in gc.get_objects() if isinstance(o, Rule) and o.name == name)


async def test_a_retired_snapshot_is_freed_once_unused_off_the_loop(
    write_rules: RulesWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    drained_in: list[str] = []
    drain = store._drain

    def recording_drain(bulk: list[object]) -> None:
        drained_in.append(threading.current_thread().name)
        drain(bulk)

    monkeypatch.setattr(store, "_drain", recording_drain)
    path: Path = write_rules(RULES.replace("name: hi", "name: retiring-rule"))
    old = load_rules(path, {})
    in_flight = old  # a message still answering on the old set
    retire_gradually(old)
    del old
    assert _rules_named("retiring-rule") == 1  # still in use: nothing is freed
    del in_flight
    await eventually(lambda: _rules_named("retiring-rule") == 0)
    assert drained_in == ["retire-snapshot"]
