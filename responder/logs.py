"""Process logging for the CLI: JSON lines or human text, redaction, and writes that never block.

Callers only put records on a bounded queue; a writer thread drains it to a stream and/or a
rotating file. A full queue drops records and counts them. Only `cli` calls `setup_logging`.
"""

from __future__ import annotations

import functools
import logging
import math
import queue
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from logging.handlers import QueueHandler, RotatingFileHandler
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, Protocol, TextIO

from responder.jsontext import dumps

log = logging.getLogger(__name__)

MIB = 1024 * 1024
QUEUE_SIZE = 10_000
FIELDS_ATTR = "responder_fields"  # where a prepared record keeps its frozen `extra` fields

_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    FIELDS_ATTR,
}
_JSON_KEYS = ("ts", "level", "logger", "event", "msg", "exc")
_SESSION_VALUE = re.compile(r"(?<=[?&]session=)[^&#\s\"'<>]+", re.IGNORECASE)
_EVENT = re.compile(r"[a-z][a-z0-9_]*(?=\s|$)")
# Line breaks that some readers honour (str.splitlines, JS, terminals) plus bidi overrides.
_UNSAFE = "\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_CONTROL = re.compile(f"[\x00-\x1f{_UNSAFE}]")
_JSON_UNSAFE = re.compile(f"[{_UNSAFE}]")
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_COLOURS = {"DEBUG": "2", "INFO": "32", "WARNING": "33", "ERROR": "31", "CRITICAL": "1;31"}
_STOP = object()


MAX_LOGGED_CHARS = 200
_BARE = re.compile(r"[A-Za-z0-9_.:/@+\-*]+")


class quoted:
    """A value from a message, made safe for `key=value` log lines, formatted only if the line is.

    Cut to MAX_LOGGED_CHARS, and written as a Python string literal unless it is one plain word,
    so a msgId of `a rule=admin reason='sent'` cannot pose as more fields.
    """

    __slots__ = ("_always", "_value")

    def __init__(self, value: object, *, always: bool = False) -> None:
        self._value = value
        self._always = always

    def __str__(self) -> str:
        text = str(self._value)
        if len(text) > MAX_LOGGED_CHARS:
            text = text[:MAX_LOGGED_CHARS] + "…"
        if not self._always and _BARE.fullmatch(text):
            return text
        return repr(text)


@dataclass(frozen=True, slots=True)
class Redactor:
    """Replaces sessionWebhook `session=` values and known secret strings with `***`."""

    secrets: re.Pattern[str] | None = None

    @classmethod
    def for_secrets(cls, secrets: Sequence[str]) -> Redactor:
        # Longest first, so a secret that contains another is hidden whole.
        ordered = sorted({s for s in secrets if s}, key=len, reverse=True)
        return cls(re.compile("|".join(map(re.escape, ordered))) if ordered else None)

    def redact(self, text: str) -> str:
        text = _SESSION_VALUE.sub("***", text)
        return self.secrets.sub("***", text) if self.secrets else text


class _Sink(Protocol):
    failures: int

    def write_all(self, records: Sequence[logging.LogRecord]) -> None: ...

    def close(self) -> None: ...


class _StreamSink:
    """Writes lines to a stream we do not own (never closed here); failures are only counted."""

    def __init__(self, stream: TextIO, render: Callable[[logging.LogRecord], str]) -> None:
        self.failures = 0
        self._stream = stream
        self._render = render

    def write_all(self, records: Sequence[logging.LogRecord]) -> None:
        """One write and one flush for everything queued: a busy server logs a line per message."""
        try:
            self._stream.write("".join(self._render(record) + "\n" for record in records))
            self._stream.flush()
        except Exception:  # a closed, full or broken stream must not kill the writer thread
            self.failures += len(records)

    def close(self) -> None:
        pass


