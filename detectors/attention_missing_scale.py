"""SHP101: attention logits reach softmax without 1/sqrt(d_k) scaling."""

from __future__ import annotations

import libcst as cst

from sharpedges.analysis.attention import (
    declared_unit_scale,
    logit_sources,
    scale_folded_into_init,
    softmax_calls,
    states_unscaled_design,
)
from sharpedges.analysis.walk import is_a
from sharpedges.detector import Detector, Finding


class AttentionMissingScale(Detector):
    code = "SHP101"
    tokens = (b"softmax",)

    def check(self, ctx):
        for softmax in softmax_calls(ctx):
            sources = logit_sources(ctx, softmax)
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
