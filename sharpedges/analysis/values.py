"""What an expression can be: the source expressions a value may come from, with one depth budget.

Local names follow their reaching definitions (every form `dataflow` records with a known value:
plain, chained and annotated assignments, literal tuple unpacking, walrus), both branches of an `if`
statement and of a conditional expression, `self.x` follows every assignment of the attribute in the
class, and a name no function defines follows the module-level assignments (constants, script code).
The answer is None whenever some path is unknown (a parameter, an unpacked call result), so a caller
never mistakes "not resolved" for "resolved to nothing".
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

import libcst as cst

from sharpedges.analysis.calls import argument, is_false, is_true, literal_number, literal_string, method_name, receiver
from sharpedges.analysis.classes import self_attribute
from sharpedges.analysis.context import FileContext
from sharpedges.analysis.dataflow import BRANCH_TYPES, Definition
from sharpedges.analysis.names import dotted
from sharpedges.analysis.project import imported_constant
from sharpedges.analysis.vocabulary import CAST_METHODS, TENSOR_LITERALS, Kernel
from sharpedges.analysis.walk import HELPER_SCOPES, is_a

MAX_DEPTH = 8


def possible_values(
    ctx: FileContext, expr: cst.BaseExpression | None, at: int | None = None, depth: int = 0
) -> list[cst.BaseExpression] | None:
    """Every expression `expr` may evaluate to at pre-order point `at`, or None when one is unknown."""
    if expr is None or depth > MAX_DEPTH:
        return None
    at = ctx.order(expr) if at is None else at
    if is_a(expr, cst.IfExp):
        body = possible_values(ctx, expr.body, at, depth + 1)
        orelse = possible_values(ctx, expr.orelse, at, depth + 1)
        return None if body is None or orelse is None else body + orelse
    if is_a(expr, cst.Name):
        return _name(ctx, expr, at, depth)
    attr = self_attribute(expr)
    if attr is not None:
        return _attribute(ctx, expr, attr, depth)
    return [expr]


def _name(ctx: FileContext, name: cst.Name, at: int, depth: int) -> list[cst.BaseExpression] | None:
    function = ctx.function_of(name)
    if function is not None:
        facts = ctx.function_facts(function)
        definitions = facts.reaching(name.value, at)
        if definitions:
            found: list[cst.BaseExpression] = []
            for definition in definitions:
                values = (
                    _loop_element(ctx, definition, name.value, depth)
                    if definition.kind == "loop"
                    else _joined(
                        ctx, [(definition.value if definition.kind == "assign" else None, definition.order)], depth
                    )
                )
                if values is None:
                    return None
                found += values
            return list(dict.fromkeys(found))  # two definitions may hold one value
        if name.value in facts.parameters:
            return None
    assignments = module_assignments(ctx).get(name.value)
    if assignments is None:
        return [name]  # a builtin (`True`, `None`) or an import: the name itself
    return _joined(ctx, assignments, depth)


# -- loops over containers: `for attn, v in zip(attentions, values)` ---------------------------------------
# Methods that add their argument(s) to a container: (method, position of the argument, many or one).
ADDING_METHODS = {"append": (0, False), "extend": (0, True), "insert": (1, False), "add_module": (1, False)}


def container_additions(
    ctx: FileContext, function: cst.FunctionDef
) -> dict[str, list[tuple[cst.Call, cst.BaseExpression, bool]]]:
    """Container (`layers`, `self.layers`) -> (call, what it adds, whether that is many), once per function."""
    memo: dict[cst.FunctionDef, dict[str, list[tuple[cst.Call, cst.BaseExpression, bool]]]] = ctx.memo(
        "values.container_additions", dict
    )
    found = memo.get(function)
    if found is None:
        found = memo[function] = {}
        for call in ctx.index.descendants(function.body, cst.Call, prune=HELPER_SCOPES):
            adding = ADDING_METHODS.get(method_name(call) or "")
            container = receiver(call)
            if adding is None or container is None:
                continue
            if not is_a(container, cst.Name) and self_attribute(container) is None:
                continue
            position, many = adding
            args = [arg for arg in call.args if arg.keyword is None and not arg.star]
            if len(args) > position:
                found.setdefault(dotted(container) or "", []).append((call, args[position].value, many))
    return found


def _loop_element(ctx: FileContext, definition: Definition, name: str, depth: int) -> list[cst.BaseExpression] | None:
    """What a loop target binds `name` to: the part of one element of the iterable that the target's
    unpacking gives it. Ex) `attn` in `for i, (attn, v) in enumerate(zip(attentions, values))` is an
    element of `attentions`: what its list literal holds and what the function appends to it."""
    node = definition.node
    if not is_a(node, (cst.For, cst.CompFor)):
        return None
    path = _unpacking_path(node.target, name)
    return None if path is None else _element(ctx, node.iter, path, definition.order, depth + 1)


def _unpacking_path(target: cst.BaseExpression, name: str) -> tuple[int, ...] | None:
    """The positions that lead from a loop's element to `name` in its target: () for `for x in`, (1, 0)
    for `for i, (x, y) in`."""
    if is_a(target, cst.Name):
        return () if target.value == name else None
    if is_a(target, (cst.Tuple, cst.List)) and not any(is_a(e, cst.StarredElement) for e in target.elements):
        for position, element in enumerate(target.elements):
            inner = _unpacking_path(element.value, name)
            if inner is not None:
                return (position, *inner)
    return None


def _element(
    ctx: FileContext, iterable: cst.BaseExpression, path: tuple[int, ...], at: int, depth: int
) -> list[cst.BaseExpression] | None:
    """What the part at `path` of one element of `iterable` may be: `zip` and `enumerate` pair their
    arguments' elements, `reversed` keeps them; a literal tuple or list, or a local list built empty and
    grown by `.append`, holds the values it is given. None when some element is unknown."""
    if depth > MAX_DEPTH:
        return None
    if is_a(iterable, cst.Call):
        qualified = ctx.callee(iterable)
        args = [arg.value for arg in iterable.args if arg.keyword is None and not arg.star]
        if qualified == "reversed" and len(args) == len(iterable.args) == 1:
            return _element(ctx, args[0], path, at, depth + 1)
        if qualified == "zip" and path and len(args) == len(iterable.args) and path[0] < len(args):
            return _element(ctx, args[path[0]], path[1:], at, depth + 1)
        if qualified == "enumerate" and path and args and path[0] == 1:
            return _element(ctx, args[0], path[1:], at, depth + 1)
        return None
    if is_a(iterable, (cst.Tuple, cst.List)):
        return _parts(ctx, _literal_items(iterable), path, at, depth)
    if is_a(iterable, cst.Name):
        function = ctx.function_of(iterable)
        if function is None:
            return None
        definitions = ctx.function_facts(function).reaching(iterable.value, at)
        if len(definitions) != 1 or definitions[0].kind != "assign":
            return None
        items = _literal_items(definitions[0].value)
        for _call, added, many in container_additions(ctx, function).get(iterable.value, ()):
            more = _literal_items(added) if many else [added]
            items = None if items is None or more is None else items + more
        return _parts(ctx, items, path, at, depth)
    return None


def _literal_items(expr: cst.BaseExpression | None) -> list[cst.BaseExpression] | None:
    """The elements of a literal tuple or list with no starred element."""
    if not is_a(expr, (cst.Tuple, cst.List)) or any(is_a(e, cst.StarredElement) for e in expr.elements):
        return None
    return [e.value for e in expr.elements]


def _parts(
    ctx: FileContext, items: list[cst.BaseExpression] | None, path: tuple[int, ...], at: int, depth: int
) -> list[cst.BaseExpression] | None:
    """What the part at `path` of any of `items` may be."""
    if items is None:
        return None
    found: list[cst.BaseExpression] = []
    for item in items:
        if path:
            parts = _literal_items(item)
            if parts is None or path[0] >= len(parts):
                return None
            values = _parts(ctx, [parts[path[0]]], path[1:], at, depth)
        else:
            values = possible_values(ctx, item, ctx.order(item), depth + 1)
        if values is None:
            return None
        found += values
    return found


def _attribute(ctx: FileContext, expr: cst.BaseExpression, attr: str, depth: int) -> list[cst.BaseExpression] | None:
    """`self.attr`: what the class assigns it, or else the nearest base class of this file that does
    (a subclass that only overrides `forward`); None when a base of another module may set it."""
    cls = ctx.class_of(expr)
    seen: set[cst.ClassDef] = set()
    while cls is not None and cls not in seen:
        seen.add(cls)
        assignments = ctx.class_facts(cls).assignments.get(attr)
        if assignments:
            return _joined(ctx, [(a.value, ctx.order(a.node)) for a in assignments], depth)
        cls = _only_project_base(ctx, cls)
    return None  # set by a base class of another module, or from outside


def _only_project_base(ctx: FileContext, cls: cst.ClassDef) -> cst.ClassDef | None:
    """The one base class of `cls` defined at the top of this file, when every other base is torch's."""
    if len(ctx.class_facts(cls).base_names()) != len(cls.bases):
        return None  # a base it cannot name
    local = [name for name in ctx.class_facts(cls).base_names() if not name.startswith("torch.")]
    return ctx.top_level_classes().get(local[0]) if len(local) == 1 else None


