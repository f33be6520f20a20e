"""What a tensor is made of: the bindings its contents come from through ops that move values without
computing new ones (views, reshapes, casts, einops, indexing, padding, concatenation, and `map` of
such an op over a literal tuple), and which parameters of a function (or of a module's `forward`,
across files through the project summaries) reach an attention kernel's values that way.

Ex) `q, k, v = map(lambda t: torch.cat(t, dim=-1), ((ql, qr), (kl, kr), (vl, vr)))`: `v` is made of
    whatever `vl` and `vr` were bound to, and `self.attend(q, k, v)` hands it to `Attend.forward`,
    whose third parameter reaches `F.scaled_dot_product_attention`'s `value`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import libcst as cst

from sharpedges.analysis.calls import argument, method_name, receiver
from sharpedges.analysis.classes import self_attribute
from sharpedges.analysis.context import FileContext
from sharpedges.analysis.dataflow import Definition
from sharpedges.analysis.project import ProjectScope, imported_names
from sharpedges.analysis.summaries import bind_arguments, called_function, positional_parameters
from sharpedges.analysis.vocabulary import (
    CAST_METHODS,
    CONCATENATIONS,
    EINOPS_FUNCTIONS,
    KERNEL_TOKENS,
    PAD_FUNCTIONS,
    REPEAT_METHODS,
    SHAPE_ONLY_METHODS,
    TRANSPOSE_FUNCTIONS,
    is_library_namespace,
    kernel_of,
)
from sharpedges.analysis.walk import is_a

MAX_DEPTH = 12
# Methods whose result holds the receiver's values, moved, repeated or retyped.
CONTENT_KEEPING_METHODS = SHAPE_ONLY_METHODS | REPEAT_METHODS | CAST_METHODS
# Functions whose result holds their first argument's values; and those that join several tensors.
CONTENT_KEEPING_FUNCTIONS = TRANSPOSE_FUNCTIONS | EINOPS_FUNCTIONS | PAD_FUNCTIONS
JOINING_FUNCTIONS = CONCATENATIONS | {"torch.stack"}
MAPS = frozenset({"map", "builtins.map"})


@dataclass(frozen=True)
class Binding:
    """A name bound by `definition`, whose value some of a tensor's contents come from."""

    name: str
    definition: Definition


def bindings(
    ctx: FileContext, function: cst.FunctionDef, expr: cst.BaseExpression | None, at: int, depth: int = 0
) -> list[Binding]:
    """Every binding (on any path) whose value reaches `expr` through content-keeping ops."""
    found: list[Binding] = []
    _collect(ctx, function, expr, at, depth, found, set())
    return found


def _collect(
    ctx: FileContext,
    function: cst.FunctionDef,
    expr: cst.BaseExpression | None,
    at: int,
    depth: int,
    found: list[Binding],
    seen: set[int],
) -> None:
    if expr is None or depth > MAX_DEPTH:
        return
    if is_a(expr, cst.Name):
        for definition in ctx.function_facts(function).reaching(expr.value, at):
            if id(definition) in seen:
                continue
            seen.add(id(definition))
            found.append(Binding(expr.value, definition))
            if definition.kind == "assign":
                _collect(ctx, function, definition.value, definition.order, depth + 1, found, seen)
            elif definition.kind == "unpack":
                for item in _mapped_item(ctx, definition, expr.value):
                    _collect(ctx, function, item, definition.order, depth + 1, found, seen)
        return
    for part in _parts(ctx, expr):
        _collect(ctx, function, part, at, depth + 1, found, seen)


def _parts(ctx: FileContext, expr: cst.BaseExpression) -> list[cst.BaseExpression]:
    """The expressions whose values `expr` holds, when it only moves, joins or retypes them."""
    if is_a(expr, (cst.Tuple, cst.List)):
        return [element.value for element in expr.elements]
    if is_a(expr, cst.Subscript):
        return [expr.value]
    if is_a(expr, cst.IfExp):
        return [expr.body, expr.orelse]
    if not is_a(expr, cst.Call):
        return []
    qualified = ctx.callee(expr)
    if qualified in JOINING_FUNCTIONS:
        return [value] if (value := argument(expr, "tensors", 0)) is not None else []
    if qualified in CONTENT_KEEPING_FUNCTIONS:
        return [value] if (value := argument(expr, "input", 0)) is not None else []
    method = method_name(expr)
    if method in CONTENT_KEEPING_METHODS and not is_library_namespace(ctx, receiver(expr)):
        return [value] if (value := receiver(expr)) is not None else []
    return []


def _mapped_item(ctx: FileContext, definition: Definition, name: str) -> list[cst.BaseExpression]:
    """For `a, b, c = map(lambda t: <keeps t>, (x, y, z))`: the item that binds `name` (`z` for `c`)."""
    node = definition.node
    if not is_a(node, cst.Assign) or len(node.targets) != 1 or not is_a(node.value, cst.Call):
        return []
    call, target = node.value, node.targets[0].target
    if ctx.callee(call) not in MAPS or len(call.args) != 2 or not is_a(target, (cst.Tuple, cst.List)):
        return []
    function, items = call.args[0].value, call.args[1].value
    if not is_a(function, cst.Lambda) or not is_a(items, (cst.Tuple, cst.List)):
        return []
    parameters = function.params.params
    if (
        len(parameters) != 1
        or len(items.elements) != len(target.elements)
        or not _keeps(ctx, function.body, parameters[0].name.value)
    ):
        return []
    for element, item in zip(target.elements, items.elements, strict=True):
        if is_a(element.value, cst.Name) and element.value.value == name:
            return [item.value]
    return []


