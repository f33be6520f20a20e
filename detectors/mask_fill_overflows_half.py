"""SHP103: a mask fill beyond the fp16 range (-1e9, -1e10, -3e38) written into attention scores."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator

import libcst as cst

from sharpedges.analysis.attention import attention_softmaxes
from sharpedges.analysis.calls import argument, method_name
from sharpedges.analysis.masks import HANDING_TOKENS, mask_uses
from sharpedges.analysis.names import dotted
from sharpedges.analysis.tensors import chosen_by_dtype, in_runtime_dtype, returned_number
from sharpedges.analysis.values import constant_number, multiplied_constants, possible_values
from sharpedges.analysis.vocabulary import (
    CAST_METHODS,
    FILL_FUNCTIONS,
    FILL_METHODS,
    SHAPE_ONLY_METHODS,
    TRANSPOSE_FUNCTIONS,
    cast_precision,
    dtype_precision,
)
from sharpedges.analysis.walk import is_a
from sharpedges.detector import Detector, Finding, Fix, Replacement

FP16_MAX = 65504.0
# a number literal of 100000 or more: `1e9`, `1e+10`, `3.4e38`, `100000000.0`
BEYOND_HALF_LITERAL = re.compile(rb"\d(?:\.\d*)?e\+?(?:[5-9]|\d\d)\b|\b\d{6,}(?:\.\d*)?\b")


class MaskFillOverflowsHalf(Detector):
    code = "SHP103"
    tokens = HANDING_TOKENS  # an eager softmax, or a mask handed to a kernel or module

    def check(self, ctx):
        reported = set()
        for _softmax, sources in attention_softmaxes(ctx):
            for source in sources:
                for position, node in enumerate(source.path):
                    fill = _fill_of(ctx, node, source.path[position + 1 :]) or _additive_fill(
                        ctx, node, source.path[position + 1 :]
                    )
                    if fill is None or fill[0] in reported:
                        continue
                    literal, scores = fill
                    value = returned_number(ctx, literal)
                    if value is not None and _subtracted(ctx, node, literal):
                        value = -value  # Ex) GPT-2: `w * b - 1e10 * (1 - b)` blocks with -1e10
                    inner = source.path[position + 1 :]
                    # Ex) scores.float().masked_fill(mask, -1e9): the fill lands in float32
                    # Ex) XLNet: `if mask.dtype == torch.float16: - 65500 * mask else: - 1e30 * mask`
                    if (
                        value is None
                        or abs(value) <= FP16_MAX
                        or chosen_by_dtype(ctx, node)
                        or not math.isfinite(value)
                        or any(cast_precision(ctx, n) == "full" for n in inner)
                    ):
                        continue
                    reported.add(literal)
                    facts = {"value": value, "scores": _scores_text(scores)}
                    additive = is_a(node, (cst.BinaryOperation, cst.AugAssign))
                    # Ex) `self.mask_value` set from a constructor parameter: the fix would drop the parameter
                    configurable = constant_number(ctx, literal) is None and not is_a(literal, cst.Call)
                    fix = None if additive or configurable else _fix(ctx, literal, scores, source.path[:position])
                    # Ex) NEG_INF = -1e20 at the top of the file: the finding rests on that line too
                    bound = possible_values(ctx, literal) if is_a(literal, cst.Name) else None
                    related = ((bound[0], "value"),) if bound and len(bound) == 1 and bound[0] is not literal else ()
                    yield Finding(literal, facts=facts, fix=fix, related=related)
        yield from _kernel_mask_fills(ctx, reported)
        yield from _returned_masks_in_runtime_dtype(ctx, reported)


# consumers whose mask meets the scores on an eager softmax path of this file, which `check` follows itself
EAGER_CONSUMERS = frozenset({"masked_fill", "torch.where", "scores + mask"})


def _kernel_mask_fills(ctx, reported: set) -> Iterator[Finding]:
    """An additive mask handed to an attention kernel or module (SDPA's `attn_mask`, `nn.MultiheadAttention`,
    a module of the project that adds it to its scores) whose blocking value is beyond fp16: a float16
    mask cannot hold it (masked_fill raises, `(1 - m) * -1e9` turns to -inf), unless the mask was built
    in float32.

    Ex) fairseq: `attn_mask = attn_mask.masked_fill(attn_mask.to(torch.bool), -1e8)`, then
        `self.self_attn(query=x, key=x, value=x, attn_mask=attn_mask)`
    """
    if not BEYOND_HALF_LITERAL.search(ctx.lowered_source):
        return  # checked first: evaluating every kernel's mask costs more (a number bound in another module is missed)
    for use in mask_uses(ctx):
        if use.consumer in EAGER_CONSUMERS and not use.forwarded:
            continue
        evaluator = use.evaluator(ctx)
        whole = evaluator.value(use.mask, ctx.order(use.node))
        values = [whole] if whole is not None else [value for value, _ in evaluator.values_by_path(use.mask)]
        for value in values:
            fill = value.fill
            if value.kind != "additive" or fill is None or fill in reported:
                continue
            number = returned_number(ctx, fill)
            if number is None or abs(number) <= FP16_MAX or not math.isfinite(number) or chosen_by_dtype(ctx, fill):
                continue
            reported.add(fill)
            facts = {"value": number, "consumer": use.consumer}
            yield Finding(fill, variant="kernel", facts=facts, related=((use.node, "consumer"),))


def _fill_of(ctx, node, inner_path) -> tuple[cst.BaseExpression, cst.BaseExpression] | None:
    """(the fill value, the scores it fills) when `node` writes a value into the scores."""
    if is_a(node, cst.Assign):  # Ex) scores[~mask] = -1e9, a write into the scores the path passes
        return node.value, cst.ensure_type(node.targets[0].target, cst.Subscript).value
    if not is_a(node, cst.Call) or not inner_path:
        return None
    scores = inner_path[0]
    method = method_name(node)
    qualified = ctx.callee(node)
    if method in FILL_METHODS and qualified not in FILL_FUNCTIONS:
        value = argument(node, "value", 1)
        return (value, scores) if value is not None else None
    if qualified == "torch.masked_fill":
        value = argument(node, "value", 2)
        return (value, scores) if value is not None else None
    if qualified == "torch.where":
        branches = [argument(node, "input", 1), argument(node, "other", 2)]
        others = [b for b in branches if b is not None and b is not scores]
        return (others[0], scores) if len(others) == 1 and len(branches) == 2 else None
    return None


def _additive_fill(ctx, node, inner_path) -> tuple[cst.BaseExpression, cst.BaseExpression] | None:
    """`scores + (1.0 - mask) * -1e9`: an additive mask whose masked cells are a number beyond fp16."""
    other: cst.BaseExpression | None
    if is_a(node, cst.AugAssign) and is_a(node.operator, (cst.AddAssign, cst.SubtractAssign)):
        scores, other = node.target, node.value  # Ex) scores += (1.0 - mask) * -1e9
    elif is_a(node, cst.BinaryOperation) and is_a(node.operator, (cst.Add, cst.Subtract)) and inner_path:
        scores = inner_path[0]
        other = node.right if node.left is scores else node.left if node.right is scores else None
    else:
        return None
    if other is None:
        return None
    big = [(literal, value) for literal, value in multiplied_constants(ctx, other) if abs(value) > FP16_MAX]
    if big:
        return big[0][0], scores
    return _filled_in_place(ctx, other, scores)


def _returned_masks_in_runtime_dtype(ctx, reported: set) -> Iterator[Finding]:
    """A helper that returns an additive mask it cast to the model's dtype first, with a blocking value
    beyond fp16: transformers 2.9.1's `invert_attention_mask` casts to `self.dtype` ("fp16
    compatibility") and returns `(1.0 - mask) * -1e9`, which is -inf in half wherever a model adds it."""
    if not BEYOND_HALF_LITERAL.search(ctx.lowered_source):
        return  # the value is spelled in the file (`-1e9`): no such literal, no such mask
    for statement in ctx.index.nodes(cst.Return):
        value = statement.value
        if is_a(value, cst.Name):
            bound = possible_values(ctx, value)
            value = bound[0] if bound and len(bound) == 1 else None
        if not is_a(value, cst.BinaryOperation) or ctx.function_of(statement) is None:
            continue
        big = [
            (literal, number)
            for literal, number in multiplied_constants(ctx, value)
            if abs(number) > FP16_MAX and math.isfinite(number) and literal not in reported
        ]
        if not big or chosen_by_dtype(ctx, value) or not in_runtime_dtype(ctx, value):
            continue
        literal, number = big[0]
        reported.add(literal)
        yield Finding(literal, variant="returned", facts={"value": number})