def _joined(
    ctx: FileContext, sources: list[tuple[cst.BaseExpression | None, int]], depth: int
) -> list[cst.BaseExpression] | None:
    found: list[cst.BaseExpression] = []
    for value, order in sources:
        values = possible_values(ctx, value, order, depth + 1) if value is not None else None
        if values is None:
            return None
        found.extend(values)
    return found


def constant_number(ctx: FileContext, expr: cst.BaseExpression | None, depth: int = 0) -> float | None:
    """The number an expression is when the code spells it out: a literal, `float("-1e9")`, `-BIG`,
    `torch.tensor(-1e9)`, a name or `self.` attribute every possible value of which is that number (a
    local, `NEG_INF = -1e9` at the top of the file, `self.neg = -1e9` set once), or a constant a project
    module binds and this file imports."""
    if expr is None or depth > MAX_DEPTH:
        return None
    number = literal_number(expr)
    if number is not None:
        return number
    if is_a(expr, cst.UnaryOperation) and is_a(expr.operator, cst.Minus):
        inner = constant_number(ctx, expr.expression, depth + 1)
        return -inner if inner is not None else None
    if is_a(expr, cst.Call) and dotted(expr.func) == "float" and len(expr.args) == 1:
        text = literal_string(expr.args[0].value)
        if text is None:
            return constant_number(ctx, expr.args[0].value, depth + 1)
        try:
            return float(text)
        except ValueError:
            return None
    if is_a(expr, cst.Call) and ctx.callee(expr) in TENSOR_LITERALS and expr.args:
        return constant_number(ctx, expr.args[0].value, depth + 1)  # Ex) torch.tensor(-1e9)
    if is_a(expr, cst.Call) and method_name(expr) in CAST_METHODS and (held := receiver(expr)) is not None:
        return constant_number(ctx, held, depth + 1)  # Ex) self.masked_bias.to(scores.dtype): the same number
    if not is_a(expr, cst.Name) and self_attribute(expr) is None:
        return None
    values = possible_values(ctx, expr)
    if values is None and (attr := self_attribute(expr)) is not None and (cls := ctx.class_of(expr)) is not None:
        # Ex) self.register_buffer("masked_bias", torch.tensor(-1e9))
        values = [value for _, value in registered_buffers(ctx, cls).get(attr, ())] or None
    if values == [expr]:  # Ex) from .constants import NEG_INF, with NEG_INF = -1e9 over there
        return imported_constant(ctx, expr.value) if is_a(expr, cst.Name) else None
    numbers = {constant_number(ctx, value, depth + 1) for value in values or ()}
    return numbers.pop() if len(numbers) == 1 else None


