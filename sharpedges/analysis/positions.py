"""Rotary position embeddings (RoPE): where frequency tables come from, which products turn them into
angles, the precision those products run in, the channel layout tables and rotations use, and which
tensors a rotation is applied to.

A frequency table is the inverse-frequency formula `1 / base ** (arange(0, d, 2) / d)` (or a value
bound to it, or the `inv_freq` every RoPE implementation names it); an angle product multiplies such a
table by positions (`outer`, `einsum`, `@`, `*`). Precision is what the code says about the operands
of that product: an explicit cast, a dtype borrowed from the activations, or a buffer that
`model.half()` / `model.to(torch.bfloat16)` casts along with the weights.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import libcst as cst

from sharpedges.analysis.calls import (
    argument,
    is_false,
    literal_int,
    literal_number,
    literal_string,
    method_name,
    receiver,
)
from sharpedges.analysis.classes import self_attribute
from sharpedges.analysis.context import FileContext
from sharpedges.analysis.derived import attention_value_arguments, bindings
from sharpedges.analysis.summaries import called_function, imported_summary, passed_values, return_values
from sharpedges.analysis.training_mode import runs_in_forward
from sharpedges.analysis.values import MAX_DEPTH, registered_buffers
from sharpedges.analysis.vocabulary import (
    BROADCAST_METHODS,
    BUFFER_CONSTRUCTORS,
    CAST_METHODS,
    COPY_METHODS,
    DTYPE_ARGUMENT_CASTS,
    PLACEMENT_METHODS,
    REORDER_METHODS,
    REPEAT_METHODS,
    RESHAPE_METHODS,
    cast_precision,
    dtype_precision,
    einops_pair_layout,
)
from sharpedges.analysis.walk import is_a

FREQUENCY_NAME = "inv_freq"  # the name HF, gpt-neox, Mistral, Megatron... give the table
# Steps that keep a tensor's values (and dtype): followed when asking where a table came from.
VIEW_METHODS = RESHAPE_METHODS | BROADCAST_METHODS | COPY_METHODS | REORDER_METHODS | REPEAT_METHODS | PLACEMENT_METHODS
PRODUCT_FUNCTIONS = {"torch.outer", "torch.ger", "torch.einsum", "torch.matmul", "torch.mul", "torch.mm"}
PRODUCT_METHODS = {"outer", "ger", "matmul", "mul", "mm"}
# Products autocast runs in the low-precision dtype even when both inputs are float32.
AUTOCAST_LOWERED = {"torch.einsum", "torch.matmul", "torch.mm", "matmul", "mm"}


# -- frequency tables -------------------------------------------------------------------------------
def is_frequency_formula(ctx: FileContext, expr: cst.BaseExpression) -> bool:
    """`base ** (arange(0, d, 2) / d)` somewhere in `expr` (also inverted, negated or via torch.pow)."""
    for node in (expr, *ctx.index.descendants(expr, (cst.BinaryOperation, cst.Call))):
        exponent = None
        if is_a(node, cst.BinaryOperation) and is_a(node.operator, cst.Power):
            exponent = node.right
        elif is_a(node, cst.Call) and ctx.callee(node) == "torch.pow":
            exponent = argument(node, "exponent", 1)
        if exponent is not None and _contains_arange(ctx, exponent):
            return True
    return False


def _contains_arange(ctx: FileContext, expr: cst.BaseExpression) -> bool:
    """An `arange` in `expr`, or a local of it bound to an arange divided by the dimension (`scale =
    arange(0, d, 2) / d`): the fractional exponents of a frequency table. ALiBi's integer powers
    (`powers = arange(1, 1 + n); slopes = torch.pow(base, powers)`) are no frequencies."""
    if any(_is_arange(ctx, node) for node in (expr, *ctx.index.descendants(expr, cst.Call))):
        return True
    names = [expr] if is_a(expr, cst.Name) else list(ctx.index.descendants(expr, cst.Name))
    return any(
        is_a(value, cst.BinaryOperation)
        and is_a(value.operator, cst.Divide)
        and any(_is_arange(ctx, node) for node in (value.left, *ctx.index.descendants(value.left, cst.Call)))
        for name in names
        for value in _local_values(ctx, name)
    )


def _is_arange(ctx: FileContext, node: cst.CSTNode) -> bool:
    return is_a(node, cst.Call) and (ctx.callee(node) == "torch.arange" or method_name(node) == "arange")


def _strip(expr: cst.BaseExpression) -> cst.BaseExpression:
    """Through indexing, views and casts to the tensor they start from."""
    while True:
        if is_a(expr, cst.Subscript):
            expr = expr.value
        elif (
            is_a(expr, cst.Call)
            and method_name(expr) in VIEW_METHODS | CAST_METHODS
            and (inner := receiver(expr)) is not None
        ):
            expr = inner
        else:
            return expr


def is_frequency(ctx: FileContext, expr: cst.BaseExpression, depth: int = 0) -> bool:
    """Whether `expr` holds (a view or cast of) a rotary inverse-frequency table."""
    if depth > MAX_DEPTH:
        return False
    # asked of both operands of every product and of every name in a candidate position: computed
    # once per (expression, depth)
    known: dict[tuple[cst.BaseExpression, int], bool] = ctx.memo("positions.is_frequency", dict)
    found = known.get((expr, depth))
    if found is None:
        found = known[expr, depth] = _is_frequency(ctx, expr, depth)
    return found


def _is_frequency(ctx: FileContext, expr: cst.BaseExpression, depth: int) -> bool:
    expr = _strip(expr)
    if (
        is_a(expr, cst.BinaryOperation)
        and is_a(expr.operator, (cst.Divide, cst.Multiply))
        and literal_number(expr.right) is not None
    ):
        expr = _strip(expr.left)  # inv_freq / factor
    if is_frequency_formula(ctx, expr):
        return True
    if is_a(expr, cst.Name):
        if FREQUENCY_NAME in expr.value:
            return True
        # Ex) `def get_frequency_batched(self, freqs_base, pos)`, called with `self.freqs_base_t`
        values = _local_values(ctx, expr) or [v for v in passed_values(ctx, expr) or () if v is not expr]
        return any(is_frequency(ctx, value, depth + 1) for value in values)
    attr = self_attribute(expr)
    if attr is not None:
        cls = ctx.class_of(expr)
        if attr in frequency_attributes(ctx, cls):
            return True
        # Ex) `self.inv_freq` of a rotary class whose base in another module registers it
        return FREQUENCY_NAME in attr and cls is not None and attr not in ctx.class_facts(cls).assignments
    return False


def _local_values(ctx: FileContext, name: cst.Name) -> list[cst.BaseExpression]:
    function = ctx.function_of(name)
    if function is None:
        return []
    return [
        d.value
        for d in ctx.function_facts(function).reaching(name.value, ctx.order(name))
        if d.kind == "assign" and d.value is not None
    ]


@dataclass(frozen=True)
class TableAttribute:
    name: str
    cast_with_module: bool  # a buffer or Parameter: model.half() / .to(bf16) converts it


def frequency_attributes(ctx: FileContext, cls: cst.ClassDef | None) -> dict[str, TableAttribute]:
    """`self.<attr>` frequency tables of a class, with whether a module dtype cast reaches them."""
    if cls is None:
        return {}

    def compute():
        found: dict[str, TableAttribute] = {}
        facts = ctx.class_facts(cls)
        for attr, assignments in facts.assignments.items():
            for assignment in assignments:
                value = assignment.value
                parameter = is_a(value, cst.Call) and ctx.callee(value) in BUFFER_CONSTRUCTORS
                table = argument(value, "data", 0) if is_a(value, cst.Call) and parameter else value
                if FREQUENCY_NAME in attr or (table is not None and _is_table_value(ctx, table)):
                    found[attr] = TableAttribute(
                        attr, parameter or found.get(attr, TableAttribute(attr, False)).cast_with_module
                    )
        for call in ctx.index.descendants(cls.body, cst.Call, prune=(cst.ClassDef,)):
            target = receiver(call)
            if method_name(call) != "register_buffer" or not (is_a(target, cst.Name) and target.value == "self"):
                continue
            name = literal_string(argument(call, "name", 0))
            value = argument(call, "tensor", 1)
            if name and value is not None and (FREQUENCY_NAME in name or _is_table_value(ctx, value)):
                found[name] = TableAttribute(name, True)
        return found

    return ctx.memo(("frequency_attributes", id(cls)), compute)


def _is_table_value(ctx: FileContext, value: cst.BaseExpression, depth: int = 0) -> bool:
    """A frequency table, but not the angles built from one (those also hold the formula), written in
    place, in a local, or returned by a helper of this file."""
    stripped = _strip(value)
    if depth > MAX_DEPTH:
        return False
    if is_a(stripped, cst.Name):
        return FREQUENCY_NAME in stripped.value or any(
            _is_table_value(ctx, v, depth + 1) for v in _local_values(ctx, stripped)
        )
    if is_a(stripped, cst.Call) and (helper := called_function(ctx, stripped)) is not None:
        # Ex) `self.register_buffer("freqs_base_t", self._get_freqs_base(self.DT))`
        return any(_is_table_value(ctx, v, depth + 1) for v in return_values(ctx, helper[0]))
    return is_frequency_formula(ctx, stripped) and not any(
        _product_operands(ctx, node)
        for node in (stripped, *ctx.index.descendants(stripped, (cst.Call, cst.BinaryOperation)))
    )


# -- angle products ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class AngleProduct:
    node: cst.CSTNode
    frequencies: tuple[cst.BaseExpression, ...]
    positions: tuple[cst.BaseExpression, ...]
    autocast_lowered: bool  # matmul/einsum: autocast runs it in bf16/fp16 whatever the inputs


def _product_operands(ctx: FileContext, node: cst.CSTNode) -> list[cst.BaseExpression]:
    if is_a(node, cst.BinaryOperation) and is_a(node.operator, (cst.Multiply, cst.MatrixMultiply)):
        return [node.left, node.right]
    if is_a(node, cst.Call):
        qualified = ctx.callee(node)
        positional = [arg.value for arg in node.args if arg.keyword is None and not arg.star]
        if qualified == "torch.einsum":
            return positional[1:]
        if qualified in PRODUCT_FUNCTIONS:
            return positional
        target = receiver(node)
        if method_name(node) in PRODUCT_METHODS and target is not None and qualified not in PRODUCT_FUNCTIONS:
            return [target, *positional]
    return []


def angle_products(ctx: FileContext) -> list[AngleProduct]:
    """Every product of a frequency table with positions in the file."""

    def compute():
        found = []
        for node_type in (cst.BinaryOperation, cst.Call):
            for node in ctx.index.nodes(node_type):
                operands = _product_operands(ctx, node)
                if len(operands) != 2 or ctx.function_of(node) is None:
                    continue
                frequencies = tuple(o for o in operands if is_frequency(ctx, o))
                positions = tuple(o for o in operands if o not in frequencies and _is_positions(ctx, o))
                if frequencies and positions:
                    lowered = (is_a(node, cst.BinaryOperation) and is_a(node.operator, cst.MatrixMultiply)) or (
                        is_a(node, cst.Call)
                        and (ctx.callee(node) in AUTOCAST_LOWERED or method_name(node) in AUTOCAST_LOWERED)
                    )
                    found.append(AngleProduct(node, frequencies, positions, lowered))
        return sorted(found, key=lambda p: ctx.order(p.node))

    return ctx.memo("angle_products", compute)


def _is_positions(ctx: FileContext, expr: cst.BaseExpression, depth: int = 0) -> bool:
    """Token positions: an `arange`, a parameter (position ids handed in), or a local bound to one,
    through indexing, views, casts and arithmetic (interpolation factors, offsets)."""
    if depth > MAX_DEPTH or _derives_from_frequency(ctx, expr):
        return False
    expr = _strip(expr)
    if is_a(expr, cst.BinaryOperation) and not is_a(expr.operator, cst.MatrixMultiply):
        return _is_positions(ctx, expr.left, depth + 1) or _is_positions(ctx, expr.right, depth + 1)
    if _is_arange(ctx, expr):
        return True
    if is_a(expr, cst.Name):
        function = ctx.function_of(expr)
        if function is None:
            return False
        definitions = ctx.function_facts(function).reaching(expr.value, ctx.order(expr))
        return any(
            d.kind == "param" or (d.kind == "assign" and d.value is not None and _is_positions(ctx, d.value, depth + 1))
            for d in definitions
        )
    return False


def _derives_from_frequency(ctx: FileContext, expr: cst.BaseExpression, depth: int = 0) -> bool:
    """Any name in `expr` holds a frequency table or is computed from one (wavelengths, smoothing
    factors of frequency scaling): such a value is not a position."""
    if depth > 3:
        return False
    known: dict[tuple[cst.BaseExpression, int], bool] = ctx.memo("positions.derives_from_frequency", dict)
    found = known.get((expr, depth))
    if found is None:
        found = known[expr, depth] = _computed_from_frequency(ctx, expr, depth)
    return found


def _computed_from_frequency(ctx: FileContext, expr: cst.BaseExpression, depth: int) -> bool:
    for node in (expr, *ctx.index.descendants(expr, (cst.Name, cst.Attribute))):
        if (is_a(node, cst.Name) and is_a(ctx.index.parents.get(node), cst.Attribute)) or _only_lends_dtype(
            ctx, node, expr
        ):
            continue
        if is_a(node, (cst.Name, cst.Attribute)):
            if is_frequency(ctx, node):
                return True
            if is_a(node, cst.Name) and any(
                _derives_from_frequency(ctx, v, depth + 1) for v in _local_values(ctx, node)
            ):
                return True
    return False


def _only_lends_dtype(ctx: FileContext, node: cst.CSTNode, top: cst.CSTNode) -> bool:
    """`node` sits in `y.dtype`, `y.device` or the argument of `type_as` / `to` / `type`: it gives the
    expression a dtype or device, not its values."""
    for ancestor in ctx.index.ancestors(node):
        if is_a(ancestor, cst.Attribute) and ancestor.attr.value in ("dtype", "device"):
            return True
        if is_a(ancestor, cst.Arg):
            call = ctx.index.parents.get(ancestor)
            if (ancestor.keyword is not None and ancestor.keyword.value in ("dtype", "device")) or (
                is_a(call, cst.Call) and method_name(call) in ("type_as", "to", "type")
            ):
                return True
        if ancestor is top:
            return False
    return False


# -- precision --------------------------------------------------------------------------------------
def operand_precision(
    ctx: FileContext, expr: cst.BaseExpression, depth: int = 0, origins: list[cst.CSTNode] | None = None
) -> str | None:
    """What the code says about the dtype an operand of an angle product has: 'full' (an fp32/fp64
    cast), 'half' / 'bfloat16' (an explicit cast), 'activation' (a dtype borrowed from a tensor that is
    not a frequency table: x.dtype, type_as(x)), 'buffer' (a table `model.half()` casts, read on the
    forward path), or None (nothing said: integer positions, a fresh fp32 formula, a parameter)."""
    if depth > MAX_DEPTH:
        return None
    if is_a(expr, cst.Subscript):
        return operand_precision(ctx, expr.value, depth + 1, origins)
    if is_a(expr, cst.BinaryOperation) and is_a(expr.operator, (cst.Divide, cst.Multiply, cst.Add, cst.Subtract)):
        found = {operand_precision(ctx, side, depth + 1, origins) for side in (expr.left, expr.right)}
        return _combine(found)
    if is_a(expr, cst.Call):
        explicit = cast_precision(ctx, expr)
        if explicit is not None:
            return explicit
        method = method_name(expr)
        borrowed = _borrowed_dtype(expr, method)
        if borrowed is not None:
            return _follow_dtype(ctx, borrowed, depth, origins)
        if _is_arange(ctx, expr):
            return _dtype_argument_precision(ctx, argument(expr, "dtype"), depth, origins)
        if method in ("to", "type") and (dtype := _dtype_argument(expr)) is not None and is_a(dtype, cst.Name):
            precision = _dtype_argument_precision(ctx, dtype, depth, origins)
            if precision is not None:
                return precision
        if method in VIEW_METHODS | DTYPE_ARGUMENT_CASTS and (target := receiver(expr)) is not None:
            return operand_precision(ctx, target, depth + 1, origins)
        return None
    if is_a(expr, cst.Name):
        found = {operand_precision(ctx, value, depth + 1, origins) for value in _local_values(ctx, expr)}
        return _combine(found)
    attr = self_attribute(expr)
    if attr is not None:
        table = frequency_attributes(ctx, ctx.class_of(expr)).get(attr)
        if table is not None and table.cast_with_module and runs_in_forward(ctx, expr):
            return "full" if _known_full(ctx, expr) else "buffer"
    return None


def _known_full(ctx: FileContext, read: cst.BaseExpression) -> bool:
    """The read sits where a test has found the table in full precision: the `else` of `if
    self.inv_freq.dtype != torch.float32:` (flash-attn recomputes the table in the `if`), or the body of
    `if self.inv_freq.dtype == torch.float32:`."""
    child: cst.CSTNode = read
    for ancestor in ctx.index.ancestors(read):
        if is_a(ancestor, (cst.If, cst.IfExp)) and child is not ancestor.test:
            test = ancestor.test
            if is_a(test, cst.Comparison) and len(test.comparisons) == 1:
                left, comparison = test.left, test.comparisons[0]
                equal = is_a(comparison.operator, cst.Equal)
                in_body = child is ancestor.body
                if (
                    is_a(comparison.operator, (cst.Equal, cst.NotEqual))
                    and is_a(left, cst.Attribute)
                    and left.attr.value == "dtype"
                    and ctx.code(left.value) == ctx.code(read)
                    and dtype_precision(ctx, comparison.comparator) == "full"
                    and equal == in_body
                ):
                    return True
        if is_a(ancestor, cst.FunctionDef):
            return False
        child = ancestor
    return False


def _borrowed_dtype(call: cst.Call, method: str | None) -> cst.BaseExpression | None:
    """The tensor whose dtype `.type_as(y)`, `.to(y.dtype)`, `.to(dtype=y.dtype)`, `.type(y.dtype)` copies."""
    if method == "type_as":
        return argument(call, "other", 0)
    if method in ("to", "type"):
        for arg in call.args:
            if (
                (arg.keyword is None or arg.keyword.value == "dtype")
                and is_a(arg.value, cst.Attribute)
                and arg.value.attr.value == "dtype"
            ):
                return arg.value.value
    return None


def _dtype_argument(call: cst.Call) -> cst.BaseExpression | None:
    """The dtype a `.to(...)` / `.type(...)` is given: the `dtype=` keyword, or the one positional argument."""
    keyword = argument(call, "dtype")
    if keyword is not None:
        return keyword
    positional = [arg.value for arg in call.args if arg.keyword is None and not arg.star]
    return positional[0] if len(positional) == 1 else None


def _dtype_argument_precision(
    ctx: FileContext, dtype: cst.BaseExpression | None, depth: int, origins: list[cst.CSTNode] | None = None
) -> str | None:
    """The precision a `dtype=` argument stands for: a torch dtype, a tensor's `.dtype`, or a name or
    parameter holding either (`passed_values`: what the callers in this file pass, or the default)."""
    if dtype is None or depth > MAX_DEPTH:
        return None
    literal = dtype_precision(ctx, dtype)
    if literal is not None:
        return literal
    attr = self_attribute(dtype)
    cls = ctx.class_of(dtype) if attr is not None else None
    if attr is not None and cls is not None and (stored := ctx.class_facts(cls).assignments.get(attr)):
        # Ex) audiocraft: `self.dtype = dtype` in __init__ (asserted float32/64): what the class stores, not
        # the module's parameter dtype
        return _combine(
            {_dtype_argument_precision(ctx, a.value, depth + 1, origins) for a in stored if a.value is not None}
        )
    if is_a(dtype, cst.Attribute) and dtype.attr.value == "dtype":
        return _follow_dtype(ctx, dtype.value, depth, origins)
    if not is_a(dtype, cst.Name):
        return None
    values = passed_values(ctx, dtype)
    if not values or any(value is dtype for value in values):
        return None
    return _combine({_dtype_argument_precision(ctx, value, depth + 1, origins) for value in values})


def _follow_dtype(
    ctx: FileContext, tensor: cst.BaseExpression | None, depth: int, origins: list[cst.CSTNode] | None = None
) -> str | None:
    """The precision of the tensor whose dtype is borrowed: a frequency table's own, else the activations'
    (`x` of `dtype=x.dtype` or `type_as(x)` is then where the angles' dtype comes from, kept in `origins`)."""
    if tensor is None:
        return None
    if is_frequency(ctx, tensor):
        return operand_precision(ctx, tensor, depth + 1, origins)
    if origins is not None:
        origins.append(tensor)
    return "activation"


def _combine(found: set[str | None]) -> str | None:
    for precision in ("half", "bfloat16", "activation", "buffer"):
        if precision in found:
            return precision
    return "full" if "full" in found else None


def under_autocast_disabled(ctx: FileContext, node: cst.CSTNode) -> bool:
    """Inside `with torch.autocast(..., enabled=False)` (any autocast spelling) or a function
    decorated with one."""
    for ancestor in ctx.index.ancestors(node):
        if is_a(ancestor, cst.With) and any(_disables_autocast(item.item) for item in ancestor.items):
            return True
        if is_a(ancestor, cst.FunctionDef) and any(_disables_autocast(d.decorator) for d in ancestor.decorators):
            return True
    return False


def _disables_autocast(expr: cst.BaseExpression) -> bool:
    if not is_a(expr, cst.Call):
        return False
    enabled = argument(expr, "enabled")
    name = expr.func.attr.value if is_a(expr.func, cst.Attribute) else getattr(expr.func, "value", "")
    return "autocast" in str(name) and is_false(enabled)


def product_precision(ctx: FileContext, product: AngleProduct) -> str | None:
    """The lowest precision any operand of the product is evidently in (a rounded frequency or
    position stays rounded whatever it is multiplied by), else 'full' or None."""
    return _combine({operand_precision(ctx, operand) for operand in (*product.frequencies, *product.positions)})


def activation_origins(ctx: FileContext, product: AngleProduct) -> list[cst.CSTNode]:
    """Where the operands of the product borrow the activations' dtype (`x` of `torch.arange(n,
    dtype=x.dtype)`), in source order: the place to ask for float32 instead."""
    origins: list[cst.CSTNode] = []
    for operand in (*product.frequencies, *product.positions):
        operand_precision(ctx, operand, origins=origins)
    return sorted(set(origins), key=ctx.order)


# -- layouts ----------------------------------------------------------------------------------------
def stored_table_cast(ctx: FileContext, node: cst.Call) -> str | None:
    """For `self.cos_cached = emb.cos().bfloat16()` or `register_buffer("sin", x.sin().half())`: the
    explicit half precision a cos/sin table is stored in."""
    precision = cast_precision(ctx, node)
    if precision not in ("half", "bfloat16"):
        return None
    target = receiver(node)
    inner = _strip(target) if target is not None else None
    if inner is None or not _is_trig(ctx, inner):
        return None
    return precision if _is_stored(ctx, node) else None


@dataclass(frozen=True)
class TableInModuleDtype:
    """A cos/sin table written into a buffer allocated in the dtype the module is built in."""

    allocation: cst.Call  # `torch.empty(..., dtype=dtype)`, `dtype` a constructor parameter
    write: cst.Assign  # `self.cos_weight[:] = torch.repeat_interleave(cos, 2, dim=-1)`


ALLOCATIONS = {"torch.empty", "torch.zeros", "torch.ones", "torch.full"}


def tables_in_module_dtype(ctx: FileContext) -> list[TableInModuleDtype]:
    """`self.cos_weight[:] = <cos/sin table>` into a buffer that `__init__` allocated with the `dtype` it
    was given (`torch.empty((n, d), dtype=dtype)`): the float32 table is rounded to whatever precision
    the module is built in, fp16 for a half model (fairseq2 0.1.1)."""
    found = []
    for assign in ctx.index.nodes(cst.Assign):
        targets = [t.target for t in assign.targets]
        if len(targets) != 1 or not is_a(targets[0], cst.Subscript) or (cls := ctx.class_of(assign)) is None:
            continue
        buffer = self_attribute(targets[0].value)
        if buffer is None or not _holds_trig(ctx, assign.value):
            continue
        allocation = _allocated_in_given_dtype(ctx, cls, buffer)
        if allocation is not None:
            found.append(TableInModuleDtype(allocation, assign))
    return found


def _holds_trig(ctx: FileContext, value: cst.BaseExpression) -> bool:
    """cos/sin of angles, or a layout of them (`torch.repeat_interleave(cos, 2, dim=-1)`)."""
    nodes = [value, *ctx.index.descendants(value, (cst.Call, cst.Name))]
    return any(_is_trig(ctx, _strip(node)) for node in nodes if is_a(node, (cst.Call, cst.Name)))


def _allocated_in_given_dtype(ctx: FileContext, cls: cst.ClassDef, buffer: str) -> cst.Call | None:
    for method, value in registered_buffers(ctx, cls).get(buffer, ()):
        if method.name.value != "__init__":
            continue
        parameters = ctx.function_facts(method).parameters
        values = _local_values(ctx, value) if is_a(value, cst.Name) else [value]
        for allocation in values:
            if not is_a(allocation, cst.Call) or ctx.callee(allocation) not in ALLOCATIONS:
                continue
            dtype = argument(allocation, "dtype")
            if is_a(dtype, cst.Name) and dtype.value in parameters:
                return allocation
    return None


def _is_trig(ctx: FileContext, expr: cst.BaseExpression, depth: int = 0) -> bool:
    if depth > MAX_DEPTH:
        return False
    if is_a(expr, cst.Call) and (method_name(expr) in ("cos", "sin") or ctx.callee(expr) in ("torch.cos", "torch.sin")):
        return True
    if is_a(expr, cst.Name):
        return any(_is_trig(ctx, _strip(v), depth + 1) for v in _local_values(ctx, expr))
    return False


def _is_stored(ctx: FileContext, node: cst.CSTNode) -> bool:
    parent = ctx.index.parents.get(node)
    if is_a(parent, cst.Arg):
        call = ctx.index.parents.get(parent)
        return is_a(call, cst.Call) and method_name(call) == "register_buffer"
    if is_a(parent, cst.Assign):
        return any(self_attribute(t.target) is not None for t in parent.targets)
    return False


# Pairing conventions: "half" pairs channel i with i + d/2 (rotate_half), "interleaved" pairs 2i, 2i+1.
@dataclass(frozen=True)
class LayoutEvidence:
    node: cst.CSTNode
    layout: str  # "half" | "interleaved"
    role: str  # "table" (how angles are laid out over channels) | "rotation" (how x is paired)


def layout_evidence(ctx: FileContext, scope: cst.CSTNode) -> list[LayoutEvidence]:
    """Tables duplicated per pair (`cat([f, f], -1)` half-split, `repeat_interleave(2, -1)`
    interleaved) and rotations (`cat([-x2, x1])` of halves, or of even/odd channels) inside `scope`."""
    found = []
    for call in ctx.index.descendants(scope, cst.Call):
        table = _table_layout(ctx, call)
        if table is not None:
            found.append(LayoutEvidence(call, table, "table"))
        rotation = _rotation_layout(ctx, call)
        if rotation is not None:
            found.append(LayoutEvidence(call, rotation, "rotation"))
    return found


def imported_rotations(ctx: FileContext) -> list[LayoutEvidence]:
    """Calls of a project function that rotates in one pairing layout (`rotation_layout_functions` of its
    module): `apply_rotary_pos_emb(q, k, cos, sin)` imported from the Llama module, which pairs halves."""
    found = []
    for call in ctx.calls():
        entry = imported_summary(ctx, call, "rotations")
        if entry is not None:
            found.append(LayoutEvidence(call, entry["layout"], "rotation"))
    return found


def rotation_layout_functions(ctx: FileContext) -> dict[str, dict[str, str]]:
    """Module-level functions that pair channels one way when they rotate, themselves or through the
    module-level functions of this file they call -> {"layout": "half" | "interleaved"}: what an importing
    file needs to compare its own tables with.

    Ex) `def apply_rotary_pos_emb(q, k, cos, sin): return q * cos + rotate_half(q) * sin, ...`, with
        `rotate_half` splitting the last axis in halves: "half"
    """
    functions = {s.name.value: s for s in ctx.module.body if is_a(s, cst.FunctionDef)}
    layouts = {
        name: {e.layout for e in layout_evidence(ctx, function) if e.role == "rotation"}
        for name, function in functions.items()
    }
    callees = {
        name: {c.func.value for c in ctx.index.descendants(function, cst.Call) if is_a(c.func, cst.Name)}
        & functions.keys()
        for name, function in functions.items()
    }
    changed = True
    while changed:  # through helpers of helpers
        changed = False
        for name in functions:
            reached = layouts[name].union(*(layouts[callee] for callee in callees[name]))
            if reached != layouts[name]:
                layouts[name], changed = reached, True
    return {name: {"layout": next(iter(found))} for name, found in sorted(layouts.items()) if len(found) == 1}


def _angle_like(ctx: FileContext, expr: cst.BaseExpression | None) -> bool:
    """A frequency table, the angles from one, or cos/sin of them."""
    if expr is None:
        return False
    stripped = _strip(expr)
    if is_frequency(ctx, stripped) or _is_trig(ctx, stripped):
        return True
    products = {id(p.node) for p in angle_products(ctx)}
    nodes = [stripped]
    if is_a(stripped, cst.Name):
        nodes += [_strip(v) for v in _local_values(ctx, stripped)]
    return any(id(n) in products for n in nodes)


def _table_layout(ctx: FileContext, call: cst.Call) -> str | None:
    method = method_name(call)
    if (
        method == "repeat_interleave"
        and literal_int(argument(call, "repeats", 0)) == 2
        and _last_dim(argument(call, "dim", 1))
        and (_angle_like(ctx, receiver(call)) or _half_cut(receiver(call)))
    ):
        return "interleaved"
    if ctx.callee(call) == "torch.cat" and _last_dim(argument(call, "dim", 1)):
        tensors = argument(call, "tensors", 0)
        if is_a(tensors, (cst.Tuple, cst.List)) and len(tensors.elements) == 2:
            first, second = (element.value for element in tensors.elements)
            if (
                is_a(first, cst.Name)
                and is_a(second, cst.Name)
                and first.value == second.value
                and _angle_like(ctx, first)
            ):
                return "half"
    # Ex) `repeat(freqs, '... n -> ... (n r)', r=2)`: each angle copied onto a pair of channels
    pairing = einops_pair_layout(ctx, call)
    tensor = argument(call, "tensor", 0)
    if pairing is not None and pairing[1] == "merge" and tensor is not None and _angle_like(ctx, tensor):
        return pairing[0]
    return None


def _half_cut(expr: cst.BaseExpression | None) -> bool:
    """`cos[..., : cos.shape[-1] // 2]`: a half-split table cut back to one copy, to be re-laid out."""
    if not is_a(expr, cst.Subscript) or not expr.slice:
        return False
    last = expr.slice[-1].slice
    return is_a(last, cst.Slice) and last.lower is None and last.upper is not None and last.step is None


def _last_dim(dim: cst.BaseExpression | None) -> bool:
    return dim is not None and literal_int(dim) == -1


def _rotation_layout(ctx: FileContext, call: cst.Call) -> str | None:
    """`torch.cat((-x2, x1), dim=-1)` or `torch.stack((-x2, x1), dim=-1)`, laid out by how x1 and x2
    were cut from x: halves (`x[..., : d // 2]`, `chunk(2, -1)`) or even/odd channels (`x[..., ::2]`)."""
    qualified = ctx.callee(call)
    if qualified not in ("torch.cat", "torch.stack"):
        return None
    tensors = argument(call, "tensors", 0)
    if not is_a(tensors, (cst.Tuple, cst.List)) or len(tensors.elements) != 2:
        return None
    first, second = (element.value for element in tensors.elements)
    if not (is_a(first, cst.UnaryOperation) and is_a(first.operator, cst.Minus)):
        return None
    cuts = {_cut(ctx, first.expression), _cut(ctx, second)}
    if len(cuts) != 1 or None in cuts:
        return None
    cut = cuts.pop()
    # Ex) `torch.cat((-x2, x1), -1)` of even/odd channels lays the rotated pairs out half-split: the
    # output no longer lines up with the interleaved input it is added to
    return "half" if qualified == "torch.cat" and cut == "interleaved" else cut


def _cut(ctx: FileContext, expr: cst.BaseExpression) -> str | None:
    """'half' for x[..., :d//2] / x[..., d//2:] / a chunk(2) piece, 'interleaved' for x[..., ::2] / x[..., 1::2]."""
    values = [expr]
    if is_a(expr, cst.Name):
        values = _local_values(ctx, expr)
        function = ctx.function_of(expr)
        if function is not None:
            for d in ctx.function_facts(function).reaching(expr.value, ctx.order(expr)):
                if d.kind == "unpack" and is_a(d.node, cst.Assign):
                    values.append(d.node.value)
    for value in values:
        if is_a(value, cst.Call) and method_name(value) == "unbind":
            return _unbound_pair(ctx, value)
        if (
            is_a(value, cst.Call)
            and method_name(value) in ("chunk", "split")
            and literal_int(argument(value, "chunks", 0)) == 2
        ):
            return "half"
        if (
            is_a(value, cst.Call)
            and ctx.callee(value) in ("torch.chunk",)
            and literal_int(argument(value, "chunks", 1)) == 2
        ):
            return "half"
        if is_a(value, cst.Subscript) and value.slice:
            last = value.slice[-1].slice
            if is_a(last, cst.Slice):
                if last.step is not None and literal_int(last.step) == 2:
                    return "interleaved"
                if last.step is None and (last.lower is None) != (last.upper is None):
                    return "half"
    return None


def _unbound_pair(ctx: FileContext, call: cst.Call) -> str | None:
    """`x1, x2 = x.unbind(-1)` after `x = rearrange(x, '... (d r) -> ... d r', r=2)`: the even and odd
    channels ('interleaved'); after `'... (r d) -> ... r d'` and `unbind(-2)`, the halves ('half')."""
    tensor = receiver(call)
    values = _local_values(ctx, tensor) if is_a(tensor, cst.Name) else [tensor]
    dim = literal_int(argument(call, "dim", 0))
    for value in values:
        pairing = (einops_pair_layout(ctx, value) or _reshaped_pairs(value)) if is_a(value, cst.Call) else None
        if pairing is not None and pairing[1] == "split" and dim == {"interleaved": -1, "half": -2}[pairing[0]]:
            return pairing[0]
    return None


def _reshaped_pairs(call: cst.Call) -> tuple[str, str] | None:
    """The torch spelling of a split into pairs: `x.reshape(*x.shape[:-1], -1, 2)` (or `.view`, or
    `x.unflatten(-1, (-1, 2))`) puts channels 2i and 2i+1 on the last axis ('interleaved'); `(..., 2, -1)`
    puts i and i + d/2 on the one before it ('half')."""
    method = method_name(call)
    sizes = [arg.value for arg in call.args if arg.keyword is None]
    if method == "unflatten" and len(sizes) == 2 and literal_int(sizes[0]) == -1:
        inner = sizes[1]
        sizes = [element.value for element in inner.elements] if is_a(inner, (cst.Tuple, cst.List)) else []
    elif (
        method not in ("reshape", "view") or len(sizes) < 2 or not is_a(call.args[0], cst.Arg) or not call.args[0].star
    ):
        return None  # the leading axes kept as they are: `*x.shape[:-1]`
    else:
        sizes = sizes[-2:]
    if len(sizes) != 2:
        return None
    if literal_int(sizes[1]) == 2 and literal_int(sizes[0]) != 2:
        return "interleaved", "split"
    if literal_int(sizes[0]) == 2 and literal_int(sizes[1]) != 2:
        return "half", "split"
    return None


# -- where rotary is applied ------------------------------------------------------------------------
# apply_rotary_pos_emb, rotate_queries_or_keys, self.rope(...), apply_rope: not k_rope_only_layernorm
ROTARY_CALLEE = re.compile(r"rotary|rotate|^rope$|_rope$|^rope_emb|_rope_emb|apply_rope")


@dataclass(frozen=True)
class RotaryApplication:
    call: cst.Call
    rotated: tuple[str, ...]  # the local names the call rotates (and rebinds, when it is assigned)
    statement: cst.CSTNode  # the assignment that rebinds them, or the call itself when nothing is bound


def rotary_applications(ctx: FileContext) -> list[RotaryApplication]:
    """Calls to a rotary helper (`apply_rotary_pos_emb`, `self.rope`, `rotate_queries_or_keys`, an
    instance of a rotary module class...) and the names they rotate. A call that hands a tensor over
    only for its dtype or device (`cos, sin = self.rotary_emb(value_states, position_ids)`) rebinds
    other names, so it is not one."""

    def compute():
        found = []
        assigned: set[int] = set()
        for assign in ctx.index.nodes(cst.Assign):
            call = assign.value
            comprehension = _comprehension_rotary(ctx, call)
            if comprehension is not None:
                targets = {name for t in assign.targets for name in _names(t.target)}
                rotated = tuple(name for name in comprehension[1] if name in targets)
                if rotated:
                    assigned.add(id(comprehension[0]))
                    found.append(RotaryApplication(comprehension[0], rotated, assign))
                continue
            if not is_a(call, cst.Call):
                continue
            targets = {name for t in assign.targets for name in _names(t.target)}
            if _is_rotary_callee(ctx, call):
                assigned.add(id(call))
                rotated = tuple(name for name in _passed_names(call) if name in targets)
            else:
                rotated = tuple(name for name in _mapped_rotary_names(ctx, call) if name in targets)
            if rotated:
                found.append(RotaryApplication(call, rotated, assign))
        for call in ctx.calls():
            # Ex) `torch.einsum(eq, attn, self.value_rotary_pe(value))`: rotated where it is used, bound to no name
            if id(call) not in assigned and _is_rotary_callee(ctx, call) and _passed_names(call):
                found.append(RotaryApplication(call, tuple(_passed_names(call)), call))
        return found

    return ctx.memo("rotary_applications", compute)


def _passed_names(call: cst.Call) -> list[str]:
    return [arg.value.value for arg in call.args if is_a(arg.value, cst.Name) and arg.keyword is None and not arg.star]


def _mapped_rotary_names(ctx: FileContext, call: cst.Call) -> list[str]:
    """The names `map(lambda t: rotary(t, ...), (q, k))` rotates: each element of the literal tuple, or
    the first of each pair when the lambda rotates `arg[0]` (`((ql, q_scale), (kl, k_scale))`)."""
    if ctx.callee(call) not in ("map", "builtins.map") or len(call.args) != 2:
        return []
    function, items = call.args[0].value, call.args[1].value
    if not is_a(function, cst.Lambda) or not is_a(items, (cst.Tuple, cst.List)):
        return []
    parameters = [p.name.value for p in function.params.params]
    if len(parameters) != 1:
        return []
    rotated_index: int | None = None
    for inner in ctx.index.descendants(function, cst.Call):
        if not _is_rotary_callee(ctx, inner):
            continue
        for arg in inner.args:  # the first argument taken from the lambda's parameter is the rotated tensor
            if rotated_index is not None:
                break
            value = arg.value
            if is_a(value, cst.Name) and value.value == parameters[0]:
                rotated_index = -1
            elif (
                is_a(value, cst.Subscript)
                and is_a(value.value, cst.Name)
                and value.value.value == parameters[0]
                and len(value.slice) == 1
                and is_a(value.slice[0].slice, cst.Index)
                and literal_int(value.slice[0].slice.value) is not None
            ):
                rotated_index = literal_int(value.slice[0].slice.value)
    if rotated_index is None:
        return []
    names = []
    for element in items.elements:
        item = element.value
        if rotated_index >= 0 and is_a(item, (cst.Tuple, cst.List)) and rotated_index < len(item.elements):
            item = item.elements[rotated_index].value
        if is_a(item, cst.Name):
            names.append(item.value)
    return names


def _comprehension_rotary(ctx: FileContext, value: cst.BaseExpression) -> tuple[cst.Call, list[str]] | None:
    """`[rotary(t, cos, sin) for t in (q, k)]` (or a generator, or `tuple(...)` of one): the rotary call
    and the names of the literal tuple it runs over, when the loop variable is what it rotates: any of
    its positional arguments, since helpers differ in where the tensor goes (`apply_rotary_emb(freqs, t)`)."""
    if is_a(value, cst.Call) and ctx.callee(value) in ("tuple", "list") and len(value.args) == 1:
        value = value.args[0].value
    if not is_a(value, (cst.ListComp, cst.GeneratorExp)) or value.for_in.inner_for_in is not None:
        return None
    element, loop = value.elt, value.for_in
    if not is_a(element, cst.Call) or not _is_rotary_callee(ctx, element) or not is_a(loop.target, cst.Name):
        return None
    if loop.target.value not in _passed_names(element) or not is_a(loop.iter, (cst.Tuple, cst.List)):
        return None
    names = [item.value.value for item in loop.iter.elements if is_a(item.value, cst.Name)]
    return (element, names) if len(names) == len(loop.iter.elements) else None


def _is_rotary_callee(ctx: FileContext, call: cst.Call) -> bool:
    """A rotary helper by its name, or an instance of a rotary module class called like a function
    (`self.pe = RotaryEmbedding(d)`, then `self.pe(q)`)."""
    func = call.func
    name = func.attr.value if is_a(func, cst.Attribute) else func.value if is_a(func, cst.Name) else ""
    if not name[:1].isupper() and ROTARY_CALLEE.search(name.lower()) is not None:
        return True
    attr = self_attribute(func)
    cls = ctx.class_of(call)
    built = ctx.class_facts(cls).constructed_type(attr) if attr is not None and cls is not None else None
    return built is not None and ROTARY_CALLEE.search(built.rsplit(".", 1)[-1].lower()) is not None


def _names(target: cst.BaseExpression) -> list[str]:
    if is_a(target, cst.Name):
        return [target.value]
    if is_a(target, (cst.Tuple, cst.List)):
        return [name for element in target.elements for name in _names(element.value)]
    return []


def rotated_before(ctx: FileContext, name: str, at: cst.CSTNode) -> RotaryApplication | None:
    """The rotary application that last bound `name` before `at`, if the binding that reaches `at` is one."""
    function = ctx.function_of(at)
    if function is None:
        return None
    applications = {id(a.statement): a for a in rotary_applications(ctx) if name in a.rotated}
    for definition in ctx.function_facts(function).reaching(name, ctx.order(at)):
        application = applications.get(id(definition.node))
        if application is not None and not _exclusive_branches(ctx, definition.node, at):
            return application
    return None


def _exclusive_branches(ctx: FileContext, first: cst.CSTNode, second: cst.CSTNode) -> bool:
    """`first` and `second` sit in the body and the else of the same `if`: only one of them runs."""
    first_ancestors = {id(a): a for a in ctx.index.ancestors(first)}
    for ancestor in ctx.index.ancestors(second):
        if id(ancestor) in first_ancestors:
            if is_a(ancestor, cst.If) and ancestor.orelse is not None:
                in_body = ctx.index.contains(ancestor.body, first), ctx.index.contains(ancestor.body, second)
                return in_body[0] != in_body[1]
            return False
    return False


def rotated_values(ctx: FileContext) -> list[tuple[RotaryApplication, cst.Call]]:
    """Rotary applications whose output becomes, on some path, part of the values an attention kernel
    reads: through views, concatenation and `map` (derived.py), and through the functions, methods and
    module instances (of this file or a project module) that hand their arguments on to a kernel. Each
    with the call that hands the values over."""

    def compute():
        applications = rotary_applications(ctx)
        if not applications:
            return []
        found = []
        for call in ctx.calls():
            function = ctx.function_of(call)
            if function is None:
                continue
            for value in attention_value_arguments(ctx, call):
                for binding in bindings(ctx, function, value, ctx.order(call)):
                    for application in applications:
                        if (
                            application.statement is binding.definition.node
                            and binding.name in application.rotated
                            and not _exclusive_branches(ctx, application.statement, call)
                            and not _optional_value_rotation(ctx, application, applications)
                        ):
                            found.append((application, call))
        return found

    return ctx.memo("rotated_values", compute)


def _optional_value_rotation(
    ctx: FileContext, application: RotaryApplication, applications: list[RotaryApplication]
) -> bool:
    """A rotation of one tensor alone under an `if` of its own, which rotates nothing else: a model
    option (`if self.rotary_embed_values: v = rotate(v)`), not values caught up with q and k."""
    if len(application.rotated) != 1:
        return False
    branch = ctx.index.enclosing(application.statement, (cst.If, cst.FunctionDef))
    if not is_a(branch, cst.If):
        return False
    return not any(other is not application and ctx.index.contains(branch, other.statement) for other in applications)


def attention_values(ctx: FileContext) -> list[cst.Name]:
    """Names passed as the values of an attention: SDPA's third argument, or the right side of
    `probs @ v` where probs is a softmax."""
    found = []
    for call in ctx.calls():
        if ctx.callee(call) == "torch.nn.functional.scaled_dot_product_attention":
            value = argument(call, "value", 2)
            if is_a(value, cst.Name):
                found.append(value)
    for node in ctx.index.nodes(cst.BinaryOperation):
        if (
            is_a(node.operator, cst.MatrixMultiply)
            and is_a(node.right, cst.Name)
            and _is_softmax_output(ctx, node.left)
        ):
            found.append(node.right)
    return found


def _is_softmax_output(ctx: FileContext, expr: cst.BaseExpression) -> bool:
    values = [expr] + (_local_values(ctx, expr) if is_a(expr, cst.Name) else [])
    return any(is_a(v, cst.Call) and (method_name(v) == "softmax" or ctx.callee(v) == "torch.softmax") for v in values)
