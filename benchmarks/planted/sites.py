"""What every mutation operator needs from a parsed file: parents, the enclosing
function, the text of a node, and a splice that replaces one node's text by another's."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import cached_property

import libcst as cst


@dataclass
class Plant:
    """One planted bug: the rule it breaks, the normalised source of the function it was planted in
    (plants with equal `shape` are one pattern written out again, as transformers' "Copied from"
    models are), the code replaced and its replacement; and, made only when asked (it costs a
    codegen of the tree), the 1-based line it sits on and the whole mutated source."""

    rule: str
    shape: str
    before: str  # the code that was replaced
    after: str  # what replaced it
    make: Callable[[], tuple[int, str]] = field(repr=False, compare=False)

    @cached_property
    def _made(self) -> tuple[int, str]:
        return self.make()

    @property
    def line(self) -> int:
        return self._made[0]

    @property
    def source(self) -> str:
        return self._made[1]

    def placed(self, prefix: str, suffix: str) -> Plant:
        """This plant, made in one top-level statement of a file, as a plant in the whole file:
        `prefix` and `suffix` are the file's text before and after the statement."""

        def make() -> tuple[int, str]:
            return self.line + prefix.count("\n"), prefix + self.source + suffix

        return replace(self, make=make)


_COMMENT = re.compile(r"#[^\n]*")
_SPACE = re.compile(r"\s+")
_CAMEL = re.compile(r"\b[A-Z][A-Za-z0-9]*[a-z][A-Za-z0-9]*\b")  # class names: LlamaAttention, MistralMLP


def normalised(code: str) -> str:
    """Code with comments, layout and class names gone: the same function copied into another model
    file under that model's class names normalises to the same string."""
    return _SPACE.sub(" ", _CAMEL.sub("C", _COMMENT.sub("", code))).strip()


MARK = "__planted_here__"


class Sites:
    """A parsed file (or one top-level class or function of it) and what operators ask of it.
    No libcst metadata: positions cost a codegen of the whole tree, so a plant's line is found by
    generating the mutated code once, with a marker where the plant goes."""

    def __init__(self, code: str, context: str | None = None) -> None:
        self.code = code
        self.context = code if context is None else context  # the whole file, when `code` is one class of it
        self.module = cst.parse_module(code)
        self.parents: dict[cst.CSTNode, cst.CSTNode] = {}
        self._order: list[cst.CSTNode] = []
        self._texts: dict[cst.CSTNode, str] = {}
        parents, order = self.parents, self._order
        stack: list[cst.CSTNode] = []

        class Indexer(cst.CSTVisitor):
            def on_visit(self, node: cst.CSTNode) -> bool:
                if stack:
                    parents[node] = stack[-1]
                stack.append(node)
                order.append(node)
                return True

            def on_leave(self, original_node: cst.CSTNode) -> None:
                stack.pop()

        self.module.visit(Indexer())

    def nodes(self, kind: type[cst.CSTNode] | tuple[type[cst.CSTNode], ...]) -> Iterator:
        """Every node of `kind`, in source order."""
        for node in self._order:
            if isinstance(node, kind):
                yield node

    def text(self, node: cst.CSTNode) -> str:
        """The node's code, its own parentheses included."""
        if node not in self._texts:
            self._texts[node] = self.module.code_for_node(node)
        return self._texts[node]

    @cached_property
    def members(self) -> dict[cst.FunctionDef | None, list[cst.CSTNode]]:
        """The nodes of each function (not of the functions nested in it), in source order; None holds
        the module level and class bodies."""
        members: dict[cst.FunctionDef | None, list[cst.CSTNode]] = {None: []}
        for node in self._order:
            members.setdefault(self.function(node), []).append(node)
            if isinstance(node, cst.FunctionDef):
                members.setdefault(node, [])
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

    def plant(self, rule: str, node: cst.CSTNode, replacement: str) -> Plant | None:
        """`node`'s code replaced by `replacement`, on the line where `node` starts. None when that
        would change the line count (a plant must not move the findings of the rest of the file).
        Whether the mutated file parses is the checker's to say (see the driver)."""
        before = self.text(node)
        if before == replacement or before.count("\n") != replacement.count("\n"):
            return None
        scope = self.function(node) or self.klass(node) or node

        code, index = self.code, self._order.index(node)

        def make() -> tuple[int, str]:
            # from the text again, not from this tree: a kept plant must not keep its file's tree alive
            module = cst.parse_module(code)
            target = _nth_node(module, index)
            marker = cst.Expr(cst.Name(MARK)) if isinstance(target, cst.BaseSmallStatement) else cst.Name(MARK)
            marked = module.deep_replace(target, marker)
            assert isinstance(marked, cst.Module)
            mutated = marked.code
            where = mutated.index(MARK)
            return mutated.count("\n", 0, where) + 1, mutated[:where] + replacement + mutated[where + len(MARK) :]

        return Plant(rule, normalised(self.text(scope)), before, replacement, make)


def _nth_node(module: cst.Module, index: int) -> cst.CSTNode:
    """The node at `index` in visit order (the order `Sites` records)."""
    found: list[cst.CSTNode] = []

    class Counter(cst.CSTVisitor):
        def on_visit(self, node: cst.CSTNode) -> bool:
            found.append(node)
            return len(found) <= index

    module.visit(Counter())
    return found[index]


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