def multiplied_constants(
    ctx: FileContext, expr: cst.BaseExpression, depth: int = 0
) -> list[tuple[cst.BaseExpression, float]]:
    """The spelled-out numbers the terms of an expression are multiplied by, with where each is written:
    `(1.0 - mask) * -1e9` gives -1e9, and so does a name or a helper of the file that returns it
    (`ext = get_extended_mask(mask)`), through casts and reshapes."""
    if depth > MAX_DEPTH:
        return []
    # Helpers that return calls of helpers (an analysis module's own code) would make the paths grow
    # exponentially: each expression's answer is computed once per file (a cycle adds nothing).
    known: dict[cst.BaseExpression, list[tuple[cst.BaseExpression, float]]] = ctx.memo(
        "values.multiplied_constants", dict
    )
    if expr not in known:
        known[expr] = []
        known[expr] = _multiplied_constants(ctx, expr, depth)
    return known[expr]


def _multiplied_constants(
    ctx: FileContext, expr: cst.BaseExpression, depth: int
) -> list[tuple[cst.BaseExpression, float]]:
    from sharpedges.analysis.summaries import called_function, return_values
    from sharpedges.analysis.vocabulary import CAST_METHODS, SHAPE_ONLY_METHODS

    if is_a(expr, cst.BinaryOperation):
        if is_a(expr.operator, cst.Multiply):
            found = []
            for side in (expr.left, expr.right):
                number = constant_number(ctx, side)
                found += [(side, number)] if number is not None else multiplied_constants(ctx, side, depth + 1)
            return found
        if is_a(expr.operator, (cst.Add, cst.Subtract)):
            return multiplied_constants(ctx, expr.left, depth + 1) + multiplied_constants(ctx, expr.right, depth + 1)
        return []
    if is_a(expr, cst.UnaryOperation):
        return multiplied_constants(ctx, expr.expression, depth + 1)
    if is_a(expr, cst.Subscript):
        return multiplied_constants(ctx, expr.value, depth + 1)
    if is_a(expr, cst.Call):
        inner = receiver(expr)
        if method_name(expr) in SHAPE_ONLY_METHODS | CAST_METHODS and inner is not None:
            return multiplied_constants(ctx, inner, depth + 1)
        helper = called_function(ctx, expr)
        if helper is None:
            return []
        return [
            found for value in return_values(ctx, helper[0]) for found in multiplied_constants(ctx, value, depth + 1)
        ]
    values = possible_values(ctx, expr) if is_a(expr, cst.Name) or self_attribute(expr) is not None else None
    if not values or values == [expr]:
        return []
    return [found for value in values if value is not None for found in multiplied_constants(ctx, value, depth + 1)]


