"""Transformer blocks and a tiny decoder-only language model.

Pre-norm keeps the residual stream raw (``x = x + f(norm(x))``) and therefore needs
one final norm before the LM head. Post-norm (``x = norm(x + f(x))``) trains badly
past ~12 layers unless the residual is up-weighted as DeepNorm does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import Attention
from .kv_cache import PagedKVCache, SlidingWindowCache, StaticKVCache
from .norm import LayerNorm, RMSNorm
from .positional import RotaryEmbedding


@dataclass
class DecoderConfig:
    vocab_size: int = 256
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    n_kv_heads: int | None = None  # None: same as n_heads (MHA)
    window: int | None = None  # sliding-window attention span, None: full causal
    dropout: float = 0.0
    mlp_ratio: int = 4
    rope_base: float = 10000.0
    use_sdpa: bool = True

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


class MLP(nn.Module):
    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, cfg.mlp_ratio * cfg.d_model, bias=False)
        self.proj = nn.Linear(cfg.mlp_ratio * cfg.d_model, cfg.d_model, bias=False)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))


def _attention(cfg: DecoderConfig) -> Attention:
    return Attention(
        cfg.d_model,
        cfg.n_heads,
        cfg.n_kv_heads,
        causal=True,
        window=cfg.window,
        dropout=cfg.dropout,
        use_sdpa=cfg.use_sdpa,
    )


class PreNormBlock(nn.Module):
    """x + attn(norm(x)), then x + mlp(norm(x)): the residual is never normalised in place."""

    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.d_model)
        self.attn = _attention(cfg)
        self.mlp_norm = RMSNorm(cfg.d_model)
        self.mlp = MLP(cfg)

    def forward(self, x: Tensor, **attn_kwargs) -> Tensor:
        x = x + self.attn(self.attn_norm(x), **attn_kwargs)
        x = x + self.mlp(self.mlp_norm(x))
        return x


def deepnorm_constants(n_layers: int) -> tuple[float, float]:
    """(alpha, beta) for a decoder-only DeepNet of ``n_layers`` blocks (Wang et al. 2022):
    residual up-weight alpha = (2N)^(1/4), init gain beta = (8N)^(-1/4)."""
    return (2 * n_layers) ** 0.25, (8 * n_layers) ** -0.25


class DeepNormBlock(nn.Module):
    """Post-norm made deep-safe: x = norm(alpha * x + f(x)), with f's output-side
    weights initialised with gain beta, so each update moves the residual by O(1/N)."""

    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.alpha, beta = deepnorm_constants(cfg.n_layers)
        self.attn = _attention(cfg)
        self.attn_norm = LayerNorm(cfg.d_model)
        self.mlp = MLP(cfg)
        self.mlp_norm = LayerNorm(cfg.d_model)
        for linear in (self.attn.v_proj, self.attn.out_proj, self.mlp.fc, self.mlp.proj):
            nn.init.xavier_normal_(linear.weight, gain=beta)
        for linear in (self.attn.q_proj, self.attn.k_proj):
            nn.init.xavier_normal_(linear.weight, gain=1.0)

    def forward(self, x: Tensor, **attn_kwargs) -> Tensor:
        x = self.attn_norm(self.alpha * x + self.attn(x, **attn_kwargs))
        x = self.mlp_norm(self.alpha * x + self.mlp(x))
        return x


class TinyDecoder(nn.Module):
    """Token embedding -> pre-norm blocks (RoPE shared) -> final norm -> tied LM head."""

    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.rope = RotaryEmbedding(cfg.head_dim, base=cfg.rope_base)
        self.blocks = nn.ModuleList(PreNormBlock(cfg) for _ in range(cfg.n_layers))
        self.final_norm = RMSNorm(cfg.d_model)  # pre-norm leaves the stream unnormalised
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.tok_emb.weight  # weight tying, as in GPT-2 and nanoGPT

    def forward(self, idx: Tensor, *, caches: list | None = None, attn_mask: Tensor | None = None) -> Tensor:
        """idx: (B, T) token ids -> logits (B, T, vocab). With ``caches`` (one per
        layer, from ``kv_cache``) the tokens continue at position ``caches[0].length``."""
        seq_len = idx.size(1)
        start = caches[0].length if caches else 0
        positions = torch.arange(start, start + seq_len, device=idx.device)
        x = self.tok_emb(idx)  # (B, T, C)
        for i, block in enumerate(self.blocks):
            cache = caches[i] if caches else None
            x = block(x, positions=positions, rope=self.rope, cache=cache, attn_mask=attn_mask)
        return self.lm_head(self.final_norm(x))  # (B, T, vocab)

    def new_caches(self, kind: str, batch_size: int, max_len: int, *, block_size: int = 16) -> list:
        """One cache per layer, in the model's dtype and device: "static" (max_len
        tokens), "sliding" (the config's window) or "paged" (blocks for max_len)."""
        cfg, weight = self.cfg, self.tok_emb.weight
        n_kv_heads = cfg.n_kv_heads or cfg.n_heads
        where = {"dtype": weight.dtype, "device": weight.device}
        assert (kind == "sliding") == (cfg.window is not None), "sliding-window models need the ring cache"

        def one_cache():
            if kind == "static":
                return StaticKVCache(batch_size, n_kv_heads, max_len, cfg.head_dim, **where)
            if kind == "sliding":
                return SlidingWindowCache(batch_size, n_kv_heads, cfg.window, cfg.head_dim, **where)
            if kind == "paged":
                num_blocks = batch_size * -(-max_len // block_size)
                return PagedKVCache(
                    batch_size, n_kv_heads, cfg.head_dim, block_size=block_size, num_blocks=num_blocks, **where
                )
            raise ValueError(f"unknown cache kind {kind!r}")

        return [one_cache() for _ in self.blocks]

    @torch.no_grad()
    def generate(self, idx: Tensor, max_new_tokens: int) -> Tensor:
        """Greedy decoding with a bounded cache: prefill once, then one token a step."""
        assert not self.training, "call .eval() first: dropout must be off while generating"
        kind = "static" if self.cfg.window is None else "sliding"
        caches = self.new_caches(kind, idx.size(0), idx.size(1) + max_new_tokens)
        next_input = idx
        for _ in range(max_new_tokens):
            logits = self(next_input, caches=caches)  # (B, T or 1, vocab)
            next_input = logits[:, -1].argmax(dim=-1, keepdim=True)  # (B, 1)
            idx = torch.cat((idx, next_input), dim=1)
        return idx
