"""The short soak (bench/soak.py --duration 20) as a CI check: traffic through reloads loses nothing.

Only correctness is asserted (status codes, replies, reload results); speed and memory figures are
printed by the benchmark and never asserted here, because this machine is shared and noisy.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow

ARGS = ["--duration", "20", "--rate", "30", "--reload-every", "5"]


def figure(output: str, pattern: str) -> dict[str, str]:
    found = re.search(pattern, output, re.MULTILINE)
    assert found, f"{pattern!r} not in the soak summary:\n{output}"
    return found.groupdict()


@pytest.fixture(scope="module")
def soak_output() -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, str(REPO / "bench" / "soak.py"), *ARGS],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
        cwd=REPO,
        check=False,
    )


def test_soak_exits_zero_and_says_pass(soak_output: subprocess.CompletedProcess[str]) -> None:
    assert soak_output.returncode == 0, soak_output.stdout + soak_output.stderr
    assert "result: PASS" in soak_output.stdout


def test_soak_sees_no_5xx_and_no_connection_errors(soak_output: subprocess.CompletedProcess[str]) -> None:
    counts = figure(
        soak_output.stdout,
        r"^responses 2xx=(?P<ok>\d+) non_2xx=(?P<non_2xx>\d+) 5xx=(?P<server>\d+) errors=(?P<errors>\d+)$",
    )
    sent = figure(soak_output.stdout, r"^sent=(?P<sent>\d+) ")["sent"]
    assert (counts["non_2xx"], counts["server"], counts["errors"]) == ("0", "0", "0")
    assert counts["ok"] == sent
    assert int(sent) >= 20 * 30 * 0.9  # the open-loop schedule was kept, give or take a noisy host


def test_soak_delivers_every_reply_exactly_once(soak_output: subprocess.CompletedProcess[str]) -> None:
    replies = figure(
        soak_output.stdout,
        r"^replies delivered=(?P<delivered>\d+) expected=(?P<expected>\d+) lost=(?P<lost>\d+) "
        r"duplicates=(?P<duplicates>\d+) unexpected=(?P<unexpected>\d+)",
    )
    assert replies["delivered"] == replies["expected"] != "0"
    assert (replies["lost"], replies["duplicates"], replies["unexpected"]) == ("0", "0", "0")


def test_soak_reloads_load_valid_files_and_reject_invalid_ones(
    soak_output: subprocess.CompletedProcess[str],
) -> None:
    kinds = re.findall(r"^reload at_s=\S+ kind=(\w+) (ok|WRONG) .*$", soak_output.stdout, re.MULTILINE)
    assert kinds == [("valid", "ok"), ("invalid", "ok"), ("valid", "ok")]
    totals = figure(
        soak_output.stdout, r"^reloads total=(?P<total>\d+) correct=(?P<correct>\d+) wrong=(?P<wrong>\d+)$"
    )
    assert totals == {"total": "3", "correct": "3", "wrong": "0"}
    assert "generation 1->2 last_reload_ok=True" in soak_output.stdout
    assert "generation 2->2 last_reload_ok=False" in soak_output.stdout
    assert "generation 2->3 last_reload_ok=True" in soak_output.stdout


def test_soak_prints_rss_figures(soak_output: subprocess.CompletedProcess[str]) -> None:
    rss = figure(soak_output.stdout, r"^rss_kib start=(?P<start>\d+) end=(?P<end>\d+) .*samples=(?P<n>\d+)$")
    assert int(rss["start"]) > 0 and int(rss["n"]) >= 15