def module_assignments(ctx: FileContext) -> dict[str, list[tuple[cst.BaseExpression | None, int]]]:
    """Name -> (value, order) of each plain assignment outside functions and classes (value None for
    any other binding: an import, a loop, an unpacked tuple)."""

    def compute() -> dict[str, list[tuple[cst.BaseExpression | None, int]]]:
        found: dict[str, list[tuple[cst.BaseExpression | None, int]]] = {}
        for node in ctx.index.nodes(cst.Assign):
            if ctx.index.enclosing(node, (cst.FunctionDef, cst.ClassDef, cst.Lambda)) is not None:
                continue
            for target in node.targets:
                if is_a(target.target, cst.Name):
                    found.setdefault(target.target.value, []).append((node.value, ctx.order(node)))
                else:
                    for name in ctx.index.descendants(target.target, cst.Name):
                        found.setdefault(name.value, []).append((None, ctx.order(node)))
        return found

    return ctx.memo("module_assignments", compute)


def fixed_at_construction(ctx: FileContext, expr: cst.BaseExpression | None, depth: int = 0) -> bool:
    """Whether `expr` is a flag each instance fixes when it is built: `self.causal` where every
    assignment of the attribute is `__init__` storing one of its own parameters (or a literal), or a
    local copied from one. It is true for the instances built with it, whatever the default.

    Ex) `def __init__(self, causal=False): self.causal = causal`, then `is_causal=self.causal`
    """
    if expr is None or depth > MAX_DEPTH:
        return False
    if is_a(expr, cst.Name) and (function := ctx.function_of(expr)) is not None:
        definitions = ctx.function_facts(function).reaching(expr.value, ctx.order(expr))
        return bool(definitions) and all(
            d.kind == "assign" and (is_true(d.value) or fixed_at_construction(ctx, d.value, depth + 1))
            for d in definitions
        )
    attr = self_attribute(expr)
    cls = ctx.class_of(expr) if attr is not None else None
    assignments = ctx.class_facts(cls).assignments.get(attr, []) if cls is not None and attr is not None else []
    for assignment in assignments:
        method = ctx.function_of(assignment.node)
        if method is None or method.name.value != "__init__":
            return False
        value = assignment.value
        stored_parameter = is_a(value, cst.Name) and [
            d.kind for d in ctx.function_facts(method).reaching(value.value, ctx.order(assignment.node))
        ] == ["param"]
        if not (stored_parameter or is_true(value) or is_false(value)):
            return False
    return bool(assignments)


# -- keyword arguments that travel in dicts: `f(**kwargs)` ---------------------------------------------
class Unknown(enum.Enum):
    """A `**d` may pass the argument and the model cannot tell: never read it as absent."""

    UNKNOWN = "unknown"


UNKNOWN: Final = Unknown.UNKNOWN
PassedArgument = cst.BaseExpression | None | Unknown  # the expression, None when absent, or UNKNOWN


