"""Inputs and measurements the probes share: seeded token ids, logits as fp32, distances."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor

from sharpedges.probes.adapter import ModelAdapter, ProbeSkip, read_outputs

# Relative to max |logits|: how far two identical eval() passes may differ before a probe that
# compares passes stops judging (CUDA kernels may reorder sums; dropout moves whole activations).
REPEATABLE = 1e-5


def random_ids(adapter: ModelAdapter, batch: int, length: int, seed: int) -> Tensor:
    """(batch, length) token ids drawn on the CPU from `seed`, so every device sees the same ones."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    return torch.randint(adapter.vocab_size, (batch, length), generator=generator).to(adapter.device)


def other_tokens(adapter: ModelAdapter, ids: Tensor, seed: int) -> Tensor:
    """`ids` with every token replaced by a different one."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    shift = torch.randint(1, adapter.vocab_size, ids.shape, generator=generator).to(ids.device)
    return (ids + shift) % adapter.vocab_size


def logits_of(raw: Any, input_ids: Tensor) -> Tensor:
    """The logits of a model's output as fp32, checked to be (B, T, V) for `input_ids` (B, T)."""
    logits = read_outputs(raw).logits
    if logits.dim() != 3 or logits.shape[:2] != input_ids.shape:
        raise TypeError(
            f"expected logits of shape (B, T, V) = ({input_ids.size(0)}, {input_ids.size(1)}, V), "
            f"got {tuple(logits.shape)}"
        )
    return logits.float()


def repeatable_logits(adapter: ModelAdapter, ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
    """The fp32 logits of `ids`, checked to come out the same twice: a probe comparing forward passes
    cannot judge a model whose eval() passes differ (eval-deterministic reports that one)."""
    first, second = (logits_of(adapter.forward(ids, attention_mask=attention_mask), ids) for _ in range(2))
    if max_abs_diff(first, second) > REPEATABLE * scale(first):
        raise ProbeSkip(
            f"two identical eval() forward passes differ by {max_abs_diff(first, second):.3g}, so "
            "comparing passes proves nothing (see eval-deterministic)"
        )
    return first


def max_abs_diff(a: Tensor, b: Tensor) -> float:
    """Largest |a - b|; infinite where either side is not finite, so NaN never passes as close."""
    diff = (a - b).abs()
    return float(diff.nan_to_num(nan=float("inf")).max()) if diff.numel() else 0.0


def scale(reference: Tensor) -> float:
    """The size that relative tolerances are taken of: max |reference|, at least 1."""
    return max(1.0, float(reference.abs().max()))


def all_finite(tensor: Tensor) -> bool:
    import torch

    return bool(torch.isfinite(tensor).all())


@contextmanager
def mode(adapter: ModelAdapter, training: bool) -> Iterator[None]:
    """The model in train() or eval() for the block, restored afterwards."""
    was_training = adapter.model.training
    adapter.model.train(training)
    try:
        yield
    finally:
        adapter.model.train(was_training)


@contextmanager
def inference(adapter: ModelAdapter) -> Iterator[None]:
    import torch

    with torch.no_grad(), mode(adapter, False):
        yield
