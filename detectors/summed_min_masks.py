"""SHP205: two additive masks that each hold finfo(dtype).min are summed: the sum overflows to -inf."""

from __future__ import annotations

import libcst as cst

from sharpedges.analysis.attention import fills_dtype_min
from sharpedges.analysis.calls import argument, method_name, receiver
from sharpedges.analysis.vocabulary import CLAMP_FUNCTIONS, CLAMP_METHODS, ELEMENTWISE_MAXIMUM
from sharpedges.analysis.walk import is_a
from sharpedges.detector import Detector, Finding


class SummedMinMasks(Detector):
    code = "SHP205"
    tokens = (b"finfo",)

    def check(self, ctx):
        for node in ctx.index.nodes(cst.BinaryOperation):
            if (
                is_a(node.operator, cst.Add)
                and self._both_min(ctx, node.left, node.right, ctx.order(node))
                and not _clamped(ctx, node)
            ):
                yield Finding(node)
        for node in ctx.index.nodes(cst.AugAssign):
            if (
                is_a(node.operator, cst.AddAssign)
                and is_a(node.target, cst.Name)
                and self._both_min(ctx, node.target, node.value, ctx.order(node))
                and not _clamped(ctx, node)
            ):
                yield Finding(node)
        for call in ctx.calls():
            if ctx.callee(call) == "torch.add" or method_name(call) in ("add", "add_"):
                left = argument(call, "input", 0) if ctx.callee(call) == "torch.add" else receiver(call)
                right = argument(call, "other", 1) if ctx.callee(call) == "torch.add" else argument(call, "other", 0)
                if (
                    left is not None
                    and right is not None
                    and self._both_min(ctx, left, right, ctx.order(call))
                    and not _clamped(ctx, call)
                ):
                    yield Finding(call)

    @staticmethod
    def _both_min(ctx, left, right, at) -> bool:
        return fills_dtype_min(ctx, left, at) and fills_dtype_min(ctx, right, at)


def _clamped(ctx, node: cst.CSTNode) -> bool:
    """The sum is clamped back to the dtype's range (HF's fix in #17306): directly, or through the
    name it is assigned to."""
    parent = ctx.index.parents.get(node)
    if is_a(parent, cst.Attribute) and parent.value is node and parent.attr.value in CLAMP_METHODS:
        return True
    if is_a(parent, cst.Arg) and _is_clamp_call(ctx, ctx.index.parents.get(parent)):
        return True
    statement = node if is_a(node, cst.AugAssign) else ctx.index.parents.get(node)
    targets = (
        [statement.target]
        if is_a(statement, cst.AugAssign)
        else [t.target for t in statement.targets]
        if is_a(statement, cst.Assign)
        else []
    )
    function = ctx.function_of(node)
    if function is None:
        return False
    facts = ctx.function_facts(function)
    for target in targets:
        if not is_a(target, cst.Name):
            continue
        for use in facts.later_uses(target.value, ctx.index.last_order(statement)):
            holder = ctx.index.parents.get(use)
            if is_a(holder, cst.Attribute) and holder.attr.value in CLAMP_METHODS:
                return True
            if is_a(holder, cst.Arg) and _is_clamp_call(ctx, ctx.index.parents.get(holder)):
                return True
    return False


def _is_clamp_call(ctx, node) -> bool:
    return is_a(node, cst.Call) and ctx.callee(node) in CLAMP_FUNCTIONS | ELEMENTWISE_MAXIMUM
