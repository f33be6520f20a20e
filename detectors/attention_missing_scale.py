"""SHP101: attention logits reach softmax without 1/sqrt(d_k) scaling."""

from __future__ import annotations

from fractions import Fraction

import libcst as cst

from sharpedges.analysis.attention import (
    declared_unit_scale,
    logit_power,
    logit_sources,
    passed_logit_multipliers,
    query_scaled,
    scale_folded_into_init,
    scale_power,
    scale_set_at,
    softmax_calls,
    states_unscaled_design,
    unapplied_scales,
    unit_kernel_scales,
)
from sharpedges.analysis.tensors import class_family
from sharpedges.analysis.vocabulary import KERNEL_TOKENS, kernel_of
from sharpedges.analysis.walk import is_a
from sharpedges.detector import Detector, Finding


class AttentionMissingScale(Detector):
    code = "SHP101"
    tokens = (b"softmax", *KERNEL_TOKENS)

    def check(self, ctx):
        yield from _growing_kernel_scales(ctx)
        yield from _unit_kernel_scales_against_eager(ctx)
        for softmax in softmax_calls(ctx):
            sources = logit_sources(ctx, softmax)
            if sources and all(source.scaled for source in sources):
                yield from _growing_scales(ctx, sources)
                for unapplied in unapplied_scales(ctx, softmax):
                    built: tuple[tuple[cst.CSTNode, str], ...] = ((unapplied.scale, "built"),)
                    facts = {"scale": ctx.code(unapplied.scale)}
                    yield Finding(unapplied.term, variant="unapplied", facts=facts, related=built)
                continue
            # Ex) softmax(q @ k.transpose(-2, -1)); any scaled path (a branch, a temperature) counts as scaled
            if not sources or any(source.scaled for source in sources):
                continue
            # Ex) a fused twin of this attention (same function or class family) says `scale=1.0`
            if declared_unit_scale(ctx, softmax.function):
                continue
            # Ex) the docstring says "No scaling factor": the author declares the design
            if states_unscaled_design(ctx, softmax.function):
                continue
            # Ex) T5: the query projection is initialised with the extra 1/sqrt(d_kv) its key lacks
            if scale_folded_into_init(ctx, ctx.class_of(softmax.call)):
                continue
            related = tuple(
                (source.product, "product")
                for source in sources
                if not ctx.index.contains(softmax.call, source.product)
            )
            parent = ctx.index.parents.get(softmax.call)
            # Ex) softmax(q @ k.mT) / math.sqrt(d)
            if is_a(parent, cst.BinaryOperation) and is_a(parent.operator, (cst.Multiply, cst.Divide)):
                yield Finding(softmax.call, variant="after-softmax", related=related)
            else:
                yield Finding(softmax.call, related=related)


def _growing_scales(ctx, sources):
    """Ex) `self.scale = dim_head ** 0.5; sim = q @ k.mT * self.scale`: every path is scaled, and each
    one whose factors are all known multiplies the scores by a positive power of the head size: sqrt(d_k)
    instead of 1/sqrt(d_k). A path with an unknown factor besides (dgl's optional `*= attn_bias`) does
    not make the others right."""
    powers = [logit_power(ctx, source) for source in sources]
    known = [(source, power) for source, power in zip(sources, powers, strict=True) if power is not None]
    if not known or not all(power > 0 for _, power in known):
        return
    for scale in known[0][0].scales:
        power = scale_power(ctx, scale.expr, scale.function, scale.at)
        if power is not None and (-power if scale.divides else power) > 0:
            # the fix is the exponent where the scale is set, or the operator where it divides
            where = scale.expr if scale.divides else scale_set_at(ctx, scale.expr)
            related = ((scale.expr, "applied"),) if where is not scale.expr else ()
            how = "divided by" if scale.divides else "multiplied by"
            facts = {"how": how, "scale": ctx.code(scale.expr).strip()}
            yield Finding(where, variant="inverted", facts=facts, related=related)
            return


def _growing_kernel_scales(ctx):
    """Ex) `F.scaled_dot_product_attention(q, k, v, scale=self.head_dim ** 0.5)`, or the same scale
    handed to a function of the file that multiplies the scores by it."""
    kernel_scales = [
        (call, kernel.argument(call, "scale")) for call in ctx.calls() if (kernel := kernel_of(ctx, call)) is not None
    ]
    for call, value in kernel_scales + passed_logit_multipliers(ctx):
        if value is None:
            continue
        function = ctx.function_of(call)
        power = scale_power(ctx, value, function, ctx.order(call))
        if power is not None and power > 0:
            where = scale_set_at(ctx, value)
            related = ((value, "applied"),) if where is not value else ()
            facts = {"how": "multiplied by", "scale": ctx.code(value).strip()}
            yield Finding(where, variant="inverted", facts=facts, related=related)


def _unit_kernel_scales_against_eager(ctx):
    """Ex) transformers 4.36 Phi: the eager path divides the scores by sqrt(head_dim) and the flash path
    calls the kernel with `softmax_scale=1.0` on unscaled queries. A unit scale is a design only when
    every implementation of the attention agrees (GPT-Neo's eager and flash classes are both unscaled)."""
    units = [unit for unit in unit_kernel_scales(ctx) if not query_scaled(ctx, unit)]
    if not units:
        return
    softmaxes = [(softmax, logit_sources(ctx, softmax)) for softmax in softmax_calls(ctx)]
    for unit in units:
        cls = ctx.class_of(unit.kernel_call)
        if cls is None:
            continue
        family = set(class_family(ctx, cls))
        for softmax, sources in softmaxes:
            if ctx.class_of(softmax.call) not in family or not sources:
                continue
            if all(logit_power(ctx, source) == Fraction(-1, 2) for source in sources):
                scale = sources[0].scales[0].expr
                yield Finding(unit.literal, variant="unit-against-eager", related=((scale, "applied"),))
                break
