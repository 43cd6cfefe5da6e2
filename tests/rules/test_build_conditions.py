"""A snapshot is built with cyclic GC paused and a 1 ms GIL switch interval, and both are the
interpreter's as they were once the last build ends, however builds overlap."""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from responder.rules.load import load_rules
from responder.rules.model import RuleSet
from responder.rules.store import RuleStore, loop_friendly_build
from tests.conftest import RulesWriter

RULES = "rules:\n  - {name: hi, keywords: [hi], msgtype: text, body: hello}\n"


@pytest.fixture
def interpreter() -> Iterator[tuple[bool, float]]:
    """The test's starting conditions (GC on, a 5 ms interval), put back whatever happens."""
    saved = gc.isenabled(), sys.getswitchinterval()
    gc.enable()
    sys.setswitchinterval(0.005)
    yield True, 0.005
    sys.setswitchinterval(saved[1])
    (gc.enable if saved[0] else gc.disable)()


def conditions() -> tuple[bool, float]:
    return gc.isenabled(), sys.getswitchinterval()


def test_a_build_pauses_collection_and_shortens_the_interval(interpreter: tuple[bool, float]) -> None:
    with loop_friendly_build:
        assert conditions() == (False, 0.001)
    assert conditions() == interpreter


def test_overlapping_builds_restore_only_when_the_last_ends(interpreter: tuple[bool, float]) -> None:
    inside, release = threading.Event(), threading.Event()

    def other_build() -> None:
        with loop_friendly_build:
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=other_build)
    with loop_friendly_build:
        thread.start()
        assert inside.wait(10)
    assert conditions() == (False, 0.001)  # the other build is still running
    release.set()
    thread.join(10)
    assert conditions() == interpreter


def test_a_failing_build_restores_too(interpreter: tuple[bool, float]) -> None:
    with pytest.raises(RuntimeError), loop_friendly_build:
        raise RuntimeError("the loader crashed")
    assert conditions() == interpreter


def test_collection_that_was_off_stays_off(interpreter: tuple[bool, float]) -> None:
    gc.disable()
    with loop_friendly_build:
        pass
    assert conditions() == (False, 0.005)


async def test_a_reload_runs_the_loader_under_those_conditions(
    write_rules: RulesWriter, interpreter: tuple[bool, float]
) -> None:
    path: Path = write_rules(RULES)
    seen: list[tuple[bool, float]] = []

    def loader(rules_path: Path, environ: Mapping[str, str], **options: Any) -> RuleSet:
        seen.append(conditions())
        return load_rules(rules_path, environ, **options)

    store = RuleStore(load_rules(path, {}), {}, loader=loader, settle_s=0)
    path.write_text(RULES.replace("hello", "hello again"), encoding="utf-8")
    status = await store.reload()
    assert status.last_ok and status.generation == 2
    assert seen == [(False, 0.001)]
    assert conditions() == interpreter
