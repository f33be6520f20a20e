"""SHP103 on an additive mask filled in place before it is added to the scores (litgpt's eager
attention): `mask.masked_fill_(mask.bool(), -1e9)` on a mask in the activations' dtype, then
`scores = scores + mask`. In fp16 the fill itself overflows."""

from __future__ import annotations

import textwrap

import pytest

from tests.helpers import findings

ADDITIVE = textwrap.dedent("""
    import math
    import torch
    import torch.nn.functional as F


    def scaled_dot_product_attention(q, k, v, mask=None):
        scores = q @ k.mT / math.sqrt(q.size(-1))
        if mask is None:
            mask = torch.ones(q.size(2), q.size(2), dtype={dtype}, device=q.device).triu(diagonal=1)
            mask.masked_fill_(mask.bool(), {fill})
        scores = scores + mask
        scores = F.softmax(scores, dim=-1, dtype=torch.float).to(dtype=q.dtype)
        return scores @ v
""")


def test_an_in_place_fill_beyond_fp16_of_an_added_mask():
    [finding] = findings("SHP103", ADDITIVE.format(dtype="q.dtype", fill="-1e9"))
    assert finding.line == 11
    assert finding.message.startswith("mask fill value -1e+09 is beyond the float16 range")


@pytest.mark.parametrize(
    ("dtype", "fill"),
    [
        ("q.dtype", "torch.finfo(q.dtype).min"),  # the dtype's own minimum
        ("q.dtype", "-1e4"),  # within the fp16 range
        ("torch.float32", "-1e9"),  # a float32 mask: the fill fits, the sum is float32
    ],
)
def test_fills_that_fit_or_a_float32_mask_are_quiet(dtype, fill):
    assert findings("SHP103", ADDITIVE.format(dtype=dtype, fill=fill)) == []


IN_PLACE = textwrap.dedent("""
    import torch
    import torch.nn.functional as F


    def attend(q, k, v):
        scores = q @ k.transpose(-2, -1) / q.size(-1) ** 0.5
        mask = torch.ones(q.size(2), q.size(2), dtype=q.dtype, device=q.device).triu(diagonal=1)
        mask.masked_fill_({filled}, torch.finfo(q.dtype).min)
        scores = scores + mask
        return F.softmax(scores, dim=-1) @ v
""")


def test_an_in_place_fill_of_the_allowed_positions_inverts_the_causal_mask():
    """SHP202 reads `mask.masked_fill_(m, v)` as `mask = mask.masked_fill(m, v)`: filling `~mask.bool()`
    blocks the past and the diagonal and lets the future through."""
    [finding] = findings("SHP202", IN_PLACE.format(filled="~(mask.bool())"))
    assert finding.line == 10 and finding.message.startswith("the causal mask is inverted for scores + mask")
    assert findings("SHP202", IN_PLACE.format(filled="mask.bool()")) == []
