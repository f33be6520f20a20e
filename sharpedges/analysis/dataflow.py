"""Def-use of local names inside one function: assignments, augmented assignments, tuple unpacking,
loop and `with` targets, parameters, and in-place method calls (`x.div_(s)`) that redefine a name.

Reaching definitions are approximated the way a reader would: the latest definition before a
point, plus earlier ones while the later ones sit in a branch or loop (they may not have run).

Branches on a string correlate: a definition under `if self.config._attn_implementation == "eager":`
cannot reach a point under `if self.config._attn_implementation == "sdpa":` (the attribute path is
the same choice, made once), and one under `== "sdpa"` always runs before such a point when nothing
else decides it. `Condition` holds those choices; a caller may add the choice a consumer stands for
(`reaching(..., chosen=...)`: the SDPA kernel an attention registry picks by the same string).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import libcst as cst

from sharpedges.analysis.names import dotted
from sharpedges.analysis.walk import TreeIndex, is_a

DefinitionKind = Literal["assign", "augassign", "param", "unpack", "loop", "with", "inplace"]
SCOPE_TYPES = (cst.FunctionDef, cst.ClassDef, cst.Lambda)
SUITE_TYPES = (cst.IndentedBlock, cst.SimpleStatementSuite)
_RECORDED = frozenset(
    {
        cst.Name,
        cst.Assign,
        cst.AnnAssign,
        cst.AugAssign,
        cst.NamedExpr,
        cst.For,
        cst.CompFor,
        cst.WithItem,
        cst.Expr,
        cst.Del,
        cst.Comparison,
    }
)
# Definitions that are whole statements (a loop target is bound only when the loop runs, a `with`
# target only when its context manager enters).
_STATEMENT_DEFINITIONS = frozenset({"assign", "unpack", "augassign", "inplace"})
_EARLY_EXITS = (cst.Break, cst.Continue, cst.Raise)
BRANCH_TYPES = (
    cst.If,
    cst.Else,
    cst.For,
    cst.While,
    cst.Try,
    cst.ExceptHandler,
    cst.Finally,
    cst.With,
    cst.Match if hasattr(cst, "Match") else cst.If,
)


@dataclass(frozen=True)
class Definition:
    name: str
    kind: DefinitionKind
    value: cst.BaseExpression | None = field(repr=False)  # None when unknown (parameter, unpacked item)
    node: cst.CSTNode = field(repr=False)  # the statement or call that defines the name
    order: int
    conditional: bool  # inside a branch or loop of the function
    operator: cst.BaseAugOp | None = None  # for augmented assignments
    method: str | None = None  # for in-place calls: div_, mul_, masked_fill_ ...

    @property
    def computed_from(self) -> cst.BaseExpression | None:
        """The value, or for an unpacked name (`out, _ = attn(h, h, h)`) the whole right side."""
        if self.kind == "unpack" and is_a(self.node, cst.Assign):
            return self.node.value
        return self.value

    @property
    def bound_value(self) -> cst.BaseExpression | None:
        """What the name holds after this definition, when the code spells it: the assigned value, or
        for `x.masked_fill_(m, v)` the call itself (an in-place method returns its updated receiver,
        which is read before the call: evaluate it at the call's own position)."""
        return self.value if self.kind in ("assign", "inplace") else None


def _target_names(target: cst.BaseExpression) -> list[tuple[str, bool]]:
    """(name, unpacked) for every plain name bound by an assignment target."""
    if is_a(target, cst.Name):
        return [(target.value, False)]
    if is_a(target, (cst.Tuple, cst.List)):
        names: list[tuple[str, bool]] = []
        for element in target.elements:
            value = element.value
            names.extend((name, True) for name, _ in _target_names(value))
        return names
    if is_a(target, cst.StarredElement):
        return [(name, True) for name, _ in _target_names(target.value)]
    return []


# -- branches on a string: `if config._attn_implementation == "sdpa":` ---------------------------------
@dataclass(frozen=True)
class Choice:
    """What a branch says of one string-valued attribute path: it is one of `values`, or (`excluded`)
    none of them."""

    path: str
    values: frozenset[str]
    excluded: bool = False

    def negated(self) -> Choice:
        return Choice(self.path, self.values, not self.excluded)


@dataclass(frozen=True)
class Condition:
    """The string choices every path to a point makes (all of them hold), and whether they are all
    that decides that the point runs (`exact`: no other test, loop or handler on the way)."""

    choices: tuple[Choice, ...] = ()
    exact: bool = True

    def admitted(self, path: str) -> tuple[frozenset[str] | None, frozenset[str]]:
        """The values `path` may have here: (one of these, None for any) minus the excluded ones."""
        included: frozenset[str] | None = None
        excluded: frozenset[str] = frozenset()
        for choice in self.choices:
            if choice.path != path:
                continue
            if choice.excluded:
                excluded |= choice.values
            else:
                included = choice.values if included is None else included & choice.values
        return included, excluded

    def also(self, *choices: Choice) -> Condition:
        return Condition(self.choices + choices, self.exact)

    def agrees(self, other: Condition) -> bool:
        """Whether some value of every path satisfies both conditions."""
        both = Condition(self.choices + other.choices)
        for path in {choice.path for choice in both.choices}:
            included, excluded = both.admitted(path)
            if included is not None and not included - excluded:
                return False
        return True

    def implies(self, other: Condition) -> bool:
        """Whether every value this condition admits, `other` admits too."""
        for path in {choice.path for choice in other.choices}:
            mine, my_excluded = self.admitted(path)
            theirs, their_excluded = other.admitted(path)
            if mine is None:
                if theirs is not None or not their_excluded <= my_excluded:
                    return False
            elif not (theirs is None or mine - my_excluded <= theirs) or (mine - my_excluded) & their_excluded:
                return False
        return True


ANYWHERE = Condition()


def string_choice_path(expr: cst.BaseExpression) -> str | None:
    """The attribute path a branch compares with strings, the same from every method that reads it:
    `self.config._attn_implementation` and `config._attn_implementation` are one choice. Plain local
    names are left out: they can be rebound between the test and the use."""
    text = dotted(expr)
    if text is None or "." not in text:
        return None
    return text.removeprefix("self.")


def _strings(expr: cst.BaseExpression) -> frozenset[str] | None:
    """`"sdpa"`, or `("sdpa", "eager")` / `["sdpa", "eager"]` / `{...}` of string literals."""
    if is_a(expr, cst.SimpleString):
        value = expr.evaluated_value
        return frozenset({value}) if is_a(value, str) else None
    if is_a(expr, (cst.Tuple, cst.List, cst.Set)) and expr.elements:
        found: set[str] = set()
        for element in expr.elements:
            inner = _strings(element.value) if not is_a(element, cst.StarredElement) else None
            if inner is None:
                return None
            found |= inner
        return frozenset(found)
    return None


def branch_choices(test: cst.BaseExpression, truth: bool) -> tuple[tuple[Choice, ...], bool]:
    """The string choices that hold when `test` evaluates to `truth`, and whether they are all it says.

    Ex) `x == "sdpa"`, `x != "eager"`, `x in ("sdpa", "flex_attention")`, `x not in [...]`, `not ...`,
        and both sides of `and` when true (of `or` when false)
    """
    if is_a(test, cst.UnaryOperation) and is_a(test.operator, cst.Not):
        return branch_choices(test.expression, not truth)
    if is_a(test, cst.BooleanOperation):
        conjunction = is_a(test.operator, cst.And)
        if conjunction != truth:
            return (), False  # `a and b` false, `a or b` true: either side may decide
        left, left_exact = branch_choices(test.left, truth)
        right, right_exact = branch_choices(test.right, truth)
        return left + right, left_exact and right_exact
    if not is_a(test, cst.Comparison) or len(test.comparisons) != 1:
        return (), False
    target = test.comparisons[0]
    operator = target.operator
    if not is_a(operator, (cst.Equal, cst.NotEqual, cst.In, cst.NotIn)):
        return (), False
    values = _strings(target.comparator)
    path = string_choice_path(test.left)
    if (values is None or path is None) and is_a(operator, (cst.Equal, cst.NotEqual)):
        values, path = _strings(test.left), string_choice_path(target.comparator)  # Ex) "sdpa" == x
    if values is None or path is None:
        return (), False
    excluded = is_a(operator, (cst.NotEqual, cst.NotIn)) == truth
    return (Choice(path, values, excluded),), True


def compares_strings(comparison: cst.Comparison) -> bool:
    """A comparison of something with string literals: the functions that hold one get branch conditions."""
    return any(_strings(target.comparator) is not None for target in comparison.comparisons) or (
        _strings(comparison.left) is not None
    )


class FunctionFacts:
    """Definitions and uses of the local names of one function (nested scopes excluded)."""

    def __init__(self, function: cst.FunctionDef, index: TreeIndex) -> None:
        self.function = function
        self._index = index
        self.definitions: dict[str, list[Definition]] = {}
        self.uses: dict[str, list[cst.Name]] = {}
        self.parameters: list[str] = []
        # `del x`: where, and the block it runs in (a definition in that block cannot pass it)
        self._deletions: dict[str, list[tuple[int, cst.CSTNode]]] = {}
        self._string_branches = False  # some test compares with a string: branch conditions can matter
        self._conditions: dict[cst.CSTNode, Condition] = {}
        self._leaves_early: dict[cst.CSTNode, bool] = {}
        self._collect()

    # -- building -------------------------------------------------------------------------
    def _add(self, name: str, kind: DefinitionKind, value, node, order: int, conditional: bool, **extra) -> None:
        self.definitions.setdefault(name, []).append(Definition(name, kind, value, node, order, conditional, **extra))

    def _collect(self) -> None:
        index = self._index
        function = self.function
        start = index.order[function]
        for param in (*function.params.posonly_params, *function.params.params, *function.params.kwonly_params):
            self.parameters.append(param.name.value)
            self._add(param.name.value, "param", param.default, param, start, False)
        for star in (function.params.star_arg, function.params.star_kwarg):
            if is_a(star, cst.Param):
                self.parameters.append(star.name.value)
                self._add(star.name.value, "param", None, star, start, False)
        for node in index.in_scope(function):
            if type(node) in _RECORDED:
                self._record(node)
        for defs in self.definitions.values():
            defs.sort(key=lambda d: d.order)

    def _is_conditional(self, node: cst.CSTNode) -> bool:
        for ancestor in self._index.ancestors(node):
            if ancestor is self.function:
                return False
            if is_a(ancestor, BRANCH_TYPES):
                return True
        return False

    def _record(self, node: cst.CSTNode) -> None:
        # A definition takes effect once its whole statement is evaluated: in `x = f(x)` the `x`
        # read inside `f(x)` sees the previous definition, not this one.
        if is_a(node, cst.Name):
            if _is_read(node, self._index.parents.get(node)):
                self.uses.setdefault(node.value, []).append(node)
            return
        if is_a(node, cst.Comparison):
            self._string_branches = self._string_branches or compares_strings(node)
            return
        # A loop target is bound before the body runs; everything else once the statement is done.
        order = self._index.last_order(node.iter if is_a(node, (cst.For, cst.CompFor)) else node) + 1
        if is_a(node, cst.Assign):
            conditional = self._is_conditional(node)
            for target in node.targets:
                for name, unpacked in _target_names(target.target):
                    kind: DefinitionKind = "unpack" if unpacked else "assign"
                    value = None if unpacked else node.value
                    if unpacked:
                        value = _unpacked_value(target.target, name, node.value)
                        kind = "assign" if value is not None else "unpack"
                    self._add(name, kind, value, node, order, conditional)
        elif is_a(node, cst.AnnAssign) and node.value is not None:
            for name, _ in _target_names(node.target):
                self._add(name, "assign", node.value, node, order, self._is_conditional(node))
        elif is_a(node, cst.AugAssign):
            for name, _ in _target_names(node.target):
                self._add(
                    name, "augassign", node.value, node, order, self._is_conditional(node), operator=node.operator
                )
        elif is_a(node, cst.NamedExpr):
            for name, _ in _target_names(node.target):
                self._add(name, "assign", node.value, node, order, self._is_conditional(node))
        elif is_a(node, (cst.For, cst.CompFor)):
            for name, _ in _target_names(node.target):
                self._add(name, "loop", node.iter, node, order, True)
        elif is_a(node, cst.WithItem) and node.asname is not None:
            for name, _ in _target_names(node.asname.name):
                self._add(name, "with", node.item, node, order, self._is_conditional(node))
        elif is_a(node, cst.Del):
            block: cst.CSTNode = next(a for a in self._index.ancestors(node) if is_a(a, SUITE_TYPES))
            if self._index.parents.get(block) is self.function:
                block = self.function  # the function's own body: its parameters too
            for name, _ in _target_names(node.target):
                self._deletions.setdefault(name, []).append((order, block))
        elif is_a(node, cst.Expr) and is_a(node.value, cst.Call):
            call = node.value
            func = call.func
            if (
                is_a(func, cst.Attribute)
                and is_a(func.value, cst.Name)
                and func.attr.value.endswith("_")
                and not func.attr.value.startswith("_")
            ):
                self._add(
                    func.value.value, "inplace", call, node, order, self._is_conditional(node), method=func.attr.value
                )

    # -- branch conditions ------------------------------------------------------------------
    def condition(self, node: cst.CSTNode) -> Condition:
        """The string choices the branches around `node` (inside this function) make."""
        known = self._conditions.get(node)
        if known is not None:
            return known
        choices: tuple[Choice, ...] = ()
        exact = True
        child = node
        for ancestor in self._index.ancestors(node):
            if ancestor is self.function:
                break
            if is_a(ancestor, (cst.If, cst.IfExp)) and child is not ancestor.test:
                found, decided = branch_choices(ancestor.test, child is ancestor.body)
                choices, exact = choices + found, exact and decided
            elif is_a(ancestor, BRANCH_TYPES) and not is_a(ancestor, cst.Else):
                exact = False
            child = ancestor
        condition = self._conditions[node] = Condition(choices, exact)
        return condition

    def _point_condition(self, before: int, chosen: Condition | None) -> Condition | None:
        """The condition of the point just before pre-order number `before` (a point is asked as the
        number of the expression there, or of the node after a definition: the node before it is inside
        either), with the consumer's own choice added; None when no branch here compares strings."""
        if not self._string_branches:
            return chosen
        index = self._index
        inside = index.order[self.function] < before - 1 <= index.last_order(self.function)
        point = self.condition(index.sequence[before - 1]) if inside else ANYWHERE
        return point.also(*chosen.choices) if chosen is not None else point

    # -- queries --------------------------------------------------------------------------
    def reaching(self, name: str, before: int, chosen: Condition | None = None) -> list[Definition]:
        """Definitions of `name` that may reach a point with pre-order number `before` (and, with
        `chosen`, a consumer that runs only under those string choices)."""
        found: list[Definition] = []
        deletions = [(order, block) for order, block in self._deletions.get(name, ()) if order < before]
        point = self._point_condition(before, chosen) if self._string_branches or chosen is not None else None
        for definition in reversed(self.definitions.get(name, ())):
            if definition.order >= before:
                continue
            if any(
                order > definition.order and self._index.contains(block, definition.node) for order, block in deletions
            ):
                continue  # deleted on every path on from it
            condition = self.condition(definition.node) if point is not None and self._string_branches else None
            if condition is not None and point is not None and not condition.agrees(point):
                continue  # Ex) built under `== "eager"`, read under `== "sdpa"`
            if any(self._overwrites(later, definition) for later in found):
                continue
            found.append(definition)
            if (
                not definition.conditional
                or self._runs_on_the_way(definition, before)
                or self._every_branch_defines(found, before)
            ):
                break
            if condition is not None and point is not None and condition.exact and point.implies(condition):
                break  # Ex) rebuilt under `== "sdpa"`, read under `== "sdpa"` again: it always ran
        return found

    def _runs_on_the_way(self, definition: Definition, before: int) -> bool:
        """Whether a definition inside a branch or loop runs on every path to the point `before`: it is a
        statement of a block that holds the point, ahead of it. (A point is asked as the number of the
        node after it, as in `_point_condition`: the point after a block's last definition is inside it.)

        Ex) `if mask is None: mask = ones.triu(1); scores = scores + mask`: there the parameter is gone
        """
        block = self._block_of(definition)
        return block is not None and self._index.order[block] < before <= self._index.last_order(block) + 1

    def _every_branch_defines(self, found: list[Definition], before: int) -> bool:
        """Whether an `if`/`elif`/`else` ahead of the point, in a block that holds it, defines the name
        as a whole statement of each of its branches: a path that reaches the point ran one of them.

        Ex) `if causal: mask = tril else: mask = ones` before `sdpa(attn_mask=mask)`: the parameter is gone
        """
        blocks = {block for d in found if (block := self._block_of(d)) is not None}
        for block in blocks:
            statement = self._index.parents.get(block)
            if is_a(statement, cst.Else):
                statement = self._index.parents.get(statement)
            while statement is not None and is_a(parent := self._index.parents.get(statement), cst.If):
                if parent.orelse is not statement:
                    break
                statement = parent  # up an elif chain to its first `if`
            if statement is None or not is_a(statement, cst.If) or not self._defined_in_every_branch(statement, blocks):
                continue
            holder = self._index.parents.get(statement)  # the block the `if` is a statement of
            if holder is not None and self._index.last_order(statement) < before <= self._index.last_order(holder) + 1:
                return True
        return False

    def _defined_in_every_branch(self, statement: cst.If, blocks: set[cst.CSTNode]) -> bool:
        if statement.body not in blocks:
            return False
        orelse = statement.orelse
        if is_a(orelse, cst.If):
            return self._defined_in_every_branch(orelse, blocks)
        return is_a(orelse, cst.Else) and orelse.body in blocks

    def _overwrites(self, later: Definition, earlier: Definition) -> bool:
        """Whether every path on from `earlier` runs `later` first: both are statements of one block
        that no jump or exception leaves between them.

        Ex) `if mask is None: mask = ones.triu(1); mask = mask.masked_fill(...)`: past the branch the name
            holds the filled mask or the parameter, never the bare triangle
        """
        block = self._block_of(later)
        return block is not None and block is self._block_of(earlier) and not self._may_leave_early(block)

    def _block_of(self, definition: Definition) -> cst.CSTNode | None:
        """The block a definition is a whole statement of (None for loop and `with` targets, which bind
        only when the loop or the context runs, and for `:=`)."""
        if definition.kind not in _STATEMENT_DEFINITIONS or is_a(definition.node, cst.NamedExpr):
            return None
        line = self._index.parents.get(definition.node)
        if line is None or is_a(line, cst.SimpleStatementSuite):
            return line
        return self._index.parents.get(line)

    def _may_leave_early(self, block: cst.CSTNode) -> bool:
        """A block that can be left halfway through to somewhere still in the function: it holds a
        `break`, `continue` or `raise`, or a `try` of the function encloses it."""
        known = self._leaves_early.get(block)
        if known is None:
            known = any(True for _ in self._index.descendants(block, _EARLY_EXITS)) or any(
                is_a(ancestor, cst.Try)
                for ancestor in self._index.ancestors(block)
                if self._index.contains(self.function, ancestor)
            )
            self._leaves_early[block] = known
        return known

    def is_parameter(self, name: str) -> bool:
        return name in self.parameters

    def overwritten_unread(self, definition: Definition) -> Definition | None:
        """The assignment that replaces `definition` before anything reads it: the next definition of
        the name is a whole assignment in the same block, no jump or exception can leave the block
        between them, and nothing in between (a nested function or lambda included) reads the name.
        None when the value may be read, or when the function can reach its locals another way.

        Ex) `attn = dots.softmax(dim=-1)` then `attn = self.dropout(dots)`: the softmax is lost
        """
        later = next((d for d in self.definitions.get(definition.name, ()) if d.order > definition.order), None)
        if (
            later is None
            or later.kind not in ("assign", "unpack")
            or not self._overwrites(later, definition)
            or self._reaches_locals_indirectly(definition.name)
        ):
            return None
        index = self._index
        for node in index.sequence[definition.order : later.order]:
            if is_a(node, cst.Name) and node.value == definition.name and _is_read(node, index.parents.get(node)):
                return None
        return later

    def never_read(self, definition: Definition) -> bool:
        """Nothing reads the value `definition` binds: no read of the name follows it in the function (a
        nested function or lambda included), and none inside a loop around it, which may run again. False
        when the function can reach its locals another way.

        Ex) `attn_out = attn(x)` then `x = x + residual`: the attention's output is lost
        """
        name = definition.name
        if self._reaches_locals_indirectly(name):
            return False
        index = self._index
        start = definition.order
        for ancestor in index.ancestors(definition.node):
            if ancestor is self.function:
                break
            if is_a(ancestor, (cst.For, cst.While)):
                start = index.order[ancestor]  # the outermost loop around it: read on a later pass
        return not any(
            node.value == name
            and index.order[node] >= start
            and _is_read(node, index.parents.get(node))
            and not _unpacked_into(node, index)
            for node in index.descendants(self.function, cst.Name)
        )

    def _reaches_locals_indirectly(self, name: str) -> bool:
        """`locals()`, `vars()`, `eval`/`exec`, or a `global`/`nonlocal` declaration of the name."""
        for node in self._index.descendants(self.function, (cst.Call, cst.Global, cst.Nonlocal)):
            if is_a(node, cst.Call):
                if is_a(node.func, cst.Name) and node.func.value in ("locals", "vars", "eval", "exec"):
                    return True
            elif any(item.name.value == name for item in node.names):
                return True
        return False

    def later_uses(self, name: str, after: int) -> list[cst.Name]:
        return [use for use in self.uses.get(name, ()) if self._index.order.get(use, 0) > after]


def _unpacked_into(name: cst.Name, index: TreeIndex) -> bool:
    """`name` is an element of a tuple or list an assignment unpacks into (`out, cache = ...`)."""
    node: cst.CSTNode = name
    parent = index.parents.get(node)
    while is_a(parent, (cst.Element, cst.StarredElement, cst.Tuple, cst.List)):
        node, parent = parent, index.parents.get(parent)
    return node is not name and is_a(parent, cst.AssignTarget)


def _is_read(name: cst.Name, parent: cst.CSTNode | None) -> bool:
    """False for names that are attribute names, keywords, parameters or plain assignment targets."""
    if is_a(parent, cst.Attribute):
        return parent.value is name
    if is_a(parent, cst.Arg):
        return parent.value is name
    return not is_a(parent, (cst.Param, cst.AssignTarget, cst.FunctionDef, cst.ClassDef, cst.ImportAlias, cst.AsName))


def unpacked_position(assign: cst.Assign, name: str) -> int | None:
    """Where `name` sits in a flat tuple target with no starred element (`a, name, c = ...`)."""
    for target in assign.targets:
        elements = target.target.elements if is_a(target.target, (cst.Tuple, cst.List)) else ()
        if any(is_a(e, cst.StarredElement) for e in elements):
            continue
        for position, element in enumerate(elements):
            if is_a(element.value, cst.Name) and element.value.value == name:
                return position
    return None


def unpacked_shape(assign: cst.Assign, name: str) -> tuple[cst.BaseExpression, int] | None:
    """For a name unpacked from a tensor's shape, the tensor and the axis whose size the name holds.

    Ex) `b, n, h, d = k.shape` (or `k.size()`): `h` is axis 2 of `k`
    Ex) `B, T, H, K, V = *k.shape, v.shape[-1]`: the names the starred shape binds, counted from its start
    """
    for target in assign.targets:
        lefts = list(target.target.elements) if is_a(target.target, (cst.Tuple, cst.List)) else []
        if any(is_a(e, cst.StarredElement) for e in lefts):
            continue
        rights = list(assign.value.elements) if is_a(assign.value, (cst.Tuple, cst.List)) else None
        stars = [i for i, e in enumerate(rights) if is_a(e, cst.StarredElement)] if rights else []
        if rights is None:
            start, end, shape = 0, len(lefts), assign.value
        elif len(stars) == 1:
            start, end, shape = stars[0], len(lefts) - (len(rights) - stars[0] - 1), rights[stars[0]].value
        else:
            continue
        tensor = _shape_of(shape)
        if tensor is None:
            continue
        for position, element in enumerate(lefts[start:end]):
            if is_a(element.value, cst.Name) and element.value.value == name:
                return tensor, position
    return None


def _shape_of(expr: cst.BaseExpression) -> cst.BaseExpression | None:
    """The tensor of `t.shape` or `t.size()`."""
    if is_a(expr, cst.Attribute) and expr.attr.value == "shape":
        return expr.value
    if is_a(expr, cst.Call) and not expr.args and is_a(expr.func, cst.Attribute) and expr.func.attr.value == "size":
        return expr.func.value
    return None


def _unpacked_value(target: cst.BaseExpression, name: str, value: cst.BaseExpression) -> cst.BaseExpression | None:
    """For `a, b = x, y` the element that binds `name`; None when the right side is not a literal tuple.

    Ex) `b, t, d_h, d, heads = *q.shape, self.dim, self.heads`: the names after a starred element of
        unknown length bind the elements after it, counted from the end (and those before it from the start)
    """
    if not is_a(target, (cst.Tuple, cst.List)) or not is_a(value, (cst.Tuple, cst.List)):
        return None
    lefts, rights = list(target.elements), list(value.elements)
    if any(is_a(element, cst.StarredElement) for element in lefts):
        return None
    stars = [i for i, element in enumerate(rights) if is_a(element, cst.StarredElement)]
    if len(stars) == 1 and len(lefts) >= len(rights) - 1:
        star = stars[0]
        after = len(rights) - star - 1
        pairs = list(zip(lefts[:star], rights[:star], strict=True))
        pairs += list(zip(lefts[len(lefts) - after :], rights[star + 1 :], strict=True)) if after else []
    elif not stars and len(lefts) == len(rights):
        pairs = list(zip(lefts, rights, strict=True))
    else:
        return None
    for left, right in pairs:
        if is_a(left.value, cst.Name) and left.value.value == name:
            return right.value
    return None
