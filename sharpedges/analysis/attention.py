"""Where attention logits come from: softmax calls, query-key products, and scaling on the way.

The question every attention rule asks is "which softmax consumes a product of queries and
transposed keys, and what happened to that product (or to q and k) on the way?". Local names are
followed through their reaching definitions inside the function, so

    scores = torch.matmul(q, k.transpose(-2, -1))
    scores = scores.masked_fill(mask == 0, float("-inf"))
    probs = scores.softmax(dim=-1)

is seen as one path from a QK^T product to a softmax, with no scaling on it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any

import libcst as cst

from sharpedges.analysis.calls import argument, literal_int, literal_number, literal_string, method_name, receiver
from sharpedges.analysis.classes import self_attribute
from sharpedges.analysis.context import FileContext
from sharpedges.analysis.dataflow import Definition, unpacked_position, unpacked_shape
from sharpedges.analysis.einsum import einsum_of
from sharpedges.analysis.names import dotted
from sharpedges.analysis.summaries import (
    bind_arguments,
    call_sites,
    called_function,
    imported_summary,
    module_forward,
    positional_parameters,
    possible_callees,
    return_values,
)
from sharpedges.analysis.tensors import called_lambda, class_family, helper_called, known_rank
from sharpedges.analysis.values import module_assignments, possible_values
from sharpedges.analysis.vocabulary import (
    ADDITIVE_FUNCTIONS,
    ADDITIVE_METHODS,
    BROADCAST_METHODS,
    CAST_METHODS,
    CLAMP_FUNCTIONS,
    CLAMP_METHODS,
    COPY_METHODS,
    FILL_FUNCTIONS,
    FILL_METHODS,
    MASKING_METHODS,
    MATMUL_FUNCTIONS,
    NAN_REPAIR_FUNCTIONS,
    NAN_REPAIR_METHODS,
    PAD_FUNCTIONS,
    REORDER_METHODS,
    REPEAT_METHODS,
    RESHAPE_METHODS,
    SCALE_KEYWORDS,
    SCALING_FUNCTIONS,
    SCALING_METHODS,
    SELECTION_METHODS,
    SHAPE_ONLY_METHODS,
    SOFT_CAP_FUNCTIONS,
    SOFT_CAP_METHODS,
    SQRT_FUNCTIONS,
    TENSOR_LITERALS,
    TRIANGLE_METHODS,
    TRIANGLES,
    cast_precision,
    dtype_precision,
    is_library_namespace,
    kernel_of,
)
from sharpedges.analysis.walk import HELPER_SCOPES, is_a

MAX_DEPTH = 12
SOFTMAX_FUNCTIONS = {"torch.softmax"}
SOFTMAX_MODULES = {"torch.nn.Softmax"}
# Calls and methods whose result is "the same scores, reshaped or retyped or masked".
PASS_THROUGH_METHODS = (
    RESHAPE_METHODS
    | CAST_METHODS
    | COPY_METHODS
    | REORDER_METHODS
    | MASKING_METHODS
    | ADDITIVE_METHODS
    | CLAMP_METHODS
    | SOFT_CAP_METHODS
    | NAN_REPAIR_METHODS
)
PASS_THROUGH_FUNCTIONS = (
    FILL_FUNCTIONS | CLAMP_FUNCTIONS | SOFT_CAP_FUNCTIONS | NAN_REPAIR_FUNCTIONS | ADDITIVE_FUNCTIONS | PAD_FUNCTIONS
)
REARRANGE = "einops.rearrange"
WEIGHT_NAME = re.compile(r"(weight|^w$|^W\w*$|emb|embed|wte|lm_head|classifier|proj_matrix)", re.IGNORECASE)


# Methods whose result holds the same values as their receiver (a scale on q survives them).
VALUE_PRESERVING_METHODS = BROADCAST_METHODS | REPEAT_METHODS | SELECTION_METHODS | {"mean"}


@dataclass(frozen=True)
class Scale:
    """A factor that multiplies or divides the logits (or q or k), and the function it is written in."""

    expr: cst.BaseExpression = field(repr=False)
    function: cst.FunctionDef | None = field(repr=False, compare=False)
    at: int
    divides: bool  # `/ s`, `/= s`, `.div(s)`: the logits shrink as s grows

    def undone_by(self, other: Scale) -> bool:
        """`x / cap` then `* cap`, in one function, with the factor a plain name or attribute."""
        return (
            self.divides != other.divides
            and self.function is other.function
            and is_a(self.expr, (cst.Name, cst.Attribute))
            and self.expr.deep_equals(other.expr)
        )


@dataclass(frozen=True)
class LogitSource:
    """A QK^T product reaching a softmax, and what happened to it (or to q and k) on the way."""

    product: cst.CSTNode = field(repr=False)
    scaled: bool
    # Expressions from the softmax input inward to the product: the steps the scores went through.
    path: tuple[cst.CSTNode, ...] = field(default=(), repr=False)
    scales: tuple[Scale, ...] = field(default=(), repr=False)
    kind: str = "matmul"  # matmul | bmm | baddbmm | einsum
    # The transposing expression of the keys (`k.transpose(2, 3)`, `k.mT`) for matmul-like products.
    transpose: cst.CSTNode | None = field(default=None, repr=False)

    def through(self, node: cst.CSTNode) -> LogitSource:
        return replace(self, path=(node, *self.path))

    def scaled_by(self, *scales: Scale) -> LogitSource:
        """The source scaled once more. A factor that undoes one already applied cancels it: soft-capping,
        `tanh(x / cap) * cap`, leaves the logits' scale as it was."""
        kept = list(self.scales)
        for scale in scales:
            undone = next((s for s in kept if s.undone_by(scale)), None)
            if undone is not None:
                kept.remove(undone)
            else:
                kept.append(scale)
        return replace(self, scaled=bool(kept), scales=tuple(kept))


@dataclass(frozen=True)
class SoftmaxCall:
    call: cst.Call
    input: cst.BaseExpression
    dim: cst.BaseExpression | None
    function: cst.FunctionDef | None
    upcast: bool = False  # a project function that runs the softmax in float32 (`softmax_wrapper_functions`)


def softmax_calls(ctx: FileContext) -> list[SoftmaxCall]:
    """Every softmax in the file: `torch.softmax`, `F.softmax`, `x.softmax(...)`, calls of `nn.Softmax`
    modules, inline or assigned to `self.x` in the class, and calls of a project function that returns
    the softmax of a parameter (`utils.softmax(attn_weights, dim=-1)`, `softmax_wrapper_functions`)."""

    def compute() -> list[SoftmaxCall]:
        found = []
        local = softmax_wrapper_functions(ctx)
        # the softmax a wrapper of this file returns is the softmax of each of its calls, seen there
        wrapped = {
            value
            for statement in ctx.module.body
            if is_a(statement, cst.FunctionDef) and statement.name.value in local
            for value in return_values(ctx, statement)
        }
        for call in ctx.calls():
            target = called_function(ctx, call) if local else None
            top_level = target is not None and ctx.index.parents.get(target[0]) is ctx.module
            wrapper = local.get(target[0].name.value) if target is not None and top_level else None
            if wrapper is None and _may_wrap_softmax(call):
                wrapper = imported_summary(ctx, call, "softmax_wrappers")
            if wrapper is not None:
                bound = bind_arguments(call, wrapper["positional"])
                value, dim = bound.get(wrapper["input"]), _wrapper_dim(bound, wrapper)
                if value is not None:
                    found.append(SoftmaxCall(call, value, dim, ctx.function_of(call), wrapper["upcast"]))
                continue
            direct = _direct_softmax(ctx, call) if call not in wrapped else None
            if direct is not None:
                found.append(SoftmaxCall(call, direct[0], direct[1], ctx.function_of(call)))
        return found

    return ctx.memo("softmax_calls", compute)


def _written_out_softmax(
    ctx: FileContext, call: cst.Call
) -> tuple[cst.BaseExpression, cst.BaseExpression | None] | None:
    """`torch.exp(x - torch.logsumexp(x, dim=-1, keepdim=True))`, the log-sum-exp maybe in a local first:
    a softmax of `x` over that axis, written out. The input and the axis.

    Ex) reformer's LSH attention: `dots_logsumexp = torch.logsumexp(dots, dim=-1, keepdim=True)`;
        `dots = torch.exp(dots - dots_logsumexp)`
    """
    exponent = argument(call, "input", 0) if ctx.callee(call) == "torch.exp" else None
    if not (is_a(exponent, cst.BinaryOperation) and is_a(exponent.operator, cst.Subtract)):
        return None
    normaliser = exponent.right
    if is_a(normaliser, cst.Name) and (values := possible_values(ctx, normaliser)) and len(values) == 1:
        normaliser = values[0]
    if not (is_a(normaliser, cst.Call) and ctx.callee(normaliser) == "torch.logsumexp"):
        return None
    summed = argument(normaliser, "input", 0)
    if summed is None or ctx.code(summed) != ctx.code(exponent.left):
        return None
    return exponent.left, argument(normaliser, "dim", 1)


def _direct_softmax(ctx: FileContext, call: cst.Call) -> tuple[cst.BaseExpression, cst.BaseExpression | None] | None:
    """(input, axis) of a softmax written as one: `torch.softmax`, `F.softmax`, `x.softmax(...)`, an
    `nn.Softmax` module, `einx.softmax`, or `exp(x - logsumexp(x))`."""
    qualified = ctx.callee(call)
    if qualified in SOFTMAX_FUNCTIONS:
        value, dim = argument(call, "input", 0), argument(call, "dim", 1)
    elif _is_softmax_module(ctx, call):
        value, dim = argument(call, "input", 0), _softmax_module_dim(ctx, call)
    elif qualified == "einx.softmax":  # einx.softmax('b h i [j]', sim): over the bracketed axis
        value, dim = argument(call, "x", 1), _einx_axis(argument(call, "description", 0))
    elif (written := _written_out_softmax(ctx, call)) is not None:
        value, dim = written
    elif _holds_softmax(ctx, call.func):
        value, dim = argument(call, "input", 0), argument(call, "dim", 1)
    elif (
        method_name(call) == "softmax"
        and not is_library_namespace(ctx, receiver(call))
        and self_attribute(call.func) is None
    ):
        value, dim = receiver(call), argument(call, "dim", 0)
    else:
        return None
    return (value, dim) if value is not None else None


def _holds_softmax(ctx: FileContext, func: cst.BaseExpression) -> bool:
    """An attribute or local bound to the softmax function on one of its paths: `self.attn_fn(dots,
    dim=-1)` with `self.attn_fn = entmax15 if use_entmax else F.softmax`."""
    attr = self_attribute(func)
    name = attr if attr is not None else func.value if is_a(func, cst.Name) else None
    if name is None or name not in _softmax_bound_names(ctx):
        return False
    values = possible_values(ctx, func)
    return values is not None and any(
        value is not func and is_a(value, (cst.Name, cst.Attribute)) and ctx.qualify(value) in SOFTMAX_FUNCTIONS
        for value in values
    )


def _softmax_bound_names(ctx: FileContext) -> frozenset[str]:
    """The names and `self.` attributes some assignment of the file binds to the softmax function itself
    (maybe as one branch of a conditional expression): the only callees `_holds_softmax` need resolve."""

    def compute() -> frozenset[str]:
        found: set[str] = set()
        for assign in ctx.index.nodes(cst.Assign):
            value = assign.value
            branches = (value.body, value.orelse) if is_a(value, cst.IfExp) else (value,)
            if not any(is_a(b, (cst.Name, cst.Attribute)) and ctx.qualify(b) in SOFTMAX_FUNCTIONS for b in branches):
                continue
            for target in assign.targets:
                attr = self_attribute(target.target)
                if attr is not None:
                    found.add(attr)
                elif is_a(target.target, cst.Name):
                    found.add(target.target.value)
        return frozenset(found)

    return ctx.memo("attention.softmax_bound_names", compute)


def _may_wrap_softmax(call: cst.Call) -> bool:
    """A screen before another module's summary is read (the read may summarise it): the function is
    named for what it returns (`utils.softmax`, `masked_softmax`). A wrapper by another name is missed."""
    func = call.func
    name = func.attr.value if is_a(func, cst.Attribute) else func.value if is_a(func, cst.Name) else ""
    return "softmax" in name.lower()


