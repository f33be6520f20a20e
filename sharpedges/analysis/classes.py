"""Facts about `self.x` inside one class, gathered across all of its methods."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import libcst as cst

from sharpedges.analysis.names import ImportAliases
from sharpedges.analysis.walk import TreeIndex, is_a

_ASSIGNMENTS = (cst.Assign, cst.AnnAssign, cst.AugAssign)


@dataclass(frozen=True)
class AttributeAssignment:
    attr: str
    value: cst.BaseExpression | None
    method: str  # the method it happens in
    node: cst.CSTNode


def self_attribute(expr: cst.BaseExpression) -> str | None:
    """`x` for `self.x`, else None."""
    if is_a(expr, cst.Attribute) and is_a(expr.value, cst.Name) and expr.value.value == "self":
        return expr.attr.value
    return None


class ClassFacts:
    """`self.x = ...` assignments per attribute, the methods, and which attributes hold which module."""

    def __init__(self, cls: cst.ClassDef, index: TreeIndex, aliases: ImportAliases) -> None:
        self.cls = cls
        self._aliases = aliases
        self._index = index
        self.methods: dict[str, cst.FunctionDef] = {}
        self.assignments: dict[str, list[AttributeAssignment]] = {}
        body = cls.body.body if is_a(cls.body, cst.IndentedBlock) else ()
        for statement in body:
            if is_a(statement, cst.FunctionDef):
                self.methods[statement.name.value] = statement
        for name, method in self.methods.items():
            for node in index.in_scope(method):
                if not is_a(node, _ASSIGNMENTS):
                    continue
                targets = [t.target for t in node.targets] if is_a(node, cst.Assign) else [node.target]
                for target in targets:
                    for element, value in _bound(target, node.value):
                        attr = self_attribute(element)
                        if attr is not None:
                            self.assignments.setdefault(attr, []).append(AttributeAssignment(attr, value, name, node))

    @property
    def name(self) -> str:
        return self.cls.name.value

    def base_names(self) -> list[str]:
        return [q for base in self.cls.bases if (q := self._aliases.qualify(base.value)) is not None]

    def constructed_type(self, attr: str) -> str | None:
        """Qualified name of the callable assigned to `self.attr` (`torch.nn.Softmax` ...), if one is."""
        for assignment in self.assignments.get(attr, ()):
            value = assignment.value
            if is_a(value, cst.Call):
                qualified = self._aliases.qualify(value.func)
                if qualified is not None:
                    return qualified
        return None

    def is_read(self, attr: str, within: Iterable[cst.FunctionDef] | None = None) -> bool:
        """Whether any code of the class (or of the methods `within`) reads `self.attr` (a store into it
        is no read)."""
        return any(
            node.attr.value == attr
            and self_attribute(node) == attr
            and not is_a(self._index.parents.get(node), cst.AssignTarget)
            for scope in ((self.cls,) if within is None else within)
            for node in self._index.descendants(scope, cst.Attribute)
        )

    def is_parameter(self, attr: str) -> bool:
        return any(
            t in ("torch.nn.Parameter", "torch.nn.parameter.Parameter") for t in [self.constructed_type(attr)] if t
        )


def _bound(target: cst.BaseExpression, value: cst.BaseExpression | None):
    if is_a(target, (cst.Tuple, cst.List)):
        values = (
            value.elements
            if is_a(value, (cst.Tuple, cst.List)) and len(value.elements) == len(target.elements)
            else [None] * len(target.elements)
        )
        for element, item in zip(target.elements, values, strict=False):
            yield from _bound(element.value, None if item is None else item.value)
    else:
        yield target, value
