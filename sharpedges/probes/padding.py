"""`padding-invariant`: padding, masked out, leaves the real tokens' outputs alone (SHP203)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

from sharpedges.probes.adapter import ModelAdapter, ProbeSkip
from sharpedges.probes.catalog import FAIL, PASS, Verdict
from sharpedges.probes.measure import inference, logits_of, max_abs_diff, random_ids, repeatable_logits, scale

LENGTH, PAD = 12, 4  # row 0 is unpadded, row 1 holds LENGTH - PAD tokens and PAD pads
# Relative to max |logits|: a masked key adds exactly 0; kernels may still sum in another order.
TOLERANCE = 1e-4


def padded(ids: torch.Tensor, filler: torch.Tensor, side: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Row 1 of `ids` shortened by PAD tokens and padded on `side` with `filler` (random tokens,
    so a model that ignores the mask is caught), with its attention mask (1 = token)."""
    import torch

    ids, mask = ids.clone(), torch.ones_like(ids)
    short = LENGTH - PAD
    if side == "right":
        ids[1, short:], mask[1, short:] = filler[1, :PAD], 0
    else:
        ids[1] = torch.cat((filler[1, :PAD], ids[1, :short]))
        mask[1, :PAD] = 0
    return ids, mask


def probe(adapter: ModelAdapter) -> Verdict:
    if not adapter.supports_attention_mask:
        raise ProbeSkip("no padding support: forward() takes no attention_mask (an adapter can provide one)")
    ids = random_ids(adapter, 2, LENGTH, seed=0)
    filler = random_ids(adapter, 2, LENGTH, seed=1)
    short = LENGTH - PAD
    with inference(adapter):
        alone = [
            repeatable_logits(adapter, ids[:1])[0],
            logits_of(adapter.forward(ids[1:, :short]), ids[1:, :short])[0],
        ]
        diffs = {}
        for side in ("right", "left"):
            batch, mask = padded(ids, filler, side)
            logits = logits_of(adapter.forward(batch, attention_mask=mask), batch)
            real = logits[1, :short] if side == "right" else logits[1, PAD:]
            diffs[side] = max(max_abs_diff(logits[0], alone[0]), max_abs_diff(real, alone[1]))
    tolerance = TOLERANCE * scale(alone[0])
    measured = {
        "right_padding_max_abs_diff": diffs["right"],
        "left_padding_max_abs_diff": diffs["left"],
        "pad_tokens": PAD,
        "tolerance": tolerance,
    }
    wrong = [f"{side} padding moves them by up to {diff:.3g}" for side, diff in diffs.items() if diff > tolerance]
    if wrong:
        return Verdict(
            FAIL,
            f"real tokens' outputs differ from the same sequences run alone: {'; '.join(wrong)} "
            f"(tolerance {tolerance:.3g}): the padding mask is ignored, inverted, or turns "
            "masked rows into NaN",
            measured,
        )
    return Verdict(
        PASS,
        f"right and left padding leave the real tokens' outputs unchanged (max |Δ| {max(diffs.values()):.3g})",
        measured,
    )
