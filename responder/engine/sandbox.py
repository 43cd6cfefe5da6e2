"""The Jinja2 sandbox templates run in, with a budget: bounded output, bounded time, and no
operation that can build a huge value in one step.

Templates are the rules author's, but they run on message data (a 6,000-word message times a
loop), so every render is bounded: `*`, `**` and `%` are checked before they run, string methods
and filters that pad or multiply text are bounded or refused, output is counted as it is produced,
and the clock is checked between pieces of output, on every call and attribute access, in
`range()`, and by an interval timer that interrupts a loop producing nothing (main thread only;
elsewhere the cooperative checks still hold). No I/O; renders nothing by itself.
"""

from __future__ import annotations

import contextlib
import math
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from types import FrameType
from typing import Any

import jinja2
from jinja2.filters import do_center, do_format, do_indent, do_replace
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from responder.engine.markdown import finalize, link, trusted

MAX_OUTPUT_CHARS = 64 * 1024  # per reply, all fields together; DingTalk takes 20,000 bytes
MAX_RENDER_S = 0.25
MAX_VALUE_CHARS = 256 * 1024  # the largest string or list one operation may build
MAX_POWER_BITS = 64 * 1024
MAX_FORMAT_WIDTH = 1000
_EXPANDING_STR_METHODS = frozenset(
    {"center", "ljust", "rjust", "zfill", "expandtabs", "format", "format_map"}
)
_FORMAT_WIDTH = re.compile(r"%[#0 +-]*(\*|\d+)?(?:\.(\*|\d+))?")


class RenderBudgetExceeded(Exception):
    """A render went over its output, time or value budget; `limit` says which."""

    def __init__(self, limit: str, detail: str) -> None:
        super().__init__(f"{limit} budget exceeded: {detail}")
        self.limit = limit


