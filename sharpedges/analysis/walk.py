"""One iterative walk over a libcst tree: parent links, a source-order index, nodes grouped by type.

libcst's own visitor machinery rebuilds child tuples on every visit; walking the dataclass fields
directly (cached per node type) costs a fraction of that and never recurses, so a deeply nested
file cannot exhaust the interpreter stack here.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict

import libcst as cst

_CHILD_FIELDS: dict[type, tuple[str, ...]] = {}
# Leaf-ish fields that never hold anything a detector asks about.
_SKIPPED_FIELDS = frozenset({"whitespace", "whitespace_before", "whitespace_after", "lpar", "rpar",
                             "leading_lines", "lines_after_decorators", "trailing_whitespace", "header",
                             "footer", "empty_lines", "comma", "semicolon", "colon", "equal", "dot",
                             "whitespace_after_arg", "whitespace_before_colon", "whitespace_after_colon",
                             "whitespace_before_params", "whitespace_after_def", "whitespace_after_name",
                             "whitespace_before_expression", "whitespace_after_import", "whitespace_after_from",
                             "whitespace_before_import", "whitespace_after_as", "whitespace_before_as",
                             "whitespace_after_star", "whitespace_after_param", "whitespace_after_class",
                             "whitespace_before_from", "whitespace_before_in", "whitespace_after_in",
                             "whitespace_after_for", "whitespace_after_if", "whitespace_after_lambda",
                             "whitespace_after_await", "whitespace_after_return", "whitespace_after_indicator",
                             "whitespace_after_except", "whitespace_after_with", "whitespace_before_else",
                             "whitespace_after_else", "whitespace_before_if", "whitespace_after_while",
                             "whitespace_after_cls", "whitespace_after_del", "whitespace_after_assert",
                             "whitespace_after_raise", "whitespace_after_global", "whitespace_after_nonlocal",
                             "whitespace_after_keyword", "whitespace_after_elif", "whitespace_after_try",
                             "whitespace_after_finally", "whitespace_before_walrus", "whitespace_after_walrus",
                             "operator"})


def _child_fields(node_type: type) -> tuple[str, ...]:
    fields = _CHILD_FIELDS.get(node_type)
    if fields is None:
        fields = tuple(f.name for f in dataclasses.fields(node_type) if f.name not in _SKIPPED_FIELDS)
        _CHILD_FIELDS[node_type] = fields
    return fields


class TreeIndex:
    """Parents, a pre-order number for each node (source order for what detectors compare), and
    nodes grouped by type, all filled by one walk."""

    __slots__ = ("parents", "order", "by_type")

    def __init__(self, module: cst.Module) -> None:
        parents: dict[cst.CSTNode, cst.CSTNode] = {}
        order: dict[cst.CSTNode, int] = {}
        by_type: dict[type, list[cst.CSTNode]] = defaultdict(list)
        stack: list[cst.CSTNode] = [module]
        counter = 0
        base = cst.CSTNode
        while stack:
            node = stack.pop()
            order[node] = counter
            counter += 1
            node_type = type(node)
            by_type[node_type].append(node)
            children: list[cst.CSTNode] = []
            for name in _child_fields(node_type):
                value = getattr(node, name)
                if isinstance(value, base):
                    children.append(value)
                elif type(value) is tuple or type(value) is list:
                    children.extend(item for item in value if isinstance(item, base))
            for child in children:
                parents[child] = node
            children.reverse()
            stack.extend(children)
        self.parents = parents
        self.order = order
        self.by_type = by_type

    def nodes(self, node_type: type) -> list:
        return self.by_type.get(node_type, [])

    def ancestors(self, node: cst.CSTNode):
        parent = self.parents.get(node)
        while parent is not None:
            yield parent
            parent = self.parents.get(parent)

    def enclosing(self, node: cst.CSTNode, node_type: type | tuple[type, ...]):
        for ancestor in self.ancestors(node):
            if isinstance(ancestor, node_type):
                return ancestor
        return None

    def contains(self, outer: cst.CSTNode, inner: cst.CSTNode) -> bool:
        return outer is inner or any(a is outer for a in self.ancestors(inner))

    def last_order(self, node: cst.CSTNode) -> int:
        """The largest pre-order number inside `node`: the point where evaluating it is done."""
        base = cst.CSTNode
        while True:
            last = None
            for name in reversed(_child_fields(type(node))):
                value = getattr(node, name)
                if isinstance(value, base):
                    last = value
                elif (type(value) is tuple or type(value) is list) and value:
                    items = [item for item in value if isinstance(item, base)]
                    last = items[-1] if items else None
                if last is not None:
                    break
            if last is None:
                return self.order.get(node, 0)
            node = last

    def statement_of(self, node: cst.CSTNode) -> cst.CSTNode:
        """The statement line (simple or compound header) that holds `node`."""
        for ancestor in (node, *self.ancestors(node)):
            if isinstance(ancestor, (cst.SimpleStatementLine, cst.BaseCompoundStatement)):
                return ancestor
        return node

    def descendants(self, node: cst.CSTNode, node_type: type | tuple[type, ...] | None = None,
                    prune: tuple[type, ...] = ()):
        """Nodes under `node` (pre-order), optionally only of a type, not entering `prune` types."""
        stack = [node]
        base = cst.CSTNode
        while stack:
            current = stack.pop()
            if current is not node and (node_type is None or isinstance(current, node_type)):
                yield current
            if current is not node and prune and isinstance(current, prune):
                continue
            children = []
            for name in _child_fields(type(current)):
                value = getattr(current, name)
                if isinstance(value, base):
                    children.append(value)
                elif type(value) is tuple or type(value) is list:
                    children.extend(item for item in value if isinstance(item, base))
            children.reverse()
            stack.extend(children)
