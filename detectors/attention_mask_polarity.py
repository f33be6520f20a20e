"""SHP203: a padding or additive mask meets a consumer of the other boolean convention."""

from __future__ import annotations

from sharpedges.analysis.masks import CONSUMER_TOKENS, attends_to_marked, mask_uses, masks_attention_scores
from sharpedges.detector import Detector, Finding

CONSUMERS = {"sdpa": "scaled_dot_product_attention", "allow": "torch.where(mask, scores, -inf)"}


class AttentionMaskPolarity(Detector):
    code = "SHP203"
    tokens = (b"mask", b"where")
    also_tokens = (CONSUMER_TOKENS,)

    def check(self, ctx):
        for use in mask_uses(ctx):
            value = use.evaluator(ctx).value(use.mask)
            if value is None or value.triangular or value.marks is None:
                continue  # causal triangles are SHP202's; a mask of unknown meaning says nothing
            if not masks_attention_scores(ctx, use):
                continue
            attends = attends_to_marked(value, use.convention)
            consumer = CONSUMERS.get(use.convention, use.consumer)
            # Ex) pad = input_ids == pad_id on the line before the SDPA call: the claim rests there too
            related = tuple((node, "origin") for node in value.origin if not ctx.index.contains(use.node, node))
            if value.marks == "blocked" and attends is True:
                yield Finding(use.node, facts={"consumer": consumer}, related=related)
            elif value.marks == "allowed" and attends is False:
                yield Finding(use.node, variant="real-tokens-blocked", facts={"consumer": consumer}, related=related)
