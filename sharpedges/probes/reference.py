"""The reference `TinyDecoder` under the probes: a worked adapter for a model with its own conventions
(a boolean key mask instead of attention_mask, caches it allocates itself).

    sharpedges probe sharpedges.probes.reference:tiny_decoder
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sharpedges.probes.adapter import ModelAdapter

if TYPE_CHECKING:
    from sharpedges.reference_impls.block import TinyDecoder


class TinyDecoderAdapter(ModelAdapter):
    model: TinyDecoder
    supports_attention_mask = True
    supports_cache = True

    def forward(self, input_ids, attention_mask=None):
        from sharpedges.reference_impls.attention import padding_mask

        # A Hugging Face mask (B, T), 1 = token, becomes the (B, 1, 1, T) boolean key mask, True = may attend.
        keep = None if attention_mask is None else padding_mask(attention_mask=attention_mask)
        return self.model(input_ids, attn_mask=keep)

    def new_cache(self, batch_size, max_len):
        kind = "static" if self.model.cfg.window is None else "sliding"
        return self.model.new_caches(kind, batch_size, max_len)

    def forward_cached(self, input_ids, cache):
        return self.model(input_ids, caches=cache), cache  # the caches are updated in place


def tiny_decoder(**config) -> TinyDecoderAdapter:
    """A 2-layer TinyDecoder with dropout, so that eval-determinism has something to check."""
    import torch

    from sharpedges.reference_impls.block import DecoderConfig, TinyDecoder

    torch.manual_seed(0)
    return TinyDecoderAdapter(TinyDecoder(DecoderConfig(**{"dropout": 0.1, **config})))
