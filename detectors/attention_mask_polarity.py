"""SHP203: a padding or additive mask meets a consumer of the other boolean convention."""

from __future__ import annotations

import libcst as cst

from sharpedges.analysis.masks import (
    HANDING_TOKENS,
    MaskUse,
    additive_masks_made_boolean,
    adds_a_boolean,
    attends_to_marked,
    blocks_every_key,
    conflicting_uses,
    filled_pair_products,
    mask_uses,
    masks_attention_scores,
    real_tokens_filled,
)
from sharpedges.analysis.vocabulary import REGISTRY_TOKENS
from sharpedges.analysis.walk import is_a
from sharpedges.detector import Detector, Finding

CONSUMERS = {"sdpa": "scaled_dot_product_attention", "allow": "torch.where(mask, scores, -inf)"}


def _consumer(use: MaskUse) -> str:
    """What the message names: the kernel or idiom, or the consumer in another module a call hands it to."""
    return use.consumer if use.forwarded else CONSUMERS.get(use.convention, use.consumer)


class AttentionMaskPolarity(Detector):
    code = "SHP203"
    tokens = (b"mask", b"where", b"scaled_dot_product_attention")  # SDPA's attn_mask may be passed by position
    also_tokens = (HANDING_TOKENS + REGISTRY_TOKENS,)

    def check(self, ctx):
        flagged = set()
        for finding in (
            *self._made_boolean(ctx),
            *self._blocking_everything(ctx),
            *self._marked(ctx),
            *self._pair_products(ctx),
            *self._added_booleans(ctx),
            *self._filled_real_tokens(ctx),
        ):
            if finding.node in flagged:
                continue
            flagged.add(finding.node)
            yield finding
        for source, blocking, attending in conflicting_uses(ctx):
            if blocking.node in flagged or attending.node in flagged:
                continue  # what the mask marks is known, and the inverted consumer is flagged already
            # Ex) mask = keep == 0, then sdpa(attn_mask=mask) and scores.masked_fill(mask, -inf)
            first = min(blocking, attending, key=lambda use: ctx.order(use.node))
            at = first.node if is_a(source.node, cst.Param) else source.node
            yield Finding(
                at,
                variant="conflict",
                facts={
                    "blocking": _consumer(blocking),
                    "attending": _consumer(attending),
                },
                related=((blocking.node, "blocking"), (attending.node, "attending")),
            )

    def _made_boolean(self, ctx):
        """An additive mask cast to a boolean in the branch that hands it to a registry's SDPA kernel."""
        for cast, plane, registry in additive_masks_made_boolean(ctx):
            # Ex) `if config._attn_implementation == "sdpa": causal_mask = causal_mask.bool()` (Llama 4)
            related = ((plane, "origin"),) if plane is not None and not ctx.index.contains(cast, plane) else ()
            facts = {"consumer": CONSUMERS["sdpa"]}
            yield Finding(cast, facts=facts, related=(*related, (registry.call, "attending")))

    def _blocking_everything(self, ctx):
        """Masks that, on one of the choices the code makes, let no key through."""
        for use in mask_uses(ctx):
            if not use.geometry:
                continue  # rearranged on the way: which keys it blocks there is unknown
            choices = use.evaluator(ctx).choices(use.mask)
            if any(blocks_every_key(c, use.convention) for c in choices) and masks_attention_scores(ctx, use):
                consumer = _consumer(use)
                yield Finding(use.node, variant="blocks-all", facts={"consumer": consumer})

    def _marked(self, ctx):
        """Masks whose marked positions mean something (padding, -inf) meeting the wrong convention."""
        for use in mask_uses(ctx):
            value = use.evaluator(ctx).value(use.mask)
            if value is None or value.triangular or value.marks is None:
                continue  # causal triangles are SHP202's; a mask of unknown meaning says nothing
            if not masks_attention_scores(ctx, use):
                continue
            attends = attends_to_marked(value, use.convention)
            consumer = _consumer(use)
            # Ex) pad = input_ids == pad_id on the line before the SDPA call: the claim rests there too
            related = tuple((node, "origin") for node in value.origin if not ctx.index.contains(use.node, node))
            if value.marks == "blocked" and attends is True:
                yield Finding(use.node, facts={"consumer": consumer}, related=related)
            elif value.marks == "allowed" and attends is False:
                yield Finding(use.node, variant="real-tokens-blocked", facts={"consumer": consumer}, related=related)

    def _filled_real_tokens(self, ctx):
        """A masked_fill that writes where the real tokens are (a tokenizer's attention_mask, not inverted)."""
        for call, value in real_tokens_filled(ctx):
            related = tuple((node, "origin") for node in value.origin if not ctx.index.contains(call, node))
            yield Finding(call, variant="real-tokens-filled", facts={"call": ctx.code(call.func)}, related=related)

    def _pair_products(self, ctx):
        """A query mask AND a key mask, filled: wrong in either convention."""
        for pair in filled_pair_products(ctx):
            # Ex) input_mask = q_mask[:, None, :, None] * k_mask[:, None, None, :]; dots.masked_fill_(input_mask, -inf)
            related = () if ctx.index.contains(pair.use.node, pair.product) else ((pair.product, "product"),)
            yield Finding(
                pair.use.node, variant="pair-product", facts={"consumer": _consumer(pair.use)}, related=related
            )

    def _added_booleans(self, ctx):
        """A boolean mask cast to 0/1 floats and handed to a consumer that adds float masks."""
        for use in mask_uses(ctx):
            value = use.evaluator(ctx).value(use.mask)
            if value is not None and adds_a_boolean(value, use.convention):
                # Ex) attention_mask = ~attention_mask; sdpa(q, k, v, attention_mask.to(torch.float32))
                related = tuple((node, "origin") for node in value.origin if not ctx.index.contains(use.node, node))
                yield Finding(use.node, variant="float-boolean", facts={"consumer": _consumer(use)}, related=related)
