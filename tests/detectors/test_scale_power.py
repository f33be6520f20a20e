"""SHP101 `inverted`: the scale on the scores grows with the head size (sqrt(d_k) instead of 1/sqrt(d_k)).

The shared fact is `attention.scale_power`: the power of a size a scale factor is, read through
roots, powers, literal quotients, locals, attributes set once, `a or b` defaults and helpers."""

from __future__ import annotations

import textwrap

import pytest

from tests.helpers import findings

MODULE = textwrap.dedent("""
    import math
    import torch
    from torch import nn

    class Attention(nn.Module):
        def __init__(self, dim, heads=8, scale=None):
            super().__init__()
            self.heads = heads
            self.head_dim = dim // heads
            self.scale = {scale}
            self.qkv = nn.Linear(dim, dim * 3)

        def forward(self, x):
            q, k, v = self.qkv(x).chunk(3, dim=-1)
            sim = (q @ k.transpose(-1, -2)) {op} self.scale
            return sim.softmax(dim=-1) @ v
""")


@pytest.mark.parametrize(
    ("scale", "op", "how"),
    [
        ("self.head_dim ** 0.5", "*", "multiplied by"),
        ("math.sqrt(self.head_dim)", "*", "multiplied by"),
        ("scale or self.head_dim ** 0.5", "*", "multiplied by"),
        ("torch.tensor(self.head_dim).sqrt()", "*", "multiplied by"),
        ("math.pow(self.head_dim, 0.5)", "*", "multiplied by"),
        ("self.head_dim ** -0.5", "/", "divided by"),
        ("1 / math.sqrt(self.head_dim)", "/", "divided by"),
        ("torch.rsqrt(torch.tensor(dim // heads))", "/", "divided by"),
    ],
)
def test_a_scale_that_grows_with_the_head_size_is_reported(scale, op, how):
    [finding] = findings("SHP101", MODULE.format(scale=scale, op=op))
    assert finding.message.startswith(f"the scores are {how} `self.scale`, which grows with the head size")
    if op == "*":  # the exponent is wrong: reported where the scale is set, used as a related location
        assert finding.line == 11
        assert [r["line"] for r in finding.related] == [16]
    else:  # the operator is wrong: reported where it divides
        assert finding.line == 16


@pytest.mark.parametrize(
    ("scale", "op"),
    [
        ("self.head_dim ** -0.5", "*"),
        ("1.0 / math.sqrt(self.head_dim)", "*"),
        ("math.sqrt(self.head_dim)", "/"),
        ("math.sqrt(1.0 / self.head_dim)", "*"),
        ("(2 * self.head_dim) ** -0.5", "*"),
        ("scale or self.head_dim ** -0.5", "*"),
        ("nn.Parameter(torch.ones(1) * 10)", "*"),  # a learned temperature: not a power of a size
        ("16", "*"),  # a fixed temperature
        ("scale", "*"),  # whatever the caller passes
    ],
)
def test_scales_that_shrink_or_are_not_a_power_of_a_size_are_quiet(scale, op):
    assert findings("SHP101", MODULE.format(scale=scale, op=op)) == []


def test_q_and_k_each_scaled_by_a_fourth_root_are_quiet():
    source = textwrap.dedent("""
        import torch

        def attention(q, k, v):
            scale = q.shape[-1] ** -0.25
            sim = (q * scale) @ (k * scale).transpose(-1, -2)
            return sim.softmax(dim=-1) @ v
    """)
    assert findings("SHP101", source) == []


def test_a_scale_returned_by_a_helper_is_followed():
    source = textwrap.dedent("""
        import torch

        class Attention(torch.nn.Module):
            def _scale(self):
                return self.head_dim ** 0.5

            def forward(self, q, k, v):
                sim = torch.matmul(q, k.transpose(-1, -2)) * self._scale()
                return sim.softmax(dim=-1) @ v
    """)
    [finding] = findings("SHP101", source)
    assert finding.line == 9 and "multiplied by `self._scale()`" in finding.message


@pytest.mark.parametrize(
    ("call", "flagged"),
    [
        ("F.scaled_dot_product_attention(q, k, v, scale=math.sqrt(q.size(-1)))", True),
        ("F.scaled_dot_product_attention(q, k, v, scale=q.size(-1) ** -0.5)", False),
        ("F.scaled_dot_product_attention(q, k, v, scale=None)", False),
        ("flash_attn_func(q, k, v, softmax_scale=q.shape[-1] ** 0.5)", True),
    ],
)
def test_a_kernel_given_a_growing_scale(call, flagged):
    source = textwrap.dedent(f"""
        import math
        import torch.nn.functional as F
        from flash_attn import flash_attn_func

        def attention(q, k, v):
            return {call}
    """)
    assert [f.line for f in findings("SHP101", source)] == ([7] if flagged else [])
