"""`half-precision`: fp16 and bf16 stay finite and close to fp32, fully masked rows included
(SHP103, SHP105, SHP601)."""

from __future__ import annotations

import copy

from sharpedges.probes.adapter import ModelAdapter, ProbeSkip
from sharpedges.probes.catalog import FAIL, PASS, Verdict
from sharpedges.probes.measure import (
    all_finite,
    inference,
    logits_of,
    max_abs_diff,
    random_ids,
    repeatable_logits,
    scale,
)

LENGTH, PAD = 12, 4  # row 1 is left-padded: its first queries see only padding, a fully masked row
# max |Δ| / max |fp32 logits| at the real tokens. fp16 keeps 11 significant bits and bf16 8, so a
# small model lands near 1e-3 and 1e-2. A softmax in fp16 without upcast or RoPE angles in half
# precision go past these only where attention is sharp, as in trained weights: random weights
# attend almost uniformly, and a rotation error then barely moves the output.
TOLERANCES = {"float16": 1e-2, "bfloat16": 5e-2}  # torch dtype name -> tolerance
UNSUPPORTED = ("not implemented for", "not supported")  # the device lacks a kernel: not the model's fault


def probe(adapter: ModelAdapter) -> Verdict:
    import torch

    ids = random_ids(adapter, 2, LENGTH, seed=0)
    mask = None
    if adapter.supports_attention_mask:
        mask = torch.ones_like(ids)
        mask[1, :PAD] = 0
    real = torch.ones_like(ids, dtype=torch.bool) if mask is None else mask.bool()
    with inference(adapter):
        reference = repeatable_logits(adapter, ids, mask)[real]
    checked: dict[str, dict] = {}
    measured = {"fully_masked_rows": mask is not None, "dtypes": checked}
    problems, unsupported = [], []
    for name, tolerance in TOLERANCES.items():
        half = copy.deepcopy(adapter)
        half.model.to(getattr(torch, name))
        try:
            with inference(half):
                logits = logits_of(half.forward(ids, attention_mask=mask), ids)
        except RuntimeError as exc:
            if any(marker in str(exc) for marker in UNSUPPORTED):
                unsupported.append(f"{name} ({str(exc).splitlines()[0]})")
                continue
            problems.append(f"the {name} forward raised RuntimeError: {str(exc).splitlines()[0]}")
            continue
        error = max_abs_diff(logits[real], reference) / scale(reference)
        checked[name] = {"relative_error": error, "tolerance": tolerance, "finite": all_finite(logits)}
        if not all_finite(logits):
            where = "at fully masked rows" if all_finite(logits[real]) else "at real tokens"
            problems.append(
                f"{name} logits are NaN or inf {where} (a mask fill beyond the {name} range, or a fully masked row)"
            )
        elif error > tolerance:
            problems.append(
                f"{name} logits are off by {error:.3g} of their scale (tolerance {tolerance:g}): "
                "softmax or RoPE computed in half precision"
            )
    if unsupported and len(unsupported) == len(TOLERANCES):
        raise ProbeSkip(f"no half-precision kernels on {adapter.device.type}: {'; '.join(unsupported)}")
    if unsupported:
        measured["unsupported"] = unsupported
    if problems:
        return Verdict(FAIL, "; ".join(problems), measured)
    errors = ", ".join(f"{name} {found['relative_error']:.3g}" for name, found in checked.items())
    masked = " (fully masked rows included)" if mask is not None else ""
    return Verdict(PASS, f"{' and '.join(checked)} logits finite{masked}, relative error to fp32: {errors}", measured)
