"""SHP104 on scores whose rank the code states through an unpacking: `q, k, v = qkv.permute(...)` leaves
each of rank four, `q, k, v = x.chunk(3, dim=-1)` keeps the rank, `.unbind(0)` drops one axis
(tensors.known_rank)."""

from __future__ import annotations

import textwrap

import pytest

from tests.helpers import findings

ATTENTION = textwrap.dedent("""
    import math
    import torch.nn.functional as F
    from torch import nn

    class Attention(nn.Module):
        def __init__(self, dim, h):
            super().__init__()
            self.h = h
            self.qkv = nn.Linear(dim, dim * 3)

        def forward(self, x):
            b, n, d = x.shape
            {split}
            scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
            attn = F.softmax(scores, dim={dim})
            return attn @ v
""")

SPLITS = [
    "q, k, v = self.qkv(x).view(b, n, 3, self.h, -1).permute(2, 0, 3, 1, 4)",
    "q, k, v = self.qkv(x).view(b, n, 3, self.h, -1).permute(2, 0, 3, 1, 4).unbind(0)",
    "q, k, v = self.qkv(x).view(b, n, self.h, -1).transpose(1, 2).chunk(3, dim=-1)",
]


@pytest.mark.parametrize("split", SPLITS)
def test_a_softmax_over_the_heads_of_rank_four_scores(split):
    [finding] = findings("SHP104", ATTENTION.format(split=split, dim=1))
    assert finding.message.startswith("softmax over attention scores on dim=1, but the keys are on dim=3")


@pytest.mark.parametrize("split", SPLITS)
def test_a_softmax_over_the_keys_is_quiet(split):
    assert findings("SHP104", ATTENTION.format(split=split, dim=3)) == []


def test_pieces_of_an_unknown_rank_are_not_judged():
    split = "q, k, v = self.qkv(x).chunk(3, dim=-1)"  # nn.Linear's output: rank not spelled out
    assert findings("SHP104", ATTENTION.format(split=split, dim=1)) == []
