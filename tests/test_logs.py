"""setup_logging: line formats, escaping, redaction, rotation, and never blocking the caller."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import logging
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from responder.logs import LoggingHandle, setup_logging

NAME = "responder.test_logs"
TS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
FORGED = "hi\n2026-11-29T00:00:00.000Z ERROR forged_event\r\x1b[31m\u2028x\u0085y"
DEADLINE_S = 30.0


@pytest.fixture
def handles() -> Iterator[list[LoggingHandle]]:
    """Closes every handle a test opened, even when the test fails half-way."""
    opened: list[LoggingHandle] = []
    yield opened
    for handle in opened:
        handle.close(timeout_s=DEADLINE_S)


@pytest.fixture
def logger() -> logging.Logger:
    return logging.getLogger(NAME)


def ours(text: str) -> list[str]:
    """Our logger's lines; anything else that logged during the test is ignored."""
    return [line for line in text.splitlines() if NAME in line or "log_records_dropped" in line]


class GatedStream(io.StringIO):
    """A stream whose writes block until `gate` is set, like a stalled reader.

    `drained` is set once `expected` lines have been written.
    """

    def __init__(self, expected: int) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.drained = threading.Event()
        self._expected = expected

    def write(self, text: str) -> int:
        self.entered.set()
        assert self.gate.wait(DEADLINE_S)
        written = super().write(text)
        if self.getvalue().count("\n") == self._expected:
            self.drained.set()
        return written


class FullDisk(io.StringIO):
    def write(self, text: str) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_json_format_writes_one_object_per_record(handles, logger) -> None:
    out = io.StringIO()
    handles.append(setup_logging(fmt="json", stream=out))

    logger.info("rules_reloaded generation=%d rules=%d", 3, 12, extra={"generation": 3})
    logger.warning("Something from a library")
    handles[0].close()

    first, second = (json.loads(line) for line in ours(out.getvalue()))
    assert re.fullmatch(TS, first.pop("ts"))
    assert first == {
        "level": "INFO",
        "logger": NAME,
        "event": "rules_reloaded",
        "msg": "rules_reloaded generation=3 rules=12",
        "generation": 3,
    }
    assert second["event"] is None
    assert second["level"] == "WARNING"


def test_json_renders_exception_as_single_exc_field(handles, logger) -> None:
    out = io.StringIO()
    handles.append(setup_logging(fmt="json", stream=out))

    try:
        raise ValueError("bad template")
    except ValueError:
        logger.exception("render_failed rule=%s", "ip")
    handles[0].close()

    [line] = ours(out.getvalue())
    record = json.loads(line)
    assert record["event"] == "render_failed"
    assert record["exc"].startswith("Traceback (most recent call last):")
    assert record["exc"].endswith("ValueError: bad template")


def test_extra_field_named_like_a_reserved_key_is_kept_under_a_prefix(handles, logger) -> None:
    out = io.StringIO()
    handles.append(setup_logging(fmt="json", stream=out))

    logger.info("reply_sent", extra={"level": "custom", "ts": 1})
    handles[0].close()

    record = json.loads(ours(out.getvalue())[0])
    assert (record["level"], record["extra_level"], record["extra_ts"]) == ("INFO", "custom", 1)


@pytest.mark.parametrize("fmt", ["json", "human"])
def test_forged_newline_in_message_and_values_stays_on_one_line(handles, logger, fmt) -> None:
    out = io.StringIO()
    handles.append(setup_logging(fmt=fmt, stream=out))

    logger.info("message_received text=%s", FORGED, extra={"sender": FORGED})
    handles[0].close()

    lines = out.getvalue().splitlines()  # splits on \n, \r, U+2028, U+0085 and more
    assert len(lines) == 1
    assert "forged_event" in lines[0]
    assert "\x1b" not in lines[0]


