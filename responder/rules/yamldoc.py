"""Strict YAML reading that keeps positions: every value can be traced back to file:line:col.

Only what a config file needs: one document, no anchors or aliases, no duplicate keys, safe types.
Values YAML 1.1 silently retypes (`on`, `1:30`, `2024-01-01`) are reported where the schema
expects a string, using the plain-scalar information kept here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.composer import Composer, ComposerError
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

__all__ = ["Position", "ScalarNode", "YamlDocument", "YamlError", "YamlProblem", "parse"]

Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Position:
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class YamlProblem:
    position: Position
    message: str


class YamlError(Exception):
    def __init__(self, problems: list[YamlProblem]) -> None:
        super().__init__("; ".join(p.message for p in problems))
        self.problems = problems


_CParser: type[Any] | None = getattr(getattr(yaml, "_yaml", None), "CParser", None)

if _CParser is not None:

    class _Events(_CParser):  # type: ignore[misc, valid-type]
        """libyaml scans and parses about 4x faster than PyYAML's pure-Python parser."""

        def __init__(self, text: str) -> None:
            super().__init__(text)

else:  # a PyYAML built without libyaml

    class _Events(Reader, Scanner, Parser):  # type: ignore[no-redef]
        def __init__(self, text: str) -> None:
            Reader.__init__(self, text)
            Scanner.__init__(self)
            Parser.__init__(self)


class _StrictLoader(Composer, _Events, SafeConstructor, Resolver):
    """A safe loader that refuses anchors and aliases (alias bombs, hidden sharing between rules).

    Composition stays in Python, so anchors and aliases are refused before anything is built.
    """

    def __init__(self, text: str) -> None:
        _Events.__init__(self, text)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        event = self.peek_event()
        if isinstance(event, AliasEvent):
            raise YamlError([_problem(event.start_mark, "aliases (*name) are not allowed")])
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            raise YamlError([_problem(event.start_mark, "anchors (&name) are not allowed")])
        return super().compose_node(parent, index)


@dataclass(frozen=True, slots=True)
class YamlDocument:
    """Plain data for validation plus the node tree for positions."""

    data: Any
    root: Node
    text: str

    def position(self, path: Path) -> Position:
        """The position of the node at `path`, or of its deepest existing ancestor."""
        node = self.root
        for step in path:
            child = _child(node, step)
            if child is None:
                break
            node = child
        return _position(node.start_mark)

    def key_position(self, path: Path) -> Position:
        """Where the key of the last step of `path` is written (for 'unknown key' errors)."""
        parent = self._node(path[:-1])
        if isinstance(parent, MappingNode):
            for key, _ in parent.value:
                if key.value == path[-1]:
                    return _position(key.start_mark)
        return self.position(path)

    def scalar(self, path: Path) -> ScalarNode | None:
        node = self._node(path)
        return node if isinstance(node, ScalarNode) else None

    def _node(self, path: Path) -> Node | None:
        node: Node | None = self.root
        for step in path:
            node = _child(node, step) if node is not None else None
        return node

    def release(self) -> None:
        """Let go of the node tree a node at a time; positions are gone after this.

        Freed in one piece, a big file's tree (about 10 nodes and 20 marks per rule) is one
        uninterrupted deallocation holding the GIL for tens of ms, while a reload runs beside the
        event loop. Taken apart in a Python loop, the loop can take the GIL between nodes.
        """
        pending: list[Node] = [self.root]
        while pending:
            node = pending.pop()
            if isinstance(node, MappingNode):
                for key, value in node.value:
                    pending += (key, value)
                node.value = []
            elif isinstance(node, SequenceNode):
                pending += node.value
                node.value = []


def parse(text: str, filename: str) -> YamlDocument:
    """Parse one YAML document. Raises YamlError with positions."""
    loader = _StrictLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            raise YamlError([YamlProblem(Position(1, 1), "the file is empty")])
        problems = list(_duplicate_keys(root))
        if problems:
            raise YamlError(problems)
        data = loader.construct_document(root)
    except ComposerError as exc:
        raise YamlError([_marked(exc, "only one YAML document is allowed")]) from None
    except ConstructorError as exc:
        raise YamlError([_marked(exc, exc.problem or "cannot read this value")]) from None
    except yaml.MarkedYAMLError as exc:
        problem = _marked(exc, f"YAML syntax error: {exc.problem}{_hint(exc, text)}")
        raise YamlError([_within(problem, text)]) from None
    except yaml.YAMLError as exc:
        raise YamlError([YamlProblem(Position(1, 1), f"YAML error: {exc}")]) from None
    finally:
        loader.dispose()
    return YamlDocument(data, root, text)


_INDENT_HINT = (
    " (hint: this line is indented differently from the lines around it: a rule's keys line up "
    "under its `name:`, and every rule starts with `- ` in the same column)"
)
_INDENT_PROBLEMS = ("expected '-' indicator", "expected key", "expected <block end>")
_QUOTE_HINT = ' (hint: a value with ": " in it must be quoted, e.g. body: "Time: {{ now }}")'


def _hint(exc: yaml.MarkedYAMLError, text: str) -> str:
    """One line on the two mistakes behind most YAML errors: indentation, and an unquoted `: `."""
    problem, mark = exc.problem or "", exc.problem_mark
    if "mapping values are not allowed" in problem and mark is not None:
        lines = text.splitlines()
        line = lines[mark.line] if mark.line < len(lines) else ""
        return _QUOTE_HINT if ":" in line[: mark.column] else _INDENT_HINT
    if any(
        marker in problem for marker in ("expected '-' indicator", "expected key", "expected <block end>")
    ):
        return _INDENT_HINT
    return ""


def _within(problem: YamlProblem, text: str) -> YamlProblem:
    """libyaml places an error at the end of the stream one line past the last: pull it back."""
    lines = text.splitlines() or [""]
    if problem.position.line <= len(lines):
        return problem
    return YamlProblem(Position(len(lines), len(lines[-1]) + 1), problem.message)


def is_plain_scalar(node: ScalarNode) -> bool:
    return not node.style  # None from PyYAML's parser, "" from libyaml


def _duplicate_keys(node: Node) -> Iterator[YamlProblem]:
    if isinstance(node, MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, ScalarNode) else None
            if name is not None and name in seen:
                yield YamlProblem(
                    _position(key.start_mark),
                    f"duplicate key {name!r} (first defined on line {seen[name]})",
                )
            elif name is not None:
                seen[name] = key.start_mark.line + 1
            yield from _duplicate_keys(value)
    elif isinstance(node, SequenceNode):
        for item in node.value:
            yield from _duplicate_keys(item)


def _child(node: Node, step: str | int) -> Node | None:
    if isinstance(node, MappingNode):
        for key, value in node.value:
            if key.value == step:
                return value  # type: ignore[no-any-return]
    elif isinstance(node, SequenceNode) and isinstance(step, int) and step < len(node.value):
        return node.value[step]  # type: ignore[no-any-return]
    return None


def _position(mark: yaml.Mark) -> Position:
    return Position(mark.line + 1, mark.column + 1)


def _problem(mark: Any, message: str) -> YamlProblem:  # yaml.Mark, or libyaml's own Mark
    return YamlProblem(_position(mark) if mark else Position(1, 1), message)


def _marked(exc: yaml.MarkedYAMLError, message: str) -> YamlProblem:
    mark = exc.problem_mark or exc.context_mark
    if isinstance(exc, ComposerError) and "expected a single document" in str(exc):
        return _problem(mark, message)
    if isinstance(exc, ComposerError):
        return _problem(mark, f"YAML error: {exc.problem}")
    return _problem(mark, message)
