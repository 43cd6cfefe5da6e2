"""Markdown is data too: values printed into markdown, actionCard and feedCard replies are
escaped, so a message, a nick or a data source can never make the robot post a link, an image
or a heading of its own. A template marks a value it vouches for with `| markdown`.

Whether DingTalk's renderer honours backslash escapes is not documented, so escaping swaps the
characters markdown syntax is made of for their full-width twins (`[` -> `［`, `*` -> `＊`): the
reader still sees the characters, and no renderer can read them as syntax. A `://` gets a
zero-width space, so a bare URL is never turned into a link. No I/O.
"""

from __future__ import annotations

import re
from typing import Any

import jinja2
from jinja2.runtime import Context

# Where a link may lead: the web, and DingTalk's in-app links (dtmd://dingtalkclient/sendMessage).
URL_SCHEMES = frozenset({"http", "https", "dingtalk", "dtmd"})
# What would end a markdown link's target or start another: percent-encoded in `| link`.
_LINK_BREAKERS = re.compile(r"[\s()<>\[\]`\\]")
# The context key that turns escaping on; rendering sets it per field (never for URL fields).
ESCAPE_KEY = "__responder_escape_markdown__"
MARKDOWN_TYPES = frozenset({"markdown", "actionCard", "feedCard"})
_FULL_WIDTH = str.maketrans(
    {
        "[": "［",
        "]": "］",
        "<": "＜",
        ">": "＞",
        "*": "＊",
        "_": "＿",
        "`": "｀",
        "#": "＃",
        "~": "～",
        "|": "｜",
        "\\": "＼",
    }
)
_SCHEME_SEPARATOR = re.compile(r"(?i)(?<=[a-z0-9]):(?=//)")
_ZERO_WIDTH_SPACE = "\u200b"


class TrustedMarkdown(str):
    """A value the template marks as markdown it vouches for (`| markdown`): printed as is."""

    __slots__ = ()


def escape_markdown(text: str) -> str:
    """`text` with no markdown syntax left in it, and every character still readable."""
    return _SCHEME_SEPARATOR.sub(":" + _ZERO_WIDTH_SPACE, text).translate(_FULL_WIDTH)


def trusted(value: Any) -> TrustedMarkdown:
    """The `markdown` filter: `{{ source.data.report | markdown }}` keeps the value's markdown."""
    return TrustedMarkdown(value)


def link(url: Any, title: Any = None) -> TrustedMarkdown:
    """The `link` filter: `{{ alert.generatorURL | link("Graph") }}` is a markdown link to a URL
    from data. The title is escaped like any value; a URL that is not http(s), dingtalk:// or
    dtmd:// is no link at all, only its escaped text."""
    target = str(url)
    label = " ".join(escape_markdown(target if title is None else str(title)).split())  # one line
    scheme, separator, rest = target.partition("://")
    if not separator or scheme.lower() not in URL_SCHEMES or not rest:
        return TrustedMarkdown(label)
    encoded = _LINK_BREAKERS.sub(lambda found: "".join(f"%{b:02X}" for b in found.group().encode()), target)
    return TrustedMarkdown(f"[{label}]({encoded})")


@jinja2.pass_context
def finalize(context: Context, value: Any) -> str:
    """How every `{{ … }}` is printed: escaped where the field is markdown, unless trusted."""
    text = value if isinstance(value, str) else str(value)
    if isinstance(value, TrustedMarkdown) or not context.get(ESCAPE_KEY, False):
        return text
    return escape_markdown(text)
