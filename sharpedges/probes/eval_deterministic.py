"""`eval-deterministic`: eval() turns every dropout off (SHP701)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

from sharpedges.probes.adapter import ModelAdapter, ProbeSkip
from sharpedges.probes.catalog import FAIL, PASS, Verdict
from sharpedges.probes.measure import REPEATABLE, logits_of, max_abs_diff, mode, random_ids, scale

BATCH, LENGTH = 2, 16  # exact on the CPU; on CUDA, kernels may reorder sums (REPEATABLE)


def _two_passes(adapter: ModelAdapter, ids: torch.Tensor, training: bool) -> tuple[float, torch.Tensor]:
    """The largest difference between two forward passes under different random seeds, and the
    first pass's logits."""
    import torch

    outputs = []
    with torch.no_grad(), mode(adapter, training):
        for seed in (1, 2):
            torch.manual_seed(seed)
            outputs.append(logits_of(adapter.forward(ids), ids))
    return max_abs_diff(*outputs), outputs[0]


def probe(adapter: ModelAdapter) -> Verdict:
    ids = random_ids(adapter, BATCH, LENGTH, seed=0)
    eval_diff, logits = _two_passes(adapter, ids, training=False)
    train_diff, _ = _two_passes(adapter, ids, training=True)
    tolerance = 0.0 if adapter.device.type == "cpu" else REPEATABLE * scale(logits)
    measured = {"eval_max_abs_diff": eval_diff, "train_max_abs_diff": train_diff, "tolerance": tolerance}
    if eval_diff > tolerance:
        return Verdict(
            FAIL,
            f"two eval() forward passes differ by up to {eval_diff:.3g} (tolerance {tolerance:.3g}): "
            "dropout stays on in eval (F.dropout without training=, an ungated SDPA dropout_p, "
            "or nn.Dropout built in forward)",
            measured,
        )
    if train_diff <= tolerance:
        raise ProbeSkip("no dropout: two train() passes agree as well, so eval() has nothing to turn off")
    return Verdict(
        PASS, f"eval() passes agree exactly; train() passes differ by {train_diff:.3g} (dropout on)", measured
    )