@dataclass(frozen=True)
class KeyState:
    """What a dict holds under one key at a point: `values` when it holds the key (one per path), an
    empty tuple when it does not, None when the model cannot tell."""

    values: tuple[cst.BaseExpression, ...] | None

    @property
    def unknown(self) -> bool:
        return self.values is None


ABSENT = KeyState(())
UNKNOWN_KEY = KeyState(None)
DICT_READS = frozenset({"get", "keys", "items", "values", "copy", "__contains__", "__getitem__"})
DICT_COPIES = frozenset({"copy.copy", "copy.deepcopy", "dict"})


def passed_argument(
    ctx: FileContext, call: cst.Call, keyword: str | None, position: int | None = None
) -> PassedArgument:
    """The argument a call passes as `keyword=` or at `position`, also when it travels in a dict:
    `f(q, k, v, **attn_kwargs)` with `attn_kwargs = dict(dropout_p=p)` (or `{...}`, `d["k"] = v`,
    `d.update(k=v)`, `{**a, "k": v}`, `setdefault`, `pop`, both branches of an `if`, a `**kwargs`
    parameter whose callers in the file pass the keyword). UNKNOWN when a `**d` or `*args` may pass it
    and the model cannot tell which value, or whether at all."""
    found = argument(call, keyword) if keyword is not None else None
    if found is not None:
        return found
    if position is not None:
        leading = 0
        for arg in call.args:
            if arg.star == "*":
                return UNKNOWN  # Ex) f(q, *rest): the rest may land there
            if arg.keyword is None and not arg.star:
                if leading == position:
                    return arg.value
                leading += 1
    if keyword is None:
        return None
    state = ABSENT
    for arg in call.args:
        if arg.star == "**":
            state = _merged(state, dict_key(ctx, arg.value, keyword, ctx.order(arg.value)))
    if state.unknown:
        return UNKNOWN
    if not state.values:
        return None
    first = state.values[0]
    return first if all(ctx.code(value) == ctx.code(first) for value in state.values) else UNKNOWN


def _merged(state: KeyState, later: KeyState) -> KeyState:
    """`{**a, **b}` under one key: b's value wins where b holds it."""
    if later.unknown:
        return UNKNOWN_KEY
    return later if later.values else state


def _joined_states(states: list[KeyState]) -> KeyState:
    """One of several paths: known only when every path agrees on holding the key or not."""
    if not states or any(state.unknown for state in states):
        return UNKNOWN_KEY
    if all(state.values for state in states):
        return KeyState(tuple(value for state in states for value in state.values or ()))
    return ABSENT if not any(state.values for state in states) else UNKNOWN_KEY


def dict_key(ctx: FileContext, expr: cst.BaseExpression, key: str, at: int, depth: int = 0) -> KeyState:
    """What the dict `expr` evaluates to holds under `key` at pre-order point `at`."""
    if depth > MAX_DEPTH:
        return UNKNOWN_KEY
    if is_a(expr, cst.Dict):
        state = ABSENT
        for element in expr.elements:
            if not is_a(element, cst.DictElement):  # Ex) {**kwargs, "causal": True}
                state = _merged(state, dict_key(ctx, element.value, key, at, depth + 1))
                continue
            name = literal_string(element.key)
            if name is None:
                state = UNKNOWN_KEY  # Ex) {f"{prefix}causal": ...}: a later literal may still set it
            elif name == key:
                state = KeyState((element.value,))
        return state
    if is_a(expr, cst.Call):
        return _called_dict(ctx, expr, key, at, depth)
    if is_a(expr, cst.BinaryOperation) and is_a(expr.operator, cst.BitOr):
        left = dict_key(ctx, expr.left, key, at, depth + 1)
        return _merged(left, dict_key(ctx, expr.right, key, at, depth + 1))
    if is_a(expr, cst.IfExp):
        branches = [dict_key(ctx, branch, key, at, depth + 1) for branch in (expr.body, expr.orelse)]
        return _joined_states(branches)
    if is_a(expr, cst.Name) and (function := ctx.function_of(expr)) is not None:
        memo: dict[tuple[cst.FunctionDef, str, str, int], KeyState] = ctx.memo("values.named_dicts", dict)
        found = memo.get((function, expr.value, key, at))
        if found is None:
            found = memo[function, expr.value, key, at] = _named_dict(ctx, function, expr.value, key, at, depth)
        return found
    attr = self_attribute(expr)
    if attr is not None and (cls := ctx.class_of(expr)) is not None:
        return _attribute_dict(ctx, cls, attr, key, depth)
    return UNKNOWN_KEY