class Budget:
    """The output and deadline of one reply's render (all its fields share it)."""

    def __init__(
        self,
        max_chars: int = MAX_OUTPUT_CHARS,
        max_s: float = MAX_RENDER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_chars = max_chars
        self.max_s = max_s
        self._clock = clock
        self.deadline = clock() + max_s
        self.chars = 0

    def spend(self, chars: int) -> None:
        self.chars += chars
        if self.chars > self.max_chars:
            raise RenderBudgetExceeded("output", f"more than {self.max_chars} characters")
        self.check_time()

    def check_time(self) -> None:
        if self._clock() > self.deadline:
            raise RenderBudgetExceeded("time", f"longer than {self.max_s:g} s")


class BudgetedSandbox(ImmutableSandboxedEnvironment):
    """ImmutableSandboxedEnvironment whose operators, calls and attribute reads respect a Budget."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(finalize=finalize, **options)
        self._budget = threading.local()
        self.globals.pop("lipsum", None)  # lipsum(n=10**6) writes megabytes
        self.globals["range"] = self._range
        self.filters.update(center=_center, format=_format, indent=_indent, replace=_replace)
        self.filters["markdown"] = trusted
        self.filters["link"] = link

    @property
    def budget(self) -> Budget | None:
        return getattr(self._budget, "current", None)

    @contextlib.contextmanager
    def spending(self, budget: Budget) -> Iterator[None]:
        self._budget.current = budget
        try:
            with _interrupt_after(budget):
                yield
        finally:
            self._budget.current = None

    def render(self, template: jinja2.Template, context: Mapping[str, Any]) -> str:
        """Render `template`, counting its output against the active budget as it is produced."""
        budget = self.budget
        pieces = []
        for piece in template.generate(context):
            if budget is not None:
                budget.spend(len(piece))
            pieces.append(piece)
        return "".join(pieces)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        self._tick()
        if operator == "*":
            _check_repeat(left, right)
        elif operator == "**":
            _check_power(left, right)
        elif operator == "%" and isinstance(left, str):
            _check_format(left)
        return super().call_binop(context, operator, left, right)

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, str) and attr in _EXPANDING_STR_METHODS:
            return False
        return super().is_safe_attribute(obj, attr, value)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        __self._tick()
        if getattr(__obj, "__name__", "") == "replace" and isinstance(getattr(__obj, "__self__", None), str):
            _check_replace(__obj.__self__, *args)
        return super().call(__context, __obj, *args, **kwargs)

    def getattr(self, obj: Any, attribute: str) -> Any:
        self._tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        self._tick()
        return super().getitem(obj, argument)

    def _tick(self) -> None:
        budget = self.budget
        if budget is not None:
            budget.check_time()

    def _range(self, *args: int) -> Iterator[int]:
        numbers = range(*args)
        if len(numbers) > MAX_VALUE_CHARS:
            raise RenderBudgetExceeded("value", f"range() of {len(numbers)} numbers")
        for count, number in enumerate(numbers):
            if count % 1024 == 0:
                self._tick()
            yield number


def _check_repeat(left: Any, right: Any) -> None:
    for sequence, times in ((left, right), (right, left)):
        repeats = isinstance(sequence, str | list | tuple) and isinstance(times, int)
        if repeats and len(sequence) * max(times, 0) > MAX_VALUE_CHARS:
            raise RenderBudgetExceeded("value", f"a sequence of {len(sequence)} repeated {times} times")


def _check_power(left: Any, right: Any) -> None:
    numbers = isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1
    if numbers and right * math.log2(abs(left)) > MAX_POWER_BITS:
        raise RenderBudgetExceeded("value", f"{left} ** {right} is too large")


def _check_format(text: str) -> None:
    for match in _FORMAT_WIDTH.finditer(text):
        for width in match.groups():
            if width == "*" or (width is not None and int(width) > MAX_FORMAT_WIDTH):
                raise RenderBudgetExceeded("value", f"a %-format width over {MAX_FORMAT_WIDTH}")


def _check_replace(text: str, old: Any = "", new: Any = "", count: Any = -1, *_: Any) -> None:
    if not (isinstance(old, str) and isinstance(new, str)) or len(new) <= len(old):
        return
    hits = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    if len(text) + hits * (len(new) - len(old)) > MAX_VALUE_CHARS:
        raise RenderBudgetExceeded("value", "replace() would build too long a string")


def _center(value: str, width: int = 80) -> str:
    if width > MAX_FORMAT_WIDTH:
        raise RenderBudgetExceeded("value", f"center() wider than {MAX_FORMAT_WIDTH}")
    return do_center(value, width)


def _format(value: str, *args: Any, **kwargs: Any) -> str:
    _check_format(value)
    return do_format(value, *args, **kwargs)


def _indent(value: str, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    if (isinstance(width, str) and len(width) > MAX_FORMAT_WIDTH) or (
        isinstance(width, int) and width > MAX_FORMAT_WIDTH
    ):
        raise RenderBudgetExceeded("value", f"indent() wider than {MAX_FORMAT_WIDTH}")
    return do_indent(value, width, first, blank)


def _replace(eval_ctx: Any, value: str, old: str, new: str, count: int | None = None) -> str:
    _check_replace(str(value), old, new, -1 if count is None else count)
    return do_replace(eval_ctx, value, old, new, count)


_replace.jinja_pass_arg = do_replace.jinja_pass_arg  # type: ignore[attr-defined]  # keeps eval_ctx


@contextlib.contextmanager
def _interrupt_after(budget: Budget) -> Iterator[None]:
    """Interrupt a render that overruns its deadline even inside a loop that calls nothing.

    SIGALRM is delivered to the main thread only, between bytecodes; the handler raises only
    while this render is active, so a late signal can never surface elsewhere.
    """
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return
    active = True

    def expire(signum: int, frame: FrameType | None) -> None:
        if active:
            raise RenderBudgetExceeded("time", f"longer than {budget.max_s:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, budget.max_s + 0.05)
    try:
        yield
    finally:
        active = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
