"""Checks an attention function against torch's SDPA: full causal, a chunk after a KV cache, padding.

Usage: python sdpa_equivalence.py [module:function]
The function is called as fn(q, k, v, allowed) with q (B, H, L, D), k and v (B, H, S, D), and `allowed`
a bool mask broadcastable to (B, H, L, S) where True means "may attend" (or None for no mask); it returns
(B, H, L, D). Without an argument the script checks its own eager reference, as a worked example.
Exits 1 and names the case on the first mismatch. Needs torch.
"""

from __future__ import annotations

import importlib
import math
import os
import sys


def eager_attention(q, k, v, allowed=None):
    """The reference: fp32 scores scaled by 1/sqrt(head_dim), masked with finfo.min, softmax over keys."""
    import torch

    scores = (q.float() @ k.float().transpose(-2, -1)) / math.sqrt(q.size(-1))
    if allowed is not None:
        scores = scores.masked_fill(~allowed, torch.finfo(torch.float32).min)
    weights = torch.softmax(scores, dim=-1)
    if allowed is not None:  # SDPA returns zeros for a fully masked row
        weights = weights.masked_fill(~allowed.any(-1, keepdim=True), 0.0)
    return (weights @ v.float()).to(q.dtype)


def cases(generator):
    import torch
    from torch.nn.attention.bias import causal_lower_right

    def tensors(length_q, length_k, batch=2, heads=4, dim=16):
        return (
            torch.randn(batch, heads, length_q, dim, generator=generator),
            torch.randn(batch, heads, length_k, dim, generator=generator),
            torch.randn(batch, heads, length_k, dim, generator=generator),
        )

    q, k, v = tensors(7, 7)
    yield "full causal (L == S)", q, k, v, torch.ones(7, 7, dtype=torch.bool).tril(), {"is_causal": True}
    q, k, v = tensors(3, 10)
    yield (
        "3 new tokens after 7 cached (bottom-right)",
        q,
        k,
        v,
        torch.ones(3, 10, dtype=torch.bool).tril(7),
        {"attn_mask": causal_lower_right(3, 10)},
    )
    q, k, v = tensors(1, 10)
    yield "1 new token after 9 cached (no mask)", q, k, v, None, {}
    q, k, v = tensors(5, 5)
    keep = torch.tensor([[True] * 5, [False, False, True, True, True]])[:, None, None, :]  # left padding
    yield "left padding, True = attend", q, k, v, keep, {"attn_mask": keep}


def main(argv: list[str]) -> int:
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        print("sdpa_equivalence.py needs torch: pip install torch==2.13.0", file=sys.stderr)
        return 2
    function = eager_attention
    if argv:
        module_name, _, attribute = argv[0].partition(":")
        sys.path.insert(0, os.getcwd())  # import the user's module from where the script is run
        function = getattr(importlib.import_module(module_name), attribute or "attention")
    generator = torch.Generator().manual_seed(0)
    for name, q, k, v, allowed, sdpa_kwargs in cases(generator):
        expected = F.scaled_dot_product_attention(q, k, v, **sdpa_kwargs)
        got = function(q, k, v, allowed)
        if not torch.allclose(got.float(), expected.float(), atol=1e-4, rtol=1e-4):
            worst = (got.float() - expected.float()).abs().max().item()
            print(f"MISMATCH {name}: max abs difference {worst:.3g}")
            return 1
        print(f"ok {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