def _called_dict(ctx: FileContext, call: cst.Call, key: str, at: int, depth: int) -> KeyState:
    """`dict(a, k=v, **b)`, `a.copy()`, `copy.copy(a)`; anything else is not known to be a dict."""
    qualified = ctx.callee(call)
    if qualified in DICT_COPIES:
        positional = [arg for arg in call.args if arg.keyword is None and not arg.star]
        if len(positional) > 1 or any(arg.star == "*" for arg in call.args):
            return UNKNOWN_KEY
        state = dict_key(ctx, positional[0].value, key, at, depth + 1) if positional else ABSENT
        for arg in call.args:
            if arg.star == "**":
                state = _merged(state, dict_key(ctx, arg.value, key, at, depth + 1))
            elif arg.keyword is not None and arg.keyword.value == key:
                state = KeyState((arg.value,))
        return state if qualified == "dict" or not call.args[1:] else UNKNOWN_KEY
    inner = receiver(call)
    if method_name(call) == "copy" and inner is not None and not call.args:
        return dict_key(ctx, inner, key, at, depth + 1)
    from sharpedges.analysis.summaries import called_function, return_values

    helper = called_function(ctx, call)  # Ex) **self._attention_kwargs(), a method that returns dict(...)
    if helper is None:
        return UNKNOWN_KEY
    returned = return_values(ctx, helper[0])
    return _joined_states([dict_key(ctx, value, key, ctx.order(value), depth + 1) for value in returned])


def _named_dict(ctx: FileContext, function: cst.FunctionDef, name: str, key: str, at: int, depth: int) -> KeyState:
    """A local dict: each reaching definition, then what the function does to it on the way to `at`."""
    facts = ctx.function_facts(function)
    definitions = facts.reaching(name, at)
    if not definitions:
        return UNKNOWN_KEY
    states = []
    for definition in definitions:
        if definition.kind == "assign" and definition.value is not None:
            state = dict_key(ctx, definition.value, key, definition.order, depth + 1)
        elif (
            definition.kind == "augassign"
            and definition.value is not None
            and is_a(definition.operator, cst.BitOrAssign)
        ):
            before = _named_dict(ctx, function, name, key, ctx.order(definition.node), depth + 1)
            state = _merged(before, dict_key(ctx, definition.value, key, definition.order, depth + 1))
        elif definition.kind == "param" and function.params.star_kwarg is definition.node:
            state = _collected_keywords(ctx, function, key, depth)
        else:
            state = UNKNOWN_KEY
        states.append(_changed(ctx, function, name, key, definition.order, at, state))
    return _joined_states(states)


def _attribute_dict(ctx: FileContext, cls: cst.ClassDef, attr: str, key: str, depth: int) -> KeyState:
    """`self.attn_kwargs`: every dict the class assigns it (any may be the one read), when no method of the
    class changes it in place and nothing outside the class can (it is set in the class, not a base)."""
    assignments = ctx.class_facts(cls).assignments.get(attr)
    if not assignments or any(a.value is None or not is_a(a.node, (cst.Assign, cst.AnnAssign)) for a in assignments):
        return UNKNOWN_KEY
    for node in ctx.index.descendants(cls, cst.Attribute):
        if self_attribute(node) == attr and _attribute_changed(ctx, node, key):
            return UNKNOWN_KEY  # Ex) self.attn_kwargs["is_causal"] = True in some method
    return _joined_states(
        [dict_key(ctx, a.value, key, ctx.order(a.node), depth + 1) for a in assignments if a.value is not None]
    )


def _attribute_changed(ctx: FileContext, node: cst.Attribute, key: str) -> bool:
    """Whether this `self.x` changes the dict it holds, itself or through a local that copies the
    reference (`kwargs = self.attn_kwargs`, then `kwargs["k"] = v`)."""
    parent = ctx.index.parents.get(node)
    if is_a(parent, (cst.AssignTarget, cst.AnnAssign)):
        return False  # an assignment of the attribute: read as one of its values
    if not is_a(parent, cst.Assign) or parent.value is not node:
        return _change(ctx, node, key, ABSENT) is not None
    function = ctx.function_of(node)
    names = [target.target.value for target in parent.targets if is_a(target.target, cst.Name)]
    if function is None or len(names) != len(parent.targets):
        return True
    facts = ctx.function_facts(function)
    after = ctx.index.last_order(parent)
    return any(_change(ctx, use, key, ABSENT) is not None for name in names for use in facts.later_uses(name, after))