def _wrapper_dim(bound: dict[str, cst.BaseExpression], wrapper: dict[str, Any]) -> cst.BaseExpression | None:
    """The axis a call of a softmax wrapper asks for: the argument of its axis parameter, or its literal axis."""
    if wrapper["dim_parameter"] is not None:
        return bound.get(wrapper["dim_parameter"])
    axis = wrapper["dim_literal"]
    if axis is None:
        return None
    return cst.Integer(str(axis)) if axis >= 0 else cst.UnaryOperation(cst.Minus(), cst.Integer(str(-axis)))


def softmax_wrapper_functions(ctx: FileContext) -> dict[str, dict[str, Any]]:
    """Module-level functions every return of which is a softmax of the same parameter (maybe cast on
    the way in) -> their positional parameters, that parameter (`input`), the parameter that picks the
    axis (`dim_parameter`) or the axis written out (`dim_literal`), and whether every path runs it in
    float32 (`upcast`): what an importing file needs to see a softmax in `utils.softmax(attn, dim=-1)`.

    Ex) fairseq: `def softmax(x, dim, onnx_trace=False): return F.softmax(x.float(), dim=dim) if ...
        else F.softmax(x, dim=dim, dtype=torch.float32)`
    """
    return ctx.memo("softmax_wrapper_functions", lambda: _softmax_wrapper_functions(ctx))


def _softmax_wrapper_functions(ctx: FileContext) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    by_call = {
        call: SoftmaxCall(call, value, dim, ctx.function_of(call))
        for statement in ctx.module.body
        if is_a(statement, cst.FunctionDef)
        for call in ctx.index.descendants(statement.body, cst.Call)
        if (direct := _direct_softmax(ctx, call)) is not None
        for value, dim in (direct,)
    }
    for statement in ctx.module.body:
        if not is_a(statement, cst.FunctionDef) or not (returned := return_values(ctx, statement)):
            continue
        positional = positional_parameters(statement)
        shapes = [
            _wrapped_softmax(ctx, by_call.get(value) if is_a(value, cst.Call) else None, positional)
            for value in returned
        ]
        known = [shape for shape in shapes if shape is not None]
        if len(known) != len(shapes) or len({(shape[0], shape[1]) for shape in known}) != 1:
            continue
        name, (dim_parameter, dim_literal), _ = known[0]
        upcast = all(shape[2] for shape in known)
        found[statement.name.value] = {
            "positional": positional,
            "input": name,
            "dim_parameter": dim_parameter,
            "dim_literal": dim_literal,
            "upcast": upcast,
        }
    return found


def _wrapped_softmax(
    ctx: FileContext, softmax: SoftmaxCall | None, positional: list[str]
) -> tuple[str, tuple[str | None, int | None], bool] | None:
    """(the parameter a returned softmax takes, (its axis parameter, its literal axis), whether it runs in float32)."""
    if softmax is None:
        return None
    value: cst.BaseExpression | None = softmax.input
    upcast = dtype_precision(ctx, argument(softmax.call, "dtype")) == "full"
    while is_a(value, cst.Call) and (cast_precision(ctx, value) is not None or method_name(value) == "type_as"):
        upcast = upcast or cast_precision(ctx, value) == "full"
        value = receiver(value)
    value = _unshifted(ctx, value, softmax.function, positional)
    if not is_a(value, cst.Name) or value.value not in positional:
        return None
    dim = softmax.dim
    if is_a(dim, cst.Name) and dim.value in positional:
        return value.value, (dim.value, None), upcast
    return value.value, (None, literal_int(dim) if dim is not None else None), upcast


def _unshifted(
    ctx: FileContext, value: cst.BaseExpression | None, function: cst.FunctionDef | None, positional: list[str]
) -> cst.BaseExpression | None:
    """The parameter a softmax input is, through the steps of a numerically stable softmax: a shift by
    its own max (`t - t.amax(dim, keepdim=True).detach()`, which softmax does not see) and a division by a
    constant that a multiplication by it undoes (`t = t / alpha; ...; (t * alpha).softmax(dim)`).

    Ex) nuwa-pytorch: `def stable_softmax(t, dim=-1, alpha=32 ** 2)`
    """
    divided: set[str] = set()
    multiplied: set[str] = set()
    for _ in range(MAX_DEPTH):
        if is_a(value, cst.Name) and function is not None:
            definitions = ctx.function_facts(function).reaching(value.value, ctx.order(value))
            if len(definitions) == 1 and definitions[0].kind == "assign" and definitions[0].value is not None:
                value = definitions[0].value
                continue
        if is_a(value, cst.Name):
            return value if value.value in positional and divided == multiplied else None
        if is_a(value, cst.BinaryOperation) and is_a(value.operator, (cst.Multiply, cst.Divide)):
            factor = dotted(value.right)
            if factor is None or factor not in positional or literal_int(value.right) is not None:
                return None
            (multiplied if is_a(value.operator, cst.Multiply) else divided).add(factor)
            value = value.left
        elif is_a(value, cst.BinaryOperation) and is_a(value.operator, cst.Subtract) and _max_of(ctx, value.right):
            value = value.left
        else:
            return value
    return None


def _max_of(ctx: FileContext, expr: cst.BaseExpression | None) -> bool:
    """`t.amax(dim, keepdim=True)`, `torch.amax(t, ...)` or `t.max(...).values`, maybe detached."""
    while is_a(expr, cst.Call) and method_name(expr) == "detach":
        expr = receiver(expr)
    if is_a(expr, cst.Attribute) and expr.attr.value == "values":
        expr = expr.value
    if not is_a(expr, cst.Call):
        return False
    return method_name(expr) in ("amax", "max") or ctx.callee(expr) in ("torch.amax", "torch.max")


def _einx_axis(description: cst.BaseExpression | None) -> cst.BaseExpression | None:
    """The axis an einx description brackets, counted from the end (`'b h i [j]'` -> -1), as an expression."""
    text = literal_string(description)
    if text is None or "->" in text or "," in text:
        return None
    axes = text.split()
    marked = [i for i, axis in enumerate(axes) if axis.startswith("[") and axis.endswith("]")]
    if len(marked) != 1 or any("..." in axis or "(" in axis for axis in axes):
        return None
    return cst.UnaryOperation(cst.Minus(), cst.Integer(str(len(axes) - marked[0])))


def _softmax_module_constructor(ctx: FileContext, call: cst.Call) -> cst.Call | None:
    func = call.func
    if is_a(func, cst.Call) and ctx.callee(func) in SOFTMAX_MODULES:
        return func  # nn.Softmax(dim=-1)(x)
    attr = self_attribute(func)
    cls = ctx.class_of(call)
    if attr is None or cls is None:
        return None
    for assignment in ctx.class_facts(cls).assignments.get(attr, ()):
        if is_a(assignment.value, cst.Call) and ctx.callee(assignment.value) in SOFTMAX_MODULES:
            return assignment.value
    return None


def _is_softmax_module(ctx: FileContext, call: cst.Call) -> bool:
    return _softmax_module_constructor(ctx, call) is not None


def _softmax_module_dim(ctx: FileContext, call: cst.Call) -> cst.BaseExpression | None:
    constructor = _softmax_module_constructor(ctx, call)
    return argument(constructor, "dim", 0) if constructor is not None else None


def unpacked_call(definition: Definition) -> tuple[cst.Call, int] | None:
    """For a name unpacked from a call (`a, name, c = helper(...)`): the call, and the name's place."""
    assign = definition.node
    if not is_a(assign, cst.Assign) or not is_a(assign.value, cst.Call):
        return None
    position = unpacked_position(assign, definition.name)
    return (assign.value, position) if position is not None else None


def module_value(ctx: FileContext, name: str, at: int) -> tuple[cst.BaseExpression | None, int]:
    """Module-level code (a script, a notebook): the value of the last plain assignment of `name`
    before `at`, and where it is made."""
    before = [(value, order) for value, order in module_assignments(ctx).get(name, ()) if order < at]
    return before[-1] if before else (None, 0)


MAX_HELPER_HOPS = 4  # helpers of helpers the logit tracer follows from one expression


