"""Every claim in the skills and rule docs that code can check, checked against torch 2.13.

Each test names the statement it backs (skill id and sharp edge or section, or rule code). When a
test here fails after a torch upgrade, the prose it backs is what must change.
"""

from __future__ import annotations

import inspect
import math

import pytest

from sharpedges.knowledge.registry import SKILLS_DIR
from sharpedges.knowledge.schema import load_skill
from sharpedges.specs import load_specs

torch = pytest.importorskip("torch")
F = torch.nn.functional
SKILLS = {path.stem: load_skill(path) for path in sorted(SKILLS_DIR.glob("*.yaml"))}


def skill_text(skill_id: str) -> str:
    return " ".join(SKILLS[skill_id].model_dump_json().split())


def qkv(length_q: int, length_k: int, dim: int = 8, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    return (
        torch.randn(1, 2, length_q, dim, generator=generator),
        torch.randn(1, 2, length_k, dim, generator=generator),
        torch.randn(1, 2, length_k, dim, generator=generator),
    )


# -- transformer-architecture: fused attention with a cache offset ---------------------------------
@pytest.mark.parametrize("past, new", [(4, 3), (10, 2), (1, 5)])
def test_sdpa_is_causal_is_top_left_and_causal_lower_right_matches_a_full_pass(past, new):
    """Pattern 'Fused attention with explicit conventions' and SHP204: is_causal only when L == S."""
    from torch.nn.attention.bias import causal_lower_right

    total = past + new
    q, k, v = qkv(total, total)
    full = F.scaled_dot_product_attention(q, k, v, is_causal=True)[..., past:, :]
    chunk = q[..., past:, :]
    lower_right = F.scaled_dot_product_attention(chunk, k, v, attn_mask=causal_lower_right(new, total))
    tril = F.scaled_dot_product_attention(chunk, k, v, attn_mask=torch.ones(new, total, dtype=torch.bool).tril(past))
    top_left = F.scaled_dot_product_attention(chunk, k, v, is_causal=True)
    torch.testing.assert_close(lower_right, full)
    torch.testing.assert_close(tril, full)
    assert not torch.allclose(top_left, full, atol=1e-3)


def test_a_single_new_token_needs_no_mask_and_is_causal_would_hide_the_cache():
    q, k, v = qkv(6, 6)
    full = F.scaled_dot_product_attention(q, k, v, is_causal=True)[..., -1:, :]
    torch.testing.assert_close(F.scaled_dot_product_attention(q[..., -1:, :], k, v), full)
    assert not torch.allclose(F.scaled_dot_product_attention(q[..., -1:, :], k, v, is_causal=True), full, atol=1e-3)
    text = skill_text("transformer-architecture")
    assert "is_causal=q.size(-2) > 1" not in text and "causal_lower_right(L, S)" in text


# -- fully masked rows: zeros in SDPA, NaN in eager masked_fill(-inf) + softmax ---------------------
def test_fully_masked_rows_are_zeros_in_sdpa_and_nan_in_eager_attention():
    """transformer-architecture (mask-polarity, mask-fill-overflow), SHP202, SHP203."""
    q, k, v = qkv(3, 3)
    allowed = torch.ones(3, 3, dtype=torch.bool).tril()
    allowed[0] = False  # the first query has no key left
    sdpa = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    assert torch.equal(sdpa[..., 0, :], torch.zeros_like(sdpa[..., 0, :]))
    assert not torch.isnan(sdpa).any()
    scores = q @ k.transpose(-2, -1)  # unscaled: the mask is under test, not the scale
    eager = scores.masked_fill(~allowed, float("-inf")).softmax(-1)  # noqa: SHP101
    assert torch.isnan(eager[..., 0, :]).all() and not torch.isnan(eager[..., 1:, :]).any()
    specs = load_specs()
    for code in ("SHP202", "SHP203"):
        assert "zeros" in specs[code].rationale, code


# -- fp16 softmax NaNs come from the scores, not from exp() overflow --------------------------------
def test_softmax_subtracts_the_max_so_large_finite_fp16_logits_do_not_overflow():
    """transformer-architecture#softmax-dim-and-precision, SHP105."""
    logits = torch.tensor([65000.0, 64000.0, -65000.0], dtype=torch.float16)
    assert not torch.isnan(logits.softmax(-1)).any()
    assert not torch.isnan(logits.float().softmax(-1)).any()


def test_nan_sources_an_upcast_of_the_softmax_cannot_repair():
    half = torch.float16
    minimum = torch.finfo(half).min
    assert torch.isinf(torch.tensor(minimum, dtype=half) + torch.tensor(-100.0, dtype=half))  # finfo.min + score
    assert torch.isinf(torch.tensor(minimum, dtype=half) * 2)  # two summed min planes
    big = torch.full((1, 64), 40.0, dtype=half)
    scores = big @ big.T  # 64 * 1600 = 102400 > 65504: QK^T overflowed in fp16
    assert torch.isinf(scores).all()
    row = torch.cat([scores.float().flatten(), torch.tensor([1.0])])
    assert torch.isnan(row.softmax(-1, dtype=torch.float32)).any()  # upcast after the fact: still NaN
    assert torch.isnan(torch.full((3,), float("-inf")).softmax(-1)).all()  # an all -inf row
    fp32_scores = big.float() @ big.float().T  # computing QK^T in fp32 keeps it finite
    assert torch.isfinite(fp32_scores.softmax(-1)).all()  # noqa: SHP101 - finiteness is under test


def test_shp105_no_longer_suggests_half_casts_or_exp_overflow():
    spec = load_specs()["SHP105"]
    assert ".half()" not in spec.use_instead
    assert "subtracts the row" in spec.rationale and "overflow to inf on long" not in spec.rationale
    assert "exp() of large logits overflows" not in skill_text("transformer-architecture")


# -- MoE capacity with top-k -----------------------------------------------------------------------
def test_moe_capacity_counts_k_assignments_per_token():
    """transformer-architecture, MoE section: capacity = CF * k * tokens / experts."""
    tokens, experts, k, capacity_factor = 64, 8, 2, 1.0
    # a perfectly balanced top-2 routing: every expert receives exactly k * tokens / experts assignments
    choices = torch.stack([torch.arange(tokens) % experts, (torch.arange(tokens) + 1) % experts], dim=-1)
    per_expert = torch.bincount(choices.flatten(), minlength=experts)
    capacity = math.ceil(capacity_factor * k * tokens / experts)
    assert per_expert.max().item() == capacity  # nothing dropped at CF = 1
    assert per_expert.max().item() > capacity_factor * tokens / experts  # the formula without k drops half
    assert "capacity factor × k × tokens / experts" in skill_text("transformer-architecture")


# -- ALiBi slopes ----------------------------------------------------------------------------------
@pytest.mark.parametrize("n_heads", [8, 12, 16, 6])
def test_alibi_slopes_in_the_skill_match_the_reference_for_any_head_count(n_heads):
    from sharpedges.reference_impls.positional import alibi_slopes as reference

    [section] = [s for s in SKILLS["transformer-architecture"].sections if s.title == "Positional encoding strategies"]
    namespace: dict = {"__name__": "__claims__"}
    exec(compile(section.code[0].source, "<positional>", "exec"), namespace)
    torch.testing.assert_close(namespace["alibi_slopes"](n_heads).float(), reference(n_heads).float())


# -- adversarial-ml: eps applied to normalised inputs ----------------------------------------------
def test_eps_on_normalised_inputs_is_eps_times_std_in_pixels():
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    pixels = torch.rand(1, 3, 4, 4)
    eps = 8 / 255
    normalised = (pixels - mean) / std
    perturbed_pixels = (normalised + eps) * std + mean
    change = (perturbed_pixels - pixels).abs().amax().item()
    assert change < eps / 4.3  # about 4.4 times smaller, not larger
    assert "4.4 times smaller" in skill_text("adversarial-ml")
    assert "four times the intended" not in skill_text("adversarial-ml")


# -- distributed-training --------------------------------------------------------------------------
def test_distributed_sampler_shuffles_without_set_epoch_but_repeats_the_order():
    from torch.utils.data.distributed import DistributedSampler

    sampler = DistributedSampler(list(range(64)), num_replicas=2, rank=0, seed=0)
    first, second = list(sampler), list(sampler)
    assert first == second  # no set_epoch: the same permutation every epoch
    assert first != sorted(first)  # but it is shuffled
    sampler.set_epoch(1)
    assert list(sampler) != first
    assert "still shuffles" in skill_text("distributed-training")


def test_fsdp1_default_state_dict_type_is_full():
    from torch.distributed.fsdp import StateDictType
    from torch.distributed.fsdp._common_utils import _FSDPState

    assert _FSDPState()._state_dict_type == StateDictType.FULL_STATE_DICT
    text = skill_text("distributed-training")
    assert "default SHARDED or LOCAL" not in text and "FULL_STATE_DICT" in text


# -- model-optimization ----------------------------------------------------------------------------
def test_onnx_export_defaults_to_the_dynamo_exporter():
    assert inspect.signature(torch.onnx.export).parameters["dynamo"].default is True
    assert "dynamic_shapes" in skill_text("model-optimization")


def _count_compiles(dynamic):
    import torch._dynamo

    torch._dynamo.reset()
    compiles = []

    def backend(graph_module, example_inputs):
        compiles.append(1)
        return graph_module.forward

    fn = torch.compile(lambda x: (x * 2).sum(), backend=backend, dynamic=dynamic)
    for length in (3, 5, 7, 9, 11):
        fn(torch.ones(length))
    return len(compiles)


def test_automatic_dynamic_shapes_recompile_once_and_static_shapes_every_time():
    assert _count_compiles(dynamic=None) == 2  # the first shape, then one dynamic graph for the rest
    assert _count_compiles(dynamic=False) == 5  # dynamic=False: one graph per size
    assert "recompile each time until the cache limit" not in skill_text("model-optimization")


# -- llm-fine-tuning: packing -------------------------------------------------------------------------
def _rope(x, positions):
    half = x.size(-1) // 2
    inv_freq = 1.0 / (10000 ** (torch.arange(half, dtype=torch.float32) / half))
    angles = positions.float()[:, None] * inv_freq[None, :]
    cos, sin = torch.cat([angles.cos()] * 2, -1), torch.cat([angles.sin()] * 2, -1)
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


def test_reset_position_ids_do_not_stop_cross_example_attention_in_sdpa():
    first, second = 3, 4
    q, k, v = qkv(first + second, first + second)
    position_ids = torch.cat([torch.arange(first), torch.arange(second)])  # reset per example
    rq, rk = _rope(q, position_ids), _rope(k, position_ids)
    alone = F.scaled_dot_product_attention(rq[..., first:, :], rk[..., first:, :], v[..., first:, :], is_causal=True)
    packed = F.scaled_dot_product_attention(rq, rk, v, is_causal=True)[..., first:, :]
    assert not torch.allclose(packed, alone, atol=1e-3)  # the second example still sees the first
    document = torch.cat([torch.zeros(first), torch.ones(second)]).long()
    block_diagonal = (document[:, None] == document[None, :]) & torch.ones(
        first + second, first + second, dtype=torch.bool
    ).tril()
    masked = F.scaled_dot_product_attention(rq, rk, v, attn_mask=block_diagonal)[..., first:, :]
    torch.testing.assert_close(masked, alone)
    assert "block-diagonal" in skill_text("llm-fine-tuning")


# -- transformer-architecture: batch-1 decode arithmetic intensity --------------------------------
@pytest.mark.parametrize("params", [125e6, 7e9, 70e9])
def test_batch_one_decode_does_one_to_two_flop_per_byte_at_any_size(params):
    flops = 2 * params  # one multiply-add per weight per token
    for bytes_per_weight in (2, 1):  # fp16/bf16 and int8 weights
        intensity = flops / (params * bytes_per_weight)
        assert 1 <= intensity <= 2
    assert "arithmetic intensity decreases" not in skill_text("transformer-architecture")


# -- SHP301: the default depth accepts the known-stable 24-layer post-norm models ------------------
def test_shp301_default_max_depth_accepts_bert_large():
    spec = load_specs()["SHP301"]
    assert spec.options["max-depth"].default == 24
    assert "BERT-large" in spec.rationale and "warm-up" in spec.rationale
    assert "about 12 layers" not in skill_text("transformer-architecture")


# -- transformer-architecture, MoE design details: top-k renormalisation ----------------------------
def test_softmax_then_topk_renormalised_equals_softmax_over_the_topk_logits():
    logits = torch.randn(16, 8)
    top_logits, top_index = logits.topk(2, dim=-1)
    renormalised = logits.softmax(-1).gather(-1, top_index)
    renormalised = renormalised / renormalised.sum(-1, keepdim=True)  # Mixtral, norm_topk_prob=True
    torch.testing.assert_close(renormalised, top_logits.softmax(-1))
    unnormalised = logits.softmax(-1).gather(-1, top_index)  # norm_topk_prob=False: a different model
    assert not torch.allclose(unnormalised, renormalised)
    assert "norm_topk_prob" in skill_text("transformer-architecture")


def test_the_packs_no_longer_say_rope_or_alibi_extrapolate(real_kb):
    from sharpedges.knowledge.packs import TARGETS, build_pack

    for target in TARGETS:
        assert not any(
            "Use RoPE or ALiBi for length extrapolation" in text for text in build_pack(real_kb, target).values()
        ), target


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_an_explicit_mask_makes_sdpa_leave_the_flash_kernel():
    """transformer-architecture, SDPA kernels: the flash kernel takes is_causal but no attn_mask."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    q, k, v = (torch.randn(1, 8, 128, 64, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    mask = torch.ones(128, 128, dtype=torch.bool, device="cuda").tril()
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
        F.scaled_dot_product_attention(q, k, v, is_causal=True)  # eligible
        with pytest.raises(RuntimeError):
            F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # same mask, explicit: not eligible
