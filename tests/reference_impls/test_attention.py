"""Exact properties of the attention oracle, the masks and the Attention module (fp64, CPU)."""

import math

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402

from sharpedges.reference_impls.attention import (  # noqa: E402
    Attention,
    additive_mask,
    attention_ref,
    causal_mask,
    combine_masks,
    mask_from_positions,
    padding_mask,
    repeat_kv,
)

B, H, S, D = 2, 4, 6, 8


def qkv(q_len=S, kv_len=S, n_kv_heads=H, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, q_len, D, dtype=torch.float64, generator=gen)
    k = torch.randn(B, n_kv_heads, kv_len, D, dtype=torch.float64, generator=gen)
    v = torch.randn(B, n_kv_heads, kv_len, D, dtype=torch.float64, generator=gen)
    return q, k, v


def sdpa_math(*args, **kwargs):
    with sdpa_kernel([SDPBackend.MATH]):
        return F.scaled_dot_product_attention(*args, **kwargs)


# ------------------------------------------------------------------- oracle vs SDPA


@pytest.mark.parametrize("causal", [False, True])
def test_oracle_equals_sdpa_math_in_fp64(causal):
    q, k, v = qkv()
    torch.testing.assert_close(attention_ref(q, k, v, causal=causal), sdpa_math(q, k, v, is_causal=causal))


def test_oracle_equals_sdpa_math_with_bool_mask_and_gqa():
    q, k, v = qkv(n_kv_heads=2)
    mask = torch.rand(B, 1, S, S, generator=torch.Generator().manual_seed(1)) > 0.3
    mask[..., 0] = True  # every row keeps a key, so SDPA and the oracle agree without NaN rules
    expected = sdpa_math(q, k, v, attn_mask=mask, enable_gqa=True)
    torch.testing.assert_close(attention_ref(q, k, v, attn_mask=mask), expected)


def test_scale_is_exactly_one_over_sqrt_head_dim():
    # One query, two keys: the weights are softmax of the dot products / sqrt(D), by hand.
    q = torch.zeros(1, 1, 1, D, dtype=torch.float64)
    k = torch.zeros(1, 1, 2, D, dtype=torch.float64)
    q[..., 0] = 2.0
    k[..., 0, 0], k[..., 1, 0] = 3.0, -1.0  # dots 6 and -2
    v = torch.tensor([[[[1.0] * D, [0.0] * D]]], dtype=torch.float64)

    def weight_on_first_key(scale):
        return math.exp(6 * scale) / (math.exp(6 * scale) + math.exp(-2 * scale))

    out = attention_ref(q, k, v)[0, 0, 0, 0].item()
    assert out == pytest.approx(weight_on_first_key(1 / math.sqrt(D)), abs=1e-15)
    assert out != pytest.approx(weight_on_first_key(2 / math.sqrt(D)), abs=1e-3)


# --------------------------------------------------------------------- causality


@pytest.mark.parametrize("use_sdpa", [True, False])
def test_future_tokens_do_not_change_past_outputs(use_sdpa):
    torch.manual_seed(0)
    attn = Attention(32, 4, use_sdpa=use_sdpa).double().eval()
    x = torch.randn(2, 7, 32, dtype=torch.float64)
    perturbed = x.clone()
    perturbed[:, 4:] += torch.randn_like(perturbed[:, 4:])
    y, y_perturbed = attn(x), attn(perturbed)
    torch.testing.assert_close(y[:, :4], y_perturbed[:, :4], rtol=0, atol=0)
    assert not torch.allclose(y[:, 4:], y_perturbed[:, 4:])


def test_fully_masked_rows_are_zero_not_nan():
    q, k, v = qkv()
    mask = torch.ones(S, S, dtype=torch.bool)
    mask[2] = False
    q.requires_grad_(True)
    out = attention_ref(q, k, v, attn_mask=mask)
    assert torch.equal(out[:, :, 2], torch.zeros_like(out[:, :, 2]))
    out.sum().backward()
    assert torch.isfinite(q.grad).all()


