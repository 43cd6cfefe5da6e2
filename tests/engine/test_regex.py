"""`regex:` on RE2: what is refused (with which hint), what is translated to keep Python's meaning,
what keeps RE2's meaning, and that RE2 never writes to stderr. Behaviour on whole messages through
rules is in test_matching.py; the positions of these errors in a file in tests/rules."""

from __future__ import annotations

import re
import sys
import unicodedata

import pytest

from responder.engine.matching import normalise
from responder.engine.regex import MAX_REPEAT, Regex, RegexError, compile_regex


def regex(pattern: str, *, case_sensitive: bool = True) -> Regex:
    return compile_regex(pattern, case_sensitive=case_sensitive)


def found(pattern: str, text: str, *, case_sensitive: bool = True) -> str | None:
    match = regex(pattern, case_sensitive=case_sensitive).search(text)
    return None if match is None else match.group()


def refusal(pattern: str) -> str:
    with pytest.raises(RegexError) as raised:
        regex(pattern)
    return str(raised.value)


EVERY_CHARACTER = "".join(chr(i) for i in range(sys.maxunicode + 1) if not 0xD800 <= i <= 0xDFFF)
# Those Python's Unicode database has assigned (RE2's may be newer and know more of them).
ASSIGNED = "".join(c for c in EVERY_CHARACTER if unicodedata.category(c) not in ("Cn", "Co"))


def test_the_nested_repeat_that_stalled_python_re_is_answered() -> None:
    # Python's re needed about 1.76 s for 26 a's and twice as long for each one more: 40 is days.
    assert found(r"^(a+)+$", "a" * 40 + "!") is None
    assert found(r"^(a+)+$", "a" * 40) == "a" * 40


@pytest.mark.parametrize(
    ("pattern", "construct"),
    [
        (r"^deploy(?= now)", "(?= (lookahead) at position 7"),
        (r"^deploy(?!-test)", "(?! (negative lookahead) at position 7"),
        (r"(?<=@)ops", "(?<= (lookbehind) at position 0"),
        (r"(?<!no )deploy", "(?<! (negative lookbehind) at position 0"),
    ],
)
def test_lookarounds_are_refused_with_a_hint(pattern: str, construct: str) -> None:
    assert refusal(pattern) == (
        f"{construct} is not supported: RE2 runs in linear time and has no lookaround; match the "
        "wider text and take the part you need with a group (?P<name>...), or use a second rule"
    )


@pytest.mark.parametrize(
    ("pattern", "construct"),
    [
        (r"^(\w+) \1$", r"\1 (a backreference) at position 7"),
        (r"(a)(b)(c)(d)(e)(f)(g)(h)(i)(j)(k)(l)\12", r"\12 (a backreference) at position 36"),
        (r"^(?P<w>\w+) (?P=w)$", "(?P=w) (a backreference) at position 12"),
    ],
)
def test_backreferences_are_refused_with_a_hint(pattern: str, construct: str) -> None:
    assert refusal(pattern) == (
        f"{construct} is not supported: RE2 runs in linear time and cannot match text captured "
        "earlier; capture both parts with groups (?P<a>...) (?P<b>...) and compare them in the "
        "template instead"
    )


@pytest.mark.parametrize(
    ("pattern", "char"), [(r"\123", "S"), (r"\0", "\0"), (r"\012", "\n"), (r"\101", "A")]
)
def test_octal_escapes_are_characters_as_in_python(pattern: str, char: str) -> None:
    assert re.fullmatch(pattern, char)
    assert found(pattern, f"x{char}y") == char


def test_python_word_class_is_unicode_so_chinese_words_still_match() -> None:
    assert found(r"\w+", "杭州天气") == "杭州天气"
    assert found(r"^天气 (\w+)$", "天气 杭州") == "天气 杭州"
    assert found(r"\W", "杭州天气!") == "!"
    assert found(r"\d+", "٣٤") == "٣٤"  # Arabic-Indic digits: \d is every decimal digit, as in Python
    assert found(r"\D+", "٣x٤") == "x"


@pytest.mark.parametrize(
    "pattern",
    [r"\w", r"\W", r"\d", r"\D", r"[\w]", r"[^\w]", r"[\W]", r"[\d]", r"[^\d]", r"[\D]", r"[x\W]", r"[\w-]"],
)
def test_translated_classes_match_what_python_re_matches_on_every_assigned_character(pattern: str) -> None:
    # Runs of matching characters, joined, are the characters that match: one pass, few matches.
    runs = f"(?:{pattern})+"
    ours = "".join(match.group() or "" for match in regex(runs).compiled.finditer(ASSIGNED))
    assert ours == "".join(re.findall(runs, ASSIGNED))


