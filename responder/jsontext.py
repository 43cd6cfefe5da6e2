"""Compact UTF-8 JSON, written by orjson where it can and the standard library where only it can.

orjson writes the bytes `json.dumps(ensure_ascii=False, separators=(",", ":"))` writes for
everything responder sends (strings, integers, booleans, lists, objects), several times faster.
What it refuses (an integer beyond 64 bits, a lone surrogate) goes to the standard library,
which writes the integer, or fails as it always did.

Parsing stays with the standard library: untrusted bodies must refuse a repeated key, which
only its `object_pairs_hook` can see.
"""

from __future__ import annotations

import json

import orjson


def dumps(value: object) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