def _subtracted(ctx, node, literal) -> bool:
    """The fill sits in the subtracted side of an additive mask (`scores - 1e10 * (1 - keep)`)."""
    if is_a(node, cst.AugAssign):
        side = node.value if is_a(node.operator, cst.SubtractAssign) else None
    elif is_a(node, cst.BinaryOperation) and is_a(node.operator, cst.Subtract):
        side = node.right
    else:
        side = None
    return side is not None and (side is literal or any(n is literal for n in ctx.index.descendants(side)))


def _filled_in_place(ctx, mask: cst.BaseExpression, scores: cst.BaseExpression):
    """`mask.masked_fill_(mask.bool(), -1e9)` before `scores + mask`: the added mask was filled in place
    with a number beyond fp16, unless it was built in full precision."""
    if not is_a(mask, cst.Name) or (function := ctx.function_of(mask)) is None:
        return None
    name = mask.value
    facts = ctx.function_facts(function)
    definitions = facts.reaching(name, ctx.order(mask))
    for definition in definitions:
        fill = definition.value  # the in-place call
        if definition.kind != "inplace" or definition.method not in FILL_METHODS or not is_a(fill, cst.Call):
            continue
        value = argument(fill, "value", 1)
        number = returned_number(ctx, value) if value is not None else None
        if number is None or abs(number) <= FP16_MAX or not math.isfinite(number):
            continue
        built = [d.value for d in facts.reaching(name, ctx.order(definition.node)) if d.value is not None]
        if any(_built_in_full_precision(ctx, b) for b in built):
            return None
        return value, scores
    return None