def test_translation_skips_escaped_backslashes_and_quoted_text() -> None:
    assert regex(r"\\w").pattern == r"\\w"
    assert found(r"\\w", r"a\w") == "\\w"
    assert found(r"\\w", "a") is None
    assert found(r"\\\w", "\\中") == "\\中"
    assert found(r"\Q\w+\E", r"literally \w+") == r"\w+"
    assert found(r"[\\w]+", "w\\a") == "w\\"


def test_translation_inside_a_character_class_keeps_the_hyphen_and_other_members() -> None:
    assert regex(r"[\w-]+").pattern == r"[\p{L}\p{N}_-]+"
    assert found(r"[\w-]+", "上海-浦东 x") == "上海-浦东"
    assert found(r"[-\w.]+", "-杭州.1") == "-杭州.1"
    assert found(r"[a-z-\w]+", "杭-a") == "杭-a"
    assert found(r"[]\w]+", "]杭") == "]杭"
    assert found(r"[\W^]+", "杭^!") == "^!"
    assert found(r"[^\w]+", "杭州!?天") == "!?"
    assert found(r"[[:digit:]\w]+", "杭1") == "杭1"


@pytest.mark.parametrize(
    ("pattern", "where"), [(r"[\w-z]", r"\w at position 1"), (r"[a-\d]", r"\d at position 3")]
)
def test_a_class_escape_as_a_range_end_is_refused_as_python_did(pattern: str, where: str) -> None:
    with pytest.raises(re.error, match="bad character range"):
        re.compile(pattern)
    assert refusal(pattern).startswith(f"{where} cannot start or end a range: it stands for many characters")


def test_non_word_inside_a_negated_class_is_refused_with_the_class_to_write() -> None:
    assert refusal(r"[^\W_]") == (
        r"\W inside [^...] at position 0 cannot be written for RE2, which cannot take one class away "
        r"from another; list what the class allows instead: [^\W_] is [\p{L}\p{N}]"
    )
    assert found(r"[\p{L}\p{N}]+", "_杭州1_") == "杭州1"


def test_space_class_keeps_re2s_meaning_which_is_pythons_on_normalised_text() -> None:
    python_spaces = set(re.findall(r"\s", EVERY_CHARACTER))
    re2_spaces = {c for c in python_spaces | {" "} if found(r"\s", c)}
    assert re2_spaces == set("\t\n\f\r ")
    # Normalised text holds no whitespace but single U+0020, on which both agree.
    assert normalise("a" + "".join(sorted(python_spaces)) + "b") == "a b"
    assert {c for c in normalise("x".join(sorted(python_spaces))) if re.fullmatch(r"\s", c)} == {" "}


def test_word_boundary_is_ascii_so_it_finds_latin_words_inside_chinese() -> None:
    assert found(r"\bip\b", "查ip地址") == "ip"
    assert re.search(r"\bip\b", "查ip地址") is None  # Python's re saw 查 and 地 as word characters
    assert found(r"\bip\b", "tip") is None
    assert found(r"\b\w+\b", "杭州天气") is None  # no ASCII word character: no boundary at all
    assert found(r"\B天气", "杭州天气") == "天气"


def test_end_of_text_is_written_as_python_writes_it() -> None:
    assert regex(r"ip\Z").pattern == r"ip\z"
    assert found(r"ip\Z", "my ip") == "ip"
    assert found(r"ip\Z", "ip address") is None


def test_omitted_lower_bound_is_zero_as_in_python() -> None:
    assert found("a{,3}", "aaaa") == "aaa"
    assert re.match("a{,3}", "aaaa")[0] == "aaa"  # type: ignore[index]
    assert found("x{,}", "xxxxx") == "xxxxx"
    assert found("x{}", "x{}") == "x{}"  # neither engine reads {} as a repeat


@pytest.mark.parametrize("count", ["{1001}", "{1001,}", "{0,1001}", "{4294967296}", "{" + "9" * 5000 + "}"])
def test_repeat_counts_over_the_limit_are_refused_with_it(count: str) -> None:
    message = refusal("^a" + count + "$")
    assert (
        f"at position 2 is more than {MAX_REPEAT}, the most RE2 allows; use + or * for any number" in message
    )
    assert len(message) < 200


