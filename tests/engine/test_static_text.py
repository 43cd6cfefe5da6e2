"""A template without a Jinja tag is kept as text at load time: it must give exactly the bytes
Jinja would render from the same source, and anything with a tag must still be a template."""

from __future__ import annotations

import jinja2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from responder.engine.rendering import ReplyTemplate, _render, make_environment, render, static_text
from responder.rules.load import load_rules
from tests.conftest import RulesWriter

ENV = make_environment(jinja2.DictLoader({}))
TRICKY = [
    "Public IP",
    "  padded  \n",
    "line one\r\nline two\rline three\n\n",
    "} } % # {",
    "}} %} #} {x} { {",
    "中文 **粗体** [链接](https://example.com)\u2028",
    "\n\n\n",
    "",
    "a\tb\x00c",
]
# Text that never opens a tag: single braces, but never '{' followed by '{', '%' or '#'.
NO_TAGS = st.text(alphabet=st.characters(exclude_categories=["Cs"])).filter(
    lambda s: static_text(s) is not None
)


def jinja_renders(source: str) -> str:
    return _render(ENV.from_string(source), {})


@pytest.mark.parametrize("source", TRICKY)
def test_static_text_is_what_jinja_renders(source: str) -> None:
    static = static_text(source)
    assert static is not None
    assert _render(static, {}) == jinja_renders(source)


@given(NO_TAGS)
def test_any_text_without_a_tag_renders_as_jinja_would(source: str) -> None:
    assert static_text(source) == jinja_renders(source)


@pytest.mark.parametrize("source", ["{{ x }}", "a {% if true %}b{% endif %}", "{# note #}c", "{{"])
def test_a_tag_keeps_the_template(source: str) -> None:
    assert static_text(source) is None


def test_rules_keep_static_parts_as_text_and_tags_as_templates(write_rules: RulesWriter) -> None:
    path = write_rules(
        """
rules:
  - name: card
    keywords: [card]
    msgtype: actionCard
    title: Release notes
    body: "#### {{ rule.name }}"
    button: {title: Open, url: "https://example.com/notes"}
""",
    )
    (rule,) = [r for r in load_rules(path, {}).rules if r.name == "card"]
    reply: ReplyTemplate = rule.reply
    assert reply.title == "Release notes"
    assert isinstance(reply.body, jinja2.Template)
    assert reply.single_button is not None and reply.single_button.url == "https://example.com/notes"
    rendered = render(reply, {"rule": {"name": "card"}}, None)
    assert (rendered.title, rendered.text) == ("Release notes", "#### card")
    assert rendered.single_button is not None and rendered.single_button.url == "https://example.com/notes"
