"""One iterative walk over a libcst tree: parent links, a source-order index, nodes grouped by type.

libcst's own visitor machinery rebuilds child tuples on every visit; walking the dataclass fields
directly (cached per node type) costs a fraction of that and never recurses, so a deeply nested
file cannot exhaust the interpreter stack here.
"""

from __future__ import annotations

import dataclasses
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable
from itertools import chain, repeat
from operator import attrgetter
from typing import TypeVar, overload

import libcst as cst
from typing_extensions import TypeIs

# Scopes of their own inside a function: what they bind or call is not the function's.
HELPER_SCOPES = (cst.FunctionDef, cst.ClassDef, cst.Lambda)


def _hash_nodes_in_c() -> None:
    """libcst nodes are equal only to themselves and hash by identity, but through a Python method
    (`CSTNode.__hash__` returns `id(self)`, copied into every node class): each dict or set lookup keyed
    by a node (parents, pre-order numbers, every memo) ran it: 20 million calls in a one-process check
    of a quarter of the pinned corpus. `object.__hash__` is an identity hash too, computed in C (a dict
    lookup by node: 85 ns -> 26 ns). Node classes made later inherit it: libcst copies
    `CSTNode.__hash__` into each new subclass."""
    python_identity_hash = cst.CSTNode.__dict__["__hash__"]
    pending: list[type] = [cst.CSTNode]
    while pending:
        node_type = pending.pop()
        pending += node_type.__subclasses__()
        if node_type.__dict__.get("__hash__") is python_identity_hash:
            node_type.__hash__ = object.__hash__  # type: ignore[method-assign,assignment]


_hash_nodes_in_c()


_CHILD_FIELDS: dict[type, tuple[str, ...]] = {}
# Trivia and punctuation: fields that never hold anything a detector asks about (a fifth of a tree's
# nodes). Every field named `whitespace...` is one of them too.
_SKIPPED_FIELDS = frozenset(
    {
        "lpar",
        "rpar",
        "lbracket",
        "rbracket",
        "lbrace",
        "rbrace",
        "leading_lines",
        "lines_after_decorators",
        "trailing_whitespace",
        "header",
        "footer",
        "empty_lines",
        "comma",
        "semicolon",
        "colon",
        "first_colon",
        "second_colon",
        "equal",
        "dot",
        "relative",
        "operator",
    }
)


def _child_fields(node_type: type) -> tuple[str, ...]:
    """The fields of a node type that may hold nodes: not trivia, not declared as text (a Name's value)."""
    fields = _CHILD_FIELDS.get(node_type)
    if fields is None:
        fields = tuple(
            f.name
            for f in dataclasses.fields(node_type)
            if f.name not in _SKIPPED_FIELDS and not f.name.startswith("whitespace") and f.type is not str
        )
        _CHILD_FIELDS[node_type] = fields
    return fields


_IS_NODE: dict[type, bool] = {}


def _is_node_type(value_type: type) -> bool:
    # isinstance() against libcst's abstract bases goes through ABCMeta: slow on the hot path.
    known = _IS_NODE.get(value_type)
    if known is None:
        known = _IS_NODE[value_type] = issubclass(value_type, cst.CSTNode)
    return known


_SUBCLASS: dict[object, dict[type, bool]] = {}


_T = TypeVar("_T")
_U = TypeVar("_U")
_V = TypeVar("_V")
_W = TypeVar("_W")


# The overloads tell the type checker what isinstance() would: after `is_a(node, cst.Name)` the
# node is a Name.
@overload
def is_a(node: object, kinds: type[_T]) -> TypeIs[_T]: ...
@overload
def is_a(node: object, kinds: tuple[type[_T], type[_U]]) -> TypeIs[_T | _U]: ...
@overload
def is_a(node: object, kinds: tuple[type[_T], type[_U], type[_V]]) -> TypeIs[_T | _U | _V]: ...
@overload
def is_a(node: object, kinds: tuple[type[_T], type[_U], type[_V], type[_W]]) -> TypeIs[_T | _U | _V | _W]: ...
@overload
def is_a(node: object, kinds: tuple[type, ...]) -> bool: ...
def is_a(node: object, kinds: type | tuple[type, ...]) -> bool:
    """isinstance() for libcst nodes, cached per (kinds, type): libcst's classes use ABCMeta, whose
    __instancecheck__ dominated the analysis profile. Some 40 million calls in a check of the pinned
    corpus: the answer is one nested lookup, the cache filled only on a miss."""
    try:
        return _SUBCLASS[kinds][type(node)]
    except KeyError:
        node_type = type(node)
        known = _SUBCLASS.setdefault(kinds, {})[node_type] = issubclass(node_type, kinds)
        return known


