"""SHP103 over the other spellings of a fill beyond fp16: a tensor literal, an attribute set once, and
additive masks (`scores + (1 - keep) * -1e9`), through names, helpers and `+=`; quiet where a dtype
test chooses the constant."""

from __future__ import annotations

import textwrap

import pytest

from tests.helpers import findings

ATTENTION = textwrap.dedent("""
    import math
    import torch
    from torch import nn

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.neg = -1e9

        def forward(self, q, k, v, mask, keep):
            scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(q.size(-1))
            {masking}
            return torch.softmax(scores, dim=-1) @ v
""")


@pytest.mark.parametrize(
    "masking",
    [
        "scores = torch.where(mask, scores, torch.tensor(-1e9))",
        "scores = scores.masked_fill(mask, self.neg)",
        "scores = scores + (1.0 - keep) * -1e9",
        "scores = scores - 1e9 * (1 - keep)",
        "scores += (1.0 - keep[:, None, None, :]) * -1e9",
        "ext = (1.0 - keep).to(scores.dtype) * -1e9\n        scores = scores + ext",
    ],
)
def test_a_value_beyond_fp16_reaching_the_scores(masking):
    [finding] = findings("SHP103", ATTENTION.format(masking=masking))
    assert finding.message.startswith("mask fill value")
    assert "is beyond the float16 range" in finding.message


@pytest.mark.parametrize(
    "masking",
    [
        "scores = scores + (1.0 - keep) * -10000.0",  # fits fp16
        "scores = scores + (1.0 - keep) * torch.finfo(scores.dtype).min",
        (
            "if keep.dtype == torch.float16:\n            scores = scores - 65500 * keep\n"
            "        else:\n            scores = scores - 1e30 * keep"
        ),
    ],
)
def test_values_that_fit_or_that_a_dtype_test_chooses_are_quiet(masking):
    assert findings("SHP103", ATTENTION.format(masking=masking)) == []
