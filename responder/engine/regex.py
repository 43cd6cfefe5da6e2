"""`regex:` triggers on RE2: the pattern an author writes, translated for RE2 and compiled silently.

Python's `re` backtracks: `^(a+)+$` against `'a'*26+'!'` ran for seconds, doubling with every
character, and any group member can send such a message. RE2 (google-re2) takes time linear in the
message for every pattern it accepts. This module owns the gap between the Python-style patterns
authors know and what RE2 runs, and every load error a regex can get:

- refused, with a hint: lookarounds `(?=` `(?!` `(?<=` `(?<!`, backreferences `\\1` `(?P=name)`,
  repeat counts over 1000 (RE2 refuses them, or reads a huge one as literal text), `\\C` (one byte
  of UTF-8) and a group name used twice (RE2 would only ever fill in the first);
- translated, so the meaning stays Python's: `\\w` `\\W` `\\d` `\\D` become Unicode classes (`\\w+`
  still matches `杭州天气`), `\\Z` becomes `\\z`, `{,n}` becomes `{0,n}` and `{007}` becomes `{7}`
  (RE2 reads both as literal text);
- kept as RE2 has them (see the README): `\\b` `\\B` count only ASCII letters, digits and `_` as
  word characters; `\\s` `\\S` are ASCII, which on matched text is the same as Python's, since
  normalised text holds no whitespace but single U+0020 spaces.

RE2 never prints to stderr here (`log_errors=False`); its errors become RegexError. Which rule a
message matches is matching.py's; where an error is in the file is rules/compile.py's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import re2

MAX_REPEAT = 1000  # RE2's limit on {n}, also on repeats inside repeats multiplied together

# Python's `\w` on str is str.isalnum() or `_`: exactly the letters and numbers of Unicode.
_WORD_CHARS = r"\p{L}\p{N}_"
_NOT_WORD = rf"[^{_WORD_CHARS}]"
_OUTSIDE_CLASS = {"w": f"[{_WORD_CHARS}]", "W": _NOT_WORD, "d": r"\p{Nd}", "D": r"\P{Nd}", "Z": r"\z"}
_INSIDE_CLASS = {"w": _WORD_CHARS, "d": r"\p{Nd}", "D": r"\P{Nd}"}
_LOOKAROUNDS = {
    "(?<=": "lookbehind",
    "(?<!": "negative lookbehind",
    "(?=": "lookahead",
    "(?!": "negative lookahead",
}
_LOOKAROUND_HINT = (
    "RE2 runs in linear time and has no lookaround; match the wider text and take the part you "
    "need with a group (?P<name>...), or use a second rule"
)
_BACKREFERENCE_HINT = (
    "RE2 runs in linear time and cannot match text captured earlier; capture both parts with "
    "groups (?P<a>...) (?P<b>...) and compare them in the template instead"
)
# RE2's messages start with what went wrong; these add what to write instead.
_RE2_HINTS = {
    "invalid repetition size": (
        f"RE2 allows at most {MAX_REPEAT} repeats, counting a repeat inside a repeat as their product"
    ),
    "bad repetition operator": (
        "a repeat cannot follow a repeat; RE2 has no possessive repeats like a++ and needs none, "
        "since it never backtracks"
    ),
    "pattern too large": (
        "the compiled pattern exceeds RE2's memory budget; a large repeat count on \\w, \\d or a [...] "
        "class, which stand for thousands of characters, is the usual cause: use a smaller count or +"
    ),
    "invalid escape sequence: \\u": "RE2 writes a character by its code point as \\x{4e2d}",
    "invalid escape sequence: \\U": "RE2 writes a character by its code point as \\x{1f600}",
    "invalid escape sequence: \\N": "RE2 writes a character by its code point as \\x{4e2d}",
}
# How Python's parser reads `{`: a repeat when digits, a comma and digits are closed by `}`.
_REPEAT = re.compile(r"\{([0-9]*)(,[0-9]*)?\}")
_GROUP_NAME = re.compile(r"\(\?P?<([^>=!]+)>")
_HEX = re.compile(r"[0-9A-Fa-f]{0,2}")
_OCTAL_DIGITS = "01234567"
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class RegexError(ValueError):
    """A `regex:` pattern that cannot be loaded; the message says why and what to write instead."""


@dataclass(frozen=True, slots=True)
class Regex:
    """A compiled `regex:` trigger, searched like a Python pattern. `pattern` is what RE2 runs."""

    pattern: str
    case_sensitive: bool
    compiled: re2._Regexp = field(compare=False, repr=False)

    def search(self, text: str) -> re2._Match | None:
        try:
            return self.compiled.search(text)
        except UnicodeEncodeError:
            # RE2 reads UTF-8, which cannot carry a lone surrogate (`responder try` with undecodable
            # argv bytes, JSON "\ud800" in the playground); DingTalk callbacks with one are refused.
            return self.compiled.search(_LONE_SURROGATE.sub("\ufffd", text))


def compile_regex(source: str, *, case_sensitive: bool) -> Regex:
    """Translate `source` for RE2 and compile it. Raises RegexError, never prints."""
    import re2  # RE2's library is ~1.5 MiB resident: only rule sets with a regex: rule load it

    translated = _Translator(source).run()
    options = re2.Options()
    options.log_errors = False  # RE2 would print its errors to stderr; they are ours to report
    options.case_sensitive = case_sensitive
    try:
        compiled = re2.compile(translated, options)
    except re2.error as exc:
        raise RegexError(_re2_message(exc, source, translated)) from None
    return Regex(translated, case_sensitive, compiled)


def _re2_message(exc: re2.error, source: str, translated: str) -> str:
    raw = exc.args[0] if exc.args else "RE2 refused the pattern"
    message = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    hint = next((hint for prefix, hint in _RE2_HINTS.items() if message.startswith(prefix)), None)
    quoted = message.partition(": ")[2]
    if quoted and quoted not in source:
        # RE2 quotes the pattern it was given; say so when that is the translation.
        message += f" (RE2 was given {translated!r}: \\w, \\d and the like written out as Unicode classes)"
    return f"{message}; {hint}" if hint else message


class _Translator:
    """One pass over a pattern, read the way RE2 reads it, writing RE2's text and refusing what
    RE2 cannot run as Python would. Whatever it does not recognise it copies for RE2 to judge."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.at = 0
        self.out: list[str] = []
        self.names: set[str] = set()

    def run(self) -> str:
        while self.at < len(self.source):
            char = self.source[self.at]
            if char == "\\":
                self.escape()
            elif char == "[":
                self.char_class()
            elif char == "(":
                self.group()
            elif char == "{":
                self.repeat()
            else:
                self.copy(1)
        return "".join(self.out)

    def copy(self, length: int) -> None:
        self.out.append(self.source[self.at : self.at + length])
        self.at += length

    def refuse(self, what: str, why: str, at: int | None = None) -> RegexError:
        return RegexError(f"{what} at position {self.at if at is None else at} {why}")

    def escape(self) -> None:
        token = _escape_token(self.source, self.at, in_class=False)
        letter = token[1:2]
        if len(token) == 2 and letter in _OUTSIDE_CLASS:
            self.out.append(_OUTSIDE_CLASS[letter])
            self.at += 2
            return
        if letter == "C":
            raise self.refuse("\\C (one byte)", "is not supported: it can match half a character; use .")
        if letter and letter in "123456789" and not _is_octal(token):
            raise self.refuse(f"{token} (a backreference)", f"is not supported: {_BACKREFERENCE_HINT}")
        self.copy(len(token))

    def group(self) -> None:
        for opener, name in _LOOKAROUNDS.items():
            if self.source.startswith(opener, self.at):
                raise self.refuse(f"{opener} ({name})", f"is not supported: {_LOOKAROUND_HINT}")
        if self.source.startswith("(?P=", self.at):
            end = self.source.find(")", self.at)
            written = self.source[self.at : end + 1] if end >= 0 else "(?P=name)"
            raise self.refuse(f"{written} (a backreference)", f"is not supported: {_BACKREFERENCE_HINT}")
        named = _GROUP_NAME.match(self.source, self.at)
        if named is None:
            self.copy(1)
            return
        if named[1] in self.names:
            raise self.refuse(
                f"group name {named[1]!r}",
                "is used twice: RE2 would only ever fill in the first group of that name",
            )
        self.names.add(named[1])
        self.copy(len(named.group()))

    def repeat(self) -> None:
        found = _REPEAT.match(self.source, self.at)
        if found is None or found.group() == "{}":  # Python and RE2 both read these as text
            self.copy(1)
            return
        low, high = found[1], (found[2] or ",")[1:]
        if _over_limit(low) or _over_limit(high):
            written = found.group() if len(found.group()) <= 24 else found.group()[:20] + "…}"
            raise self.refuse(
                f"repeat {written}",
                f"is more than {MAX_REPEAT}, the most RE2 allows; use + or * for any number",
            )
        # Python reads {,n} as {0,n} and {007} as {7}; RE2 would match the text "{,n}" or "{007}".
        comma = "," if found[2] is not None else ""
        self.out.append(f"{{{_count(low) or '0'}{comma}{_count(high)}}}")
        self.at = found.end()

    def char_class(self) -> None:
        """`[...]` the way Python reads it: items, and ranges of two items joined by `-`."""
        source, start = self.source, self.at
        at = start + 1
        negated = source.startswith("^", at)
        at += 1 if negated else 0
        parts: list[str] = []
        not_word = False
        first = True
        while at < len(source) and (source[at] != "]" or first):
            first = False
            item = _class_item(source, at)
            at += len(item.written)
            if source.startswith("-", at) and at + 1 < len(source) and source[at + 1] != "]":
                end = _class_item(source, at + 1)
                for edge, where in ((item, at - len(item.written)), (end, at + 1)):
                    if edge.translated or edge.written == "\\W":
                        raise self.refuse(
                            edge.written,
                            "cannot start or end a range: it stands for many characters; "
                            "put - first or last inside [...] to mean a hyphen",
                            where,
                        )
                parts.append(f"{item.text}-{end.text}")
                at += 1 + len(end.written)
            elif item.written == "\\W":
                not_word = True
            else:
                parts.append(item.text)
        if at >= len(source):  # no closing `]`: RE2 says so
            self.copy(len(source) - start)
            return
        body = "".join(parts)
        if not not_word:
            self.out.append(("[^" if negated else "[") + body + "]")
        elif negated:
            raise self.refuse(
                "\\W inside [^...]",
                "cannot be written for RE2, which cannot take one class away from another; list "
                "what the class allows instead: [^\\W_] is [\\p{L}\\p{N}]",
                start,
            )
        elif not body:
            self.out.append(_NOT_WORD)
        else:
            # `[x\W]` is x or a non-word character; an alternation keeps `\W` Unicode-aware.
            # A leading ^ left over from `[\W^]` must stay a character, not negate the class.
            escaped = "\\" + body if body.startswith("^") else body
            self.out.append(f"(?:[{escaped}]|{_NOT_WORD})")
        self.at = at + 1