class LogitTracer:
    """Follows an expression back to the QK^T products it is made of, within one function (and into
    the helpers of the same file it calls on the way)."""

    def __init__(
        self,
        ctx: FileContext,
        function: cst.FunctionDef | None,
        bindings: dict[str, tuple[LogitTracer, cst.BaseExpression, int]] | None = None,
        lambda_parameters: frozenset[str] = frozenset(),
        helper_hops: int = 0,
    ) -> None:
        self.ctx = ctx
        self.function = function
        self.facts = ctx.function_facts(function) if function is not None else None
        self.cls = ctx.class_of(function) if function is not None else None
        # Inside a helper: parameter -> (the caller's tracer, the argument it passed, where)
        self.bindings = bindings or {}
        # Inside a lambda of `function`: its parameters, which hide the function's names of the same spelling
        self.lambda_parameters = lambda_parameters
        # How many helpers deep this tracer is: each hop multiplies the paths, so they are bounded
        self.helper_hops = helper_hops

    def scale(self, expr: cst.BaseExpression, at: int, divides: bool = False) -> Scale:
        return Scale(expr, self.function, at, divides)

    # -- products -------------------------------------------------------------------------
    def sources(self, expr: cst.BaseExpression, at: int, depth: int = 0) -> list[LogitSource]:
        return [source.through(expr) for source in self._sources(expr, at, depth)]

    def _sources(self, expr: cst.BaseExpression, at: int, depth: int) -> list[LogitSource]:
        if depth > MAX_DEPTH:
            return []
        if is_a(expr, cst.Name):
            return self._through_definitions(expr.value, at, depth)
        if is_a(expr, cst.BinaryOperation):
            operator = expr.operator
            if is_a(operator, cst.MatrixMultiply):
                product = self.qk_product(expr, expr.left, expr.right, at, "matmul")
                return [product] if product else []
            if is_a(operator, cst.Divide):
                return [s.scaled_by(self.scale(expr.right, at, True)) for s in self.sources(expr.left, at, depth + 1)]
            if is_a(operator, cst.Multiply):
                return [
                    s.scaled_by(self.scale(other, at))
                    for side, other in ((expr.left, expr.right), (expr.right, expr.left))
                    for s in self.sources(side, at, depth + 1)
                ]
            if is_a(operator, (cst.Add, cst.Subtract)):
                return self.sources(expr.left, at, depth + 1) + self.sources(expr.right, at, depth + 1)
            return []
        if is_a(expr, cst.Call):
            return self._call_sources(expr, at, depth)
        if is_a(expr, cst.Subscript):
            return self.sources(expr.value, at, depth + 1)
        if is_a(expr, cst.IfExp):
            return self.sources(expr.body, at, depth + 1) + self.sources(expr.orelse, at, depth + 1)
        if is_a(expr, cst.NamedExpr):  # Ex) softmax((scores := q @ k.mT), dim=-1)
            return self.sources(expr.value, at, depth + 1)
        return []

    def _through_definitions(self, name: str, at: int, depth: int) -> list[LogitSource]:
        if name in self.lambda_parameters:
            return self._caller_sources(name, depth) if name in self.bindings else []
        if self.facts is None:
            value, order = module_value(self.ctx, name, at)
            return self.sources(value, order, depth + 1) if value is not None else []
        found: list[LogitSource] = []
        for definition in self.facts.reaching(name, at):
            if definition.kind == "param":
                found += self._caller_sources(name, depth)
            if definition.kind == "unpack":
                found += self._unpacked_sources(definition, depth)
            if definition.value is None:
                continue
            if definition.kind == "augassign":
                previous = [
                    s.through(definition.node) for s in self._through_definitions(name, definition.order, depth + 1)
                ]
                if is_a(definition.operator, (cst.MultiplyAssign, cst.DivideAssign)):
                    divides = is_a(definition.operator, cst.DivideAssign)
                    found += [s.scaled_by(self.scale(definition.value, definition.order, divides)) for s in previous]
                else:
                    found += previous + self.sources(definition.value, definition.order, depth + 1)
            elif definition.kind == "inplace" and is_a(call := definition.value, cst.Call):
                previous = [s.through(call) for s in self._through_definitions(name, definition.order, depth + 1)]
                method = definition.method
                factor = argument(call, "other", 0) if method in SCALING_METHODS else None
                found += [
                    s.scaled_by(self.scale(factor, definition.order, method.startswith("div")))
                    if factor is not None and method is not None
                    else s
                    for s in previous
                ]
            elif definition.kind == "assign":
                written = self.sources(definition.value, definition.order, depth + 1)
                for write in self._index_writes(name, definition.order, at):
                    written = [s.through(write) for s in written]
                found += written
        return found

    def _index_writes(self, name: str, after: int, before: int) -> list[cst.Assign]:
        """`scores[~mask] = -1e9` between a definition of `scores` and a read: the same tensor, written
        in place, in the order they run."""
        if self.facts is None:
            return []
        writes = []
        for use in self.facts.uses.get(name, ()):
            subscript = self.ctx.index.parents.get(use)
            target = self.ctx.index.parents.get(subscript) if is_a(subscript, cst.Subscript) else None
            assign = self.ctx.index.parents.get(target) if is_a(target, cst.AssignTarget) else None
            if is_a(assign, cst.Assign) and after <= self.ctx.order(assign) < before:
                writes.append(assign)
        return sorted(writes, key=self.ctx.order)

    def _unpacked_sources(self, definition: Definition, depth: int) -> list[LogitSource]:
        """`scores, n = self.logits(q, k)`: the element at the name's place in the tuples the helper returns."""
        unpacked = unpacked_call(definition)
        if unpacked is None:
            return []
        call, position = unpacked
        found: list[LogitSource] = []
        for inner, value, after in self._helper_returns(call, definition.order):
            elements = value.elements if is_a(value, cst.Tuple) else ()
            if position < len(elements) and not any(is_a(e, cst.StarredElement) for e in elements):
                found += inner.sources(elements[position].value, after, depth + 1)
        return found

    def _caller_sources(self, name: str, depth: int) -> list[LogitSource]:
        """A helper's parameter is what its callers pass: the argument of the call being traced, or
        every call of the helper in this file (a softmax in `attention_normalize(a, ...)` over the
        masked scores a method passes it)."""
        if name in self.bindings:
            caller, value, at = self.bindings[name]
            return caller.sources(value, at, depth + 1)
        if self.function is None:
            return []
        found: list[LogitSource] = []
        for call, positional in call_sites(self.ctx, self.function):
            passed = bind_arguments(call, positional).get(name)
            caller_function = self.ctx.function_of(call)
            if passed is not None and caller_function is not self.function:
                found += LogitTracer(self.ctx, caller_function).sources(passed, self.ctx.order(call), depth + 1)
        return found

    def _call_sources(self, call: cst.Call, at: int, depth: int) -> list[LogitSource]:
        ctx = self.ctx
        qualified = ctx.callee(call)
        method = method_name(call)
        if qualified in MATMUL_FUNCTIONS or (
            method in ("matmul", "bmm") and not is_library_namespace(ctx, receiver(call))
        ):
            left, right = (
                (argument(call, "input", 0), argument(call, "other", 1))
                if qualified in MATMUL_FUNCTIONS
                else (receiver(call), argument(call, None, 0))
            )
            if qualified == "torch.bmm":
                left, right = argument(call, "input", 0), argument(call, "mat2", 1)
            kind = "bmm" if "bmm" in (qualified, method) or qualified == "torch.bmm" else "matmul"
            product = self.qk_product(call, left, right, at, kind) if left is not None and right is not None else None
            return [product] if product else []
        if qualified == "torch.baddbmm":
            left, right = argument(call, "batch1", 1), argument(call, "batch2", 2)
            product = (
                self.qk_product(call, left, right, at, "baddbmm") if left is not None and right is not None else None
            )
            if product is None:
                return []
            alpha = argument(call, "alpha")
            return [product.scaled_by(self.scale(alpha, at)) if alpha is not None else product]
        if qualified == "torch.einsum":
            product = self.einsum_product(call, at)
            return [product] if product else []
        if qualified in SCALING_FUNCTIONS or (
            method in SCALING_METHODS and not is_library_namespace(ctx, receiver(call))
        ):
            inner = argument(call, "input", 0) if qualified in SCALING_FUNCTIONS else receiver(call)
            factor = argument(call, "other", 1) if qualified in SCALING_FUNCTIONS else argument(call, "other", 0)
            divides = "div" in (qualified or method or "")
            if inner is None:
                return []
            return [
                s.scaled_by(self.scale(factor, at, divides)) if factor is not None else s
                for s in self.sources(inner, at, depth + 1)
            ]
        if qualified == "torch.where":
            found = []
            for position, keyword in ((1, "input"), (2, "other")):
                branch = argument(call, keyword, position)
                if branch is not None:
                    found += self.sources(branch, at, depth + 1)
            return found
        if qualified in PASS_THROUGH_FUNCTIONS:
            inner = argument(call, "input", 0)
            return self.sources(inner, at, depth + 1) if inner is not None else []
        if qualified == REARRANGE:  # Ex) sim = rearrange(sim, 'b h i (n j) -> b h i n j'): the same scores
            inner = argument(call, "tensor", 0)
            return self.sources(inner, at, depth + 1) if inner is not None else []
        inner = receiver(call)
        if method in PASS_THROUGH_METHODS and inner is not None and not is_library_namespace(ctx, inner):
            return self.sources(inner, at, depth + 1)
        return self._helper_sources(call, at, depth)

    def _helper_sources(self, call: cst.Call, at: int, depth: int) -> list[LogitSource]:
        """Scores handed through a helper of this file (`scores = to_half(scores)`): what it returns,
        traced with its parameters bound to this call's arguments. A function of another project module
        hands back the arguments its summary says it returns (`attn = maybe_add_mask(attn, bias)`)."""
        returns = self._helper_returns(call, at)
        if not returns:
            return self._imported_helper_sources(call, at, depth)
        return [source for inner, value, after in returns for source in inner.sources(value, after, depth + 1)]

    def _imported_helper_sources(self, call: cst.Call, at: int, depth: int) -> list[LogitSource]:
        summary = imported_summary(self.ctx, call, "score_passing")
        if summary is None:
            return []
        passed = bind_arguments(call, summary["positional"])
        found: list[LogitSource] = []
        for name, scaled in sorted(summary["parameters"].items()):
            if name in passed:
                sources = [s.through(call) for s in self.sources(passed[name], at, depth + 1)]
                # a factor the helper applies is not known here: scaled by something, which keeps SHP101 quiet
                found += [s.scaled_by(self.scale(call, at)) for s in sources] if scaled else sources
        return found

    def _helper_returns(self, call: cst.Call, at: int) -> list[tuple[LogitTracer, cst.BaseExpression, int]]:
        """What a helper of this file called here returns: each returned expression, where it is read, and
        a tracer for the helper with its parameters bound to this call's arguments. None past
        MAX_HELPER_HOPS helpers deep: helpers that call each other (an analysis module's own code) would
        make the paths grow exponentially."""
        if self.helper_hops >= MAX_HELPER_HOPS:
            return []
        hops = self.helper_hops + 1
        local_lambda = called_lambda(self.ctx, call)
        if local_lambda is not None:  # Ex) logits = lambda a, b: a @ b.transpose(-2, -1); logits(q, k)
            bound = {name: (self, value, at) for name, value in bind_arguments(call, local_lambda.parameters).items()}
            inner = LogitTracer(self.ctx, self.function, bound, frozenset(local_lambda.parameters), hops)
            return [(inner, local_lambda.node.body, at)]
        helper = helper_called(self.ctx, call)
        forward = module_forward(self.ctx, call) if helper is None else None
        if forward is not None:  # Ex) attn = self.rel_pos(attn): a module of this file the scores pass through
            helper = forward, positional_parameters(forward)[1:]
        if helper is None:
            return []
        function, positional = helper
        bindings = {name: (self, value, at) for name, value in bind_arguments(call, positional).items()}
        inner = LogitTracer(self.ctx, function, bindings, helper_hops=hops)
        return [(inner, value, self.ctx.index.last_order(value) + 1) for value in return_values(self.ctx, function)]

    # -- what counts as a query-key product -------------------------------------------------
    def qk_product(self, node, left, right, at: int, kind: str = "matmul") -> LogitSource | None:
        if self.is_weight(left) or self.is_weight(right):
            return None
        # Ex) q @ k.transpose(-2, -1); channels first, q and k as (B, H, D, N): q.transpose(-2, -1) @ k, the
        # query transposed in the product itself (a name bound to a permuted query is another layout's q)
        transpose = self.transpose_of(right, at, 0) or (
            self.transpose_of(left, at, 0) if not is_a(left, cst.Name) else None
        )
        if transpose is None:
            return None
        scales = (*self.operand_scales(left, at, 0), *self.operand_scales(right, at, 0))
        return LogitSource(node, bool(scales), scales=scales, kind=kind, transpose=transpose)

    def einsum_product(self, call: cst.Call, at: int) -> LogitSource | None:
        einsum = einsum_of(self.ctx, call)
        if einsum is None or len(einsum.inputs) != 2:
            return None
        (a, b), output = einsum.inputs, einsum.output
        if not a or not b or not output:
            return None
        contracted = (set(a) & set(b)) - set(output)
        # QK^T contracts the feature index, which sits at the same place from the end of both operands (last
        # for channels-last 'b i d, b j d', before the tokens for channels-first 'b d i, b d j', 'b c h w,
        # b k n c i j'), and keeps free indices of each; attention times values contracts the key index, last
        # in the weights and before the features in the values ('b i j, b j d').
        if not any(a.index(index) - len(a) == b.index(index) - len(b) for index in contracted):
            return None
        keys = (set(b) - set(a)) & set(output)
        # Ex) 'b i d, b i j d -> b i j': each query against its own window of keys (local attention)
        windowed = bool(keys) and output[-1] in keys and len(output) >= 3
        if not keys or (not (set(a) - set(b)) & set(output) and not windowed):
            return None
        if any(self.is_weight(op) for op in einsum.operands):
            return None
        scales = tuple(scale for op in einsum.operands for scale in self.operand_scales(op, at, 0))
        return LogitSource(call, bool(scales), scales=scales, kind="einsum")

    def is_weight(self, expr: cst.BaseExpression) -> bool:
        """Parameters and embedding tables: `x @ self.W`, `h @ emb.weight.t()` are not attention."""
        base = expr
        while True:
            if (
                is_a(base, cst.Call)
                and method_name(base) in REORDER_METHODS | {"to", "float", "type_as"}
                and (inner := receiver(base)) is not None
            ):
                base = inner
            elif is_a(base, cst.Attribute) and base.attr.value in ("T", "mT"):
                base = base.value
            else:
                break
        text = dotted(base)
        if text is None:
            return False
        last = text.split(".")[-1]
        if WEIGHT_NAME.search(last):
            return True
        attr = self_attribute(base) if is_a(base, cst.Attribute) else None
        return attr is not None and self.cls is not None and self.ctx.class_facts(self.cls).is_parameter(attr)

    def transpose_of(self, expr: cst.BaseExpression, at: int, depth: int) -> cst.CSTNode | None:
        """The expression that transposes the keys' last two dims, if `expr` is (made of) one."""
        if depth > MAX_DEPTH:
            return None
        if is_a(expr, cst.Attribute) and expr.attr.value in ("T", "mT", "mH"):
            return expr
        if is_a(expr, cst.Call):
            method = method_name(expr)
            if method in ("transpose", "t", "swapaxes", "swapdims"):
                return expr
            if method == "permute":
                dims = [a.value for a in expr.args]
                ints = [int(d.value) for d in dims if is_a(d, cst.Integer)]
                return expr if len(ints) == len(dims) and len(ints) >= 2 and ints[-1] != len(ints) - 1 else None
            if self.ctx.callee(expr) in ("torch.transpose", "torch.swapaxes"):
                return expr
            if method in PASS_THROUGH_METHODS | SCALING_METHODS and (inner := receiver(expr)) is not None:
                return self.transpose_of(inner, at, depth + 1)
            # Ex) GPT-2: `key = self.split_heads(key, k=True)`, a helper that returns `x.permute(0, 2, 3, 1)`
            for inner_tracer, returned, after in self._helper_returns(expr, at):
                found = inner_tracer.transpose_of(returned, after, depth + 1)
                if found is not None:
                    return found
        if is_a(expr, cst.BinaryOperation) and is_a(expr.operator, (cst.Multiply, cst.Divide)):
            return self.transpose_of(expr.left, at, depth + 1) or self.transpose_of(expr.right, at, depth + 1)
        if is_a(expr, cst.IfExp):  # Ex) k.transpose(-2, -1) if channels_last else k.mT
            return self.transpose_of(expr.body, at, depth + 1) or self.transpose_of(expr.orelse, at, depth + 1)
        if is_a(expr, cst.NamedExpr):
            return self.transpose_of(expr.value, at, depth + 1)
        if is_a(expr, cst.Name) and self.facts is None:
            value, order = module_value(self.ctx, expr.value, at)
            return self.transpose_of(value, order, depth + 1) if value is not None else None
        if is_a(expr, cst.Name) and expr.value in self.bindings:
            caller, passed, bound_at = self.bindings[expr.value]
            return caller.transpose_of(passed, bound_at, depth + 1)
        if is_a(expr, cst.Name) and self.facts is not None:
            definitions = self.facts.reaching(expr.value, at)
            for d in definitions:
                if d.value is not None and d.kind == "assign":
                    found = self.transpose_of(d.value, d.order, depth + 1)
                    if found is not None:
                        return found
            if definitions and all(d.kind == "param" for d in definitions):
                return self._parameter_transpose(expr.value, depth)
        return None

    def _parameter_transpose(self, name: str, depth: int) -> cst.CSTNode | None:
        """For a method's parameter, the transpose every `self.method(...)` call of the class passes
        (GPT-2's `self._attn(query, key, value)` with `key` transposed by the caller)."""
        function, cls = self.function, self.cls
        if (
            function is None
            or cls is None
            or self.ctx.class_facts(cls).methods.get(function.name.value) is not function
        ):
            return None
        found = None
        for call, positional in call_sites(self.ctx, function):
            passed = bind_arguments(call, positional).get(name)
            caller_function = self.ctx.function_of(call)
            if passed is None or caller_function is function:
                return None
            found = LogitTracer(self.ctx, caller_function).transpose_of(passed, self.ctx.order(call), depth + 1)
            if found is None:
                return None
        return found

    # -- scaling of q and k -----------------------------------------------------------------
    def operand_scales(self, expr: cst.BaseExpression, at: int, depth: int) -> list[Scale]:
        """The factors q (or k, or k^T) was multiplied or divided by on its way here: through
        reshapes, casts, indexing, helper calls of the same file (`self._shape(q * s, ...)`), and,
        for a method's parameter, every call of that method in the class."""
        if depth > MAX_DEPTH:
            return []
        if is_a(expr, cst.BinaryOperation):
            operator = expr.operator
            if is_a(operator, cst.Divide):
                return [self.scale(expr.right, at, True)]
            if is_a(operator, cst.Multiply):
                return [self.scale(expr.right, at), self.scale(expr.left, at)]
            if is_a(operator, (cst.Add, cst.Subtract)):  # q + r_w_bias: both sides were scaled, or q was
                return self.operand_scales(expr.left, at, depth + 1) + self.operand_scales(expr.right, at, depth + 1)
            return []
        if is_a(expr, cst.Subscript):
            return self.operand_scales(expr.value, at, depth + 1)
        if is_a(expr, cst.Call):
            return self._call_scales(expr, at, depth)
        if is_a(expr, cst.Name):
            return self._name_scales(expr.value, at, depth)
        return []

    def _call_scales(self, call: cst.Call, at: int, depth: int) -> list[Scale]:
        method = method_name(call)
        qualified = self.ctx.callee(call)
        if qualified in SCALING_FUNCTIONS:
            factor = argument(call, "other", 1)
            return [self.scale(factor, at, "div" in qualified)] if factor is not None else []
        if method in SCALING_METHODS:
            factor = argument(call, "other", 0)
            return [self.scale(factor, at, method.startswith("div"))] if factor is not None else []
        target = receiver(call)
        if method in PASS_THROUGH_METHODS | REORDER_METHODS | VALUE_PRESERVING_METHODS and target is not None:
            return self.operand_scales(target, at, depth + 1)
        if qualified in PASS_THROUGH_FUNCTIONS:  # Ex) F.pad(q * s, ...): the padded values keep their scale
            padded = argument(call, "input", 0)
            return self.operand_scales(padded, at, depth + 1) if padded is not None else []
        return [
            scale
            for inner, value, after in self._helper_returns(call, at)
            for scale in inner.operand_scales(value, after, depth + 1)
        ]

    def _name_scales(self, name: str, at: int, depth: int) -> list[Scale]:
        if name in self.lambda_parameters:
            return self._parameter_scales(name, depth) if name in self.bindings else []
        if self.facts is None:
            return []
        found: list[Scale] = []
        for definition in self.facts.reaching(name, at):
            if (
                definition.kind == "augassign"
                and definition.value is not None
                and is_a(definition.operator, (cst.MultiplyAssign, cst.DivideAssign))
            ):
                found.append(
                    self.scale(definition.value, definition.order, is_a(definition.operator, cst.DivideAssign))
                )
            elif (
                definition.kind == "inplace"
                and definition.method in SCALING_METHODS
                and is_a(definition.value, cst.Call)
            ):
                factor = argument(definition.value, "other", 0)
                if factor is not None:
                    found.append(self.scale(factor, definition.order, definition.method.startswith("div")))
            elif definition.kind in ("augassign", "inplace"):
                found += self._name_scales(name, definition.order, depth + 1)
            elif definition.kind == "assign" and definition.value is not None:
                found += self.operand_scales(definition.value, definition.order, depth + 1)
            elif definition.kind == "param":
                found += self._parameter_scales(name, depth)
        return found

    def _parameter_scales(self, name: str, depth: int) -> list[Scale]:
        """What the callers pass: the argument bound in a helper being traced, or, for a method,
        the arguments of every `self.method(...)` call in the class (all of them must be scaled)."""
        if name in self.bindings:
            caller, value, at = self.bindings[name]
            return caller.operand_scales(value, at, depth + 1)
        function, cls = self.function, self.cls
        if (
            function is None
            or cls is None
            or self.ctx.class_facts(cls).methods.get(function.name.value) is not function
        ):
            return []
        found: list[Scale] = []
        for call, positional in call_sites(self.ctx, function):
            passed = bind_arguments(call, positional).get(name)
            caller_function = self.ctx.function_of(call)
            if passed is None or caller_function is function:
                return []
            scales = LogitTracer(self.ctx, caller_function).operand_scales(passed, self.ctx.order(call), depth + 1)
            if not scales:
                return []
            found += scales
        return found