@pytest.mark.parametrize("use_sdpa", [True, False])
def test_module_fully_masked_rows_are_zero(use_sdpa):
    attn = Attention(32, 4, causal=False, use_sdpa=use_sdpa).double().eval()
    x = torch.randn(2, 5, 32, dtype=torch.float64)
    no_keys = torch.zeros(2, 1, 5, 5, dtype=torch.bool)
    # out_proj has no bias, so rows that attend nothing project to exactly zero
    assert torch.equal(attn(x, attn_mask=no_keys), torch.zeros(2, 5, 32, dtype=torch.float64))


def test_causal_alignment_matrices():
    top_left = torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0]], dtype=torch.bool)
    bottom_right = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(causal_mask(2, 4, align="top_left"), top_left)
    assert torch.equal(causal_mask(2, 4, align="bottom_right"), bottom_right)
    assert torch.equal(causal_mask(4, 4), torch.ones(4, 4, dtype=torch.bool).tril())


def test_decode_query_sees_whole_cache_only_with_bottom_right_alignment():
    q, k, v = qkv(q_len=1, kv_len=5)
    bottom_right = attention_ref(q, k, v, causal=True, causal_align="bottom_right")
    top_left = attention_ref(q, k, v, causal=True, causal_align="top_left")
    torch.testing.assert_close(bottom_right, attention_ref(q, k, v))  # the last token sees all
    torch.testing.assert_close(top_left, v[:, :, :1])  # top-left sees only key 0
    torch.testing.assert_close(top_left, sdpa_math(q, k, v, is_causal=True))  # SDPA is top-left


def test_sliding_window_keeps_exactly_window_keys():
    mask = mask_from_positions(torch.arange(6), torch.arange(6), causal=True, window=3)
    assert mask.sum(dim=-1).tolist() == [1, 2, 3, 3, 3, 3]
    assert mask[5].tolist() == [False, False, False, True, True, True]


def test_negative_positions_are_empty_slots():
    mask = mask_from_positions(torch.tensor([3]), torch.tensor([0, -1, 2, 3]))
    assert mask.tolist() == [[True, False, True, True]]


# ---------------------------------------------------------------- mask polarity


def test_bool_mask_true_means_may_attend():
    q, k, v = qkv()
    only_key_3 = torch.zeros(S, S, dtype=torch.bool)
    only_key_3[:, 3] = True
    expected = v[:, :, 3:4].expand(B, H, S, D)
    torch.testing.assert_close(attention_ref(q, k, v, attn_mask=only_key_3), expected)
    torch.testing.assert_close(sdpa_math(q, k, v, attn_mask=only_key_3), expected)


def test_additive_mask_matches_bool_mask():
    q, k, v = qkv()
    mask = causal_mask(S, S)
    as_float = additive_mask(mask, torch.float64)
    assert as_float[0, 1] == torch.finfo(torch.float64).min and as_float[1, 0] == 0
    torch.testing.assert_close(attention_ref(q, k, v, attn_mask=as_float), attention_ref(q, k, v, attn_mask=mask))


def test_padding_mask_masks_keys_not_queries():
    from_lengths = padding_mask(torch.tensor([3, 5]), kv_len=5)
    from_hf = padding_mask(attention_mask=torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]))
    assert from_lengths.shape == (2, 1, 1, 5)
    assert torch.equal(from_lengths, from_hf)
    assert from_lengths[0, 0, 0].tolist() == [True, True, True, False, False]


def test_combined_masks_convert_once_without_overflow():
    causal, padding = causal_mask(3, 3), padding_mask(torch.tensor([2]), kv_len=3)
    combined = combine_masks(causal, padding, dtype=torch.float16)
    assert torch.isfinite(combined).all()  # summed min planes would give -inf here
    assert set(combined.unique().tolist()) == {0.0, torch.finfo(torch.float16).min}
    assert torch.equal(combined == 0, causal & padding)
    with pytest.raises(TypeError):
        combine_masks(causal, additive_mask(padding, torch.float16))