def _changed(
    ctx: FileContext, function: cst.FunctionDef, name: str, key: str, after: int, at: int, state: KeyState
) -> KeyState:
    """`state` after what the function does to the dict between its definition and `at`: `d["k"] = v`,
    `del d["k"]`, `d.update(...)`, `d.setdefault("k", v)`, `d.pop("k")`, `d.clear()`. A change under a
    branch that `at` is not in may not have run (both arms of an `if` are joined); a use the model does
    not know (the dict passed to a call, aliased, stored) may change anything."""
    uses = [use for use in ctx.function_facts(function).uses.get(name, ()) if after < ctx.order(use) < at]
    return _applied(ctx, function, uses, key, at, state)


def _applied(
    ctx: FileContext, scope: cst.CSTNode, uses: list[cst.Name], key: str, at: int, state: KeyState
) -> KeyState:
    """The uses in order, each inside `scope`, which runs on every path to `at` that this state stands for."""
    index = ctx.index
    position = 0
    while position < len(uses):
        use = uses[position]
        branch = None
        for ancestor in index.ancestors(use):
            if ancestor is scope:
                break
            if is_a(ancestor, BRANCH_TYPES) and not ctx.order(ancestor) < at <= index.last_order(ancestor):
                branch = ancestor  # the outermost branch `at` is not in
        if branch is None:
            changed = _change(ctx, use, key, state)
            state = state if changed is None else changed
            position += 1
            continue
        group = [u for u in uses[position:] if index.contains(branch, u)]
        position += len(group)
        state = _through_branch(ctx, branch, group, key, at, state)
    return state


def _through_branch(
    ctx: FileContext, branch: cst.CSTNode, uses: list[cst.Name], key: str, at: int, state: KeyState
) -> KeyState:
    if not is_a(branch, cst.If):
        return _joined_states([state, _applied(ctx, branch, uses, key, at, state)])
    contains = ctx.index.contains
    state = _applied(ctx, branch.test, [u for u in uses if contains(branch.test, u)], key, at, state)
    body = _applied(ctx, branch.body, [u for u in uses if contains(branch.body, u)], key, at, state)
    orelse, rest = branch.orelse, [u for u in uses if branch.orelse is not None and contains(branch.orelse, u)]
    if is_a(orelse, cst.If):
        other = _through_branch(ctx, orelse, rest, key, at, state)
    else:
        other = _applied(ctx, orelse, rest, key, at, state) if orelse is not None else state
    return _joined_states([body, other])


def _change(ctx: FileContext, use: cst.Name | cst.Attribute, key: str, state: KeyState) -> KeyState | None:
    """What one use of a dict does to it under `key`: the new state, or None when it only reads it."""
    parents = ctx.index.parents
    parent = parents.get(use)
    if is_a(parent, cst.Subscript) and parent.value is use:
        holder = parents.get(parent)
        slot = parent.slice[0].slice if len(parent.slice) == 1 else None
        named = literal_string(slot.value) if is_a(slot, cst.Index) else None
        if is_a(holder, cst.AssignTarget):
            assign = parents.get(holder)
            if named is None:
                return UNKNOWN_KEY
            return KeyState((assign.value,)) if named == key and is_a(assign, cst.Assign) else state
        if is_a(holder, cst.AnnAssign) and holder.target is parent and holder.value is not None:
            return KeyState((holder.value,)) if named == key else UNKNOWN_KEY if named is None else state
        stored = is_a(holder, (cst.AugAssign, cst.For, cst.CompFor)) and holder.target is parent
        if stored or is_a(holder, (cst.Element, cst.StarredElement)):
            return UNKNOWN_KEY if named in (None, key) else state  # Ex) d["a"], d["b"] = pair
        if is_a(holder, cst.Del):
            return UNKNOWN_KEY if named is None else ABSENT if named == key else state
        return None  # Ex) d["k"] read
    if is_a(parent, cst.Attribute) and parent.value is use:
        call = parents.get(parent)
        method = parent.attr.value
        if not is_a(call, cst.Call) or call.func is not parent:
            return UNKNOWN_KEY
        if method in DICT_READS:
            return None
        return _changed_by_method(ctx, call, method, key, state)
    if is_a(parent, cst.Arg) and parent.star == "**":
        return None
    if is_a(parent, (cst.StarredDictElement, cst.ComparisonTarget, cst.Comparison, cst.If, cst.While)):
        return None  # Ex) {**d, ...}, "k" in d, if d:
    return UNKNOWN_KEY