class _ParameterProbe(LogitTracer):
    """Stands for every caller of a function being summarised: what it is asked to trace is one of
    the function's parameters, which comes back as a source of kind "parameter"."""

    def sources(self, expr: cst.BaseExpression, at: int, depth: int = 0) -> list[LogitSource]:
        return [LogitSource(expr, False, kind="parameter")]


def score_passing_functions(ctx: FileContext) -> dict[str, dict[str, Any]]:
    """Module-level functions that may hand back a parameter as the same scores (added to, masked,
    clamped or retyped on the way) -> their positional parameters and, for each parameter returned,
    whether the function scales it: what an importing file needs to trace scores through the call.

    Ex) `def maybe_add_mask(scores, attn_mask=None): return scores if attn_mask is None else scores + attn_mask`
    """
    found: dict[str, dict[str, Any]] = {}
    for statement in ctx.module.body:
        if not is_a(statement, cst.FunctionDef) or not (returned := return_values(ctx, statement)):
            continue
        positional = positional_parameters(statement)
        probe = _ParameterProbe(ctx, statement)
        tracer = LogitTracer(ctx, statement, {name: (probe, cst.Name(name), 0) for name in positional})
        parameters: dict[str, bool] = {}
        for value in returned:
            for source in tracer.sources(value, ctx.index.last_order(value) + 1):
                if source.kind == "parameter" and is_a(source.product, cst.Name):
                    name = source.product.value
                    parameters[name] = parameters.get(name, False) or source.scaled
        if parameters:
            found[statement.name.value] = {"positional": positional, "parameters": parameters}
    return found


def declared_unit_scale(ctx: FileContext, function: cst.FunctionDef | None) -> bool:
    """Does this attention say, in a kernel call, that its softmax scale is 1? Then its eager path leaving
    the logits unscaled is the same, deliberate choice. Read from every implementation of it in the file:
    the function, its class, and the classes that class shares code with through inheritance, such as
    the fused twin of an eager class (Gemma 4 vision's SDPA call with `scale=1.0`; GPT-Neo's flash class,
    a subclass of its eager one, with `softmax_scale=1.0`: trained unscaled)."""
    if function is None:
        return False
    cls = ctx.class_of(function)
    scopes: list[cst.CSTNode] = [function] if cls is None else list(class_family(ctx, cls))
    return any(_passes_unit_scale(ctx, call) for scope in scopes for call in ctx.index.descendants(scope, cst.Call))


def _passes_unit_scale(ctx: FileContext, call: cst.Call) -> bool:
    """A kernel called with scale 1, or a wrapper given q, k, v and a kernel's scale keyword set to 1."""
    kernel = kernel_of(ctx, call)
    if kernel is not None:
        return literal_number(kernel.argument(call, "scale")) == 1.0
    positional = [arg for arg in call.args if arg.keyword is None and not arg.star]
    return len(positional) >= 3 and any(
        arg.keyword is not None and arg.keyword.value in SCALE_KEYWORDS and literal_number(arg.value) == 1.0
        for arg in call.args
    )


UNSCALED_STATEMENT = re.compile(r"\bunscaled\b|\b(?:no|without|not)\b[^.\n]{0,20}?\bscal(?:e|ed|ing)\b", re.IGNORECASE)


def states_unscaled_design(ctx: FileContext, function: cst.FunctionDef | None) -> bool:
    """Does the attention say in words that its scores are not scaled: its docstring, its class's, or a
    comment in its body ("No scaling factor", "unscaled by design")? The author declaring the design, as
    `noqa` would; torchtune's T5 encoder documents it so."""
    if function is None:
        return False
    cls = ctx.class_of(function)
    docstrings = [function.get_docstring(), cls.get_docstring() if cls is not None else None]
    comments = _Comments()
    function.visit(comments)
    return any(UNSCALED_STATEMENT.search(text) for text in [*docstrings, *comments.found] if text)


class _Comments(cst.CSTVisitor):
    def __init__(self) -> None:
        self.found: list[str] = []

    def visit_Comment(self, node: cst.Comment) -> None:
        self.found.append(node.value)


INIT_NORMAL = frozenset({"normal_", "trunc_normal_"})  # torch.nn.init's, a library's own init module's, Tensor's


def scale_folded_into_init(ctx: FileContext, cls: cst.ClassDef | None) -> bool:
    """Does the file initialise this class's query projection with an extra 1/sqrt factor over its key
    projection? That is T5's design: the 1/sqrt(d_kv) is folded into the query weights at init and the
    scores are left unscaled. Read from weight inits of one module under an `isinstance(module, ...)`
    test naming the class: the query's std is `(a * b) ** -0.5` where another projection's is `a ** -0.5`.

    Ex) init.normal_(module.q.weight, std=f * ((d_model * d_kv) ** -0.5))
        init.normal_(module.k.weight, std=f * d_model**-0.5)
    """
    if cls is None:
        return False
    return cls.name.value in ctx.memo(("scale-folded-classes",), lambda: _classes_with_folded_scale(ctx))


def _classes_with_folded_scale(ctx: FileContext) -> frozenset[str]:
    groups: dict[cst.If, dict[str, frozenset[str]]] = {}
    for call in ctx.calls():
        init = _weight_init(ctx, call)
        if init is None:
            continue
        attribute, std = init
        guard = ctx.index.enclosing(call, cst.If)
        factors = _inverse_sqrt_factors(ctx, std)
        if guard is not None and factors:
            groups.setdefault(guard, {})[attribute] = factors
    folded: set[str] = set()
    for guard, stds in groups.items():
        if any(a < b for a in stds.values() for b in stds.values()):
            folded |= _isinstance_classes(guard.test)
    return frozenset(folded)


def _weight_init(ctx: FileContext, call: cst.Call) -> tuple[str, cst.BaseExpression] | None:
    """(projection attribute, std) of `init.normal_(m.q.weight, std=...)` or `m.q.weight.data.normal_(std=...)`."""
    if method_name(call) not in INIT_NORMAL:
        return None
    target = argument(call, "tensor", 0)
    if is_a(target, cst.Attribute) and target.attr.value == "weight":  # a function of an init module
        std = argument(call, "std", 2)
    else:  # the tensor's own method
        target, std = receiver(call), argument(call, "std", 1)
        if is_a(target, cst.Attribute) and target.attr.value == "data":
            target = target.value
    if std is None or not is_a(target, cst.Attribute) or target.attr.value != "weight":
        return None
    owner = target.value
    return (owner.attr.value, std) if is_a(owner, cst.Attribute) else None


