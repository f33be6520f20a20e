"""SHP104: softmax over QK^T scores on an axis other than the keys, or with no dim at all."""

from __future__ import annotations

import libcst as cst

from sharpedges.analysis.attention import attention_softmaxes, key_axis
from sharpedges.analysis.calls import has_star_args, literal_int, method_name, receiver
from sharpedges.analysis.vocabulary import REORDER_METHODS, RESHAPE_METHODS
from sharpedges.analysis.walk import is_a
from sharpedges.detector import Detector, Finding


class AttentionSoftmaxWrongDim(Detector):
    code = "SHP104"
    tokens = (b"softmax",)

    def check(self, ctx):
        for softmax, sources in attention_softmaxes(ctx):
            if has_star_args(softmax.call):
                continue
            if softmax.dim is None:
                yield Finding(softmax.call, variant="no-dim")
                continue
            dim = literal_int(softmax.dim)
            if dim is None or _renormalised(ctx, softmax):
                continue
            verdicts = [_axis_verdict(ctx, source, dim) for source in sources]
            wrong = [v for v in verdicts if v is not None and v[0] == "wrong"]
            if wrong and len(wrong) == len(verdicts):
                yield Finding(softmax.call, facts={"dim": dim, "keys": wrong[0][1]})


def _axis_verdict(ctx, source, dim: int) -> tuple[str, int] | None:
    """('wrong', key axis) or ('right', key axis); None when the layout on the way is unknown."""
    positive, negative = key_axis(source, ctx)
    for node in source.path:
        if (is_a(node, cst.Call) and method_name(node) in REORDER_METHODS) or (
            is_a(node, cst.Attribute) and node.attr.value in ("T", "mT")
        ):
            return None  # the scores were transposed on the way: the key axis moved
        if (is_a(node, cst.Call) and method_name(node) in RESHAPE_METHODS) or is_a(node, cst.Subscript):
            positive = None  # the rank may have changed; the last axis is still the keys
    if dim < 0:
        return None if negative is None else ("right" if dim == negative else "wrong", negative)
    if positive is not None:
        return ("right" if dim == positive else "wrong", positive)
    return ("wrong", -1) if dim == 0 else None  # keys are last, and scores have at least two axes


def _renormalised(ctx, softmax) -> bool:
    """Slot attention normalises over the queries on purpose, then divides by the sum over the keys:
    `attn = dots.softmax(dim=1) + eps; attn = attn / attn.sum(dim=-1, keepdim=True)`."""
    statement = ctx.index.statement_of(softmax.call)
    if not is_a(statement, cst.SimpleStatementLine) or softmax.function is None:
        return False
    names = {
        t.target.value
        for small in statement.body
        if is_a(small, cst.Assign)
        for t in small.targets
        if is_a(t.target, cst.Name)
    }
    after = ctx.order(softmax.call)
    for node in ctx.index.descendants(softmax.function.body, cst.BinaryOperation):
        if (
            ctx.order(node) > after
            and is_a(node.operator, cst.Divide)
            and is_a(node.left, cst.Name)
            and node.left.value in names
            and is_a(node.right, cst.Call)
            and method_name(node.right) == "sum"
            and is_a(total := receiver(node.right), cst.Name)
            and total.value == node.left.value
        ):
            return True
    return False