# -------------------------------------------------------------------------- dropout


@pytest.mark.parametrize("use_sdpa", [True, False])
def test_dropout_is_off_in_eval_and_on_in_training(use_sdpa):
    torch.manual_seed(0)
    with_dropout = Attention(32, 4, dropout=0.5, use_sdpa=use_sdpa).double()
    without = Attention(32, 4, dropout=0.0, use_sdpa=use_sdpa).double()
    without.load_state_dict(with_dropout.state_dict())
    x = torch.randn(2, 5, 32, dtype=torch.float64)
    with_dropout.eval()
    torch.testing.assert_close(with_dropout(x), without.eval()(x), rtol=0, atol=0)
    with_dropout.train()
    assert not torch.allclose(with_dropout(x), without(x))


def test_oracle_dropout_needs_training_flag():
    q, k, v = qkv()
    torch.testing.assert_close(attention_ref(q, k, v, dropout_p=0.9), attention_ref(q, k, v))
    assert not torch.allclose(attention_ref(q, k, v, dropout_p=0.9, training=True), attention_ref(q, k, v))


# ------------------------------------------------------------------------------ GQA


def test_repeat_kv_is_repeat_interleave_not_repeat():
    x = torch.arange(2 * 3 * 1 * 1).reshape(2, 3, 1, 1)
    repeated = repeat_kv(x, 2)
    assert torch.equal(repeated, x.repeat_interleave(2, dim=1))
    assert not torch.equal(repeated, x.repeat(1, 2, 1, 1))
    assert repeated[0, :, 0, 0].tolist() == [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize("use_sdpa", [True, False])
def test_gqa_with_as_many_kv_heads_as_query_heads_is_mha(use_sdpa):
    torch.manual_seed(0)
    mha = Attention(32, 4, use_sdpa=use_sdpa).double().eval()
    gqa = Attention(32, 4, n_kv_heads=4, use_sdpa=use_sdpa).double().eval()
    gqa.load_state_dict(mha.state_dict())
    x = torch.randn(2, 5, 32, dtype=torch.float64)
    torch.testing.assert_close(gqa(x), mha(x), rtol=0, atol=0)


def test_gqa_equals_mha_with_each_kv_head_copied_to_its_group():
    torch.manual_seed(0)
    gqa = Attention(32, 4, n_kv_heads=2).double().eval()
    mha = Attention(32, 4).double().eval()
    mha.q_proj.load_state_dict(gqa.q_proj.state_dict())
    mha.out_proj.load_state_dict(gqa.out_proj.state_dict())
    head_dim = 8
    for name in ("k_proj", "v_proj"):
        per_head = getattr(gqa, name).weight.view(2, head_dim, 32)
        grouped = per_head.repeat_interleave(2, dim=0).reshape(4 * head_dim, 32)
        getattr(mha, name).weight.data.copy_(grouped)
    x = torch.randn(2, 5, 32, dtype=torch.float64)
    torch.testing.assert_close(gqa(x), mha(x))


@pytest.mark.parametrize("enable_gqa", [True, False])
def test_gqa_sdpa_paths_equal_the_eager_oracle(enable_gqa):
    torch.manual_seed(0)
    fast = Attention(32, 4, n_kv_heads=1, sdpa_enable_gqa=enable_gqa).double().eval()
    eager = Attention(32, 4, n_kv_heads=1, use_sdpa=False).double().eval()
    eager.load_state_dict(fast.state_dict())
    x = torch.randn(2, 5, 32, dtype=torch.float64)
    torch.testing.assert_close(fast(x), eager(x))


def test_head_counts_must_divide():
    with pytest.raises(AssertionError):
        Attention(32, 4, n_kv_heads=3)
