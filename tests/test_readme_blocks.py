"""Every ```sh block of README.md and docs/*.md runs as written, so a false line fails CI.

Each block runs with `bash -euo pipefail` and a timeout, in a scratch directory holding a fresh
copy of the repository's rules.yaml, templates/ and schema/, with the test venv's `responder` on
PATH (and linked as `.venv`, for blocks that activate it). Where `unshare` can make them, a block
gets namespaces of its own: a network with only loopback (the default ports 8080/9180 are free and
nothing leaves the machine) and a pid namespace, so whatever it started in the background dies
with it; its process group is killed at the end as well.

A block that needs minutes or outside services carries a marker on the line before its fence,
`<!-- readme-test: skip (why) -->`, and is reported as skipped with its file and line. The README's
two set-up commands are exempt by name: they create a venv, and .ci/run runs them verbatim.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow

DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SKIP_MARKER = re.compile(r"<!-- readme-test: skip \((?P<why>[^()]+)\) -->")
SETUP_COMMANDS = {
    "python3 -m venv .venv && . .venv/bin/activate && pip install -e . && responder serve --dev",
    "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[test]' && pytest",
}
SETUP_EXEMPTION = (
    "a README set-up command: it creates a venv; .ci/run runs it verbatim, tests/test_docs.py pins it"
)
BLOCK_TIMEOUT_S = 90.0
CLEANUP_TIMEOUT_S = 10.0
# Which blocks must not run outside a private network: they bind the default ports or use curl.
NEEDS_PRIVATE_NETWORK = re.compile(r"\bresponder serve\b|\bcurl\b")

# Run inside the new network namespace before the block: bring loopback up (a new namespace has
# it down), then become bash. Python, because `ip` is not on every machine.
LOOPBACK_UP = """
import fcntl, os, socket, struct, sys
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
    request = struct.pack("16sH22x", b"lo", 0)
    flags = struct.unpack("16sH22x", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
    fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | IFF_UP))
os.execvp(sys.argv[1], sys.argv[1:])
"""
UNSHARE = ["unshare", "--net", "--pid", "--fork", "--kill-child", "--map-root-user"]


@dataclass(frozen=True, slots=True)
class Block:
    document: Path
    line: int  # of the opening fence, 1-based
    code: str
    skip: str | None  # why it is not run, from its marker; None: it runs

    @property
    def where(self) -> str:
        return f"{self.document.relative_to(REPO)}:{self.line}"


def sh_blocks(document: Path) -> list[Block]:
    lines = document.read_text(encoding="utf-8").splitlines()
    blocks = []
    index = 0
    while index < len(lines):
        if lines[index] != "```sh":
            index += 1
            continue
        end = lines.index("```", index + 1)
        code = "\n".join(lines[index + 1 : end])
        marker = SKIP_MARKER.fullmatch(lines[index - 1]) if index else None
        skip = marker.group("why") if marker else None
        if code in SETUP_COMMANDS and document.name == "README.md":
            skip = SETUP_EXEMPTION
        blocks.append(Block(document, index + 1, code, skip))
        index = end + 1
    return blocks


BLOCKS = [block for document in DOCUMENTS for block in sh_blocks(document)]


@cache
def private_namespaces() -> bool:
    """Whether `unshare` can give a block a loopback-only network and a pid namespace here."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run([*UNSHARE, "true"], capture_output=True, timeout=30)
    return probe.returncode == 0


def _venv_bin() -> Path:
    return Path(sys.executable).parent


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """A directory shaped like a fresh checkout's top level, as far as the docs' blocks use it."""
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy2(REPO / "rules.yaml", work / "rules.yaml")
    shutil.copytree(REPO / "templates", work / "templates")
    shutil.copytree(REPO / "schema", work / "schema")
    if sys.prefix != sys.base_prefix:  # the tests run in a venv: blocks activate that one
        (work / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    else:
        activate = work / ".venv" / "bin" / "activate"
        activate.parent.mkdir(parents=True)
        activate.write_text(f'export PATH="{_venv_bin()}:$PATH"\n', encoding="utf-8")
    return work


def _environment() -> dict[str, str]:
    # Nothing of the caller's DingTalk or systemd setting may change what a block does.
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("DINGTALK_") and key not in ("NOTIFY_SOCKET", "VIRTUAL_ENV")
    }
    env["PATH"] = f"{_venv_bin()}{os.pathsep}{env.get('PATH', '')}"
    return env


