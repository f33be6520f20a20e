"""`kv-cache-consistent`: decoding with the cache gives the logits of a full forward (SHP204, SHP401)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

from sharpedges.probes.adapter import ModelAdapter, ProbeSkip
from sharpedges.probes.catalog import FAIL, PASS, Verdict
from sharpedges.probes.measure import inference, logits_of, max_abs_diff, random_ids, repeatable_logits, scale

BATCH, LENGTH = 2, 12
ONE_AT_A_TIME = (1,) * LENGTH
CHUNKS = (5, 3, 4)  # a prefill, then chunks of several queries over a non-empty cache
# Relative to max |logits|: the cached path sums in another order, nothing more.
TOLERANCE = 1e-4


def _decode(adapter: ModelAdapter, ids: torch.Tensor, sizes: tuple[int, ...]) -> torch.Tensor:
    """Logits (B, T, V) of feeding `ids` through the cache in chunks of `sizes` tokens."""
    import torch

    cache = adapter.new_cache(ids.size(0), ids.size(1))
    pieces, start = [], 0
    for size in sizes:
        chunk = ids[:, start : start + size]
        raw, cache = adapter.forward_cached(chunk, cache)
        pieces.append(logits_of(raw, chunk))
        start += size
    return torch.cat(pieces, dim=1)


def _first_divergence(a: torch.Tensor, b: torch.Tensor, tolerance: float) -> int:
    return next(t for t in range(a.size(1)) if max_abs_diff(a[:, t], b[:, t]) > tolerance)


def probe(adapter: ModelAdapter) -> Verdict:
    if not adapter.supports_cache:
        raise ProbeSkip("no cache support: forward() takes no past_key_values (an adapter can provide one)")
    ids = random_ids(adapter, BATCH, LENGTH, seed=0)
    with inference(adapter):
        full = repeatable_logits(adapter, ids)
        decoded = {
            "one token at a time": _decode(adapter, ids, ONE_AT_A_TIME),
            f"in chunks of {'+'.join(map(str, CHUNKS))}": _decode(adapter, ids, CHUNKS),
        }
    tolerance = TOLERANCE * scale(full)
    diffs = {how: max_abs_diff(logits, full) for how, logits in decoded.items()}
    one_token, chunked = diffs.values()
    measured = {
        "one_token_max_abs_diff": one_token,
        "chunked_max_abs_diff": chunked,
        "chunks": list(CHUNKS),
        "tolerance": tolerance,
    }
    wrong = [
        f"{how} differs from the full forward by up to {diff:.3g} from position "
        f"{_first_divergence(decoded[how], full, tolerance)}"
        for how, diff in diffs.items()
        if diff > tolerance
    ]
    if wrong:
        return Verdict(
            FAIL,
            f"cached decoding {'; '.join(wrong)} (tolerance {tolerance:.3g}): new queries do not "
            "see the cache as the full forward does (is_causal=True over cached keys, or positions "
            "not offset by the cache length)",
            measured,
        )
    return Verdict(
        PASS,
        f"cached decoding matches the full forward one token at a time (max |Δ| {one_token:.3g}) "
        f"and in chunks (max |Δ| {chunked:.3g})",
        measured,
    )
