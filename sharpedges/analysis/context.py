"""`FileContext`: everything a detector may ask about one parsed file, computed once and lazily."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, TypeVar

import libcst as cst

from sharpedges.analysis.classes import ClassFacts
from sharpedges.analysis.dataflow import FunctionFacts
from sharpedges.analysis.names import ImportAliases, dotted
from sharpedges.analysis.walk import TreeIndex

if TYPE_CHECKING:
    from sharpedges.analysis.project import ProjectScope

_T = TypeVar("_T")

BUILTIN_NAMES = frozenset(dir(builtins))


class FileContext:
    def __init__(self, path: str, module: cst.Module, lowered_source: bytes | None = None) -> None:
        self.path = path
        self.module = module
        # the file's bytes, lower-cased: a cheap "can this file possibly hold X?" before any analysis
        self.lowered_source = lowered_source if lowered_source is not None else module.code.lower().encode()
        self.index = TreeIndex(module)
        self.aliases = ImportAliases(self.index.nodes(cst.Import), self.index.nodes(cst.ImportFrom), module)
        self.options: dict[str, Any] = {}  # options of the rule being run, set by the engine
        self._functions: dict[cst.FunctionDef, FunctionFacts] = {}
        self._classes: dict[cst.ClassDef, ClassFacts] = {}
        self._callees: dict[cst.Call, str | None] = {}
        self._mentioned: dict[tuple[bytes, ...], bool] = {}
        self.shared: dict[Hashable, Any] = {}  # per-file memo for analyses several detectors share
        self.project: ProjectScope | None = None  # set by the engine when the file is checked with its project

    # -- names ----------------------------------------------------------------------------
    def qualify(self, expr: cst.BaseExpression) -> str | None:
        if self.project is not None and self._star_sources():
            found = self._star_qualified(expr)
            if found is not None:
                return found
        return self.aliases.qualify(expr)

    def callee(self, call: cst.Call) -> str | None:
        # asked of every call by most rules: qualified once per call
        try:
            return self._callees[call]
        except KeyError:
            qualified = self._callees[call] = self.qualify(call.func)
            return qualified

    def _star_sources(self) -> tuple[tuple[str, int], ...]:
        """(module, level) of each `from <module> import *` of the file."""

        def compute() -> tuple[tuple[str, int], ...]:
            return tuple(
                (dotted(node.module) or "" if node.module is not None else "", len(node.relative))
                for node in self.index.nodes(cst.ImportFrom)
                if isinstance(node.names, cst.ImportStar)
            )

        return self.memo("star_sources", compute)

    def _star_qualified(self, expr: cst.BaseExpression) -> str | None:
        """`scaled_dot_product_attention` in unsloth's qwen3.py, which `from .llama import *` binds to the
        torch function llama.py imports: asked of the project only for a name the file never binds."""
        parts: list[str] = []
        head = expr
        while isinstance(head, cst.Attribute):
            parts.append(head.attr.value)
            head = head.value
        if (
            not isinstance(head, cst.Name)
            or head.value in BUILTIN_NAMES  # `len`, `isinstance`: asked everywhere, bound by no star import
            or self.aliases.knows(head.value)
            or head.value in self._bound_names()
            or self.project is None
        ):
            return None
        found = self.project.star_imported(head.value, self._star_sources())
        return None if found is None else ".".join([found, *reversed(parts)])

    def _bound_names(self) -> frozenset[str]:
        """Every name the file binds anywhere: assigned, defined, imported, a parameter or a loop target."""

        def compute() -> frozenset[str]:
            binders = (cst.AssignTarget, cst.Param, cst.FunctionDef, cst.ClassDef, cst.AsName, cst.ImportAlias)
            targets = (cst.For, cst.CompFor, cst.AnnAssign, cst.AugAssign, cst.NamedExpr, cst.WithItem)
            names = set()
            for node in self.index.nodes(cst.Name):
                parent = self.index.parents.get(node)
                if isinstance(parent, binders) or (
                    isinstance(parent, targets)
                    and node in (getattr(parent, "target", None), getattr(parent, "asname", None))
                ):
                    names.add(node.value)
            return frozenset(names)

        return self.memo("bound_names", compute)

    def calls(self) -> list[cst.Call]:
        return self.index.nodes(cst.Call)

    # -- scopes ---------------------------------------------------------------------------
    def function_of(self, node: cst.CSTNode) -> cst.FunctionDef | None:
        return self.index.enclosing_scope(node, cst.FunctionDef)

    def class_of(self, node: cst.CSTNode) -> cst.ClassDef | None:
        return self.index.enclosing_scope(node, cst.ClassDef)

    def function_facts(self, function: cst.FunctionDef) -> FunctionFacts:
        facts = self._functions.get(function)
        if facts is None:
            facts = self._functions[function] = FunctionFacts(function, self.index)
        return facts

    def class_facts(self, cls: cst.ClassDef) -> ClassFacts:
        facts = self._classes.get(cls)
        if facts is None:
            facts = self._classes[cls] = ClassFacts(cls, self.index, self.aliases)
        return facts

    def top_level_classes(self) -> dict[str, cst.ClassDef]:
        """The classes of the file not nested in another class, by name."""
        classes = self.index.nodes(cst.ClassDef)
        return self.memo("top_level_classes", lambda: {c.name.value: c for c in classes if self.class_of(c) is None})

    def order(self, node: cst.CSTNode) -> int:
        return self.index.order.get(node, 0)

    def code(self, node: cst.CSTNode) -> str:
        return self.module.code_for_node(node)

    def mentions(self, *words: bytes) -> bool:
        # asked per call by some analyses: each question scans the whole file once
        known = self._mentioned.get(words)
        if known is None:
            known = self._mentioned[words] = any(word in self.lowered_source for word in words)
        return known

    def memo(self, key: Hashable, compute: Callable[[], _T]) -> _T:
        if key not in self.shared:
            self.shared[key] = compute()
        return self.shared[key]
