"""`causal`: the output at position t depends on tokens <= t and on nothing after (SHP201, SHP202)."""

from __future__ import annotations

from sharpedges.probes.adapter import ModelAdapter, ProbeSkip
from sharpedges.probes.catalog import FAIL, PASS, Verdict
from sharpedges.probes.measure import (
    inference,
    logits_of,
    max_abs_diff,
    other_tokens,
    random_ids,
    repeatable_logits,
    scale,
)

BATCH, LENGTH, CUT = 2, 16, 7  # tokens after CUT change in one run, tokens before it in another
# Relative to max |logits|: a masked future key adds exactly 0 in fp32, so anything above
# rounding is a leak.
TOLERANCE = 1e-5


def probe(adapter: ModelAdapter) -> Verdict:
    if not adapter.causal:
        raise ProbeSkip("the model is bidirectional (not a causal LM)")
    ids = random_ids(adapter, BATCH, LENGTH, seed=0)
    replaced = other_tokens(adapter, ids, seed=1)
    future_changed, past_changed = ids.clone(), ids.clone()
    future_changed[:, CUT + 1 :] = replaced[:, CUT + 1 :]
    past_changed[:, :CUT] = replaced[:, :CUT]
    with inference(adapter):
        base = repeatable_logits(adapter, ids)
        after_future = logits_of(adapter.forward(future_changed), ids)
        after_past = logits_of(adapter.forward(past_changed), ids)
    tolerance = TOLERANCE * scale(base)
    moved = [max_abs_diff(after_future[:, t], base[:, t]) for t in range(CUT + 1)]
    reach = max_abs_diff(after_past[:, CUT], base[:, CUT])
    measured = {
        "positions": LENGTH,
        "cut": CUT,
        "future_change_max_abs_diff": max(moved),
        "past_change_max_abs_diff_at_cut": reach,
        "tolerance": tolerance,
    }
    leaks = [t for t, diff in enumerate(moved) if diff > tolerance]
    if leaks:
        measured["first_leaking_position"] = leaks[0]
        return Verdict(
            FAIL,
            f"changing tokens after position {CUT} moved the outputs at positions "
            f"{leaks[0]}..{leaks[-1]} by up to {max(moved):.3g} (tolerance {tolerance:.3g}): "
            "the attention sees the future (missing or inverted causal mask)",
            measured,
        )
    if not reach > tolerance:
        return Verdict(
            FAIL,
            f"changing tokens before position {CUT} moved its output by only "
            f"{reach:.3g} (tolerance {tolerance:.3g}): the mask hides the past",
            measured,
        )
    return Verdict(
        PASS,
        f"outputs at <= {CUT} unchanged by later tokens (max |Δ| {max(moved):.3g}), "
        f"and moved {reach:.3g} by earlier ones",
        measured,
    )