_FIELD_GETTERS: dict[type, Callable[[cst.CSTNode], tuple] | None] = {}


def _field_getter(node_type: type) -> Callable[[cst.CSTNode], tuple] | None:
    """The values of a node type's child fields, read by one C-level attrgetter call; None for a type
    with no such field (names, numbers, strings: a third of a tree's nodes)."""
    fields = _child_fields(node_type)
    getter: Callable[[cst.CSTNode], tuple] | None
    if not fields:
        getter = None
    elif len(fields) == 1:
        one = attrgetter(fields[0])
        getter = lambda node: (one(node),)  # noqa: E731
    else:
        getter = attrgetter(*fields)
    _FIELD_GETTERS[node_type] = getter
    return getter


def children(node: cst.CSTNode) -> list[cst.CSTNode]:
    """Direct children in field order (source order for everything detectors compare)."""
    node_type = type(node)
    try:
        getter = _FIELD_GETTERS[node_type]
    except KeyError:
        getter = _field_getter(node_type)
    found: list[cst.CSTNode] = []
    if getter is None:
        return found
    is_node = _IS_NODE
    for value in getter(node):
        value_type = type(value)
        if value_type is tuple or value_type is list:
            for item in value:
                known = is_node.get(type(item))
                if known or (known is None and _is_node_type(type(item))):
                    found.append(item)
        else:
            known = is_node.get(value_type)
            if known or (known is None and _is_node_type(value_type)):
                found.append(value)
    return found


SCOPE_TYPES = (cst.FunctionDef, cst.ClassDef, cst.Lambda)
_STATEMENT_TYPES = (cst.SimpleStatementLine, cst.BaseCompoundStatement)
_SCOPE_TYPE_SET = frozenset(SCOPE_TYPES)


