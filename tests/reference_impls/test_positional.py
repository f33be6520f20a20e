"""RoPE, ALiBi, sinusoidal and learned positions."""

import math

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from sharpedges.reference_impls.attention import attention_ref, query_positions  # noqa: E402
from sharpedges.reference_impls.positional import (  # noqa: E402
    LearnedPositions,
    RotaryEmbedding,
    alibi_bias,
    alibi_slopes,
    apply_rope,
    interleaved_to_half_split,
    rope_angles,
    sinusoidal_positions,
)

D = 16


def rope_score(rope, q, k, m, n):
    """<RoPE(q) at position m, RoPE(k) at position n> for q, k of shape (D,)."""
    rotated_q = rope(q[None, None, None], torch.tensor([m]))
    rotated_k = rope(k[None, None, None], torch.tensor([n]))
    return (rotated_q * rotated_k).sum().item()


# ---------------------------------------------------------------------------- RoPE


@pytest.mark.parametrize(
    "rope",
    [RotaryEmbedding(D), RotaryEmbedding(D, interleaved=True), RotaryEmbedding(D, rotary_dim=8)],
    ids=["half_split", "interleaved", "partial"],
)
def test_rope_scores_depend_only_on_relative_position(rope):
    gen = torch.Generator().manual_seed(0)
    q, k = torch.randn(D, dtype=torch.float64, generator=gen), torch.randn(D, dtype=torch.float64, generator=gen)
    at_origin = rope_score(rope, q, k, 7, 3)
    for shift in (1, 50, 4096):
        assert rope_score(rope, q, k, 7 + shift, 3 + shift) == pytest.approx(at_origin, abs=1e-9)
    assert rope_score(rope, q, k, 8, 3) != pytest.approx(at_origin, abs=1e-3)


def test_partial_rotary_leaves_the_rest_untouched():
    x = torch.randn(1, 1, 3, D, dtype=torch.float64)
    out = RotaryEmbedding(D, rotary_dim=4)(x, torch.arange(3) + 5)
    assert torch.equal(out[..., 4:], x[..., 4:])
    assert not torch.allclose(out[..., :4], x[..., :4])


def test_layouts_agree_under_the_weight_permutation():
    """Half-split RoPE on W_q[perm] equals interleaved RoPE on W_q, channels permuted."""
    gen = torch.Generator().manual_seed(0)
    w_q, w_k = (
        torch.randn(D, 32, dtype=torch.float64, generator=gen),
        torch.randn(D, 32, dtype=torch.float64, generator=gen),
    )
    x = torch.randn(1, 1, 5, 32, dtype=torch.float64, generator=gen)
    positions = torch.arange(5) + 11
    perm = interleaved_to_half_split(D)
    half_split, interleaved = RotaryEmbedding(D), RotaryEmbedding(D, interleaved=True)

    q_inter, k_inter = interleaved(x @ w_q.T, positions), interleaved(x @ w_k.T, positions)
    q_half, k_half = half_split(x @ w_q[perm].T, positions), half_split(x @ w_k[perm].T, positions)
    torch.testing.assert_close(q_half, q_inter[..., perm])
    torch.testing.assert_close(q_half @ k_half.transpose(-1, -2), q_inter @ k_inter.transpose(-1, -2))
    # Loading interleaved weights into half-split RoPE without the permutation is wrong.
    q_wrong, k_wrong = half_split(x @ w_q.T, positions), half_split(x @ w_k.T, positions)
    assert not torch.allclose(q_wrong @ k_wrong.transpose(-1, -2), q_inter @ k_inter.transpose(-1, -2))


def test_rope_stays_fp32_accurate_at_position_100k_after_bf16_cast():
    model = nn.ModuleDict({"proj": nn.Linear(64, 64), "rope": RotaryEmbedding(64)})
    model.to(torch.bfloat16)
    assert list(model["rope"].buffers()) == []  # nothing for .to() to downcast
    x = torch.randn(1, 2, 4, 64, generator=torch.Generator().manual_seed(0))
    positions = torch.arange(100_000, 100_004)
    out = model["rope"](x.bfloat16(), positions)
    assert out.dtype == torch.bfloat16

    cos, sin = rope_angles(64, positions, dtype=torch.float64)
    exact = apply_rope(x.double(), cos, sin)
    # bf16 output rounding plus the fp32 angle error at 1e5 rad.
    tolerance = 2**-8 * exact.abs().max() + 1e-2 * x.abs().max()
    assert (out.double() - exact).abs().max() < tolerance
    # The bug this guards against: angles computed in bf16 are off by radians.
    angles_bf16 = positions.bfloat16()[:, None] * (10000 ** (-torch.arange(0, 64, 2) / 64)).bfloat16()  # noqa: SHP601 - the bug, for contrast
    wrong = apply_rope(x.bfloat16(), angles_bf16.cos(), angles_bf16.sin())
    assert (wrong.double() - exact).abs().max() > 10 * tolerance


def test_rope_angles_refuse_half_precision():
    with pytest.raises(ValueError):
        rope_angles(D, torch.arange(4), dtype=torch.bfloat16)


def test_per_sequence_positions_match_shared_positions():
    rope = RotaryEmbedding(D)
    x = torch.randn(2, 3, 4, D, dtype=torch.float64)
    per_sequence = rope(x, torch.tensor([[5, 6, 7, 8], [0, 1, 2, 3]]))
    torch.testing.assert_close(per_sequence[0], rope(x[:1], torch.arange(5, 9))[0])
    torch.testing.assert_close(per_sequence[1], rope(x[1:], torch.arange(4))[0])


# --------------------------------------------------------------------------- ALiBi


def test_alibi_slopes_for_8_heads():
    assert alibi_slopes(8).tolist() == [2.0**-i for i in range(1, 9)]


def test_alibi_slopes_for_12_heads_follow_the_non_power_of_two_rule():
    expected = [2.0**-i for i in range(1, 9)] + [2.0**-0.5, 2.0**-1.5, 2.0**-2.5, 2.0**-3.5]
    assert alibi_slopes(12).tolist() == pytest.approx(expected, rel=1e-6)


def test_alibi_bias_penalises_distance_linearly():
    bias = alibi_bias(torch.tensor([0.5]), torch.arange(3), torch.arange(3))
    assert bias[0].tolist() == [[0.0, -0.5, -1.0], [-0.5, 0.0, -0.5], [-1.0, -0.5, 0.0]]


def test_oracle_alibi_equals_the_bias_as_a_float_mask():
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 4, 3, D, dtype=torch.float64, generator=gen) for _ in range(3))
    k, v = torch.cat((k, k), dim=2), torch.cat((v, v), dim=2)  # 6 keys, 3 queries
    slopes = alibi_slopes(4).double()
    bias = alibi_bias(slopes, query_positions(3, 6), torch.arange(6))
    torch.testing.assert_close(
        attention_ref(q, k, v, alibi_slopes=slopes, causal=True),
        attention_ref(q, k, v, attn_mask=bias, causal=True),
    )


# ------------------------------------------------------------- absolute positions


def test_sinusoidal_positions_closed_form():
    table = sinusoidal_positions(50, 8)
    for pos, i in [(0, 0), (7, 1), (49, 3)]:
        angle = pos / 10000 ** (2 * i / 8)
        assert table[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
        assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_learned_positions_raise_past_their_length():
    learned = LearnedPositions(max_positions=4, dim=3)
    assert learned(torch.arange(4)).shape == (4, 3)
    with pytest.raises(ValueError, match="past the 4 learned positions"):
        learned(torch.arange(5))
