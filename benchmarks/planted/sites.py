"""What every mutation operator needs from a parsed file: positions, parents, the enclosing
function, the text of a node, and a splice that replaces one node's text by another's."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import cached_property

import libcst as cst
from libcst.metadata import MetadataWrapper, ParentNodeProvider, PositionProvider


@dataclass(frozen=True)
class Plant:
    """One planted bug: the rule it breaks, the 1-based line it sits on, the whole mutated source,
    and the normalised source of the function it was planted in (plants with equal `shape` are one
    pattern written out again, as transformers' "Copied from" models are)."""

    rule: str
    line: int
    source: str
    shape: str
    before: str  # the code that was replaced
    after: str  # what replaced it

    def placed(self, prefix: str, suffix: str) -> Plant:
        """This plant, made in one top-level statement of a file, as a plant in the whole file:
        `prefix` and `suffix` are the file's text before and after the statement."""
        return replace(self, line=self.line + prefix.count("\n"), source=prefix + self.source + suffix)


_COMMENT = re.compile(r"#[^\n]*")
_SPACE = re.compile(r"\s+")
_CAMEL = re.compile(r"\b[A-Z][A-Za-z0-9]*[a-z][A-Za-z0-9]*\b")  # class names: LlamaAttention, MistralMLP


def normalised(code: str) -> str:
    """Code with comments, layout and class names gone: the same function copied into another model
    file under that model's class names normalises to the same string."""
    return _SPACE.sub(" ", _CAMEL.sub("C", _COMMENT.sub("", code))).strip()


class Sites:
    """A parsed file (or one top-level class or function of it) and what operators ask of it."""

    def __init__(self, code: str, context: str | None = None) -> None:
        self.code = code
        self.context = code if context is None else context  # the whole file, when `code` is one class of it
        self.wrapper = MetadataWrapper(cst.parse_module(code), unsafe_skip_copy=True)
        self.module = self.wrapper.module
        self.positions = self.wrapper.resolve(PositionProvider)
        self.parents = self.wrapper.resolve(ParentNodeProvider)

    @cached_property
    def _line_offsets(self) -> list[int]:
        offsets = [0]
        for line in self.code.splitlines(keepends=True):
            offsets.append(offsets[-1] + len(line))
        return offsets

    def nodes(self, kind: type[cst.CSTNode] | tuple[type[cst.CSTNode], ...]) -> Iterator:
        """Every node of `kind`, in source order."""
        for node in self.positions:
            if isinstance(node, kind):
                yield node

    def line(self, node: cst.CSTNode) -> int:
        return self.positions[node].start.line

    def text(self, node: cst.CSTNode) -> str:
        start, end = self._span(node)
        return self.code[start:end]

    def _span(self, node: cst.CSTNode) -> tuple[int, int]:
        where = self.positions[node]
        return (
            self._line_offsets[where.start.line - 1] + where.start.column,
            self._line_offsets[where.end.line - 1] + where.end.column,
        )

    @cached_property
    def members(self) -> dict[cst.FunctionDef | None, list[cst.CSTNode]]:
        """The nodes of each function (not of the functions nested in it), in source order; None holds
        the module level and class bodies."""
        members: dict[cst.FunctionDef | None, list[cst.CSTNode]] = {None: []}
        stack: list[cst.FunctionDef | None] = [None]

        class Grouper(cst.CSTVisitor):
            def on_visit(self, node: cst.CSTNode) -> bool:
                members.setdefault(stack[-1], []).append(node)
                if isinstance(node, cst.FunctionDef):
                    stack.append(node)
                    members[node] = []
                return True

            def on_leave(self, node: cst.CSTNode) -> None:
                if isinstance(node, cst.FunctionDef):
                    stack.pop()

        self.module.visit(Grouper())
        return members

    def ancestors(self, node: cst.CSTNode) -> Iterator[cst.CSTNode]:
        while node in self.parents:
            node = self.parents[node]
            yield node

    def function(self, node: cst.CSTNode) -> cst.FunctionDef | None:
        return next((a for a in self.ancestors(node) if isinstance(a, cst.FunctionDef)), None)

    def klass(self, node: cst.CSTNode) -> cst.ClassDef | None:
        return next((a for a in self.ancestors(node) if isinstance(a, cst.ClassDef)), None)

    def statement(self, node: cst.CSTNode) -> cst.CSTNode:
        """The simple statement (or compound statement header) holding `node`."""
        for ancestor in self.ancestors(node):
            if isinstance(ancestor, cst.SimpleStatementLine | cst.BaseCompoundStatement):
                return ancestor
        return node

    def plant(self, rule: str, node: cst.CSTNode, replacement: str, at: cst.CSTNode | None = None) -> Plant | None:
        """`node`'s text replaced by `replacement`; the plant's line is that of `at` (default: `node`).
        None when the mutation would change the line count (a plant must not move the findings of the
        rest of the file). Whether the mutated file parses is the checker's to say (see the driver)."""
        start, end = self._span(node)
        before = self.code[start:end]
        if before == replacement:
            return None
        source = self.code[:start] + replacement + self.code[end:]
        if source.count("\n") != self.code.count("\n"):
            return None
        scope = self.function(node) or self.klass(node) or node
        return Plant(rule, self.line(at or node), source, normalised(self.text(scope)), before, replacement)


def call_name(node: cst.CSTNode) -> str:
    """The dotted name a call's function is spelled with: `F.softmax` -> "F.softmax"; "" if not a name."""
    if isinstance(node, cst.Call):
        node = node.func
    parts: list[str] = []
    while isinstance(node, cst.Attribute):
        parts.append(node.attr.value)
        node = node.value
    if isinstance(node, cst.Name):
        parts.append(node.value)
        return ".".join(reversed(parts))
    return "." + ".".join(reversed(parts)) if parts else ""


def last_name(node: cst.CSTNode) -> str:
    return call_name(node).rsplit(".", 1)[-1]


def keyword(call: cst.Call, name: str) -> cst.Arg | None:
    return next((arg for arg in call.args if arg.keyword is not None and arg.keyword.value == name), None)


def positional(call: cst.Call, index: int) -> cst.Arg | None:
    plain = [arg for arg in call.args if arg.keyword is None and not arg.star]
    return plain[index] if index < len(plain) else None
