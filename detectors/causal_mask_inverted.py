"""SHP202: a causal mask whose polarity is wrong: it shows the future, or hides the diagonal."""

from __future__ import annotations

import libcst as cst

from sharpedges.analysis.calls import literal_number, method_name
from sharpedges.analysis.context import FileContext
from sharpedges.analysis.masks import (
    CONSUMER_TOKENS,
    SYMBOLIC,
    MaskUse,
    Region,
    allowed_region,
    mask_uses,
    masks_attention_scores,
    verdict,
)
from sharpedges.analysis.walk import is_a
from sharpedges.detector import Detector, Finding, Fix, Replacement


class CausalMaskInverted(Detector):
    code = "SHP202"
    tokens = (b"tril", b"triu", b"arange", b"generate_square_subsequent_mask")
    also_tokens = (CONSUMER_TOKENS,)

    def check(self, ctx):
        inversions = list(_inversions(ctx))
        for use, problem, value in inversions:
            related = _where_built(ctx, use, value)
            facts = {"consumer": use.consumer}
            if problem == "ignored":
                yield Finding(use.node, variant="ignored", facts=facts, related=related)
                continue
            variant = None if problem == "future" else "diagonal"
            fix = _fix(ctx, use, value, len(inversions))
            yield Finding(use.node, variant=variant, facts=facts, fix=fix, related=related)


def _inversions(ctx: FileContext):
    for use in mask_uses(ctx):
        value = use.evaluator(ctx).value(use.mask)
        if value is None or not value.triangular or not masks_attention_scores(ctx, use):
            continue
        allowed = allowed_region(value, use.convention)
        if allowed == "ignored":
            yield use, "ignored", value
        elif allowed is None or (use.convention in ("block", "allow") and _window_bound(allowed)):
            continue
        elif verdict(allowed) in ("future", "diagonal"):
            yield use, verdict(allowed), value


def _where_built(ctx: FileContext, use: MaskUse, value) -> tuple:
    """The triangles and comparisons that decide the mask's orientation, outside the consuming call."""
    return tuple(
        (node, "triangle" if is_a(node, cst.Call) else "polarity")
        for node in value.flips
        if not ctx.index.contains(use.node, node)
    )


def _window_bound(allowed: Region) -> bool:
    """masked_fill and where only add blocking: blocking everything below an offset the code computes
    (`tril(..., diagonal=past - window - 1)`) bounds a sliding window, and the causal half may be
    applied by another step."""
    return allowed.lo == SYMBOLIC and allowed.hi is None and not allowed.negated


def _fix(ctx: FileContext, use: MaskUse, value, found: int) -> Fix | None:
    """Flip one comparison (`== 1` -> `== 0`) or swap tril/triu, inside the consuming statement, when the
    file then has one inversion fewer and no new one."""
    statement = ctx.index.statement_of(use.node)
    for node in reversed(value.flips):
        if not ctx.index.contains(statement, node):
            continue
        replacement = _flipped(node)
        if replacement is None:
            continue
        fixed = ctx.module.deep_replace(replacement.node, cst.parse_expression(replacement.code))
        # deep_replace hands back the new node itself only when it replaced the whole module
        if is_a(fixed, cst.Module) and len(list(_inversions(FileContext(ctx.path, fixed)))) < found:
            return Fix("unsafe", (replacement,))
    return None


def _flipped(node: cst.CSTNode) -> Replacement | None:
    if is_a(node, cst.Comparison) and len(node.comparisons) == 1:
        target = node.comparisons[0]
        number = literal_number(target.comparator)
        if is_a(target.operator, cst.Equal) and number in (0, 1):
            comparator = cst.Integer("0" if number == 1 else "1")
            return Replacement(target.comparator, comparator.value)
        return None
    if is_a(node, cst.Call):
        func = node.func
        name = method_name(node) or (func.value if is_a(func, cst.Name) else None)
        swapped = {"tril": "triu", "triu": "tril"}.get(name or "")
        if swapped is None:
            return None
        if is_a(func, cst.Attribute):
            return Replacement(func.attr, swapped)
        return Replacement(func, swapped)
    return None
