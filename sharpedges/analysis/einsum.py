"""What an einsum does to the axes of its operands, read from its equation, and softmax weights that an
einsum sums over another axis than the one they were normalised over.

    alphas = scores.softmax(dim=-1)                             # (b, s, h): normalised over h
    pooled = einsum("b s h, b s h d -> b h d", alphas, values)  # sums over s, keeps h

The weights sum to 1 over the heads, and the einsum adds them up over the tokens: the pooled value is
no weighted mean. Attention weights sum to 1 over the axis they are contracted on.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import libcst as cst

from sharpedges.analysis.calls import literal_int, literal_string
from sharpedges.analysis.context import FileContext
from sharpedges.analysis.values import possible_values
from sharpedges.analysis.walk import is_a

if TYPE_CHECKING:
    from sharpedges.analysis.attention import SoftmaxCall

EINSUM_FUNCTIONS = frozenset({"torch.einsum", "einops.einsum", "numpy.einsum", "opt_einsum.contract"})
_SPACED_LABEL = re.compile(r"\.\.\.|\w+")
_LETTER_LABEL = re.compile(r"\.\.\.|\w")


@dataclass(frozen=True)
class Einsum:
    call: cst.Call
    operands: tuple[cst.BaseExpression, ...]
    inputs: tuple[tuple[str, ...], ...]  # the labels of each operand's axes ("..." for an ellipsis)
    output: tuple[str, ...]


def einsum_of(ctx: FileContext, call: cst.Call) -> Einsum | None:
    """The equation and operands of an einsum, wherever its equation is: first as torch's and numpy's
    (`torch.einsum("bsh,bshd->bhd", a, b)`: one letter per axis, spaces ignored), or last as einops'
    (`einops.einsum(a, b, "b s h, b s h d -> b h d")`: axis names between spaces). The import names
    both `einsum`, so the position of the string says which."""
    if ctx.callee(call) not in EINSUM_FUNCTIONS or not call.args or any(a.star or a.keyword for a in call.args):
        return None
    values = [a.value for a in call.args]
    first, last = literal_string(values[0]), literal_string(values[-1])
    if first is not None:
        equation, operands, label = first, values[1:], _LETTER_LABEL
    elif last is not None:
        equation, operands, label = last, values[:-1], _SPACED_LABEL
    else:
        return None
    if equation.count("->") != 1 or "(" in equation:
        return None
    left, right = equation.split("->")
    inputs = tuple(tuple(label.findall(part)) for part in left.split(","))
    if len(inputs) != len(operands):
        return None
    return Einsum(call, tuple(operands), inputs, tuple(label.findall(right)))


@dataclass(frozen=True)
class OffAxisPooling:
    softmax: SoftmaxCall
    einsum: Einsum
    normalised: str  # the label the softmax normalised over, kept by the einsum
    summed: tuple[str, ...]  # the labels of that operand the einsum sums over


def off_axis_poolings(ctx: FileContext, softmaxes: Sequence[SoftmaxCall]) -> list[OffAxisPooling]:
    """Softmax weights (of the file's `softmaxes`, assigned to a local) that an einsum sums over other
    axes than the one they were normalised over: it keeps that axis and shares it with another operand
    (pooled per head), or it sums over that axis and more (`'ndxy,nexy->nde'` normalised over y alone).
    Weights that stay distributions over their own axis, mixed by the other operands, are quiet:
    `'k d, k -> d'`, and `'bqc, bqhw -> bchw'` (class probabilities per query times each query's mask).
    So is a linear-attention context whose keys were normalised over the features (`'bhdn,bhen->bhde'`):
    it has that same shape, and nothing in the einsum tells the two apart."""

    def compute() -> list[OffAxisPooling]:
        by_call: dict[cst.CSTNode, SoftmaxCall] = {}
        for each in softmaxes:
            statement = ctx.index.parents.get(each.call)
            if (
                is_a(statement, cst.Assign)
                and len(statement.targets) == 1
                and is_a(statement.targets[0].target, cst.Name)
            ):
                by_call[each.call] = each
        if not by_call:
            return []
        found = []
        for call in ctx.calls():
            einsum = einsum_of(ctx, call)
            if einsum is None or ctx.function_of(call) is None:
                continue
            for operand, labels in zip(einsum.operands, einsum.inputs, strict=True):
                values = possible_values(ctx, operand) if is_a(operand, cst.Name) else None
                softmax = by_call.get(values[0]) if values is not None and len(values) == 1 else None
                normalised = _label_of(labels, softmax) if softmax is not None else None
                if softmax is None or normalised is None:
                    continue
                summed = tuple(label for label in labels if label not in einsum.output and label != "...")
                others = [other for other in einsum.inputs if other is not labels]
                if normalised in einsum.output:
                    off_axis = bool(summed) and any(normalised in other for other in others)
                else:
                    off_axis = normalised in summed and len(summed) > 1
                if off_axis:
                    found.append(OffAxisPooling(softmax, einsum, normalised, summed))
        return found

    return ctx.memo("einsum.off_axis_poolings", compute)


def _label_of(labels: tuple[str, ...], softmax: SoftmaxCall) -> str | None:
    """The label of the axis a softmax normalised over, when its dim is a literal and the operand's
    labels place it (a positive dim does not cross an ellipsis)."""
    dim = literal_int(softmax.dim) if softmax.dim is not None else None
    if dim is None:
        return None
    if dim < 0:
        label = labels[dim] if -dim <= len(labels) else None
        return None if label == "..." or "..." in labels[len(labels) + dim + 1 :] else label
    if "..." in labels[: dim + 1] or dim >= len(labels):
        return None
    return labels[dim]