def _changed_by_method(ctx: FileContext, call: cst.Call, method: str, key: str, state: KeyState) -> KeyState:
    positional = [arg.value for arg in call.args if arg.keyword is None and not arg.star]
    if method == "update":
        if any(arg.star == "*" for arg in call.args) or len(positional) > 1:
            return UNKNOWN_KEY
        if positional:
            state = _merged(state, dict_key(ctx, positional[0], key, ctx.order(call)))
        for arg in call.args:
            if arg.star == "**":
                state = _merged(state, dict_key(ctx, arg.value, key, ctx.order(arg.value)))
            elif arg.keyword is not None and arg.keyword.value == key:
                state = KeyState((arg.value,))
        return state
    named = literal_string(positional[0]) if positional else None
    if method in ("setdefault", "pop"):
        if named is None:
            return UNKNOWN_KEY
        if named != key:
            return state
        if method == "pop":
            return ABSENT
        if state.unknown:
            return UNKNOWN_KEY  # Ex) the caller's value or this default
        return state if state.values else KeyState((positional[1],) if len(positional) > 1 else (cst.Name("None"),))
    if method == "clear":
        return ABSENT
    return UNKNOWN_KEY  # popitem, __setitem__, a method the model does not know


def _collected_keywords(ctx: FileContext, function: cst.FunctionDef, key: str, depth: int) -> KeyState:
    """`**kwargs` under `key`: what the calls of the function in this file pass by that keyword. A key
    every caller passes is known; that no caller passes it is known only for a function nested in
    another (callers elsewhere may pass it)."""
    from sharpedges.analysis.summaries import call_sites, constructions

    params = function.params
    if key in {p.name.value for p in (*params.posonly_params, *params.params, *params.kwonly_params)}:
        return ABSENT  # a named parameter takes it
    cls = ctx.class_of(function)
    if (
        cls is not None
        and function.name.value == "__init__"
        and ctx.class_facts(cls).methods.get("__init__") is function
    ):
        calls = constructions(ctx, cls)
    else:
        calls = [call for call, _ in call_sites(ctx, function, forwarded=False)]
    states = []
    for call in calls:
        state = ABSENT
        for arg in call.args:
            if arg.star == "**":
                state = _merged(state, dict_key(ctx, arg.value, key, ctx.order(arg.value), depth + 1))
            elif arg.keyword is not None and arg.keyword.value == key:
                state = KeyState((arg.value,))
        states.append(state)
    joined = _joined_states(states)
    nested = ctx.index.enclosing(function, (cst.FunctionDef, cst.Lambda)) is not None
    return joined if joined.values or (nested and not joined.unknown) else UNKNOWN_KEY


def kernel_argument(ctx: FileContext, call: cst.Call, kernel: Kernel, meaning: str) -> PassedArgument:
    """The argument of this meaning a kernel call passes (`passed_argument`): None when it passes none."""
    slot = kernel.slot(meaning)
    return passed_argument(ctx, call, *slot) if slot is not None else None


# -- buffers --------------------------------------------------------------------------------------
def registered_buffers(
    ctx: FileContext, cls: cst.ClassDef
) -> dict[str, list[tuple[cst.FunctionDef, cst.BaseExpression]]]:
    """`self.register_buffer("bias", value)` per buffer name, with the method that registers it."""

    def compute():
        found: dict[str, list] = {}
        for method in ctx.class_facts(cls).methods.values():
            for call in ctx.index.descendants(method.body, cst.Call, prune=(cst.ClassDef,)):
                if (
                    method_name(call) == "register_buffer"
                    and is_a(target := receiver(call), cst.Name)
                    and target.value == "self"
                ):
                    name = argument(call, "name", 0)
                    value = argument(call, "tensor", 1)
                    if is_a(name, cst.SimpleString) and is_a(buffer := name.evaluated_value, str) and value is not None:
                        found.setdefault(buffer, []).append((method, value))
        return found

    return ctx.memo(("registered_buffers", cls), compute)
