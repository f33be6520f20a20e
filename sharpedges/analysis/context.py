"""`FileContext`: everything a detector may ask about one parsed file, computed once and lazily."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, TypeVar

import libcst as cst

from sharpedges.analysis.classes import ClassFacts
from sharpedges.analysis.dataflow import FunctionFacts
from sharpedges.analysis.names import ImportAliases
from sharpedges.analysis.walk import TreeIndex

if TYPE_CHECKING:
    from sharpedges.analysis.project import ProjectScope

_T = TypeVar("_T")


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
        return self.aliases.qualify(expr)

    def callee(self, call: cst.Call) -> str | None:
        # asked of every call by most rules: qualified once per call
        try:
            return self._callees[call]
        except KeyError:
            qualified = self._callees[call] = self.aliases.qualify(call.func)
            return qualified

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
