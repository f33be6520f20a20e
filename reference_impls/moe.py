"""Mixture of experts: an fp32 top-k router, two dispatch strategies, balancing losses.

Tokens are flattened to (N, C). Experts are stacked weights, ``w_in`` (E, C, F) and
``w_out`` (E, F, C), so the loop and the sorted/grouped dispatch compute the same
function from the same parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# ---------------------------------------------------------------------------- router


@dataclass
class Routing:
    # Floating tensors are fp32, or fp64 for fp64 inputs.
    weights: Tensor  # (N, k) combine weights of the chosen experts
    experts: Tensor  # (N, k) long expert ids
    logits: Tensor  # (N, E) router logits, for the z-loss
    probs: Tensor  # (N, E) rows sum to 1, for the load-balancing loss


class TopKRouter(nn.Module):
    """Scores every expert in (at least) fp32 and keeps the top k per token.

    In bf16, near-tied logits round to exact ties and top-k picks the wrong expert
    (vLLM #14027, #58076), so the gate matmul runs in fp32 even under autocast.
    ``score="sigmoid"`` (DeepSeek-V3) scores experts independently; ``renormalize``
    rescales the k kept weights to sum to 1 (Mixtral) instead of keeping raw scores (Switch).
    """

    def __init__(
        self,
        d_model: int,
        n_experts: int,
        k: int,
        *,
        score: Literal["softmax", "sigmoid"] = "softmax",
        renormalize: bool = True,
    ):
        super().__init__()
        assert 1 <= k <= n_experts
        assert score in ("softmax", "sigmoid")
        self.k, self.score, self.renormalize = k, score, renormalize
        self.gate = nn.Linear(d_model, n_experts, bias=False)

    def forward(self, x: Tensor) -> Routing:
        router_dtype = torch.promote_types(x.dtype, torch.float32)
        with torch.autocast(device_type=x.device.type, enabled=False):
            logits = F.linear(x.to(router_dtype), self.gate.weight.to(router_dtype))  # (N, E)
        scores = logits.softmax(dim=-1) if self.score == "softmax" else logits.sigmoid()
        weights, experts = scores.topk(self.k, dim=-1)  # (N, k)
        if self.renormalize:
            weights = weights / weights.sum(dim=-1, keepdim=True)
        probs = scores / scores.sum(dim=-1, keepdim=True)  # a no-op for softmax
        return Routing(weights=weights, experts=experts, logits=logits, probs=probs)


# ---------------------------------------------------------------------------- losses


def _valid_tokens(n_tokens: int, padding_mask: Tensor | None, device) -> Tensor:
    if padding_mask is None:
        return torch.ones(n_tokens, dtype=torch.bool, device=device)
    return padding_mask.reshape(-1).bool()


def load_balancing_loss(probs: Tensor, experts: Tensor, padding_mask: Tensor | None = None) -> Tensor:
    """Switch Transformer auxiliary loss, E * sum_i f_i * P_i, equal to 1 at perfect balance.

    f_i: fraction of the N*k assignments sent to expert i; P_i: mean router
    probability of expert i. probs (N, E), experts (N, k); ``padding_mask`` (N,) or
    (B, T), True for real tokens: padding must not count as traffic.
    """
    n_experts = probs.size(-1)
    valid = _valid_tokens(probs.size(0), padding_mask, probs.device)
    assignments = F.one_hot(experts[valid], n_experts).sum(dim=1).float()  # (N_valid, E)
    fraction_routed = assignments.sum(dim=0) / assignments.sum()  # f, sums to 1
    mean_prob = probs[valid].float().mean(dim=0)  # P, sums to 1
    return n_experts * (fraction_routed * mean_prob).sum()


def router_z_loss(logits: Tensor, padding_mask: Tensor | None = None) -> Tensor:
    """ST-MoE z-loss: mean over tokens of logsumexp(logits)^2, keeping router logits small."""
    valid = _valid_tokens(logits.size(0), padding_mask, logits.device)
    return torch.logsumexp(logits[valid].float(), dim=-1).pow(2).mean()


def mean_over_layers(layer_losses: Sequence[Tensor]) -> Tensor:
    """Aggregate per-layer auxiliary losses by their mean.

    Each layer is balanced on its own: pooling every layer's router outputs into
    one loss lets one layer's overloaded expert cancel another's. The mean (not the
    sum) keeps "1 = balanced" and the coefficient's meaning independent of depth.
    """
    return torch.stack(list(layer_losses)).mean()


# -------------------------------------------------------------------------- dispatch


def _expert_mlp_sorted(x_sorted: Tensor, counts: Tensor, w_in: Tensor, w_out: Tensor, grouped: bool) -> Tensor:
    """Run expert e on its contiguous slice of x_sorted (N*k, C); counts (E,) tokens each."""
    if grouped:
        offsets = counts.cumsum(0).to(torch.int32)
        hidden = F.gelu(F.grouped_mm(x_sorted, w_in, offs=offsets))
        return F.grouped_mm(hidden, w_out, offs=offsets)
    # Fallback: one matmul per expert over its slice (a host sync for the sizes).
    slices = x_sorted.split(counts.tolist())
    return torch.cat([F.gelu(xs @ w_in[e]) @ w_out[e] for e, xs in enumerate(slices)])


def dispatch_sorted(
    x: Tensor, weights: Tensor, experts: Tensor, w_in: Tensor, w_out: Tensor, *, grouped: bool | None = None
) -> Tensor:
    """Sort the N*k (token, expert) assignments by expert, run each expert once on a
    contiguous slice, and scatter the weighted outputs back. x (N, C) -> (N, C).

    ``grouped=None`` uses ``F.grouped_mm`` where its kernels exist (bf16 on CUDA)
    and falls back to a matmul per expert elsewhere.
    """
    n_tokens, k = experts.shape
    if grouped is None:
        grouped = hasattr(F, "grouped_mm") and x.is_cuda and x.dtype == torch.bfloat16
    flat_experts = experts.reshape(-1)  # (N*k,)
    order = flat_experts.argsort(stable=True)
    token_of = order // k  # source token of each sorted assignment
    counts = torch.bincount(flat_experts, minlength=w_in.size(0))  # (E,)
    y_sorted = _expert_mlp_sorted(x[token_of], counts, w_in, w_out, grouped)  # (N*k, C)
    combine_dtype = torch.promote_types(x.dtype, torch.float32)  # sum k expert outputs in fp32
    weighted = y_sorted.to(combine_dtype) * weights.reshape(-1)[order, None].to(combine_dtype)
    out = torch.zeros(n_tokens, x.size(-1), dtype=combine_dtype, device=x.device)
    return out.index_add_(0, token_of, weighted).to(x.dtype)


def dispatch_loop(x: Tensor, weights: Tensor, experts: Tensor, w_in: Tensor, w_out: Tensor) -> Tensor:
    """The obvious version: for each expert, gather its tokens, run it, add back. x (N, C)."""
    combine_dtype = torch.promote_types(x.dtype, torch.float32)
    out = torch.zeros(x.shape, dtype=combine_dtype, device=x.device)
    for e in range(w_in.size(0)):
        token_idx, slot = torch.where(experts == e)  # tokens that chose e, and in which slot
        if token_idx.numel() == 0:
            continue
        y = F.gelu(x[token_idx] @ w_in[e]) @ w_out[e]
        out.index_add_(0, token_idx, y.to(combine_dtype) * weights[token_idx, slot, None].to(combine_dtype))
    return out.to(x.dtype)


def dispatch_dense(x: Tensor, weights: Tensor, experts: Tensor, w_in: Tensor, w_out: Tensor) -> Tensor:
    """The slow truth: every expert on every token, unchosen experts weighted 0. x (N, C)."""
    combine_dtype = torch.promote_types(x.dtype, torch.float32)
    gates = torch.zeros(x.size(0), w_in.size(0), dtype=combine_dtype, device=x.device)  # (N, E)
    gates.scatter_(1, experts, weights.to(combine_dtype))
    every_expert = F.gelu(torch.einsum("nc,ecf->enf", x, w_in)) @ w_out  # (E, N, C)
    return torch.einsum("ne,enc->nc", gates, every_expert.to(combine_dtype)).to(x.dtype)


# ----------------------------------------------------------------------------- layer


class MoELayer(nn.Module):
    """Routed expert MLP that returns its auxiliary loss with its output.

    Returning the loss (rather than stashing it) makes dropping it visible: the caller
    must add ``aux_loss`` to the training loss (minimind #140).
    """

    def __init__(
        self,
        d_model: int,
        d_hidden: int,
        n_experts: int,
        k: int,
        *,
        score: Literal["softmax", "sigmoid"] = "softmax",
        renormalize: bool = True,
        balance_coef: float = 1e-2,
        z_coef: float = 1e-3,
        dispatch: Literal["sorted", "loop"] = "sorted",
    ):
        super().__init__()
        assert dispatch in ("sorted", "loop")
        self.router = TopKRouter(d_model, n_experts, k, score=score, renormalize=renormalize)
        self.w_in = nn.Parameter(torch.randn(n_experts, d_model, d_hidden) * d_model**-0.5)
        self.w_out = nn.Parameter(torch.randn(n_experts, d_hidden, d_model) * d_hidden**-0.5)
        self.balance_coef, self.z_coef, self.dispatch = balance_coef, z_coef, dispatch

    def forward(self, x: Tensor, padding_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x (B, T, C), padding_mask (B, T) True for real tokens -> (y (B, T, C), aux_loss)."""
        batch, seq_len, d_model = x.shape
        tokens = x.reshape(-1, d_model)  # (N, C)
        routing = self.router(tokens)
        if self.dispatch == "sorted":
            y = dispatch_sorted(tokens, routing.weights, routing.experts, self.w_in, self.w_out)
        else:
            y = dispatch_loop(tokens, routing.weights, routing.experts, self.w_in, self.w_out)
        aux_loss = self.balance_coef * load_balancing_loss(routing.probs, routing.experts, padding_mask)
        aux_loss = aux_loss + self.z_coef * router_z_loss(routing.logits, padding_mask)
        return y.view(batch, seq_len, d_model), aux_loss
