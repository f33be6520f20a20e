"""GPU checks of the reference implementations in bf16/fp16 (skipped without CUDA).

Accuracy follows the flash-attention rule: against an fp32 reference, a fast path
may be at most twice as wrong as the same math done plainly in the low precision,
plus an fp32-noise floor. Every output is also checked for NaN and Inf.
"""

import copy

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from sharpedges.reference_impls.attention import attention_ref  # noqa: E402
from sharpedges.reference_impls.block import DecoderConfig, TinyDecoder  # noqa: E402
from sharpedges.reference_impls.flops import pinned_sdpa_backend  # noqa: E402
from sharpedges.reference_impls.moe import (  # noqa: E402
    TopKRouter,
    dispatch_dense,
    dispatch_loop,
    dispatch_sorted,
)
from sharpedges.reference_impls.positional import RotaryEmbedding, apply_rope, rope_angles  # noqa: E402

# is_available() asks the driver for a device count without creating a CUDA context.
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

DEVICE = "cuda"
FP32_NOISE = 1e-5  # relative to the reference's magnitude
SDPA_BACKENDS = ["FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH"]


def assert_within_flash_rule(got, reference, low_precision, what):
    for name, tensor in (("result", got), ("low-precision baseline", low_precision)):
        assert torch.isfinite(tensor).all(), f"{what}: NaN or Inf in the {name}"
    reference = reference.float()
    error = (got.float() - reference).abs().max().item()
    baseline = (low_precision.float() - reference).abs().max().item()
    floor = FP32_NOISE * reference.abs().max().item()
    assert error <= 2 * baseline + floor, f"{what}: error {error:.3g} > 2 x {baseline:.3g} + {floor:.3g}"


def forward_backward(fn, inputs, upstream):
    """fn's output and the gradients of <output, upstream> w.r.t. each input."""
    leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
    out = fn(*leaves)
    return [out, *torch.autograd.grad(out, leaves, upstream.to(out.dtype))]


# ------------------------------------------------------------------------- attention


@pytest.mark.parametrize("head_dim", [64, 128])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("backend", SDPA_BACKENDS)
def test_pinned_sdpa_backend_forward_and_backward_within_the_flash_rule(backend, dtype, causal, head_dim):
    gen = torch.Generator(device=DEVICE).manual_seed(0)
    shape = (2, 8, 512, head_dim)
    q, k, v, upstream = (torch.randn(shape, device=DEVICE, generator=gen).to(dtype) for _ in range(4))

    reference = forward_backward(
        lambda q, k, v: attention_ref(q, k, v, causal=causal), [t.float() for t in (q, k, v)], upstream
    )
    low_precision = forward_backward(
        lambda q, k, v: attention_ref(q, k, v, causal=causal, upcast=False), [q, k, v], upstream
    )
    try:
        with pinned_sdpa_backend(backend) as run:
            got = forward_backward(
                lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=causal), [q, k, v], upstream
            )
    except RuntimeError as error:
        if not any(refusal in str(error) for refusal in ("No available kernel", "No viable backend")):
            raise
        pytest.skip(f"{backend} cannot serve {dtype}, head_dim {head_dim} on this GPU")
    assert run.ran == backend
    for name, *tensors in zip(("out", "dq", "dk", "dv"), got, reference, low_precision, strict=False):
        assert_within_flash_rule(*tensors, f"{backend} {name}")


# ------------------------------------------------------------------------ KV caches


@pytest.mark.parametrize("kind", ["static", "sliding", "paged"])
def test_cached_decode_matches_recompute_in_bf16(kind):
    window = 64 if kind == "sliding" else None  # shorter than the prefill: the ring wraps
    cfg = DecoderConfig(vocab_size=512, d_model=256, n_layers=4, n_heads=8, n_kv_heads=2, window=window)
    torch.manual_seed(0)
    model_fp32 = TinyDecoder(cfg).to(DEVICE).eval()
    model_bf16 = copy.deepcopy(model_fp32).to(torch.bfloat16)
    seq_len, prefill = 160, 128
    idx = torch.randint(0, cfg.vocab_size, (2, seq_len), device=DEVICE)
    with torch.no_grad():
        reference = model_fp32(idx)
        recompute = model_bf16(idx)
        caches = model_bf16.new_caches(kind, 2, seq_len)
        steps = [model_bf16(idx[:, :prefill], caches=caches)]
        steps += [model_bf16(idx[:, t : t + 1], caches=caches) for t in range(prefill, seq_len)]
    assert_within_flash_rule(torch.cat(steps, dim=1), reference, recompute, f"{kind} cached decode logits")


# ----------------------------------------------------------------------------- RoPE


def test_rope_in_bf16_at_131k_positions_keeps_fp32_angles():
    model = nn.ModuleDict({"proj": nn.Linear(128, 128), "rope": RotaryEmbedding(128)}).to(DEVICE, torch.bfloat16)
    positions = torch.arange(131_072, device=DEVICE)
    x = torch.randn(1, 4, positions.numel(), 128, device=DEVICE, generator=torch.Generator(DEVICE).manual_seed(0))
    x = x.bfloat16()
    out = model["rope"](x, positions)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()

    cos, sin = rope_angles(128, positions, dtype=torch.float64)
    exact = apply_rope(x.double(), cos, sin)
    # bf16 output rounding plus the fp32 angle error near 1.3e5 rad.
    tolerance = 2**-8 * exact.abs().max() + 2e-2 * x.abs().max()
    assert (out.double() - exact).abs().max() < tolerance
    inv_freq_bf16 = (10000 ** (-torch.arange(0, 128, 2, device=DEVICE) / 128)).bfloat16()
    angles_bf16 = positions.bfloat16()[:, None] * inv_freq_bf16  # noqa: SHP601 - the bug, for contrast
    wrong = apply_rope(x, angles_bf16.cos(), angles_bf16.sin())
    assert (wrong.double() - exact).abs().max() > 5 * tolerance


# ------------------------------------------------------------------------------ MoE


@pytest.mark.skipif(not hasattr(F, "grouped_mm"), reason="torch without F.grouped_mm")
def test_grouped_matmul_moe_matches_the_dense_fp32_oracle():
    if torch.cuda.get_device_capability() < (8, 0):
        pytest.skip("grouped_mm kernels need SM 8.0 or newer")
    n_tokens, d_model, d_hidden, n_experts, top_k = 4096, 512, 1024, 8, 2
    torch.manual_seed(0)
    x = torch.randn(n_tokens, d_model, device=DEVICE).bfloat16()
    w_in = (torch.randn(n_experts, d_model, d_hidden, device=DEVICE) / d_model**0.5).bfloat16()
    w_out = (torch.randn(n_experts, d_hidden, d_model, device=DEVICE) / d_hidden**0.5).bfloat16()
    with torch.no_grad():
        routing = TopKRouter(d_model, n_experts, top_k).to(DEVICE)(x)
    upstream = torch.randn(n_tokens, d_model, device=DEVICE)

    def routed(dispatch):
        return lambda x, w_in, w_out: dispatch(x, routing.weights, routing.experts, w_in, w_out)

    inputs = [x, w_in, w_out]
    reference = forward_backward(routed(dispatch_dense), [t.float() for t in inputs], upstream)
    looped = forward_backward(routed(dispatch_loop), inputs, upstream)
    grouped = forward_backward(routed(lambda *a: dispatch_sorted(*a, grouped=True)), inputs, upstream)
    for name, *tensors in zip(("out", "dx", "dw_in", "dw_out"), grouped, reference, looped, strict=False):
        assert_within_flash_rule(*tensors, f"grouped MoE {name}")