def test_huge_repeat_count_that_python_re_overflowed_on_is_a_load_error() -> None:
    with pytest.raises(OverflowError):
        re.compile("a{4294967296}")
    assert refusal("a{4294967296}").startswith("repeat {4294967296} at position 1 is more than 1000")


def test_the_largest_repeat_count_loads() -> None:
    assert found("^a{1000}$", "a" * 1000) == "a" * 1000
    assert found("^a{0001000}$", "a" * 1000) == "a" * 1000  # Python reads leading zeros; RE2 not
    assert found("^a{02,03}$", "aaa") == "aaa"
    assert found("^a{00}b$", "b") == "b"


def test_nested_repeats_count_as_their_product() -> None:
    assert found("^(a{10}){100}$", "a" * 1000) == "a" * 1000
    assert refusal("(a{30}){40}") == (
        "invalid repetition size: {40}; RE2 allows at most 1000 repeats, counting a repeat inside a "
        "repeat as their product"
    )


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("^deploy(?P<env>prod|test", "missing ): ^deploy(?P<env>prod|test"),
        ("[abc", "missing ]: [abc"),
        ("x\\", "trailing \\"),
        ("(?x) a b", "invalid perl operator: (?x"),
        ("(?>a)", "invalid perl operator: (?>"),
        (r"\u4e2d", r"invalid escape sequence: \u; RE2 writes a character by its code point as \x{4e2d}"),
        (r"\w(", r"missing ): [\p{L}\p{N}_]( (RE2 was given '[\\p{L}\\p{N}_](': \w, \d and the like"),
    ],
)
def test_other_re2_errors_are_re2s_message(pattern: str, message: str) -> None:
    assert refusal(pattern).startswith(message)


def test_a_pattern_too_large_for_re2_says_why() -> None:
    assert refusal(r"\w{600}").startswith(
        "pattern too large - compile failed; the compiled pattern exceeds RE2's memory budget"
    )


def test_one_byte_escape_is_refused() -> None:
    assert (
        refusal(r"x\C")
        == r"\C (one byte) at position 1 is not supported: it can match half a character; use ."
    )


def test_a_group_name_used_twice_is_refused() -> None:
    assert refusal("(?P<env>prod)|(?P<env>test)") == (
        "group name 'env' at position 14 is used twice: RE2 would only ever fill in the first group "
        "of that name"
    )


def test_named_groups_reach_groupdict_in_both_spellings() -> None:
    match = regex(r"^release (?P<env>prod|test)(?: (?<version>v[0-9.]+))?$").search("release prod v1.2")
    assert match is not None
    assert match.groupdict() == {"env": "prod", "version": "v1.2"}


def test_case_is_an_re2_option_and_inline_i_still_works() -> None:
    assert found("^release$", "RELEASE", case_sensitive=False) == "RELEASE"
    assert found("^release$", "RELEASE", case_sensitive=True) is None
    assert found("^(?i)release$", "RELEASE", case_sensitive=True) == "RELEASE"
    assert found(r"^\w+$", "ÉTÉ", case_sensitive=False) == "ÉTÉ"


def test_a_lone_surrogate_in_the_text_does_not_break_the_search() -> None:
    assert found(r"ip", "my \udcff ip") == "ip"
    assert found(r"^my (.) ip$", "my \udcff ip") == "my \ufffd ip"


def test_identical_patterns_are_equal_and_case_makes_them_differ() -> None:
    assert regex(r"b[io]t") == regex(r"b[io]t")
    assert regex(r"b[io]t") != regex(r"b[io]t", case_sensitive=False)


BAD_PATTERNS = [
    r"(?=x)",
    r"(a)\1",
    "a{1001}",
    "(a{30}){40}",
    "[abc",
    "x\\",
    "(?x)a",
    r"\w{600}",
    "a++",
    "(?P<",
]


def test_re2_writes_nothing_to_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    # capfd captures file descriptor 2, where RE2's C++ logging writes unless told not to.
    for pattern in BAD_PATTERNS:
        with pytest.raises(RegexError):
            regex(pattern)
    regex(r"^(a+)+$").search("a" * 40 + "!")
    assert capfd.readouterr().err == ""