def _inverse_sqrt_factors(ctx: FileContext, std: cst.BaseExpression) -> frozenset[str]:
    """The factors under `** -0.5` in a std expression (`f * ((a * b) ** -0.5)` -> {a, b})."""
    for power in ctx.index.descendants(std, cst.BinaryOperation):
        if is_a(power.operator, cst.Power) and literal_number(power.right) == -0.5:
            return frozenset(_product_factors(ctx, power.left))
    return frozenset()


def _product_factors(ctx: FileContext, expr: cst.BaseExpression) -> list[str]:
    if is_a(expr, cst.BinaryOperation) and is_a(expr.operator, cst.Multiply):
        return _product_factors(ctx, expr.left) + _product_factors(ctx, expr.right)
    return [ctx.code(expr.with_changes(lpar=(), rpar=()))]


def _isinstance_classes(test: cst.BaseExpression) -> set[str]:
    names: set[str] = set()
    if is_a(test, cst.Call) and dotted(test.func) == "isinstance" and len(test.args) == 2:
        kinds = test.args[1].value
        elements = [e.value for e in kinds.elements] if is_a(kinds, cst.Tuple) else [kinds]
        names = {text.rsplit(".", 1)[-1] for e in elements if (text := dotted(e))}
    return names


def key_axis(source: LogitSource, ctx: FileContext) -> tuple[int | None, int | None]:
    """Where the key axis sits in the scores a product makes, as (index from the front, index from
    the back); None where the code does not say (an unknown rank, an ellipsis). A query of a known
    rank places the keys of a matmul (`q @ k.transpose(-1, -2)`)."""
    if any(is_a(node, cst.Call) and ctx.callee(node) == REARRANGE for node in source.path):
        return None, None  # the axes were moved on the way
    if source.kind in ("bmm", "baddbmm"):
        return 2, -1
    if source.kind == "einsum" and is_a(source.product, cst.Call):
        einsum = einsum_of(ctx, source.product)
        if einsum is None:
            return None, None
        (a, b), output = einsum.inputs, einsum.output
        keys = [index for index in output if index in b and index not in a]
        if len(keys) != 1:
            return None, None
        position = output.index(keys[0])
        ellipsis_before = "..." in output[:position]
        ellipsis_after = "..." in output[position + 1 :]
        return (None if ellipsis_before else position), (None if ellipsis_after else position - len(output))
    transpose = source.transpose
    if is_a(transpose, cst.Call):
        positional = [arg for arg in transpose.args if arg.keyword is None]
        dims = [dim for arg in positional if (dim := literal_int(arg.value)) is not None]
        if method_name(transpose) == "permute" and len(dims) == len(positional):
            return len(dims) - 1, -1
        if (
            method_name(transpose) == "transpose"
            and len(dims) == len(positional) == 2
            and min(dims) >= 0
            and abs(dims[0] - dims[1]) == 1
        ):
            return max(dims), -1  # `k.transpose(2, 3)` swaps the last two dims of a 4-d key tensor
    product = source.product
    query = (
        product.left
        if is_a(product, cst.BinaryOperation)
        else argument(product, "input", 0)
        if is_a(product, cst.Call)
        else None
    )
    rank = known_rank(ctx, query) if source.kind == "matmul" and query is not None else None
    return (rank - 1 if rank is not None and rank >= 2 else None), -1


def attention_softmaxes(ctx: FileContext) -> list[tuple[SoftmaxCall, list[LogitSource]]]:
    """The softmaxes over attention logits in the file, each with the QK^T products that reach it."""

    def compute():
        found = []
        for softmax in softmax_calls(ctx):
            sources = logit_sources(ctx, softmax)
            if sources:
                found.append((softmax, sources))
        return found

    return ctx.memo("attention_softmaxes", compute)


# -- finite-minimum mask planes --------------------------------------------------------------------
MIN_PLANE_PASS_THROUGH = SHAPE_ONLY_METHODS | CAST_METHODS | REPEAT_METHODS | TRIANGLE_METHODS | FILL_METHODS
MIN_PLANE_FUNCTIONS = TRIANGLES | TENSOR_LITERALS
MIN_PLANE_DEPTH = 20  # mask builders chain many small steps (and helpers) between finfo.min and the sum


def is_dtype_min(ctx: FileContext, expr: cst.BaseExpression) -> bool:
    """`torch.finfo(dtype).min` or `-torch.finfo(dtype).max`: the most negative finite value."""
    if is_a(expr, cst.UnaryOperation) and is_a(expr.operator, cst.Minus):
        expr, attr = expr.expression, "max"
    else:
        attr = "min"
    return (
        is_a(expr, cst.Attribute)
        and expr.attr.value == attr
        and is_a(expr.value, cst.Call)
        and ctx.callee(expr.value) == "torch.finfo"
    )


def dtype_min_plane(ctx: FileContext, expr: cst.BaseExpression, at: int, depth: int = 0) -> cst.BaseExpression | None:
    """Is `expr` a mask plane holding `torch.finfo(dtype).min` where it blocks? Two such planes summed
    overflow to -inf (and a fully masked row to NaN), which is what SHP205 is about. The answer is
    where that minimum is written (the claim's evidence), or None when `expr` is no such plane.
    Answers are memoised per (expression, point): helpers and several reaching definitions make the
    search a graph, and walking it as a tree took minutes on files with many helpers."""
    if depth > MIN_PLANE_DEPTH:
        return None
    known: dict[tuple[cst.CSTNode, int], cst.BaseExpression | None] = ctx.memo("dtype_min_plane", dict)
    key = (expr, at)
    if key not in known:
        known[key] = None  # a cycle through helpers or definitions adds nothing
        known[key] = _dtype_min_plane(ctx, expr, at, depth)
    return known[key]


def _first_plane(ctx: FileContext, candidates, depth: int) -> cst.BaseExpression | None:
    """The first (expression, point) of `candidates` that is a plane, as its evidence."""
    for candidate, at in candidates:
        if candidate is not None and (found := dtype_min_plane(ctx, candidate, at, depth + 1)) is not None:
            return found
    return None


def _dtype_min_plane(ctx: FileContext, expr: cst.BaseExpression, at: int, depth: int) -> cst.BaseExpression | None:
    if is_dtype_min(ctx, expr):
        return expr
    if is_a(expr, cst.Subscript):
        return _first_plane(ctx, [(expr.value, at)], depth)
    if is_a(expr, cst.BinaryOperation) and is_a(expr.operator, cst.Multiply):
        return _first_plane(ctx, [(expr.left, at), (expr.right, at)], depth)
    if is_a(expr, cst.Name):
        function = ctx.function_of(expr)
        if function is None:
            return None
        # Ex) `mask = torch.full(..., finfo.min); mask.masked_fill_(cond, 0)`: the in-place fill keeps the plane
        return _first_plane(
            ctx,
            [
                (d.bound_value, d.order if d.kind == "assign" else ctx.order(d.node))
                for d in ctx.function_facts(function).reaching(expr.value, at)
            ],
            depth,
        )
    if not is_a(expr, cst.Call):
        return None
    qualified, method = ctx.callee(expr), method_name(expr)
    if qualified in ("torch.full", "torch.full_like"):
        return _first_plane(ctx, [(argument(expr, "fill_value", 1), at)], depth)
    if qualified == "torch.where":
        return _first_plane(ctx, [(argument(expr, "input", 1), at), (argument(expr, "other", 2), at)], depth)
    if method in ("masked_fill", "masked_fill_"):
        found = _first_plane(ctx, [(argument(expr, "value", 1), at)], depth)
        if found is not None:
            return found
    if qualified in MIN_PLANE_FUNCTIONS:
        return _first_plane(ctx, [(argument(expr, None, 0), at)], depth)
    if qualified in ("torch.cat", "torch.concat", "torch.stack"):
        parts = argument(expr, "tensors", 0)
        if not is_a(parts, (cst.List, cst.Tuple)):
            return None
        return _first_plane(ctx, [(part.value, at) for part in parts.elements], depth)
    target = receiver(expr)
    if method in MIN_PLANE_PASS_THROUGH and target is not None and not is_library_namespace(ctx, target):
        return _first_plane(ctx, [(target, at)], depth)
    helper = called_function(ctx, expr)
    if helper is None:
        return None
    return _first_plane(
        ctx, [(value, ctx.index.last_order(value) + 1) for value in return_values(ctx, helper[0])], depth
    )


# -- grouped-query head counts ---------------------------------------------------------------------
def is_head_count(expr: cst.BaseExpression) -> bool:
    """A number of heads, by the name the code gives it (`n_head`, `self.num_heads`, `config.n_kv_heads`)."""
    text = dotted(expr)
    return text is not None and "head" in text.lower()


def is_kv_head_count(expr: cst.BaseExpression) -> bool:
    """The number of key/value heads (`n_kv_heads`, `num_key_value_groups`, `n_local_heads`, `k_num_heads`)."""
    text = (dotted(expr) or "").lower()
    if any(marker in text for marker in ("kv", "key_value", "group", "local_heads")):
        return True
    words = text.rsplit(".", 1)[-1].split("_")
    return is_head_count(expr) and bool({"k", "key"} & set(words))


def is_head_ratio(ctx: FileContext, expr: cst.BaseExpression) -> bool:
    """The grouped-query group size: a head count divided by the KV head count.

    Ex) `n_heads // n_kv_heads`
    Ex) `int(q_num_heads / k_num_heads)`: a true division cast back
    Ex) `q.shape[1] // k.shape[1]`: head counts read off the tensors, along the same axis
    """
    if is_a(expr, cst.Call) and ctx.callee(expr) in ("int", "builtins.int") and len(expr.args) == 1:
        inner = expr.args[0].value
        return is_a(inner, cst.BinaryOperation) and is_a(inner.operator, cst.Divide) and _divides_heads(inner, ctx)
    return is_a(expr, cst.BinaryOperation) and is_a(expr.operator, cst.FloorDivide) and _divides_heads(expr, ctx)


def _divides_heads(expr: cst.BinaryOperation, ctx: FileContext | None = None) -> bool:
    if is_head_count(expr.left) and is_kv_head_count(expr.right):
        return True
    if ctx is None:
        return False
    query, key = _shape_axis(ctx, expr.left, QUERY_WORDS), _shape_axis(ctx, expr.right, KEY_WORDS)
    return query is not None and query == key


QUERY_WORDS = frozenset({"q", "query", "queries", "xq"})
KEY_WORDS = frozenset({"k", "key", "keys", "xk", "v", "value", "values", "xv", "kv"})


def _shape_axis(ctx: FileContext, expr: cst.BaseExpression, words: frozenset[str]) -> int | None:
    """The axis a size is read from (`q.shape[2]`, `k.size(2)`, or a name bound to one), when the tensor
    is named as one of `words`: head counts read off the query and key tensors.

    Ex) `HQ, H = q.shape[2], k.shape[2]; G = HQ // H`
    Ex) `B, T, H, K, V = *k.shape, v.shape[-1]; HQ = q.shape[2]; G = HQ // H`
    """
    unpacked = _unpacked_size(ctx, expr)
    values = [expr] if not is_a(expr, cst.Name) else possible_values(ctx, expr) if unpacked is None else None
    tensor: cst.BaseExpression | None
    axis: int | None
    if unpacked is not None:
        tensor, axis = unpacked
    elif not values or len(values) != 1:
        return None
    elif is_a(size := values[0], cst.Subscript) and len(size.slice) == 1 and is_a(size.slice[0].slice, cst.Index):
        base, axis = size.value, literal_int(size.slice[0].slice.value)
        if not (is_a(base, cst.Attribute) and base.attr.value == "shape"):
            return None
        tensor = base.value
    elif is_a(size, cst.Call) and method_name(size) == "size" and len(size.args) == 1:
        tensor, axis = receiver(size), literal_int(size.args[0].value)
    else:
        return None
    name = dotted(tensor) if tensor is not None else None
    if name is None or axis is None or not set(name.rsplit(".", 1)[-1].lower().split("_")) & words:
        return None
    return axis


def _unpacked_size(ctx: FileContext, expr: cst.BaseExpression) -> tuple[cst.BaseExpression, int] | None:
    """A name whose one definition unpacks a tensor's shape (`unpacked_shape`): the tensor and the axis."""
    function = ctx.function_of(expr) if isinstance(expr, cst.Name) else None
    if function is None or not isinstance(expr, cst.Name):
        return None
    definitions = ctx.function_facts(function).reaching(expr.value, ctx.order(expr))
    if len(definitions) != 1 or definitions[0].kind != "unpack" or not is_a(definitions[0].node, cst.Assign):
        return None
    return unpacked_shape(definitions[0].node, expr.value)