class TreeIndex:
    """Parents, a pre-order number for each node (source order for what detectors compare), the
    enclosing scope (function, class, lambda or module) of each node, and nodes grouped by type,
    all filled by one walk."""

    __slots__ = ("_by_scope", "_last", "_typed", "by_type", "order", "parents", "scope", "sequence")

    def __init__(self, module: cst.Module) -> None:
        parents: dict[cst.CSTNode, cst.CSTNode] = {}
        order: dict[cst.CSTNode, int] = {}
        scope: dict[cst.CSTNode, cst.CSTNode] = {}
        by_type: dict[type, list[cst.CSTNode]] = defaultdict(list)
        sequence: list[cst.CSTNode] = []
        stack: list[tuple[cst.CSTNode, cst.CSTNode]] = [(module, module)]
        scope_types = _SCOPE_TYPE_SET
        while stack:
            node, enclosing = stack.pop()
            order[node] = len(sequence)
            sequence.append(node)
            scope[node] = enclosing
            node_type = type(node)
            by_type[node_type].append(node)
            found = children(node)
            if found:
                for child in found:
                    parents[child] = node
                found.reverse()
                stack.extend(zip(found, repeat(node if node_type in scope_types else enclosing)))
        self.parents = parents
        self.order = order
        self.scope = scope
        self.by_type = by_type
        self.sequence = sequence
        self._by_scope: dict[cst.CSTNode, list[cst.CSTNode]] | None = None
        self._last: dict[cst.CSTNode, int] = {}
        self._typed: dict[type | tuple[type, ...], tuple[list[int], list[cst.CSTNode]]] = {}

    def nodes(self, node_type: type) -> list:
        return self.by_type.get(node_type, [])

    def in_scope(self, scope: cst.CSTNode) -> list[cst.CSTNode]:
        """Every node whose nearest enclosing function/class/lambda is `scope`, in pre-order
        (the scope's own header included, nested scopes' insides excluded)."""
        if self._by_scope is None:
            buckets: dict[cst.CSTNode, list[cst.CSTNode]] = defaultdict(list)
            scope_of = self.scope
            for node in self.sequence:
                buckets[scope_of[node]].append(node)
            self._by_scope = buckets
        return self._by_scope.get(scope, [])

    def ancestors(self, node: cst.CSTNode):
        parent = self.parents.get(node)
        while parent is not None:
            yield parent
            parent = self.parents.get(parent)

    def enclosing(self, node: cst.CSTNode, node_type: type | tuple[type, ...]):
        parents = self.parents
        ancestor = parents.get(node)
        while ancestor is not None:
            if is_a(ancestor, node_type):
                return ancestor
            ancestor = parents.get(ancestor)
        return None

    def enclosing_scope(self, node: cst.CSTNode, node_type: type):
        """`enclosing(node, node_type)` for a scope type (a function, class or lambda), visiting only
        the scopes around `node` instead of every ancestor: the detectors ask it for most nodes."""
        module = self.sequence[0]
        scope = self.scope
        current = scope.get(node)
        while current is not None and current is not module:
            if is_a(current, node_type):
                return current
            current = scope.get(current)
        return None

    def contains(self, outer: cst.CSTNode, inner: cst.CSTNode) -> bool:
        return outer is inner or any(a is outer for a in self.ancestors(inner))

    def last_order(self, node: cst.CSTNode) -> int:
        """The largest pre-order number inside `node`: the point where evaluating it is done."""
        known = self._last.get(node)
        if known is None:
            last = node
            while found := children(last):
                last = found[-1]
            known = self._last[node] = self.order.get(last, 0)
        return known

    def statement_of(self, node: cst.CSTNode) -> cst.CSTNode:
        """The statement line (simple or compound header) that holds `node`."""
        if is_a(node, _STATEMENT_TYPES):
            return node
        return self.enclosing(node, _STATEMENT_TYPES) or node

    def descendants(
        self, node: cst.CSTNode, node_type: type | tuple[type, ...] | None = None, prune: tuple[type, ...] = ()
    ):
        """Nodes under `node` (pre-order), optionally only of a type, not entering `prune` types.
        Pre-order numbering makes a subtree a contiguous slice of `sequence`."""
        start = self.order.get(node)
        if start is None or self.sequence[start] is not node:  # a node from another tree
            yield from _walk_detached(node, node_type, prune)
            return
        end = self.last_order(node) + 1
        if node_type is None:
            sequence = self.sequence
            i = start + 1
            while i < end:
                current = sequence[i]
                yield current
                if prune and is_a(current, prune):
                    i = self.last_order(current) + 1
                else:
                    i += 1
            return
        # Only the nodes of the type, found by bisection in their pre-order list, instead of a test of
        # every node of the subtree; pruned subtrees are the ranges of the prune-type nodes inside.
        orders, nodes = self._of_type(node_type)
        first, stop = bisect_right(orders, start), bisect_left(orders, end)
        if not prune:
            for i in range(first, stop):
                yield nodes[i]
            return
        pruned, pruners = self._of_type(prune)
        next_pruner, last_pruner = bisect_right(pruned, start), bisect_left(pruned, end)
        skip_until = -1  # the last pre-order number of the pruned subtree being passed
        for i in range(first, stop):
            at = orders[i]
            while next_pruner < last_pruner and pruned[next_pruner] < at:
                if pruned[next_pruner] > skip_until:
                    skip_until = self.last_order(pruners[next_pruner])
                next_pruner += 1
            if at > skip_until:
                yield nodes[i]

    def _of_type(self, kinds: type | tuple[type, ...]) -> tuple[list[int], list[cst.CSTNode]]:
        """The pre-order numbers and the nodes of every node of `kinds` (as `is_a` tests it), in pre-order."""
        known = self._typed.get(kinds)
        if known is None:
            matching = [self.by_type[node_type] for node_type in self.by_type if issubclass(node_type, kinds)]
            nodes = matching[0] if len(matching) == 1 else sorted(chain(*matching), key=self.order.__getitem__)
            known = self._typed[kinds] = ([self.order[node] for node in nodes], nodes)
        return known


def _walk_detached(node, node_type, prune):
    stack = list(reversed(children(node)))
    while stack:
        current = stack.pop()
        if node_type is None or isinstance(current, node_type):
            yield current
        if prune and isinstance(current, prune):
            continue
        stack.extend(reversed(children(current)))
