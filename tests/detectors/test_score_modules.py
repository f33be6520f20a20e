"""SHP101 through a module of the file that the scores pass through between the product and the
softmax (timm's GCViT: `attn = self.rel_pos(attn)`, a relative position bias added in its forward):
what its forward returns is traced with its parameter bound to the scores."""

from __future__ import annotations

import textwrap

import pytest

from tests.helpers import findings

WINDOW = textwrap.dedent("""
    import torch
    from torch import nn


    class RelPosBias(nn.Module):
        def __init__(self, num_heads, window):
            super().__init__()
            self.relative_position_bias_table = nn.Parameter(torch.zeros(window, num_heads))

        def forward(self, attn):
            return attn + self.relative_position_bias_table.permute(1, 0).unsqueeze(0)


    class WindowAttention(nn.Module):
        def __init__(self, dim, num_heads):
            super().__init__()
            self.num_heads = num_heads
            self.head_dim = dim // num_heads
            self.scale = self.head_dim ** -0.5
            self.qkv = nn.Linear(dim, dim * 3)
            self.rel_pos = RelPosBias(num_heads, 49)

        def forward(self, x):
            B, N, C = x.shape
            q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
            {scaled}
            attn = q @ k.transpose(-2, -1)
            attn = self.rel_pos(attn)
            attn = attn.softmax(dim=-1)
            return (attn @ v).transpose(1, 2).reshape(B, N, C)
""")


def test_unscaled_scores_through_a_bias_module_of_the_file_reach_the_softmax():
    code = WINDOW.format(scaled="pass")
    [finding] = findings("SHP101", code)
    assert finding.line == code.splitlines().index("        attn = attn.softmax(dim=-1)") + 1


@pytest.mark.parametrize("scaled", ["q = q * self.scale", "k = k * self.scale"])
def test_scaled_scores_through_a_bias_module_are_quiet(scaled):
    assert findings("SHP101", WINDOW.format(scaled=scaled)) == []


def test_a_module_that_scales_the_scores_itself_is_quiet():
    code = WINDOW.format(scaled="pass").replace(
        "return attn + self.relative_position_bias_table", "return attn * 0.125 + self.relative_position_bias_table"
    )
    assert findings("SHP101", code) == []