def _keeps(ctx: FileContext, body: cst.BaseExpression, parameter: str) -> bool:
    """Whether a lambda body only moves or joins the values of its parameter."""
    if is_a(body, cst.Name):
        return body.value == parameter
    return any(_keeps(ctx, part, parameter) for part in _parts(ctx, body))


# -- which parameters reach an attention kernel's values ---------------------------------------------------
def value_parameters(ctx: FileContext, function: cst.FunctionDef) -> frozenset[str]:
    """The parameters of `function` whose contents reach the values of an attention kernel it runs,
    directly, through a function or method of this file, or through a module it holds (computed once;
    a function that reaches itself again contributes nothing the second time)."""
    memo: dict[cst.FunctionDef, frozenset[str]] = ctx.memo("derived.value_parameters", dict)
    found = memo.get(function)
    if found is None:
        memo[function] = frozenset()
        found = memo[function] = frozenset(_value_parameters(ctx, function))
    return found


def _value_parameters(ctx: FileContext, function: cst.FunctionDef) -> set[str]:
    found: set[str] = set()
    for value, at in _values_passed_on(ctx, function):
        found.update(b.name for b in bindings(ctx, function, value, at) if b.definition.kind == "param")
    return found


def _values_passed_on(ctx: FileContext, function: cst.FunctionDef) -> list[tuple[cst.BaseExpression, int]]:
    """The expressions `function` hands to an attention kernel as its values, with where it does."""
    handed: list[tuple[cst.BaseExpression, int]] = []
    for call in ctx.index.descendants(function.body, cst.Call, prune=(cst.FunctionDef, cst.ClassDef)):
        handed.extend((value, ctx.order(call)) for value in attention_value_arguments(ctx, call))
    return handed


def attention_value_arguments(ctx: FileContext, call: cst.Call) -> list[cst.BaseExpression]:
    """The arguments of `call` that become an attention kernel's values: the kernel's own `value`, or
    what a function, method or module instance passes on to one."""
    kernel = kernel_of(ctx, call)
    if kernel is not None:
        value = kernel.argument(call, "value")
        return [value] if value is not None else []
    if any(arg.star for arg in call.args):
        return []
    target = called_function(ctx, call)
    if target is not None:
        inner = value_parameters(ctx, target[0])
        return [value for name, value in bind_arguments(call, target[1]).items() if name in inner]
    found: list[cst.BaseExpression] = []
    for positional, values in module_values(ctx, call):
        found.extend(value for name, value in bind_arguments(call, positional).items() if name in values)
    return found


# -- module instances: `self.attend = Attend(...)`, then `self.attend(q, k, v)` ------------------------------
def module_values(ctx: FileContext, call: cst.Call) -> list[tuple[list[str], frozenset[str]]]:
    """For a call of `self.x` where `self.x` holds an instance of a module class (of this file, or of a
    project module this file imports): its forward's positional parameters and those that reach values."""
    attr = self_attribute(call.func)
    cls = ctx.class_of(call)
    if attr is None or cls is None:
        return []
    found = []
    for assignment in ctx.class_facts(cls).assignments.get(attr, ()):
        built = assignment.value
        if not is_a(built, cst.Call) or not is_a(built.func, cst.Name):
            continue
        entry = _local_class_values(ctx, built.func.value) or _imported_class_values(ctx, built.func.value)
        if entry is not None:
            found.append(entry)
    return found


def _local_class_values(ctx: FileContext, name: str) -> tuple[list[str], frozenset[str]] | None:
    for statement in ctx.module.body:
        if is_a(statement, cst.ClassDef) and statement.name.value == name:
            forward = ctx.class_facts(statement).methods.get("forward")
            if forward is not None:
                return positional_parameters(forward)[1:], value_parameters(ctx, forward)
    return None


def _imported_class_values(ctx: FileContext, name: str) -> tuple[list[str], frozenset[str]] | None:
    scope: ProjectScope | None = getattr(ctx, "project", None)
    source = imported_names(ctx).get(name)
    if scope is None or source is None or not source.name:
        return None
    found = scope.lookup(source, "value_parameters")
    entry = None if found is None else found[0]
    return (list(entry["positional"]), frozenset(entry["values"])) if entry else None


def module_value_parameters(ctx: FileContext) -> dict[str, dict[str, Any]]:
    """Top-level classes whose `forward` hands some parameters to an attention kernel's values: the
    summary an importing file reads to follow `self.attend(q, k, v)` into `Attend.forward`."""
    found: dict[str, dict[str, Any]] = {}
    if not ctx.mentions(*KERNEL_TOKENS):
        return found  # a summary reads no other file's: without a kernel here, no forward reaches one
    for statement in ctx.module.body:
        if not is_a(statement, cst.ClassDef):
            continue
        forward = ctx.class_facts(statement).methods.get("forward")
        values = value_parameters(ctx, forward) if forward is not None else frozenset()
        if forward is not None and values:
            found[statement.name.value] = {"positional": positional_parameters(forward)[1:], "values": sorted(values)}
    return found
