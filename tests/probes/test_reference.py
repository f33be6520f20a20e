"""Every probe on the reference implementations: the modules every rule links to must pass them all,
so "every rule links to a tested reference" is something users can run on their own models."""

import pytest
import torch
from torch import nn

from sharpedges.probes import PASS, PROBES, run_probes
from sharpedges.probes.reference import TinyDecoderAdapter, tiny_decoder
from sharpedges.reference_impls.attention import Attention
from sharpedges.reference_impls.block import DecoderConfig, TinyDecoder
from sharpedges.reference_impls.moe import MoELayer, mean_over_layers
from sharpedges.reference_impls.norm import RMSNorm


class MoEBlock(nn.Module):
    """The reference pre-norm block with the reference MoE layer in place of the MLP."""

    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.attn_norm, self.mlp_norm = RMSNorm(cfg.d_model), RMSNorm(cfg.d_model)
        self.attn = Attention(cfg.d_model, cfg.n_heads, cfg.n_kv_heads, dropout=cfg.dropout)
        self.moe = MoELayer(cfg.d_model, 2 * cfg.d_model, n_experts=4, k=2)

    def forward(self, x, **attn_kwargs):
        x = x + self.attn(self.attn_norm(x), **attn_kwargs)
        y, aux_loss = self.moe(self.mlp_norm(x))
        return x + y, aux_loss


class MoEDecoder(TinyDecoder):
    """TinyDecoder's embedding, RoPE, final norm, head and caches around MoE blocks; returns the
    mean of the layers' balancing losses with the logits."""

    def __init__(self, cfg: DecoderConfig):
        super().__init__(cfg)
        self.blocks = nn.ModuleList(MoEBlock(cfg) for _ in range(cfg.n_layers))

    def forward(self, idx, *, caches=None, attn_mask=None):
        start = caches[0].length if caches else 0
        positions = torch.arange(start, start + idx.size(1), device=idx.device)
        x, aux_losses = self.tok_emb(idx), []
        for i, block in enumerate(self.blocks):
            x, aux_loss = block(
                x, positions=positions, rope=self.rope, cache=caches[i] if caches else None, attn_mask=attn_mask
            )
            aux_losses.append(aux_loss)
        return {"logits": self.lm_head(self.final_norm(x)), "aux_loss": mean_over_layers(aux_losses)}


def moe_decoder():
    torch.manual_seed(0)
    return TinyDecoderAdapter(MoEDecoder(DecoderConfig(dropout=0.1)))


REFERENCE_MODELS = {
    "tiny-decoder": tiny_decoder,
    "gqa": lambda: tiny_decoder(n_heads=4, n_kv_heads=2),
    "eager-attention": lambda: tiny_decoder(use_sdpa=False),
    "sliding-window": lambda: tiny_decoder(window=4),
    "moe": moe_decoder,
}


@pytest.mark.parametrize("build", REFERENCE_MODELS.values(), ids=REFERENCE_MODELS.keys())
def test_reference_models_pass_every_probe(build):
    results = run_probes(build())
    assert {result.name: result.status for result in results} == dict.fromkeys(PROBES, PASS), {
        result.name: result.detail for result in results if result.status != PASS
    }


def test_the_moe_router_is_found_and_learns_from_the_balancing_loss():
    [result] = run_probes(moe_decoder(), ["grad-flow"])
    routers = ["blocks.0.moe.router.gate.weight", "blocks.1.moe.router.gate.weight"]
    assert result.measured["router_parameters"] == routers
    assert all(norm > 0 for norm in result.measured["router_grad_norm_from_aux_loss"].values())
