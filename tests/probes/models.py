"""Tiny language models for the probe tests: a clean one, and the same with one planted bug.

They follow the Hugging Face conventions (attention_mask=, position_ids=, past_key_values=,
use_cache=True, an output with .logits), so the default ModelAdapter drives them, and they use
learned absolute positions, so left padding is only invariant when positions skip the pads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sharpedges.reference_impls.moe import MoELayer, mean_over_layers

BUGS = (
    "inverted_causal_mask",  # SHP202: the triangle is flipped, every position sees the future
    "ungated_dropout",  # SHP701: F.dropout on the attention probabilities, training left at its default
    "causal_over_cache",  # SHP204: SDPA is_causal=True even when the keys include the cache
    "inverted_padding_mask",  # SHP203: 1 read as "padding", so real tokens are masked out
    "fill_1e9",  # SHP103: scores + mask * -1e9 in the activation dtype, -inf in fp16
    "unused_layer",  # a parameter no forward reaches
)


@dataclass
class LMOutput:
    logits: Tensor  # (B, T, V)
    past_key_values: list | None = None
    aux_loss: Tensor | None = None


class Attention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float, bug: str | None):
        super().__init__()
        self.n_heads, self.head_dim, self.dropout, self.bug = n_heads, d_model // n_heads, dropout, bug
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, keep: Tensor | None, past: tuple | None) -> tuple[Tensor, tuple]:
        """x (B, T, C); keep (B, S) True for real tokens; past: cached (k, v), each (B, H, S - T, D)."""
        batch, length, width = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if past is not None:
            k, v = torch.cat((past[0], k), dim=2), torch.cat((past[1], v), dim=2)
        if self.bug == "causal_over_cache":
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            y = self.attend(q, k, v, keep)
        y = y.transpose(1, 2).reshape(batch, length, width)
        return self.resid_dropout(self.out(y)), (k, v)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, keep: Tensor | None) -> Tensor:
        queries, keys = q.size(2), k.size(2)
        ones = torch.ones(queries, keys, dtype=torch.bool, device=q.device)
        allowed = ones.triu(keys - queries) if self.bug == "inverted_causal_mask" else ones.tril(keys - queries)
        if keep is not None:
            keep = ~keep if self.bug == "inverted_padding_mask" else keep
            allowed = allowed & keep[:, None, None, :]  # (B, 1, T, S)
        if self.bug == "fill_1e9":
            scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)
            scores = scores + (~allowed).to(scores.dtype) * -1e9  # noqa: SHP103
        else:
            scores = q.float() @ k.float().transpose(-2, -1) / math.sqrt(self.head_dim)
            scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        probs = scores.float().softmax(dim=-1)
        if self.bug == "ungated_dropout":
            probs = F.dropout(probs, self.dropout)  # noqa: SHP701
        return (probs @ v.float()).to(q.dtype)


class Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float, bug: str | None, moe: bool):
        super().__init__()
        self.attn_norm, self.mlp_norm = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attn = Attention(d_model, n_heads, dropout, bug)
        self.moe = MoELayer(d_model, 2 * d_model, n_experts=4, k=2) if moe else None
        self.mlp = (
            None
            if moe
            else nn.Sequential(
                nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model), nn.Dropout(dropout)
            )
        )

    def forward(self, x: Tensor, keep: Tensor | None, past: tuple | None) -> tuple[Tensor, tuple, Tensor | None]:
        attended, kv = self.attn(self.attn_norm(x), keep, past)
        x = x + attended
        if self.moe is None:
            return x + self.mlp(self.mlp_norm(x)), kv, None
        y, aux_loss = self.moe(self.mlp_norm(x))
        return x + y, kv, aux_loss


class TinyLM(nn.Module):
    """A 2-layer decoder with learned positions; `moe=True` swaps the MLPs for the reference MoE
    layer, whose balancing loss `aux_loss` says what becomes of: "returned", "discarded" (SHP502)
    or "detached" (returned, but cut off from the router)."""

    def __init__(
        self,
        bug: str | None = None,
        *,
        moe: bool = False,
        aux_loss: str = "returned",
        vocab_size: int = 64,
        d_model: int = 32,
        n_heads: int = 4,
        n_layers: int = 2,
        max_len: int = 32,
        dropout: float = 0.1,
    ):
        super().__init__()
        assert bug is None or bug in BUGS, bug
        torch.manual_seed(0)
        assert aux_loss in ("returned", "discarded", "detached"), aux_loss
        self.aux_loss = aux_loss
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.pos_emb = nn.Embedding(max_len, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, dropout, bug, moe) for _ in range(n_layers))
        self.final_norm = nn.LayerNorm(d_model)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        self.unused = nn.Linear(d_model, d_model) if bug == "unused_layer" else None

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        past_key_values: list | None = None,
        use_cache: bool = False,
    ) -> LMOutput:
        past_len = past_key_values[0][0].size(2) if past_key_values else 0
        if position_ids is None:
            position_ids = torch.arange(past_len, past_len + input_ids.size(1), device=input_ids.device)[None]
        x = self.tok_emb(input_ids) + self.pos_emb(position_ids)
        keep = None if attention_mask is None else attention_mask.bool()
        caches, aux_losses = [], []
        for i, block in enumerate(self.blocks):
            x, kv, aux_loss = block(x, keep, past_key_values[i] if past_key_values else None)
            caches.append(kv)
            aux_losses.append(aux_loss)
        logits = self.lm_head(self.final_norm(x))
        aux_loss = None
        if aux_losses[0] is not None and self.aux_loss != "discarded":
            aux_loss = mean_over_layers(aux_losses)
            aux_loss = aux_loss.detach() if self.aux_loss == "detached" else aux_loss
        return LMOutput(logits, caches if use_cache else None, aux_loss)


class LogitsOnly(nn.Module):
    """A model that takes only input_ids and has no dropout: the cache, padding and dropout
    probes do not apply to it."""

    def __init__(self):
        super().__init__()
        self.lm = TinyLM(dropout=0.0)

    def forward(self, input_ids: Tensor) -> Tensor:
        return self.lm(input_ids).logits