def _kill_group(pgid: int) -> None:
    """SIGTERM the block's process group, then SIGKILL whatever is left at the deadline."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + CLEANUP_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)  # polling interval under a deadline, not synchronisation
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def run_block(block: Block, work: Path) -> tuple[int | None, str, str]:
    """Run the block to its end (None: timed out); its exit code, stdout and stderr."""
    script = work.parent / "block.sh"
    script.write_text(block.code + "\n", encoding="utf-8")
    bash = ["bash", "-euo", "pipefail", str(script)]
    argv = [*UNSHARE, sys.executable, "-c", LOOPBACK_UP, *bash] if private_namespaces() else bash
    # Files, not pipes: a server a block leaves in the background would hold a pipe open.
    out_path, err_path = work.parent / "stdout", work.parent / "stderr"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(
            argv,
            cwd=work,
            env=_environment(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        try:
            code: int | None = proc.wait(timeout=BLOCK_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            _kill_group(proc.pid)
            proc.wait()
    return code, out_path.read_text(errors="replace"), err_path.read_text(errors="replace")


@pytest.mark.parametrize("block", BLOCKS, ids=[block.where for block in BLOCKS])
def test_documented_block_runs(block: Block, scratch: Path) -> None:
    if block.skip is not None:
        pytest.skip(f"{block.where}: {block.skip}")
    if NEEDS_PRIVATE_NETWORK.search(block.code) and not private_namespaces():
        pytest.skip(
            f"{block.where}: needs `unshare --net --pid` (a loopback-only network with the default "
            "ports free), which this machine does not allow"
        )
    if "redis-server" in block.code and not shutil.which("redis-server"):
        pytest.skip(f"{block.where}: needs Debian's redis-server (apt-get install redis-server)")
    code, out, err = run_block(block, scratch)
    outcome = "timed out" if code is None else f"exited {code}"
    tails = f"--- stdout\n{out[-4000:]}\n--- stderr\n{err[-4000:]}"
    assert code == 0, f"{block.where} {outcome}\n--- block\n{block.code}\n{tails}"


def _readme_curl_example() -> Block:
    (block,) = [b for b in BLOCKS if b.document.name == "README.md" and "/dingtalk/callback" in b.code]
    return block


def test_the_docs_have_runnable_blocks_and_the_readme_curl_example_is_one() -> None:
    runnable = [block for block in BLOCKS if block.skip is None]
    assert len(runnable) >= 3
    assert _readme_curl_example().skip is None


def test_the_readme_curl_example_answers_and_logs_what_the_readme_says(scratch: Path) -> None:
    """ "The request above answers `{}` at once; the reply is POSTed to the sessionWebhook in the
    background ... logged as `reply_dropped`" (here the POST fails: there is no network)."""
    block = _readme_curl_example()
    if not private_namespaces():
        pytest.skip(f"{block.where}: needs `unshare --net --pid`, which this machine does not allow")
    code, out, err = run_block(block, scratch)
    assert (code, out) == (0, "{}"), err
    assert re.search(r"WARNING reply_dropped msg_id=msg1 rule=help reason=\S+ via=session_webhook", err), err


def test_both_setup_commands_are_found_and_exempt() -> None:
    exempt = {block.code for block in BLOCKS if block.skip == SETUP_EXEMPTION}
    assert exempt == SETUP_COMMANDS


@pytest.mark.parametrize("document", DOCUMENTS, ids=[str(d.relative_to(REPO)) for d in DOCUMENTS])
def test_every_marker_sits_on_a_sh_fence_and_no_block_hides_under_another_name(document: Path) -> None:
    lines = document.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        if "readme-test" in line:
            assert SKIP_MARKER.fullmatch(line), f"{document.name}:{number}: malformed marker {line!r}"
            assert lines[number : number + 1] == ["```sh"], (
                f"{document.name}:{number}: marker not before ```sh"
            )
        assert not re.fullmatch(r"```\s*(bash|shell|zsh|console-sh)\s*", line), (
            f"{document.name}:{number}: shell blocks are ```sh, so that they are run"
        )
