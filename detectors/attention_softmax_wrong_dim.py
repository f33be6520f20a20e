"""SHP104: softmax over QK^T scores on an axis other than the keys, or with no dim at all."""

from __future__ import annotations

import libcst as cst

from sharpedges.analysis.attention import attention_softmaxes, key_axis, softmax_calls
from sharpedges.analysis.calls import has_star_args, literal_int, method_name, receiver
from sharpedges.analysis.einsum import off_axis_poolings
from sharpedges.analysis.summaries import call_sites, return_values
from sharpedges.analysis.tensors import known_rank, last_axis_size
from sharpedges.analysis.vocabulary import REORDER_METHODS, RESHAPE_METHODS
from sharpedges.analysis.walk import is_a
from sharpedges.detector import Detector, Finding


class AttentionSoftmaxWrongDim(Detector):
    code = "SHP104"
    tokens = (b"softmax",)

    def check(self, ctx):
        reported = set()  # one finding per softmax: a wrong axis for the scores is also off the einsum's
        for finding in _singleton_softmaxes(ctx):
            reported.add(finding.node)
            yield finding
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
                reported.add(softmax.call)
                yield Finding(softmax.call, facts={"dim": dim, "keys": wrong[0][1]})
        for pooling in off_axis_poolings(ctx, softmax_calls(ctx)):
            if pooling.softmax.call not in reported and not _renormalised(ctx, pooling.softmax):
                facts = {"normalised": pooling.normalised, "summed": ", ".join(pooling.summed)}
                yield Finding(
                    pooling.softmax.call, variant="pooled", facts=facts, related=((pooling.einsum.call, "summed"),)
                )


def _singleton_softmaxes(ctx):
    """Ex) `w = F.softmax(self.score(x), dim=-1)` with `self.score = nn.Linear(d, 1)`: attention pooling
    normalised over its one-wide score axis, so every weight is exactly 1."""
    for softmax in softmax_calls(ctx):
        dim = literal_int(softmax.dim) if softmax.dim is not None else None
        if dim is None or has_star_args(softmax.call):
            continue
        rank = known_rank(ctx, softmax.input) if dim >= 0 else None
        if (dim == -1 or (rank is not None and dim == rank - 1)) and last_axis_size(ctx, softmax.input) == 1:
            yield Finding(softmax.call, variant="singleton", facts={"dim": dim})


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
    `attn = dots.softmax(dim=1) + eps; attn = attn / attn.sum(dim=-1, keepdim=True)`, in the same function
    or in a caller of the helper that returns the softmax (GroupViT's `get_attn`)."""
    return _divided_by_own_sum(ctx, softmax.call, callers=1)


def _sum_of(denominator: cst.BaseExpression, name: str) -> bool:
    """`a.sum(dim=-1, keepdim=True)`, or that plus an epsilon."""
    if is_a(denominator, cst.BinaryOperation) and is_a(denominator.operator, cst.Add):
        return _sum_of(denominator.left, name) or _sum_of(denominator.right, name)
    return (
        is_a(denominator, cst.Call)
        and method_name(denominator) == "sum"
        and is_a(total := receiver(denominator), cst.Name)
        and total.value == name
    )


def _divided_by_own_sum(ctx, value: cst.CSTNode, callers: int) -> bool:
    """Is the value assigned on this statement later divided by its own sum (`a / a.sum(...)`)? A value
    its function returns is followed into the function's call sites, `callers` levels up."""
    statement = ctx.index.statement_of(value)
    function = ctx.function_of(value)
    if not is_a(statement, cst.SimpleStatementLine) or function is None:
        return False
    names = {
        t.target.value
        for small in statement.body
        if is_a(small, cst.Assign)
        for t in small.targets
        if is_a(t.target, cst.Name)
    }
    after = ctx.order(value)
    for node in ctx.index.descendants(function.body, cst.BinaryOperation):
        if (
            ctx.order(node) > after
            and is_a(node.operator, cst.Divide)
            and is_a(node.left, cst.Name)
            and node.left.value in names
            and _sum_of(node.right, node.left.value)
        ):
            return True
    returned = any(
        is_a(returned_value, cst.Name) and returned_value.value in names
        for returned_value in return_values(ctx, function)
    )
    return (
        callers > 0
        and returned
        and any(_divided_by_own_sum(ctx, call, callers - 1) for call, _ in call_sites(ctx, function))
    )
