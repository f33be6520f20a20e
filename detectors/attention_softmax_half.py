"""SHP105: eager attention softmax computed in float16, with no float32 upcast."""

from __future__ import annotations

import libcst as cst

from sharpedges.analysis.attention import attention_softmaxes
from sharpedges.analysis.calls import argument, method_name, receiver
from sharpedges.analysis.objects import half_cast_classes
from sharpedges.analysis.tensors import chosen_by_dtype
from sharpedges.analysis.values import MAX_DEPTH, possible_values
from sharpedges.analysis.vocabulary import REORDER_METHODS, RESHAPE_METHODS, cast_precision, dtype_precision
from sharpedges.analysis.walk import is_a
from sharpedges.detector import Detector, Finding

OPERAND_STEPS = REORDER_METHODS | RESHAPE_METHODS | {"contiguous"}


class AttentionSoftmaxHalf(Detector):
    code = "SHP105"
    # no half-precision token: the module may be cast to float16 in a file next to this one
    tokens = (b"softmax",)

    def check(self, ctx):
        for softmax, sources in attention_softmaxes(ctx):
            if softmax.upcast:
                continue  # a project function that runs it in float32
            requested = dtype_precision(ctx, argument(softmax.call, "dtype"))
            if requested == "full":
                continue
            precisions = [_scores_precision(ctx, source) for source in sources]
            if requested == "half" or (sources and all(precision == "half" for precision in precisions)):
                yield Finding(softmax.call)
            elif (
                requested is None
                and sources
                and all(precision is None for precision in precisions)
                # Ex) OPT 4.21: `if w.dtype == torch.float16: softmax(w, dtype=torch.float32) else: softmax(w)`
                and not chosen_by_dtype(ctx, softmax.call)
            ):
                casts = half_cast_classes(ctx)
                for name in _running_classes(ctx, softmax.call):
                    if name in casts:
                        cast = casts[name]
                        yield Finding(softmax.call, related=((cast, "cast"),) if cast is not None else ())
                        break


def _running_classes(ctx, call: cst.Call) -> list[str]:
    """The classes whose instances run `call`: its own class, or for a module-level function the classes
    whose methods name it, directly or through a module-level registry of functions (`attention_interface =
    eager_attention_forward`, `GPTNEOX_ATTENTION_FUNCTION[config._attn_implementation]`)."""
    cls = ctx.class_of(call)
    if cls is not None:
        return [cls.name.value]
    function = ctx.function_of(call)
    if function is None or ctx.class_of(function) is not None:
        return []
    names = {function.name.value}
    for name in ctx.index.nodes(cst.Name):  # a registry: `FUNCTIONS = {"eager": eager_attention_forward}`
        assign = ctx.index.enclosing(name, cst.Assign) if name.value == function.name.value else None
        if assign is not None and ctx.function_of(assign) is None and ctx.class_of(assign) is None:
            names.update(t.target.value for t in assign.targets if is_a(t.target, cst.Name))
    return sorted(
        {
            owner.name.value
            for name in ctx.index.nodes(cst.Name)
            if name.value in names and (owner := ctx.class_of(name)) is not None and ctx.function_of(name) is not None
        }
    )


def _scores_precision(ctx, source) -> str | None:
    """The precision the scores reach the softmax in, where the code says: the cast nearest the
    softmax on the way from the product, else the casts of q and k."""
    for node in source.path:
        precision = cast_precision(ctx, node)
        if precision is not None:
            return precision
    product = source.product
    if is_a(product, cst.BinaryOperation):
        operands = [product.left, product.right]
    else:
        operands = [arg.value for arg in product.args if arg.keyword is None and not arg.star]
        if method_name(product) in ("matmul", "bmm") and (target := receiver(product)) is not None:
            operands.append(target)
    precisions = {_operand_precision(ctx, operand, ctx.order(product), 0) for operand in operands}
    return "half" if "half" in precisions and "full" not in precisions else None


def _operand_precision(ctx, expr, at: int, depth: int) -> str | None:
    """`q.half()`, `k.to(torch.float16).transpose(-2, -1)`, or a name bound to one."""
    if depth > MAX_DEPTH:
        return None
    precision = cast_precision(ctx, expr)
    if precision is not None:
        return precision
    if is_a(expr, cst.Call) and method_name(expr) in OPERAND_STEPS:
        return _operand_precision(ctx, receiver(expr), at, depth + 1)
    if is_a(expr, cst.Attribute) and expr.attr.value in ("T", "mT"):
        return _operand_precision(ctx, expr.value, at, depth + 1)
    if is_a(expr, cst.Name):
        function = ctx.function_of(expr)
        if function is None:  # module-level code: a script or a notebook
            values = possible_values(ctx, expr, at)
            found = {_operand_precision(ctx, value, at, depth + 1) for value in values or () if value is not expr}
            return found.pop() if values and len(found) == 1 else None
        found = {
            _operand_precision(ctx, d.value, d.order, depth + 1)
            for d in ctx.function_facts(function).reaching(expr.value, at)
            if d.kind == "assign" and d.value is not None
        }
        return found.pop() if len(found) == 1 else None
    return None