@dataclass(frozen=True, slots=True)
class _ClassItem:
    written: str
    text: str  # as RE2 reads it
    translated: bool


def _class_item(source: str, at: int) -> _ClassItem:
    if source.startswith("[:", at):  # RE2's POSIX class, [:alpha:]
        end = source.find(":]", at + 2)
        if end >= 0:
            return _ClassItem(source[at : end + 2], source[at : end + 2], False)
    if source[at] != "\\":
        return _ClassItem(source[at], source[at], False)
    token = _escape_token(source, at, in_class=True)
    if len(token) == 2 and token[1] in _INSIDE_CLASS:
        return _ClassItem(token, _INSIDE_CLASS[token[1]], True)
    return _ClassItem(token, token, False)


def _escape_token(source: str, at: int, *, in_class: bool) -> str:
    """The whole escape starting at the backslash at `at`, as written: `\\w`, `\\p{Han}`, `\\x41`."""
    letter = source[at + 1 : at + 2]
    after = at + 2
    if letter == "Q" and not in_class:  # \Q...\E: literal text, nothing inside is special
        end = source.find("\\E", after)
        return source[at : end + 2] if end >= 0 else source[at:]
    if letter in ("p", "P", "x") and source.startswith("{", after):
        end = source.find("}", after)
        return source[at : end + 1] if end >= 0 else source[at:]
    if letter in ("p", "P"):
        return source[at : after + 1]
    if letter == "x":
        hex_digits = _HEX.match(source, after)
        return source[at : hex_digits.end()] if hex_digits else source[at:after]
    if letter.isdigit() and letter.isascii():
        return source[at : _digits_end(source, at + 1)]
    return source[at:after]


def _digits_end(source: str, at: int) -> int:
    """Where Python's parser ends `\\digits`: \\0 and up to two more octal digits; three octal
    digits (an octal escape); otherwise one or two digits (a group reference)."""
    if source[at] == "0":
        end = at + 1
        while end < min(at + 3, len(source)) and source[end] in _OCTAL_DIGITS:
            end += 1
        return end
    three = source[at : at + 3]
    if len(three) == 3 and all(c in _OCTAL_DIGITS for c in three):
        return at + 3
    return at + 2 if source[at + 1 : at + 2].isdigit() and source[at + 1 : at + 2].isascii() else at + 1


def _is_octal(token: str) -> bool:
    digits = token[1:]
    return digits.startswith("0") or (len(digits) == 3 and all(c in _OCTAL_DIGITS for c in digits))


def _count(digits: str) -> str:
    """A repeat count without leading zeros, which RE2 would not read as a count."""
    return digits.lstrip("0") or ("0" if digits else "")


def _over_limit(digits: str) -> bool:
    # Compared as text: a count of thousands of digits is too big for int() to read.
    significant = digits.lstrip("0")
    return len(significant) > len(str(MAX_REPEAT)) or (bool(significant) and int(significant) > MAX_REPEAT)
