"""Mutation operators: each finds where a real file writes a rule's CORRECT pattern and plants
that rule's bug there (benchmarks/planted_bugs.py drives them over the pinned corpus)."""

from __future__ import annotations

from collections.abc import Callable

from .attention import drop_scale, fill_beyond_half, softmax_other_axis
from .blocks import drop_final_norm, residual_from_norm
from .dropout import ungate_dropout
from .heads import tile_kv_heads
from .masks import drop_causal_mask, invert_causal_mask
from .positions import swap_table_layout
from .sites import Plant, Sites

Operator = Callable[[Sites], list[Plant]]

# rule -> (operator, a word every file it can plant in contains: a cheap screen before parsing)
OPERATORS: dict[str, tuple[Operator, str]] = {
    "SHP101": (drop_scale, "softmax"),
    "SHP103": (fill_beyond_half, "finfo"),
    "SHP104": (softmax_other_axis, "softmax"),
    "SHP201": (drop_causal_mask, "causal"),
    "SHP202": (invert_causal_mask, "softmax"),
    "SHP302": (drop_final_norm, "norm"),
    "SHP303": (residual_from_norm, "norm"),
    "SHP602": (tile_kv_heads, "repeat"),
    "SHP603": (swap_table_layout, "rotary"),
    "SHP701": (ungate_dropout, "training"),
}


def plants(rule: str, sites: Sites) -> list[Plant]:
    operator, _ = OPERATORS[rule]
    return operator(sites)


__all__ = ["OPERATORS", "Plant", "Sites", "plants"]
