"""SHP102: attention scaled by the model width or the head count, in code that splits heads."""

from __future__ import annotations

from sharpedges.analysis.attention import attention_softmaxes, head_splits, scale_dimensions, scale_set_at
from sharpedges.analysis.calls import argument
from sharpedges.detector import Detector, Finding


class AttentionScaleWrongDim(Detector):
    code = "SHP102"
    tokens = (b"softmax",)

    def check(self, ctx):
        reported = set()
        for softmax, sources in attention_softmaxes(ctx):
            scope = ctx.class_of(softmax.call) or softmax.function
            splits = head_splits(ctx, scope) if scope is not None else []
            scales = [scale for source in sources for scale in source.scales]
            for scale, split, what in _wrong_scales(ctx, scales, splits):
                where = scale_set_at(ctx, scale.expr)
                if where not in reported:
                    reported.add(where)
                    related = ((scale.expr, "applied"),) if where is not scale.expr else ()
                    facts = {"scale": ctx.code(scale.expr).strip(), "split": ctx.code(split.node).strip()}
                    variant = None if what == "model width" else "head-count"
                    if split.projection is not None:
                        variant = "projection"
                        facts["width"] = ctx.code(argument(split.projection, "in_features", 0)).strip()
                    yield Finding(where, variant=variant, facts=facts, related=related)
                break


def _wrong_scales(ctx, scales, splits):
    """(scale, split, 'model width' | 'head count') for each scale made of a split's width or heads."""
    for scale in scales:
        for key in scale_dimensions(ctx, scale):
            for split in splits:
                if key == split.width:
                    yield scale, split, "model width"
                elif key == split.divisor and split.divisor_is_head_count:
                    yield scale, split, "head count"