def test_human_format_escapes_control_characters_visibly(handles, logger) -> None:
    out = io.StringIO()
    handles.append(setup_logging(fmt="human", stream=out))

    logger.info("message_received text=%s", "a\nb\r\x00\u2028\u202e", extra={"v": "x\ny"})
    handles[0].close()

    assert out.getvalue().endswith(r"INFO  message_received text=a\nb\r\x00\u2028\u202e v=x\ny" + "\n")


def test_human_format_is_compact_and_uncoloured_off_a_tty(handles, logger) -> None:
    out = io.StringIO()
    handles.append(setup_logging(fmt="human", stream=out))

    logger.info("rules_reloaded generation=%d", 3, extra={"sha256": "ab12", "path": "a b"})
    logger.warning("source_failed source=ip")
    handles[0].close()

    first, second = out.getvalue().splitlines()
    assert re.fullmatch(TS + r' INFO  rules_reloaded generation=3 sha256=ab12 path="a b"', first)
    assert re.fullmatch(TS + r" WARNING source_failed source=ip", second)


def test_human_format_is_coloured_on_a_tty(handles, logger) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Terminal()
    handles.append(setup_logging(fmt="human", stream=out))

    logger.error("reply_failed")
    handles[0].close()

    assert "\x1b[31mERROR\x1b[0m reply_failed" in out.getvalue()


def test_human_traceback_lines_are_indented_under_the_record(handles, logger) -> None:
    out = io.StringIO()
    handles.append(setup_logging(fmt="human", stream=out))

    try:
        raise RuntimeError("line one\n2026-11-29T00:00:00.000Z INFO forged")
    except RuntimeError:
        logger.exception("handler_failed")
    handles[0].close()

    first, *rest = out.getvalue().splitlines()
    assert first.endswith("ERROR handler_failed")
    assert rest and all(line.startswith("    ") for line in rest)


@pytest.mark.parametrize("fmt", ["json", "human"])
def test_session_values_and_secrets_are_redacted(handles, logger, fmt) -> None:
    out = io.StringIO()
    handles.append(setup_logging(fmt=fmt, stream=out, secrets=["s3cr3t", "", "s3cr3t-long"]))
    url = "https://oapi.dingtalk.com/robot/sendBySession?session=0123456789abcdef&x=1"

    logger.info("reply_failed url=%s sign=s3cr3t-long", url, extra={"webhook": url, "k": "s3cr3t"})
    try:
        raise ConnectionError(f"cannot POST {url} with s3cr3t")
    except ConnectionError:
        logger.exception("delivery_failed")
    handles[0].close()

    text = out.getvalue()
    assert "0123456789abcdef" not in text
    assert "s3cr3t" not in text
    assert text.count("session=***&x=1") == 3
    assert "sign=***" in text


def test_file_rotates_at_max_bytes_and_keeps_only_backups(handles, logger, tmp_path, capsys):
    path = tmp_path / "responder.log"
    handles.append(setup_logging(fmt="json", log_file=path, max_bytes=600, backups=2))

    for n in range(60):
        logger.info("reply_sent n=%03d", n)
    assert handles[0].close()

    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == ["responder.log", "responder.log.1", "responder.log.2"]
    assert all(0 < f.stat().st_size <= 600 for f in files)
    assert '"msg":"reply_sent n=059"' in path.read_text()
    assert capsys.readouterr().err == ""  # a log file replaces stderr unless a stream is passed


def test_log_file_and_explicit_stream_both_receive_records(handles, logger, tmp_path) -> None:
    out = io.StringIO()
    path = tmp_path / "responder.log"
    handles.append(setup_logging(fmt="human", log_file=path, stream=out))

    logger.info("rules_reloaded")
    handles[0].close()

    assert "rules_reloaded" in path.read_text()
    assert "rules_reloaded" in out.getvalue()


def test_unopenable_log_file_fails_at_setup(tmp_path) -> None:
    with pytest.raises(OSError):
        setup_logging(fmt="json", log_file=tmp_path / "missing-dir" / "responder.log")


