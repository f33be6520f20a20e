"""What an expression can be: the source expressions a value may come from, with one depth budget.

Local names follow their reaching definitions (every form `dataflow` records with a known value:
plain, chained and annotated assignments, literal tuple unpacking, walrus), both branches of an `if`
statement and of a conditional expression, `self.x` follows every assignment of the attribute in the
class, and a name no function defines follows the module-level assignments (constants, script code).
The answer is None whenever some path is unknown (a parameter, an unpacked call result), so a caller
never mistakes "not resolved" for "resolved to nothing".
"""

from __future__ import annotations

import libcst as cst

from sharpedges.analysis.calls import is_true, literal_number, literal_string
from sharpedges.analysis.classes import self_attribute
from sharpedges.analysis.context import FileContext
from sharpedges.analysis.names import dotted
from sharpedges.analysis.project import imported_constant
from sharpedges.analysis.vocabulary import TENSOR_LITERALS
from sharpedges.analysis.walk import is_a

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
            return _joined(ctx, [(d.value if d.kind == "assign" else None, d.order) for d in definitions], depth)
        if name.value in facts.parameters:
            return None
    assignments = module_assignments(ctx).get(name.value)
    if assignments is None:
        return [name]  # a builtin (`True`, `None`) or an import: the name itself
    return _joined(ctx, assignments, depth)


def _attribute(ctx: FileContext, expr: cst.BaseExpression, attr: str, depth: int) -> list[cst.BaseExpression] | None:
    cls = ctx.class_of(expr)
    if cls is None:
        return None
    assignments = ctx.class_facts(cls).assignments.get(attr)
    if not assignments:
        return None  # set by a base class or from outside
    return _joined(ctx, [(a.value, ctx.order(a.node)) for a in assignments], depth)


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
    if not is_a(expr, cst.Name) and self_attribute(expr) is None:
        return None
    values = possible_values(ctx, expr)
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
    from sharpedges.analysis.calls import method_name, receiver
    from sharpedges.analysis.summaries import called_function, return_values
    from sharpedges.analysis.vocabulary import CAST_METHODS, SHAPE_ONLY_METHODS

    if depth > MAX_DEPTH:
        return []
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
        if not (stored_parameter or is_true(value) or (is_a(value, cst.Name) and value.value == "False")):
            return False
    return bool(assignments)
