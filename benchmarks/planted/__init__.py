"""Mutation operators: each finds where a real file writes a rule's CORRECT pattern and plants
that rule's bug there (benchmarks/planted_bugs.py drives them over the pinned corpus)."""

from __future__ import annotations

import re
from collections.abc import Callable

from .attention import drop_scale, fill_beyond_half, softmax_other_axis
from .blocks import drop_final_norm, residual_from_norm
from .dropout import ungate_dropout
from .heads import tile_kv_heads
from .masks import drop_causal_mask, invert_causal_mask
from .positions import swap_table_layout
from .sites import Plant, Sites

Operator = Callable[[Sites], list[Plant]]

# rule -> (operator, what every class or function it can plant in contains: a screen before parsing)
OPERATORS: dict[str, tuple[Operator, re.Pattern[str]]] = {
    "SHP101": (drop_scale, re.compile(r"softmax")),
    "SHP103": (fill_beyond_half, re.compile(r"finfo")),
    "SHP104": (softmax_other_axis, re.compile(r"softmax\(.*-1")),
    "SHP201": (drop_causal_mask, re.compile(r"causal\s*=\s*True|causal|tril|triu")),
    "SHP202": (invert_causal_mask, re.compile(r"masked_fill|where\(")),
    "SHP302": (drop_final_norm, re.compile(r"for \w+ in .*(layers|blocks|\.h\b|stages)")),
    "SHP303": (residual_from_norm, re.compile(r"residual = |(\w+) = \1 \+ .*(norm|ln)")),
    "SHP602": (tile_kv_heads, re.compile(r"repeat_interleave|expand\(|repeat\(")),
    "SHP603": (swap_table_layout, re.compile(r"repeat_interleave|cat\(")),
    "SHP701": (ungate_dropout, re.compile(r"self\.training")),
}


def plants(rule: str, sites: Sites) -> list[Plant]:
    operator, _ = OPERATORS[rule]
    return operator(sites)


__all__ = ["OPERATORS", "Plant", "Sites", "plants"]