def test_writer_stuck_on_unread_pipe_does_not_block_callers(handles, logger) -> None:
    read_fd, write_fd = os.pipe()
    pipe = open(write_fd, "w", encoding="utf-8")  # noqa: SIM115 - closed below, errors expected
    handles.append(setup_logging(fmt="json", stream=pipe))  # the default 10_000 queue
    returned = threading.Event()

    def log_many() -> None:
        for n in range(50_000):
            logger.info("message_received n=%d", n)
        returned.set()

    thread = threading.Thread(target=log_many)
    thread.start()
    thread.join(DEADLINE_S)
    finished = returned.is_set()
    os.close(read_fd)  # unblocks the writer (EPIPE) so the handle can close

    assert finished, "log.info blocked behind a pipe nobody reads"
    # At most the queue plus what fits in the pipe buffer (64 KiB, ~100-byte lines) got through.
    assert handles[0].dropped >= 50_000 - 10_000 - 1_000
    assert handles[0].close(timeout_s=DEADLINE_S)
    assert handles[0].write_errors > 0
    with contextlib.suppress(OSError):
        pipe.close()


def test_dropped_records_are_reported_by_the_next_line_that_fits(handles, logger) -> None:
    out = GatedStream(expected=6)
    handles.append(setup_logging(fmt="json", stream=out, queue_size=5))
    logger.info("first")
    assert out.entered.wait(DEADLINE_S)  # the writer holds "first" and is stuck writing it

    for n in range(8):
        logger.info("message_received n=%d", n)
    assert handles[0].dropped == 3
    out.gate.set()
    assert out.drained.wait(DEADLINE_S)  # "first" and the five queued records are out
    logger.info("after")
    handles[0].close()

    events = [json.loads(line)["msg"] for line in out.getvalue().splitlines()]
    assert events[-2:] == ["log_records_dropped count=3", "after"]
    assert json.loads(out.getvalue().splitlines()[-2])["level"] == "WARNING"


def test_oserror_from_stream_never_reaches_the_caller(handles, logger, capsys) -> None:
    handles.append(setup_logging(fmt="human", stream=FullDisk()))

    for n in range(100):
        logger.info("reply_sent n=%d", n)

    assert handles[0].close()
    assert handles[0].write_errors == 100
    assert "Logging error" not in capsys.readouterr().err


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_full_disk_log_file_never_reaches_the_caller(handles, logger, capsys) -> None:
    handles.append(setup_logging(fmt="json", log_file=Path("/dev/full")))

    for n in range(100):
        logger.info("reply_sent n=%d", n)

    assert handles[0].close()
    assert handles[0].write_errors >= 100  # plus the flush on close
    assert "Logging error" not in capsys.readouterr().err


def test_close_detaches_the_handler_and_restores_the_root_level(logger) -> None:
    root = logging.getLogger()
    before = (root.level, list(root.handlers))
    out = io.StringIO()
    handle = setup_logging(fmt="json", level="debug", stream=out)
    logger.debug("cache_hit")
    assert root.level == logging.DEBUG

    assert handle.close()
    logger.warning("after_close")

    assert (root.level, list(root.handlers)) == before
    assert "cache_hit" in out.getvalue()
    assert "after_close" not in out.getvalue()


def test_level_filters_records_below_it(handles, logger) -> None:
    out = io.StringIO()
    handles.append(setup_logging(fmt="json", level="WARNING", stream=out))

    logger.info("cache_hit")
    logger.warning("source_failed")
    handles[0].close()

    assert [json.loads(line)["msg"] for line in ours(out.getvalue())] == ["source_failed"]


@pytest.mark.parametrize(("fmt", "level"), [("xml", "INFO"), ("json", "LOUD")])
def test_unknown_format_or_level_is_rejected(fmt, level) -> None:
    with pytest.raises(ValueError, match="unknown log"):
        setup_logging(fmt=fmt, level=level, stream=io.StringIO())