class _RotatingFileSink(RotatingFileHandler):
    """A size-rotated file; a record it cannot write (a full disk) goes to `fallback` (stderr)
    instead, and is counted."""

    def __init__(
        self,
        path: Path,
        render: Callable[[logging.LogRecord], str],
        max_bytes: int,
        backups: int,
        fallback: _Sink | None = None,
    ) -> None:
        # Opened now, not lazily, so a bad --log-file fails at startup with an OSError.
        super().__init__(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        self.failures = 0
        self._render = render
        self._fallback = fallback

    def format(self, record: logging.LogRecord) -> str:
        return self._render(record)

    def handleError(self, record: logging.LogRecord) -> None:
        self.failures += 1
        if self._fallback is not None:
            self._fallback.write_all([record])

    def close(self) -> None:
        try:
            super().close()
        except OSError:  # the final flush can hit the same full disk
            self.failures += 1

    def write_all(self, records: Sequence[logging.LogRecord]) -> None:
        for record in records:
            self.handle(record)


class _DroppingQueueHandler(QueueHandler):
    """Freezes and redacts records in the caller's thread, then enqueues without waiting."""

    def __init__(self, records: queue.Queue[Any], redactor: Redactor) -> None:
        super().__init__(records)
        self.redactor = redactor
        self._counts = threading.Lock()
        self._pending_drops = 0
        self.total_drops = 0

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return _freeze(record, self.redactor)

    def enqueue(self, record: logging.LogRecord) -> None:
        with self._counts:
            self._report_drops()
            if not self._offer(record):
                self._pending_drops += 1
                self.total_drops += 1

    def flush_drop_report(self) -> None:
        with self._counts:
            self._report_drops()

    def _report_drops(self) -> None:
        if self._pending_drops and self._offer(_drop_report(self._pending_drops)):
            self._pending_drops = 0

    def _offer(self, record: logging.LogRecord) -> bool:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            return False
        return True


_MAX_BATCH = 256  # records written together, so one slow write never holds too many
# Every wake-up of the writer takes the GIL from the event loop, and a busy server logs a line per
# message: waking once per 10 ms batch instead of once per line bought 5-10% more messages/s.
_LINGER_S = 0.01


class _Writer:
    """The one thread that does log I/O. It may block on a stuck stream; callers never do."""

    def __init__(self, records: queue.Queue[Any], sinks: Sequence[_Sink]) -> None:
        self._queue = records
        self._sinks = tuple(sinks)
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float) -> bool:
        """Ask the thread to finish what is queued; False if it did not within `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        try:
            self._queue.put(_STOP, timeout=timeout_s)
        except queue.Full:
            return False
        self._thread.join(max(0.0, deadline - time.monotonic()))
        return not self._thread.is_alive()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch = [self._queue.get()]
            time.sleep(_LINGER_S)  # let more lines arrive: one wake-up per batch, not per line
            while len(batch) < _MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stopping = _STOP in batch
            records = [record for record in batch if record is not _STOP]
            for sink in self._sinks:
                sink.write_all(records)


class LoggingHandle:
    """What setup_logging installed on the root logger; close() flushes and removes it."""

    def __init__(
        self,
        handler: _DroppingQueueHandler,
        writer: _Writer,
        sinks: Sequence[_Sink],
        level: int,
        secrets: Sequence[str] = (),
        restore: Callable[[], None] = lambda: None,
    ) -> None:
        self._handler = handler
        self._restore = restore
        self._base_secrets = tuple(secrets)
        self._malformed = MalformedRequests()
        logging.getLogger("aiohttp.server").addFilter(self._malformed)
        self._writer = writer
        self._sinks = tuple(sinks)
        self._previous_level = level
        self._closed = False

    @property
    def dropped(self) -> int:
        """Records dropped so far because the queue was full."""
        return self._handler.total_drops

    @property
    def write_errors(self) -> int:
        """Records a sink failed to write (OSError on a full disk, a closed stream, ...); a record
        the log file could not take was written to stderr instead, if that worked."""
        return sum(sink.failures for sink in self._sinks)

    def add_fields(self, **fields: object) -> None:
        """Put these fields on every record from now on (a `--workers` worker's index)."""
        self._handler.addFilter(_Fields(fields))

    def redact_also(self, values: Iterable[str]) -> None:
        """Hide these values too, from now on (the ${VAR}s a rules file was loaded with)."""
        self._handler.redactor = Redactor.for_secrets([*self._base_secrets, *values])

    def close(self, timeout_s: float = 5.0) -> bool:
        """Detach, write what is queued, stop the writer. False if the writer is stuck."""
        if self._closed:
            return True
        self._closed = True
        root = logging.getLogger()
        root.removeHandler(self._handler)
        logging.getLogger("aiohttp.server").removeFilter(self._malformed)
        root.setLevel(self._previous_level)
        self._restore()
        self._handler.flush_drop_report()
        if not self._writer.stop(timeout_s):
            return False
        for sink in self._sinks:
            sink.close()
        return True


class _Fields(logging.Filter):
    def __init__(self, fields: Mapping[str, object]) -> None:
        super().__init__()
        self._fields = dict(fields)

    def filter(self, record: logging.LogRecord) -> bool:
        record.__dict__.update(self._fields)
        return True


def setup_logging(
    *,
    fmt: Literal["json", "human"],
    level: str = "INFO",
    log_file: Path | None = None,
    max_bytes: int = 10 * MIB,
    backups: int = 5,
    stream: TextIO | None = None,
    secrets: Sequence[str] = (),
    colour: bool | None = None,
    queue_size: int = QUEUE_SIZE,
) -> LoggingHandle:
    """Route the root logger through a bounded queue to `stream` and/or `log_file`.

    Without `log_file` records go to `stream` (default: sys.stderr at call time). With
    `log_file` they go to the rotating file, and also to `stream` only if one is passed.
    `colour=None` colours the human format when the stream is a TTY. Raises ValueError for an
    unknown fmt or level and OSError if `log_file` cannot be opened.
    """
    levelno = _parse_level(level)
    sinks = _make_sinks(fmt, log_file, max_bytes, backups, stream, colour)
    records: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
    handler = _DroppingQueueHandler(records, Redactor.for_secrets(secrets))
    writer = _Writer(records, sinks)
    writer.start()
    root = logging.getLogger()
    handle = LoggingHandle(handler, writer, sinks, root.level, secrets, _skip_unrendered_attributes())
    root.setLevel(levelno)
    root.addHandler(handler)
    return handle


def _skip_unrendered_attributes() -> Callable[[], None]:
    """Stop every LogRecord looking up its caller's frame, thread and process, which no renderer
    writes (the switches logging's HOWTO lists under "Optimization"). Returns how to undo it."""
    saved = logging._srcfile, logging.logThreads, logging.logProcesses, logging.logMultiprocessing
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False

    def restore() -> None:
        logging._srcfile, logging.logThreads, logging.logProcesses, logging.logMultiprocessing = saved

    return restore


def _parse_level(level: str) -> int:
    levels = logging.getLevelNamesMapping()
    if level.upper() not in levels:
        raise ValueError(f"unknown log level {level!r}; use one of {', '.join(levels)}")
    return levels[level.upper()]


def _make_sinks(
    fmt: str,
    log_file: Path | None,
    max_bytes: int,
    backups: int,
    stream: TextIO | None,
    colour: bool | None,
) -> list[_Sink]:
    if fmt not in ("json", "human"):
        raise ValueError(f"unknown log format {fmt!r}; use 'json' or 'human'")
    out = stream if stream is not None else sys.stderr
    use_colour = _is_tty(out) if colour is None else colour
    terminal = _StreamSink(out, _renderer(fmt, use_colour))
    if log_file is None:
        return [terminal]
    file_sink = _RotatingFileSink(log_file, _renderer(fmt, False), max_bytes, backups, fallback=terminal)
    return [file_sink, terminal] if stream is not None else [file_sink]


def _renderer(fmt: str, colour: bool) -> Callable[[logging.LogRecord], str]:
    return render_json if fmt == "json" else partial(render_human, colour=colour)


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False


def _freeze(record: logging.LogRecord, redactor: Redactor) -> logging.LogRecord:
    """Copy with the message, traceback and extras rendered now: args may change after return."""
    frozen = object.__new__(type(record))  # copy.copy's reduce protocol costs more than the rest
    frozen.__dict__.update(vars(record))
    frozen.msg = redactor.redact(record.getMessage())
    frozen.message = frozen.msg
    frozen.args = None
    frozen.exc_text = _exception_text(record, redactor)
    frozen.exc_info = None
    frozen.stack_info = None
    setattr(frozen, FIELDS_ATTR, MappingProxyType(_extra_fields(vars(record), redactor)))
    return frozen


def _extra_fields(attrs: Mapping[str, object], redactor: Redactor) -> dict[str, object]:
    extras = attrs.keys() - _STANDARD_ATTRS  # usually none: skip the per-attribute loop
    return {k: _field_value(v, redactor) for k, v in attrs.items() if k in extras} if extras else {}


def _exception_text(record: logging.LogRecord, redactor: Redactor) -> str | None:
    parts = [record.exc_text] if record.exc_text else []
    if record.exc_info and not parts:
        parts.append(logging.Formatter().formatException(record.exc_info))
    if record.stack_info:
        parts.append(record.stack_info)
    return redactor.redact("\n".join(parts)) if parts else None


def _field_value(value: object, redactor: Redactor) -> object:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    return redactor.redact(str(value))


def _drop_report(count: int) -> logging.LogRecord:
    message = f"log_records_dropped count={count}"
    record = logging.LogRecord(log.name, logging.WARNING, __file__, 0, message, None, None)
    setattr(record, FIELDS_ATTR, MappingProxyType({}))
    return record


class Throttle:
    """At most one log line per key per `interval_s`; counts what it held back, for the next line.

    For events anyone on the internet can cause at will (a refused signature, a malformed request):
    the metrics count every one, the log gets a line now and then.
    """

    def __init__(self, interval_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval_s = interval_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def allow(self, key: str) -> int | None:
        """None to stay quiet; else how many lines were held back since the last one."""
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self._interval_s:
            self._held[key] = self._held.get(key, 0) + 1
            return None
        if len(self._last) >= 1024:  # keys are reasons or kinds, but never let them grow unbounded
            self._last.clear()
        self._last[key] = now
        return self._held.pop(key, 0)


class MalformedRequests(logging.Filter):
    """aiohttp logs every malformed request (bad Content-Length, HTTP/2 preface, a header too
    long) as an ERROR with a traceback; anyone can send those. Turn them into one warning line
    every 10 s with a count."""

    def __init__(self, throttle: Throttle | None = None) -> None:
        super().__init__()
        self._throttle = throttle or Throttle()

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("Error handling request"):
            return True
        held = self._throttle.allow("malformed")
        if held is None:
            return False
        kind = type(record.exc_info[1]).__name__ if record.exc_info and record.exc_info[1] else "unknown"
        record.msg, record.args = "request_malformed error=%s repeats=%d", (kind, held)
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info, record.exc_text = None, None
        return True


def format_timestamp(created: float) -> str:
    """ISO-8601 UTC with milliseconds, e.g. 2026-11-29T02:20:47.123Z."""
    seconds, millis = divmod(int(created * 1000), 1000)
    return f"{_utc_second(seconds)}.{millis:03d}Z"


@functools.lru_cache(maxsize=4)
def _utc_second(seconds: int) -> str:
    """A busy server logs many lines per second: strftime once per second, not once per line."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def render_json(record: logging.LogRecord) -> str:
    """One JSON object on one line; reserved keys win, a clashing extra gets an `extra_` prefix."""
    message = str(record.msg)
    event = _EVENT.match(message)
    body: dict[str, object] = {
        "ts": format_timestamp(record.created),
        "level": record.levelname,
        "logger": record.name,
        "event": event.group() if event else None,
        "msg": message,
    }
    for key, value in getattr(record, FIELDS_ATTR, {}).items():
        body[f"extra_{key}" if key in _JSON_KEYS else key] = value
    if record.exc_text:
        body["exc"] = record.exc_text
    # JSON escapes C0 controls; these it leaves raw, and some readers split lines on them.
    return _JSON_UNSAFE.sub(_json_escape_char, dumps(body).decode())


def render_human(record: logging.LogRecord, *, colour: bool = False) -> str:
    """`<ts> <LEVEL> <message> key=value ...`; traceback lines follow, indented."""
    level = f"{record.levelname:<5}"
    if colour:
        level = f"\x1b[{_COLOURS.get(record.levelname, '0')}m{level}\x1b[0m"
    fields = getattr(record, FIELDS_ATTR, {})
    extras = "".join(f" {key}={_human_value(value)}" for key, value in fields.items())
    line = f"{format_timestamp(record.created)} {level} {escape(str(record.msg))}{extras}"
    if not record.exc_text:
        return line
    # Indented, so no traceback line can pass for a record (records start with a timestamp).
    return "\n".join([line, *("    " + escape(t) for t in record.exc_text.splitlines())])


def escape(text: str) -> str:
    """Make `text` safe for one line: control chars, U+2028/2029 and bidi overrides escaped."""
    return _CONTROL.sub(_escape_char, text)


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[char]
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def _json_escape_char(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def _human_value(value: object) -> str:
    text = escape(str(value))
    if text and not any(c in text for c in ' "='):
        return text
    return '"' + text.replace('"', '\\"') + '"'
