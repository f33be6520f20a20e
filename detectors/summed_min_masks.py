"""SHP205: two additive masks that each hold finfo(dtype).min are summed: the sum overflows to -inf."""

from __future__ import annotations

import libcst as cst

from sharpedges.analysis.attention import dtype_min_plane
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
                and (planes := _planes(ctx, node.left, node.right, ctx.order(node)))
                and not _clamped(ctx, node)
            ):
                yield Finding(node, related=_related(ctx, node, planes))
        for node in ctx.index.nodes(cst.AugAssign):
            if (
                is_a(node.operator, cst.AddAssign)
                and is_a(node.target, cst.Name)
                and (planes := _planes(ctx, node.target, node.value, ctx.order(node)))
                and not _clamped(ctx, node)
            ):
                yield Finding(node, related=_related(ctx, node, planes))
        for call in ctx.calls():
            if ctx.callee(call) == "torch.add" or method_name(call) in ("add", "add_"):
                left = argument(call, "input", 0) if ctx.callee(call) == "torch.add" else receiver(call)
                right = argument(call, "other", 1) if ctx.callee(call) == "torch.add" else argument(call, "other", 0)
                if (
                    left is not None
                    and right is not None
                    and (planes := _planes(ctx, left, right, ctx.order(call)))
                    and not _clamped(ctx, call)
                ):
                    yield Finding(call, related=_related(ctx, call, planes))


def _planes(ctx, left, right, at) -> tuple[cst.CSTNode, cst.CSTNode] | None:
    """Where each summand's finfo.min is written, when both are such planes."""
    first, second = dtype_min_plane(ctx, left, at), dtype_min_plane(ctx, right, at)
    return (first, second) if first is not None and second is not None else None


def _related(ctx, node: cst.CSTNode, planes) -> tuple:
    """The planes' finfo.min written outside the sum itself: what the claim rests on."""
    outside = dict.fromkeys(plane for plane in planes if not ctx.index.contains(node, plane))
    return tuple((plane, "plane") for plane in outside)


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