def _built_in_full_precision(ctx, value: cst.BaseExpression) -> bool:
    """`torch.ones(n, n, dtype=torch.float32)` (maybe followed by `.triu(1)`): a float32 or float64 tensor."""
    calls = [value, *ctx.index.descendants(value, cst.Call)]
    return any(
        is_a(call, cst.Call)
        and (dtype := argument(call, "dtype")) is not None
        and dtype_precision(ctx, dtype) == "full"
        for call in calls
    )


def _scores_text(scores: cst.BaseExpression) -> str:
    return dotted(scores) or "scores"


def _fix(ctx, literal: cst.BaseExpression, scores: cst.BaseExpression, between: tuple) -> Fix | None:
    """`-1e9` -> `torch.finfo(scores.dtype).min` when the scores are a plain name and `torch` is
    imported under that name. Safe when the filled scores reach the softmax through names, views and
    casts only: a masked score then becomes exactly 0 in every dtype where the literal fitted, as it
    did before. Unsafe when arithmetic follows the fill (`+ bias`, a second mask): dtype-min plus a
    negative term is -inf in that dtype."""
    scores_text = dotted(scores)
    if scores_text is None or not _imports_torch(ctx):
        return None
    safe = all(_passes_through(ctx, node) for node in between)
    return Fix("safe" if safe else "unsafe", (Replacement(literal, f"torch.finfo({scores_text}.dtype).min"),))


def _passes_through(ctx, node: cst.CSTNode) -> bool:
    """A step that moves or casts the scores without computing on them."""
    if is_a(node, (cst.Name, cst.Attribute)):
        return True
    if is_a(node, cst.Call):
        method = method_name(node)
        return method in SHAPE_ONLY_METHODS or method in CAST_METHODS or ctx.callee(node) in TRANSPOSE_FUNCTIONS
    return False


def _imports_torch(ctx) -> bool:
    return any(
        dotted(alias.name) == "torch" and alias.asname is None
        for node in ctx.index.nodes(cst.Import)
        for alias in node.names
    )
