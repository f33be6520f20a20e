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


POOLING = textwrap.dedent("""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Pooling(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.score = nn.Linear(dim, {out})

        def forward(self, x, mask):
            scores = {scores}
            weights = F.softmax(scores, dim={dim})
            return (weights * x).sum(dim=1)
""")


@pytest.mark.parametrize(
    "scores",
    [
        "self.score(x)",
        "self.score(torch.tanh(x)).masked_fill(~mask[..., None], -1e4)",
        "self.score(x) / 0.5",
        "(x * x).sum(-1)[..., None]",
        "x.mean(-1).unsqueeze(-1).float()",
    ],
)
def test_a_softmax_over_an_axis_of_size_one(scores):
    [finding] = findings("SHP104", POOLING.format(out=1, scores=scores, dim=-1))
    assert finding.message.startswith("softmax on dim=-1, an axis of size 1: every weight is exactly 1")


@pytest.mark.parametrize(
    ("out", "scores", "dim"),
    [
        (1, "self.score(x)", 1),  # over the positions
        (1, "self.score(x).squeeze(-1)", -1),  # the one-wide axis is gone
        (4, "self.score(x)", -1),  # four scores per position
        (1, "self.score(x) + mask", -1),  # broadcast against a mask of unknown width
    ],
)
def test_a_softmax_over_a_wider_axis_is_quiet(out, scores, dim):
    assert findings("SHP104", POOLING.format(out=out, scores=scores, dim=dim)) == []
