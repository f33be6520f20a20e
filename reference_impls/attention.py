"""Scaled dot-product attention, done right, in the order it runs.

Conventions used throughout this package:

- tensors are (batch, heads, seq, head_dim), written (B, H, S, D);
- a boolean mask is True where a query MAY attend a key (the polarity of
  ``F.scaled_dot_product_attention``; ``nn.MultiheadAttention`` uses the opposite);
- masks are combined as booleans and turned into an additive float mask once,
  with ``torch.finfo(dtype).min``, never by adding two ``min`` planes (which overflows
  to -inf and gives NaN rows);
- "bottom-right" causal alignment puts the last query on the last key, which is
  what decoding with a KV cache needs; SDPA's ``is_causal`` is top-left.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .positional import alibi_bias

CausalAlign = Literal["top_left", "bottom_right"]


# ----------------------------------------------------------------------------- masks


def query_positions(q_len: int, kv_len: int, align: CausalAlign = "bottom_right", device=None) -> Tensor:
    """Absolute positions of the queries when the keys sit at 0..kv_len-1."""
    if align not in ("top_left", "bottom_right"):
        raise ValueError(f"align must be 'top_left' or 'bottom_right', got {align!r}")
    offset = kv_len - q_len if align == "bottom_right" else 0
    return torch.arange(offset, offset + q_len, device=device)


def mask_from_positions(
    q_positions: Tensor, kv_positions: Tensor, *, causal: bool = True, window: int | None = None
) -> Tensor:
    """Boolean mask (..., Sq, Sk), True = may attend, from absolute positions.

    A negative key position marks an empty cache slot and is never attended (a cache
    that hands back unwritten zeros unmasked is a real bug: gpt-fast #233).
    ``window`` keeps the ``window`` most recent positions including the query's own:
    key k is visible from query q when ``|q - k| < window``.
    """
    q = q_positions[..., :, None]
    k = kv_positions[..., None, :]
    allowed = k >= 0
    if causal:
        allowed = allowed & (k <= q)
    if window is not None:
        assert window > 0, "a window of zero tokens would mask every row"
        allowed = allowed & ((q - k).abs() < window)
    return allowed


def causal_mask(q_len: int, kv_len: int, *, align: CausalAlign = "bottom_right", device=None) -> Tensor:
    """Boolean causal mask (q_len, kv_len), True = may attend (lower triangle, ``tril``)."""
    q_positions = query_positions(q_len, kv_len, align, device)
    return mask_from_positions(q_positions, torch.arange(kv_len, device=device), causal=True)


def padding_mask(
    lengths: Tensor | None = None, *, attention_mask: Tensor | None = None, kv_len: int | None = None
) -> Tensor:
    """Key padding mask (B, 1, 1, Sk), True = real token that may be attended.

    Give either ``lengths`` (B,) of right-padded sequences, or a Hugging Face style
    ``attention_mask`` (B, Sk) with 1 for tokens and 0 for padding. The singleton axes
    broadcast over heads and QUERIES: a (B, 1, Sk, 1) mask would blank whole query rows.
    """
    if (lengths is None) == (attention_mask is None):
        raise ValueError("give exactly one of lengths or attention_mask")
    if attention_mask is not None:
        keep = attention_mask.bool()
    else:
        if kv_len is None:
            kv_len = int(lengths.max())
        keep = torch.arange(kv_len, device=lengths.device)[None, :] < lengths[:, None]
    return keep[:, None, None, :]


def additive_mask(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """Boolean mask -> float mask: 0 where attended, ``finfo(dtype).min`` where not.

    ``finfo(dtype).min`` instead of a literal like -1e9 (overflows fp16) or -inf
    (NaN for a fully masked row).
    """
    assert mask.dtype == torch.bool, "convert boolean masks; a float mask is already additive"
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)


def combine_masks(*masks: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """Combine boolean masks (True = may attend) with logical AND, broadcasting.

    With ``dtype`` the result is converted to an additive mask once. Adding two
    ``finfo.min``-filled planes instead overflows to -inf where both mask a key,
    and rows masked by both turn into NaN (transformers #27114, NeMo Automodel #2658).
    """
    assert masks, "nothing to combine"
    for mask in masks:
        if mask.dtype != torch.bool:
            raise TypeError("combine boolean masks, then convert once with additive_mask")
    combined = masks[0]
    for mask in masks[1:]:
        combined = combined & mask
    return combined if dtype is None else additive_mask(combined, dtype)


# ------------------------------------------------------------------------ head grouping


def repeat_kv(x: Tensor, n_rep: int) -> Tensor:
    """(B, H_kv, S, D) -> (B, H_kv * n_rep, S, D) for grouped-query attention.

    Query head h reads KV head ``h // n_rep``: each KV head is repeated in place
    (0,0,1,1), like ``repeat_interleave(n_rep, dim=1)``. ``x.repeat(1, n_rep, 1, 1)``
    tiles instead (0,1,0,1) and silently pairs queries with the wrong keys.
    """
    if n_rep == 1:
        return x
    batch, n_kv_heads, seq_len, head_dim = x.shape
    x = x[:, :, None, :, :].expand(batch, n_kv_heads, n_rep, seq_len, head_dim)
    return x.reshape(batch, n_kv_heads * n_rep, seq_len, head_dim)


# ------------------------------------------------------------------------- the oracle


def attention_ref(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    attn_mask: Tensor | None = None,
    causal: bool = False,
    causal_align: CausalAlign = "bottom_right",
    window: int | None = None,
    alibi_slopes: Tensor | None = None,
    scale: float | None = None,
    dropout_p: float = 0.0,
    training: bool = False,
    upcast: bool = True,
) -> Tensor:
    """Eager attention, the oracle every faster path is checked against.

    q: (B, H, Sq, D); k, v: (B, H_kv, Sk, D) with H % H_kv == 0 (GQA/MQA).
    ``attn_mask``: boolean (True = may attend) or additive float, broadcastable to
    (B, H, Sq, Sk). The softmax runs in fp32 (or fp64 for fp64 inputs) unless
    ``upcast=False``, which reproduces the same math in the input precision, the
    baseline the flash-attention accuracy rule compares against. Rows with no
    visible key return zeros, not NaN. Dropout acts only when ``training``.
    """
    batch, n_heads, q_len, head_dim = q.shape
    kv_len = k.size(-2)
    assert k.shape == (*v.shape[:-1], head_dim) and k.size(0) == batch
    assert n_heads % k.size(1) == 0, "query heads must be a multiple of KV heads"
    k = repeat_kv(k, n_heads // k.size(1))
    v = repeat_kv(v, n_heads // v.size(1))

    compute_dtype = torch.promote_types(q.dtype, torch.float32) if upcast else q.dtype
    scale = 1.0 / math.sqrt(head_dim) if scale is None else scale  # the one and only scaling
    scores = (q.to(compute_dtype) @ k.to(compute_dtype).transpose(-2, -1)) * scale  # (B, H, Sq, Sk)

    q_positions = query_positions(q_len, kv_len, causal_align, q.device)
    kv_positions = torch.arange(kv_len, device=q.device)
    allowed = None  # boolean structure, kept to find rows with nothing to attend
    if causal or window is not None:
        allowed = mask_from_positions(q_positions, kv_positions, causal=causal, window=window)
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        allowed = attn_mask if allowed is None else allowed & attn_mask
    elif attn_mask is not None:
        scores = scores + attn_mask.to(compute_dtype)
    if alibi_slopes is not None:
        scores = scores + alibi_bias(alibi_slopes, q_positions, kv_positions).to(compute_dtype)
    if allowed is not None:
        scores = scores.masked_fill(~allowed, torch.finfo(compute_dtype).min)

    probs = torch.softmax(scores, dim=-1)  # over keys
    if allowed is not None:
        # A row with nothing to attend would be uniform over masked keys; make it zero.
        probs = probs.masked_fill(~allowed.any(dim=-1, keepdim=True), 0.0)
    probs = F.dropout(probs, p=dropout_p, training=training)
    out = probs @ v.to(compute_dtype)  # (B, H, Sq, D)
    return out.to(q.dtype)


# ------------------------------------------------------------------------- the module


class Attention(nn.Module):
    """Multi-head self-attention; ``n_kv_heads`` < ``n_heads`` gives GQA, 1 gives MQA.

    Uses ``F.scaled_dot_product_attention`` by default (``use_sdpa=False`` runs
    :func:`attention_ref`). Keys are rotated by RoPE before they are cached, so a
    cache holds post-RoPE keys and their absolute positions.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        n_kv_heads: int | None = None,
        *,
        causal: bool = True,
        window: int | None = None,
        dropout: float = 0.0,
        bias: bool = False,
        use_sdpa: bool = True,
        sdpa_enable_gqa: bool = True,
    ):
        super().__init__()
        n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        assert d_model % n_heads == 0, "d_model must split evenly into heads"
        assert n_heads % n_kv_heads == 0, "each KV head must serve the same number of query heads"
        self.n_heads, self.n_kv_heads = n_heads, n_kv_heads
        self.head_dim = d_model // n_heads
        self.causal, self.window, self.dropout = causal, window, dropout
        self.use_sdpa, self.sdpa_enable_gqa = use_sdpa, sdpa_enable_gqa
        self.q_proj = nn.Linear(d_model, n_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(d_model, n_kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(d_model, n_kv_heads * self.head_dim, bias=bias)
        self.out_proj = nn.Linear(n_heads * self.head_dim, d_model, bias=bias)
        self.resid_dropout = nn.Dropout(dropout)  # a module, so eval() turns it off

    def forward(
        self,
        x: Tensor,
        *,
        positions: Tensor | None = None,
        rope: nn.Module | None = None,
        cache=None,
        attn_mask: Tensor | None = None,
    ) -> Tensor:
        """x: (B, T, C). ``positions`` (T,) are absolute (default 0..T-1); ``cache`` is
        one layer's cache from ``kv_cache`` (``update(k, v) -> k, v, kv_positions``)."""
        batch, seq_len, _ = x.shape
        q = self.q_proj(x).view(batch, seq_len, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(batch, seq_len, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(batch, seq_len, self.n_kv_heads, self.head_dim).transpose(1, 2)
        # q: (B, H, T, D); k, v: (B, H_kv, T, D)
        if positions is None:
            positions = torch.arange(seq_len, device=x.device)
        if rope is not None:
            q, k = rope(q, positions), rope(k, positions)
        if cache is None:
            y = self.attend(q, k, v, attn_mask=attn_mask)
        else:
            k, v, kv_positions = cache.update(k, v)  # (B, H_kv, S, D), S >= T
            y = self.attend(q, k, v, q_positions=positions, kv_positions=kv_positions, attn_mask=attn_mask)
        y = y.transpose(1, 2).reshape(batch, seq_len, self.n_heads * self.head_dim)  # (B, T, C)
        return self.resid_dropout(self.out_proj(y))

    def attend(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        *,
        q_positions: Tensor | None = None,
        kv_positions: Tensor | None = None,
        attn_mask: Tensor | None = None,
    ) -> Tensor:
        """The attention core: (B, H, Sq, D) x (B, H_kv, Sk, D) -> (B, H, Sq, D).

        Without positions, queries and keys are the same tokens (Sq == Sk) and a plain
        causal call can use ``is_causal``, which the fused kernels need.
        """
        # SDPA has no `training` argument: a bare dropout_p would stay on in eval (nanoGPT #240).
        dropout_p = self.dropout if self.training else 0.0
        if q_positions is None:
            assert q.size(-2) == k.size(-2), "pass positions when queries and keys differ"
            if attn_mask is None and self.window is None:
                return self._sdpa_or_eager(q, k, v, None, self.causal, dropout_p)
            q_positions = kv_positions = torch.arange(q.size(-2), device=q.device)
        allowed = mask_from_positions(q_positions, kv_positions, causal=self.causal, window=self.window)
        if attn_mask is not None:
            allowed = combine_masks(allowed, attn_mask)
        y = self._sdpa_or_eager(q, k, v, allowed, False, dropout_p)
        # SDPA backends disagree on rows with no visible key (NaN or mean of V); pin them to zero.
        return y.masked_fill(~allowed.any(dim=-1, keepdim=True), 0.0)

    def _sdpa_or_eager(self, q, k, v, allowed, is_causal: bool, dropout_p: float) -> Tensor:
        n_rep = self.n_heads // self.n_kv_heads
        if not self.use_sdpa:
            return attention_ref(
                q, k, v, attn_mask=allowed, causal=is_causal, dropout_p=dropout_p, training=self.training
            )
        if n_rep > 1 and not self.sdpa_enable_gqa:
            k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)
        return F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=allowed,
            dropout_p=dropout_p,
            is_causal=is_causal,
            enable_gqa=n_rep > 1 and self.sdpa_enable_gqa,
        )