# -- what a scale is made of ------------------------------------------------------------------------
SCALE_FUNCTIONS = SQRT_FUNCTIONS | TENSOR_LITERALS | {"float", "int"}
DimensionKey = tuple  # ("param", name) | ("self", attr) | ("attr", dotted) | ("local", function order, name)


@dataclass(frozen=True)
class HeadSplit:
    """`width // heads` (or `/`) somewhere in a class: the per-head size the code computes."""

    node: cst.BinaryOperation = field(repr=False)
    width: DimensionKey | None
    divisor: DimensionKey | None
    # True when the code's reshapes show the divisor is the head count (`view(B, T, H, C // H)`),
    # False when they show it is the head dim (`H = C // D; view(B, T, H, D)`), None: they don't say.
    divisor_is_head_count: bool | None
    # the projection into heads whose input is `width`, when the heads are a product of sizes
    projection: cst.Call | None = field(default=None, repr=False)


def dimension_key(
    ctx: FileContext, expr: cst.BaseExpression, function: cst.FunctionDef | None, at: int, depth: int = 0
) -> DimensionKey | None:
    """Which quantity a name or attribute holds, followed through plain aliases (`self.dim = dim`,
    `d = self.head_dim`) so that the same quantity gets the same key wherever it is read."""
    if depth > MAX_DEPTH:
        return None
    if is_a(expr, cst.Name):
        if function is None:
            return ("global", expr.value)
        definitions = ctx.function_facts(function).reaching(expr.value, at)
        if len(definitions) == 1:
            definition = definitions[0]
            if definition.kind == "param":
                return ("param", expr.value)
            if definition.kind == "assign" and is_a(definition.value, (cst.Name, cst.Attribute)):
                return dimension_key(ctx, definition.value, function, definition.order, depth + 1)
        return ("local", ctx.order(function), expr.value)
    if is_a(expr, cst.Attribute):
        attr = self_attribute(expr)
        if attr is None:
            text = dotted(expr)
            return ("attr", text.removeprefix("self.")) if text is not None else None
        assignment = _single_self_assignment(ctx, function, attr)
        if assignment is not None and is_a(assignment[0], (cst.Name, cst.Attribute)):
            value, method, order = assignment
            return dimension_key(ctx, value, method, order, depth + 1)
        return ("self", attr)
    return None


def _single_self_assignment(ctx: FileContext, function: cst.FunctionDef | None, attr: str):
    """(value, method, order) of the one `self.attr = value` in the class, if there is exactly one."""
    cls = ctx.class_of(function) if function is not None else None
    if cls is None:
        return None
    facts = ctx.class_facts(cls)
    assignments = facts.assignments.get(attr, ())
    if len(assignments) != 1 or assignments[0].value is None:
        return None
    assignment = assignments[0]
    return assignment.value, facts.methods[assignment.method], ctx.index.last_order(assignment.node) + 1


def scale_dimensions(ctx: FileContext, scale: Scale, depth: int = 0) -> list[DimensionKey]:
    """The quantities a scale factor is computed from: `C ** -0.5` -> C, `1 / math.sqrt(self.dim)`
    -> dim. A per-head quotient (`dim // heads`) and sizes read off a tensor (`q.size(-1)`) are
    not listed: they are what the scale should be made of."""
    return _dimensions(ctx, scale.expr, scale.function, scale.at, depth)


def _dimensions(ctx: FileContext, expr: cst.BaseExpression, function, at: int, depth: int) -> list[DimensionKey]:
    if depth > MAX_DEPTH or literal_number(expr) is not None:
        return []
    if is_a(expr, cst.UnaryOperation):
        return _dimensions(ctx, expr.expression, function, at, depth + 1)
    if is_a(expr, cst.BinaryOperation):
        operator = expr.operator
        if is_a(operator, cst.Power):
            return _dimensions(ctx, expr.left, function, at, depth + 1)
        if is_a(operator, cst.Multiply):
            return _dimensions(ctx, expr.left, function, at, depth + 1) + _dimensions(
                ctx, expr.right, function, at, depth + 1
            )
        if is_a(operator, cst.Divide) and literal_number(expr.left) is not None:
            return _dimensions(ctx, expr.right, function, at, depth + 1)
        return []  # a quotient of two sizes, a sum: not one of the sizes it is made of
    if is_a(expr, cst.Call):
        qualified = ctx.callee(expr)
        if qualified in SCALE_FUNCTIONS and expr.args:
            return _dimensions(ctx, expr.args[0].value, function, at, depth + 1)
        if method_name(expr) in ("sqrt", "rsqrt") and (target := receiver(expr)) is not None:
            return _dimensions(ctx, target, function, at, depth + 1)
        return _helper_dimensions(ctx, expr, depth)
    if is_a(expr, cst.Name) and function is not None:
        definitions = ctx.function_facts(function).reaching(expr.value, at)
        if (
            len(definitions) == 1
            and definitions[0].kind == "assign"
            and definitions[0].value is not None
            and not is_a(definitions[0].value, (cst.Name, cst.Attribute))
        ):
            return _dimensions(ctx, definitions[0].value, function, definitions[0].order, depth + 1)
    if is_a(expr, cst.Attribute) and (attr := self_attribute(expr)) is not None:
        assignment = _single_self_assignment(ctx, function, attr)
        if assignment is not None and not is_a(assignment[0], (cst.Name, cst.Attribute)):
            value, method, order = assignment
            return _dimensions(ctx, value, method, order, depth + 1)
    if is_a(expr, (cst.Name, cst.Attribute)):
        key = dimension_key(ctx, expr, function, at)
        return [key] if key is not None else []
    return []


def _helper_dimensions(ctx: FileContext, call: cst.Call, depth: int) -> list[DimensionKey]:
    """A scale returned by a helper of the file (`def _scale(self): return self.embed_dim ** -0.5`): the
    sizes its returns are made of, less the helper's own parameters (what the caller passes is not known)."""
    helper = called_function(ctx, call)
    if helper is None:
        return []
    function = helper[0]
    own = {("param", name) for name in positional_parameters(function)}
    return [
        key
        for value in return_values(ctx, function)
        for key in _dimensions(ctx, value, function, ctx.index.last_order(value) + 1, depth + 1)
        if key not in own
    ]


def scale_set_at(ctx: FileContext, expr: cst.BaseExpression) -> cst.BaseExpression:
    """Where a scale kept in an attribute is set, when the class sets it once (`self.scale = dim ** -0.5`):
    the fix goes there. Else the scale where it is applied."""
    attr = self_attribute(expr)
    cls = ctx.class_of(expr) if attr is not None else None
    assignments = ctx.class_facts(cls).assignments.get(attr, []) if cls is not None and attr is not None else []
    return assignments[0].value if len(assignments) == 1 and assignments[0].value is not None else expr


# -- how a scale grows with the sizes it is made of ---------------------------------------------------
ROOT_FUNCTIONS = frozenset({"math.sqrt", "numpy.sqrt", "torch.sqrt"})
INVERSE_ROOT_FUNCTIONS = frozenset({"torch.rsqrt"})
POWER_FUNCTIONS = frozenset({"math.pow", "numpy.power", "torch.pow"})
SIZE_CASTS = TENSOR_LITERALS | {"float", "int"}


def logit_power(ctx: FileContext, source: LogitSource) -> Fraction | None:
    """The power of the head size the scores of `source` are multiplied by on their way to the softmax
    (scales of q and k included): -1/2 for `q @ k.mT / math.sqrt(d)`, +1/2 for `* d ** 0.5`, 0 for a
    fixed temperature. None when a factor is not a known power of a size (a learned temperature, a
    parameter the caller passes)."""
    # `q * s` lists both factors, as either may be the scale: of the two, the one of a known power is
    by_product: dict[cst.CSTNode, list[Fraction | None]] = {}
    for scale in source.scales:
        power = scale_power(ctx, scale.expr, scale.function, scale.at)
        signed = None if power is None else (-power if scale.divides else power)
        by_product.setdefault(ctx.index.parents.get(scale.expr) or scale.expr, []).append(signed)
    total = Fraction(0)
    for product, powers in by_product.items():
        known = [power for power in powers if power is not None]
        pair = is_a(product, cst.BinaryOperation) and is_a(product.operator, cst.Multiply) and len(powers) == 2
        if len(known) < len(powers) and not (pair and known):
            return None
        total += sum(known, Fraction(0))
    return total


def scale_power(
    ctx: FileContext, expr: cst.BaseExpression, function: cst.FunctionDef | None, at: int, depth: int = 0
) -> Fraction | None:
    """How a scale factor grows with the sizes it is made of: `d ** -0.5` and `1 / math.sqrt(d)` are
    -1/2, `math.sqrt(d)` is +1/2, a literal is 0. Any size counts as one size (`dim // heads`, `q.size(-1)`,
    `self.head_dim`): only roots, powers and literal quotients change the power. A bare name counts
    only under a root or a power; alone, it may hold anything (a learned temperature), so it is None."""
    if depth > MAX_DEPTH:
        return None
    if literal_number(expr) is not None:
        return Fraction(0)
    if is_a(expr, cst.UnaryOperation) and is_a(expr.operator, (cst.Minus, cst.Plus)):
        return scale_power(ctx, expr.expression, function, at, depth + 1)
    if is_a(expr, cst.BinaryOperation):
        operator = expr.operator
        if is_a(operator, cst.Power):
            exponent = literal_number(expr.right)
            base = _size_power(ctx, expr.left, function, at, depth + 1)
            return None if exponent is None or base is None else base * Fraction(exponent).limit_denominator(8)
        if is_a(operator, (cst.Multiply, cst.Divide)):
            left = scale_power(ctx, expr.left, function, at, depth + 1)
            right = scale_power(ctx, expr.right, function, at, depth + 1)
            if left is None or right is None:
                return None
            return left + right if is_a(operator, cst.Multiply) else left - right
        return None
    if is_a(expr, cst.BooleanOperation) and is_a(expr.operator, cst.Or):
        # Ex) `qk_scale or head_dim ** -0.5`: the default the author wrote
        return scale_power(ctx, expr.right, function, at, depth + 1)
    if is_a(expr, cst.IfExp):
        # Ex) `head_dim ** -0.5 if config.scale_attn_weights else 1.0`: scaling switched off is no power
        # (a choice between two numbers, `3 if pairwise else 2`, is left to what takes its root: a count)
        branches = [branch for branch in (expr.body, expr.orelse) if literal_number(branch) is None]
        powers = {scale_power(ctx, branch, function, at, depth + 1) for branch in branches}
        return powers.pop() if len(powers) == 1 else None
    if is_a(expr, cst.Call):
        qualified = ctx.callee(expr)
        inner = expr.args[0].value if expr.args else receiver(expr)
        method = method_name(expr)
        if inner is None:
            return None
        if qualified in ROOT_FUNCTIONS or (qualified is None and method == "sqrt"):
            base = _size_power(ctx, inner, function, at, depth + 1)
            return None if base is None else base / 2
        if qualified in INVERSE_ROOT_FUNCTIONS or (qualified is None and method == "rsqrt"):
            base = _size_power(ctx, inner, function, at, depth + 1)
            return None if base is None else -base / 2
        if qualified in POWER_FUNCTIONS and len(expr.args) == 2:
            exponent = literal_number(expr.args[1].value)
            base = _size_power(ctx, inner, function, at, depth + 1)
            return None if exponent is None or base is None else base * Fraction(exponent).limit_denominator(8)
        if qualified in SIZE_CASTS and expr.args:
            return scale_power(ctx, inner, function, at, depth + 1)
        helper = called_function(ctx, expr)
        if helper is not None and not helper[1]:  # a helper of no arguments (`self._scale()`)
            powers = {
                scale_power(ctx, value, helper[0], ctx.index.last_order(value) + 1, depth + 1)
                for value in return_values(ctx, helper[0])
            }
            return powers.pop() if len(powers) == 1 else None
        return None
    if is_a(expr, cst.Name) and function is not None:
        definitions = ctx.function_facts(function).reaching(expr.value, at)
        if len(definitions) == 1 and definitions[0].kind == "assign" and definitions[0].value is not None:
            return scale_power(ctx, definitions[0].value, function, definitions[0].order, depth + 1)
        return None
    if is_a(expr, cst.Attribute) and (attr := self_attribute(expr)) is not None:
        assignment = _single_self_assignment(ctx, function, attr)
        if assignment is not None:
            value, method, order = assignment
            return scale_power(ctx, value, method, order, depth + 1)
    return None


