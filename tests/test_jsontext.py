"""jsontext.dumps writes exactly the standard library's compact UTF-8 JSON for what responder sends."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from responder.jsontext import dumps

_TEXT = st.text(st.characters(exclude_categories=["Cs"]))  # lone surrogates: see below
_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | _TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=20,
)


def _stdlib(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


@given(_VALUES)
def test_same_bytes_as_the_standard_library(value: object) -> None:
    assert dumps(value) == _stdlib(value)


def test_integers_beyond_64_bits_are_written_by_the_standard_library() -> None:
    value = {"n": 2**70, "m": -(2**64)}
    assert dumps(value) == b'{"n":1180591620717411303424,"m":-18446744073709551616}'


def test_a_lone_surrogate_fails_as_it_always_did() -> None:
    with pytest.raises(UnicodeEncodeError):
        _stdlib({"text": "\ud800"})
    with pytest.raises(UnicodeEncodeError):
        dumps({"text": "\ud800"})
