"""A top-2 MoE layer and a generation loop, each with a bug that only shows at scale."""

import torch
import torch.nn as nn
import torch.nn.functional as F


class Expert(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(dim, hidden)
        self.w2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)))


class SparseMoE(nn.Module):
    def __init__(self, dim: int, n_experts: int = 8, top_k: int = 2) -> None:
        super().__init__()
        self.gate = nn.Linear(dim, n_experts, bias=False)
        self.experts = nn.ModuleList([Expert(dim, 4 * dim) for _ in range(n_experts)])
        self.top_k = top_k

    def forward(self, x):
        # BUG (SHP501): top-k routing with no load-balancing loss: a few experts take every token.
        # BUG (SHP503): the router runs in the activation dtype; under bf16 near-tied experts swap.
        scores = self.gate(x).softmax(dim=-1)
        weights, chosen = torch.topk(scores, self.top_k, dim=-1)
        weights = weights / weights.sum(dim=-1, keepdim=True)
        out = torch.zeros_like(x)
        for slot in range(self.top_k):
            for e, expert in enumerate(self.experts):
                hit = chosen[:, slot] == e
                if hit.any():
                    out[hit] += weights[hit, slot, None] * expert(x[hit])
        return out


class KVCache(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.k = None
        self.v = None

    def update(self, k, v):
        # BUG (SHP401): grows by one step per token forever; long sessions run out of memory.
        if self.k is None:
            self.k, self.v = k, v
        else:
            self.k = torch.cat([self.k, k], dim=2)
            self.v = torch.cat([self.v, v], dim=2)
        return self.k, self.v