def _size_power(
    ctx: FileContext, expr: cst.BaseExpression, function: cst.FunctionDef | None, at: int, depth: int
) -> Fraction | None:
    """The power of what a root or a power is taken of: a known power where the value says one, else
    a size (1): nobody takes the square root of a tensor to scale attention scores."""
    known = scale_power(ctx, expr, function, at, depth)
    if known is not None:
        return known
    if is_a(expr, cst.BinaryOperation) and is_a(expr.operator, (cst.Multiply, cst.FloorDivide, cst.Divide)):
        numbers = [literal_number(side) is not None for side in (expr.left, expr.right)]
        if numbers == [True, False]:  # `1.0 / d`: the inverse of a size; `2 * d`: a size
            inner = _size_power(ctx, expr.right, function, at, depth + 1)
            return None if inner is None else (inner if is_a(expr.operator, cst.Multiply) else -inner)
        if numbers == [False, True]:  # `d / 2`, `d * 4`
            return _size_power(ctx, expr.left, function, at, depth + 1)
        return Fraction(1)  # `dim // heads`, `dim_head * heads`: a size
    return Fraction(1) if is_a(expr, (cst.Name, cst.Attribute, cst.Subscript, cst.Call)) else None


def head_splits(ctx: FileContext, scope: cst.CSTNode) -> list[HeadSplit]:
    """Every `a // b` (or `int(a / b)`) of two sizes, no literals, in a class or function: where
    the code divides a width among heads, and which of the two the divisor is. A class also inherits
    the splits of the in-file classes that construct it, for the parameters they fill with the width."""
    own = _own_head_splits(ctx, scope)
    if not is_a(scope, cst.ClassDef):
        return own
    found = own + _constructor_splits(ctx, scope) + _projection_splits(ctx, scope) + _widening_splits(ctx, scope)
    return found + _input_width_splits(ctx, scope, found)


def _input_width_splits(ctx: FileContext, cls: cst.ClassDef, splits: list[HeadSplit]) -> list[HeadSplit]:
    """The width a split divides, read off the input of a projection built with it: `self.to_qkv =
    nn.Linear(dim, ...)` with `dim // heads` the head size, then `b, t, d, h = *x.shape, self.heads;
    self.to_qkv(x)` in forward: `d` is `dim`, the model width.

    Ex) axial-attention 0.1.8: `dots = einsum('bie,bje->bij', q, k) * (d ** -0.5)` on per-head q and k
    """
    widths = {split.width: split for split in splits if split.width is not None}
    if not widths:
        return []
    found = []
    for attr, constructor, init in linear_projections(ctx, cls):
        width = argument(constructor, "in_features", 0)
        key = dimension_key(ctx, width, init, ctx.order(constructor)) if width is not None else None
        split = widths.get(key) if key is not None else None
        if split is None:
            continue
        found += [
            HeadSplit(split.node, key, split.divisor, split.divisor_is_head_count)
            for key in _input_width_keys(ctx, cls, attr)
        ]
    return found


def _input_width_keys(ctx: FileContext, cls: cst.ClassDef, attr: str) -> list[DimensionKey]:
    """The locals that hold the last dim of what `self.attr(x)` is applied to (`B, T, C = x.shape`)."""
    keys: list[DimensionKey] = []
    for call in ctx.index.descendants(cls, cst.Call):
        applied = argument(call, None, 0)
        function = ctx.function_of(call)
        if self_attribute(call.func) == attr and is_a(applied, cst.Name) and function is not None:
            keys += [("local", ctx.order(function), name) for name in _last_dim_names(ctx, function, applied.value)]
    return keys


def linear_projections(ctx: FileContext, cls: cst.ClassDef) -> list[tuple[str, cst.Call, cst.FunctionDef]]:
    """(attribute, constructor, the method that builds it) for each attribute of the class built once, as
    an `nn.Linear` (`self.to_qkv = nn.Linear(dim, inner_dim * 3)`)."""
    facts = ctx.class_facts(cls)
    found = []
    for attr, assignments in facts.assignments.items():
        constructor = assignments[0].value if len(assignments) == 1 else None
        method = facts.methods.get(assignments[0].method)
        if is_a(constructor, cst.Call) and ctx.callee(constructor) == "torch.nn.Linear" and method is not None:
            found.append((attr, constructor, method))
    return found


def _widening_splits(ctx: FileContext, cls: cst.ClassDef) -> list[HeadSplit]:
    """Heads of a size the code sets: `inner_dim = dim_head * heads`, then `self.to_qkv = nn.Linear(dim,
    inner_dim * 3)`. The projection's input size (`dim`) is the model width; a head is `dim_head` wide.

    Ex) dalle-pytorch 0.0.47: `self.scale = dim ** -0.5` next to `nn.Linear(dim, inner_dim * 3)`
    """

    def compute() -> list[HeadSplit]:
        found = []
        for _, constructor, init in linear_projections(ctx, cls):
            at = ctx.order(constructor)
            width = argument(constructor, "in_features", 0)
            heads = _size_product(ctx, argument(constructor, "out_features", 1), init, at)
            if heads is None or not is_a(width, (cst.Name, cst.Attribute)):
                continue
            width_key = dimension_key(ctx, width, init, at)
            factors = {dimension_key(ctx, side, init, at) for side in (heads.left, heads.right)}
            if width_key is not None and width_key not in factors and None not in factors:
                found.append(HeadSplit(heads, width_key, None, None, projection=constructor))
        return found

    return ctx.memo(f"widening_splits:{ctx.order(cls)}", compute)


def _size_product(
    ctx: FileContext, size: cst.BaseExpression | None, function: cst.FunctionDef, at: int, depth: int = 0
) -> cst.BinaryOperation | None:
    """The product of two sizes (`dim_head * heads`, no literal) a size is, times a literal (`* 3` for
    q, k and v), directly or through a local assigned once."""
    if size is None or depth > MAX_DEPTH:
        return None
    if is_a(size, cst.BinaryOperation) and is_a(size.operator, cst.Multiply):
        literal = [side for side in (size.left, size.right) if literal_number(side) is not None]
        if not literal:
            sides_are_sizes = all(is_a(side, (cst.Name, cst.Attribute)) for side in (size.left, size.right))
            return size if sides_are_sizes else None
        if len(literal) == 1:
            other = size.right if literal[0] is size.left else size.left
            return _size_product(ctx, other, function, at, depth + 1)
        return None
    if not is_a(size, cst.Name):
        return None
    definitions = ctx.function_facts(function).reaching(size.value, at)
    if len(definitions) != 1 or definitions[0].kind != "assign":
        return None
    return _size_product(ctx, definitions[0].value, function, definitions[0].order, depth + 1)


def _projection_splits(ctx: FileContext, cls: cst.ClassDef) -> list[HeadSplit]:
    """One head per module: `self.query = nn.Linear(n_embd, head_size)` where every constructor of the
    class hands it a per-head size (`head_size = n_embd // n_head` in the class that builds it, through
    any number of constructors). The last dim of the input the projection is applied to
    (`B, T, C = x.shape`) is then the model width that split divides.

    Ex) ng-video-lecture: `Head(head_size)` in `MultiHeadAttention`, `wei = q @ k.transpose(-2, -1) * C**-0.5`
    """

    def compute() -> list[HeadSplit]:
        found = []
        for attr, constructor, init in linear_projections(ctx, cls):
            quotient = _per_head_size(ctx, cls, argument(constructor, "out_features", 1), init, ctx.order(constructor))
            if quotient is None:
                continue
            found += [HeadSplit(quotient, key, None, None) for key in _input_width_keys(ctx, cls, attr)]
        return found

    return ctx.memo(f"projection_splits:{ctx.order(cls)}", compute)


def _per_head_size(
    ctx: FileContext,
    cls: cst.ClassDef,
    size: cst.BaseExpression | None,
    function: cst.FunctionDef,
    at: int,
    depth: int = 0,
) -> cst.BinaryOperation | None:
    """The head split (`n_embd // n_head`) a size is, directly or as a parameter of `__init__` that every
    constructor of the class in this file fills with one (followed up through the constructors)."""
    if size is None or depth > MAX_DEPTH:
        return None
    if is_a(size, cst.BinaryOperation):
        return (
            size
            if _is_size_division(ctx, size)
            and not any(literal_number(side) is not None for side in (size.left, size.right))
            else None
        )
    if not is_a(size, cst.Name):
        return None
    definitions = ctx.function_facts(function).reaching(size.value, at)
    if len(definitions) != 1:
        return None
    definition = definitions[0]
    if definition.kind == "assign" and definition.value is not None:
        return _per_head_size(ctx, cls, definition.value, function, definition.order, depth + 1)
    if definition.kind != "param" or function.name.value != "__init__" or ctx.class_of(function) is not cls:
        return None
    names = positional_parameters(function)[1:]
    splits = []
    for call in ctx.calls():
        if not is_a(call.func, cst.Name) or call.func.value != cls.name.value:
            continue
        caller, holder = ctx.function_of(call), ctx.class_of(call)
        value = bind_arguments(call, names).get(size.value)
        if caller is None or holder is None or holder is cls or value is None:
            return None
        split = _per_head_size(ctx, holder, value, caller, ctx.order(call), depth + 1)
        if split is None:
            return None
        splits.append(split)
    return splits[0] if splits else None


def _last_dim_names(ctx: FileContext, function: cst.FunctionDef, tensor: str) -> list[str]:
    """Names the function binds to the last dim of `tensor`: `B, T, C = x.shape` (or `x.size()`)."""
    names = []
    for node in ctx.index.descendants(function.body, cst.Assign, prune=HELPER_SCOPES):
        value = node.value
        if is_a(value, cst.Call) and method_name(value) == "size" and not value.args:
            value = value.func
        if not (is_a(value, cst.Attribute) and value.attr.value in ("shape", "size") and is_a(value.value, cst.Name)):
            continue
        if value.value.value != tensor or len(node.targets) != 1 or not is_a(node.targets[0].target, cst.Tuple):
            continue
        elements = node.targets[0].target.elements
        if elements and is_a(elements[-1].value, cst.Name) and not any(is_a(e, cst.StarredElement) for e in elements):
            names.append(elements[-1].value.value)
    # Ex) `b, t, d, h = *x.shape, self.heads`: the starred shape binds exactly the names before `h`
    for node in ctx.index.descendants(function.body, cst.Assign, prune=HELPER_SCOPES):
        if not isinstance(node.value, cst.Tuple) or len(node.targets) != 1:
            continue
        target = node.targets[0].target
        rights, lefts = node.value.elements, target.elements if isinstance(target, cst.Tuple) else ()
        stars = [i for i, e in enumerate(rights) if isinstance(e, cst.StarredElement)]
        if len(stars) != 1 or not lefts or any(isinstance(e, cst.StarredElement) for e in lefts):
            continue
        last = len(lefts) - (len(rights) - stars[0] - 1) - 1
        bound = lefts[last].value if stars[0] <= last < len(lefts) else None
        if isinstance(bound, cst.Name) and _shape_owner(rights[stars[0]].value) == tensor:
            names.append(bound.value)
    return names


def _shape_owner(expr: cst.BaseExpression) -> str | None:
    """`x` for `x.shape` or `x.size()`."""
    if isinstance(expr, cst.Call) and not expr.args and method_name(expr) == "size":
        expr = expr.func
    if isinstance(expr, cst.Attribute) and expr.attr.value in ("shape", "size") and isinstance(expr.value, cst.Name):
        return expr.value.value
    return None


def _constructor_splits(ctx: FileContext, cls: cst.ClassDef) -> list[HeadSplit]:
    """Ex) `dim_heads = dim // heads; self.attn = Attention(bucket_size, dim, dim_heads, heads)`: inside
    `Attention`, the parameter `dim` is the width its constructor divides among heads. Only when the
    same call also hands over the per-head size or the head count: the class then works per head."""

    def compute() -> list[HeadSplit]:
        init = ctx.class_facts(cls).methods.get("__init__")
        if init is None:
            return []
        names = positional_parameters(init)[1:]
        found = []
        for call in ctx.calls():
            caller = ctx.class_of(call)
            if not is_a(call.func, cst.Name) or call.func.value != cls.name.value or caller in (None, cls):
                continue
            function, at = ctx.function_of(call), ctx.order(call)
            keys = {
                parameter: dimension_key(ctx, value, function, at)
                for parameter, value in bind_arguments(call, names).items()
                if is_a(value, (cst.Name, cst.Attribute))
            }
            for split in _own_head_splits(ctx, caller):
                per_head = {split.divisor, _assigned_key(ctx, split.node)} - {None}
                if split.width is None or not per_head & set(keys.values()):
                    continue
                found += [
                    HeadSplit(split.node, ("param", p), None, None) for p, key in keys.items() if key == split.width
                ]
        return found

    return ctx.memo(f"constructor_splits:{ctx.order(cls)}", compute)


def _own_head_splits(ctx: FileContext, scope: cst.CSTNode) -> list[HeadSplit]:
    def compute() -> list[HeadSplit]:
        layouts = _head_layouts(ctx, scope)
        found = []
        for node in ctx.index.descendants(scope, cst.BinaryOperation):
            if not _is_size_division(ctx, node):
                continue
            if not all(is_a(side, (cst.Name, cst.Attribute)) for side in (node.left, node.right)):
                continue
            function = ctx.function_of(node)
            at = ctx.order(node)
            divisor = dimension_key(ctx, node.right, function, at)
            quotient = {node, _assigned_key(ctx, node)} - {None}
            head_count = None
            for heads, head_dim in layouts:
                if divisor in heads or quotient & head_dim:
                    head_count = True
                elif divisor in head_dim or quotient & heads:
                    head_count = False if head_count is None else head_count
            found.append(HeadSplit(node, dimension_key(ctx, node.left, function, at), divisor, head_count))
        return found

    return ctx.memo(f"head_splits:{ctx.order(scope)}", compute)


def _is_size_division(ctx: FileContext, node: cst.BinaryOperation) -> bool:
    """`a // b`, or `int(a / b)`: an integer size, not a tensor divided by a factor."""
    if is_a(node.operator, cst.FloorDivide):
        return True
    parent = ctx.index.parents.get(node)
    holder = ctx.index.parents.get(parent) if is_a(parent, cst.Arg) else None
    return is_a(node.operator, cst.Divide) and is_a(holder, cst.Call) and dotted(holder.func) == "int"


def _assigned_key(ctx: FileContext, node: cst.CSTNode) -> DimensionKey | None:
    """The key of the name or attribute a split is assigned to (`head_dim = dim // heads`)."""
    statement = ctx.index.parents.get(node)
    if is_a(statement, cst.Assign) and len(statement.targets) == 1:
        target = statement.targets[0].target
        if is_a(target, cst.Name):
            function = ctx.function_of(node)
            return ("local", ctx.order(function), target.value) if function is not None else ("global", target.value)
        if is_a(target, cst.Attribute):
            return dimension_key(ctx, target, ctx.function_of(node), ctx.index.last_order(statement) + 1)
    return None


def _head_layouts(ctx: FileContext, scope: cst.CSTNode) -> list[tuple[set, set]]:
    """For each `view`/`reshape` into heads in the scope, (what sits on the heads axis, what sits on
    the head-dim axis): the last two sizes, or the two before a trailing -1 (the positions) after a head
    count (timm's channels-first `view(B, self.num_heads, self.dim_head, -1)`), as keys and as the nodes
    themselves."""
    layouts = []
    for call in ctx.index.descendants(scope, cst.Call):
        if method_name(call) not in ("view", "reshape"):
            continue
        sizes = [arg.value for arg in call.args if arg.keyword is None and not arg.star]
        if len(sizes) < 3:
            continue
        function = ctx.function_of(call)
        at = ctx.order(call)
        heads, head_dim = sizes[-2], sizes[-1]
        if len(sizes) >= 4 and literal_int(head_dim) == -1 and _names_heads(sizes[-3]) and not _names_heads(heads):
            heads, head_dim = sizes[-3], sizes[-2]  # channels first: view(B, heads, head_dim, -1), positions last
        layouts.append(
            (
                {heads, dimension_key(ctx, heads, function, at)} - {None},
                {head_dim, dimension_key(ctx, head_dim, function, at)} - {None},
            )
        )
    return layouts


def _names_heads(expr: cst.BaseExpression) -> bool:
    """A head count by its name, and not a per-head size (`self.num_heads`, not `self.dim_head`)."""
    text = (dotted(expr) or "").lower()
    return is_head_count(expr) and "dim" not in text and "size" not in text


def logit_sources(ctx: FileContext, softmax: SoftmaxCall) -> list[LogitSource]:
    tracer = LogitTracer(ctx, softmax.function)
    return tracer.sources(softmax.input, ctx.order(softmax.call))


# -- scales handed to a function that multiplies the scores by them ------------------------------------
def logit_multiplier_parameters(ctx: FileContext, function: cst.FunctionDef) -> frozenset[str]:
    """Parameters of `function` that multiply the attention scores of a softmax in it: `scaling` in
    transformers' `eager_attention_forward` (`torch.matmul(query, key.mT) * scaling`)."""

    def compute() -> frozenset[str]:
        parameters = set(ctx.function_facts(function).parameters)
        found = set()
        for softmax in softmax_calls(ctx):
            if softmax.function is not function:
                continue
            for source in logit_sources(ctx, softmax):
                found |= {
                    scale.expr.value
                    for scale in source.scales
                    if not scale.divides and is_a(scale.expr, cst.Name) and scale.expr.value in parameters
                }
        return frozenset(found)

    return ctx.memo(("logit_multiplier_parameters", id(function)), compute)


def passed_logit_multipliers(ctx: FileContext) -> list[tuple[cst.Call, cst.BaseExpression]]:
    """(call, value) for each value a call hands to a function of this file as the factor it multiplies
    the scores by, the function called by name or through a local that may hold it (`attention_interface
    = eager_attention_forward`, replaced by another implementation on some paths).

    Ex) transformers 4.55 GPT-BigCode: `attention_interface(self, q, k, v, mask, scaling=self.scaling)`"""
    if not ctx.mentions(b"softmax"):
        return []
    found = []
    for call in ctx.calls():
        for function, positional in possible_callees(ctx, call):
            for name in logit_multiplier_parameters(ctx, function):
                value = bind_arguments(call, positional).get(name)
                if value is not None:
                    found.append((call, value))
    return found


@dataclass(frozen=True)
class UnitKernelScale:
    """A kernel whose softmax scale is 1: the literal, where it is written, and the query the kernel gets."""

    kernel_call: cst.Call
    literal: cst.BaseExpression
    query: cst.BaseExpression
    query_at: int
    query_function: cst.FunctionDef


def unit_kernel_scales(ctx: FileContext) -> list[UnitKernelScale]:
    """Kernels told that their softmax scale is 1: at the kernel call, or through a helper of this file
    whose parameter is the kernel's scale, the 1 written where the helper is called.

    Ex) transformers 4.36 Phi: `self._flash_attention_forward(q, k, v, mask, q_len, softmax_scale=1.0)`,
    whose `flash_attn_func(..., softmax_scale=softmax_scale)` gets the 1"""
    found = []
    for call in ctx.calls():
        kernel = kernel_of(ctx, call)
        function = ctx.function_of(call)
        value = kernel.argument(call, "scale") if kernel is not None else None
        query = kernel.argument(call, "query") if kernel is not None else None
        if value is None or query is None or function is None:
            continue
        if literal_number(value) == 1.0:
            found.append(UnitKernelScale(call, value, query, ctx.order(call), function))
            continue
        facts = ctx.function_facts(function)
        if not (is_a(value, cst.Name) and facts.is_parameter(value.value) and is_a(query, cst.Name)):
            continue
        if any(d.kind != "param" for d in facts.reaching(value.value, ctx.order(call))):
            continue
        for caller in ctx.calls():
            for callee, positional in possible_callees(ctx, caller):
                if callee is not function:
                    continue
                bound = bind_arguments(caller, positional)
                handed, handed_query = bound.get(value.value), bound.get(query.value)
                caller_function = ctx.function_of(caller)
                if (
                    handed is not None
                    and literal_number(handed) == 1.0
                    and handed_query is not None
                    and caller_function is not None
                ):
                    found.append(UnitKernelScale(call, handed, handed_query, ctx.order(caller), caller_function))
    return found


def query_scaled(ctx: FileContext, unit: UnitKernelScale) -> bool:
    """Whether the query a unit-scale kernel gets was scaled on its way there (`q = q * self.scaling`)."""
    tracer = LogitTracer(ctx, unit.query_function)
    return bool(tracer.operand_scales(unit.query, unit.query_at, 0))


# -- a scale built and never applied: `self.point_scale = (...) ** -0.5`, unread, and one logit term unscaled --
@dataclass(frozen=True)
class UnappliedScale:
    term: cst.BaseExpression  # the logit term that enters the softmax with no scale
    scale: cst.Attribute  # `self.point_attn_logits_scale` where the constructor sets it


def unapplied_scales(ctx: FileContext, softmax: SoftmaxCall) -> list[UnappliedScale]:
    """Logits summed from several terms (`scalar + points + pairwise`, through locals and mask fills) where
    every term but one is multiplied by a `self.*` scale the constructor computes as an inverse root, and
    the class computes exactly one more such scale that nothing reads: that scale belongs to the unscaled
    term (invariant-point-attention 0.0.3's point logits)."""
    cls = ctx.class_of(softmax.call)
    if cls is None or softmax.function is None:
        return []
    scales = _inverse_root_attributes(ctx, cls)
    unread = [node for attr, node in scales.items() if not ctx.class_facts(cls).is_read(attr)]
    if len(unread) != 1:
        return []
    terms = _logit_terms(ctx, softmax.function, softmax.input, ctx.order(softmax.call))
    if terms is None or len(terms) < 2:
        return []
    applied = set(scales)
    unscaled = [term for term in terms if not _mentions_attribute(ctx, term, applied)]
    if len(unscaled) != 1:  # with two terms or more, the others are scaled
        return []
    return [UnappliedScale(unscaled[0], unread[0])]


def _inverse_root_attributes(ctx: FileContext, cls: cst.ClassDef) -> dict[str, cst.Attribute]:
    """`self.x = (...) ** -0.5` (or `1 / sqrt(...)`) set in the constructor: the attribute and its target."""
    found: dict[str, cst.Attribute] = {}
    init = ctx.class_facts(cls).methods.get("__init__")
    for attr, assignments in ctx.class_facts(cls).assignments.items():
        for assignment in assignments:
            node = assignment.node
            if assignment.method != "__init__" or assignment.value is None or not is_a(node, cst.Assign):
                continue
            power = scale_power(ctx, assignment.value, init, ctx.order(node))
            target = node.targets[0].target if len(node.targets) == 1 else None
            if power is not None and power < 0 and is_a(target, cst.Attribute):
                found[attr] = target
    return found


def _logit_terms(
    ctx: FileContext, function: cst.FunctionDef, expr: cst.BaseExpression, at: int, depth: int = 0
) -> list[cst.BaseExpression] | None:
    """The summands that make up the logits: through `a + b`, locals, and mask fills (`masked_fill`,
    `masked_fill_`), each distinct term once. None when a name has no definition the function shows."""
    if depth > MAX_DEPTH:
        return None
    if is_a(expr, cst.BinaryOperation) and is_a(expr.operator, cst.Add):
        left = _logit_terms(ctx, function, expr.left, at, depth + 1)
        right = _logit_terms(ctx, function, expr.right, at, depth + 1)
        return None if left is None or right is None else list(dict.fromkeys(left + right))
    if is_a(expr, cst.Call) and method_name(expr) in ("masked_fill", "masked_fill_") and (filled := receiver(expr)):
        return _logit_terms(ctx, function, filled, ctx.order(expr), depth + 1)
    if is_a(expr, cst.Name):
        definitions = ctx.function_facts(function).reaching(expr.value, at)
        if not definitions or any(d.kind not in ("assign", "inplace") or d.value is None for d in definitions):
            return None
        found: list[cst.BaseExpression] = []
        for definition in definitions:
            value = definition.value
            if definition.kind == "inplace":  # `x.masked_fill_(m, v)`: the earlier x
                value = receiver(value) if is_a(value, cst.Call) else None
            terms = _logit_terms(ctx, function, value, definition.order, depth + 1) if value is not None else None
            if terms is None:
                return None
            found += terms
        return list(dict.fromkeys(found))
    return [expr]


def _mentions_attribute(ctx: FileContext, expr: cst.BaseExpression, attrs: set[str]) -> bool:
    return any(
        self_attribute(node) in attrs for node in (expr, *ctx.index.descendants(expr)) if is_a(node, cst.Attribute)
    )
