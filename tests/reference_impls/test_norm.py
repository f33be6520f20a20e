"""RMSNorm and LayerNorm: closed forms, fp32 compute, input dtype out."""

import math

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from sharpedges.reference_impls.norm import LayerNorm, RMSNorm  # noqa: E402


def test_rmsnorm_matches_closed_form():
    norm = RMSNorm(3, eps=0.0).double()
    norm.weight.data = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    x = torch.tensor([[3.0, -4.0, 0.0]], dtype=torch.float64)
    rms = math.sqrt((9 + 16 + 0) / 3)
    expected = torch.tensor([[3 / rms * 1.0, -4 / rms * 2.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(norm(x), expected, rtol=1e-15, atol=1e-15)


def test_rmsnorm_eps_sits_inside_the_root():
    norm = RMSNorm(2, eps=1.0).double()
    x = torch.tensor([[1.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(norm(x), x / math.sqrt(2.0))


@pytest.mark.parametrize("norm_cls", [RMSNorm, LayerNorm])
def test_norms_return_the_input_dtype_and_compute_in_fp32(norm_cls):
    norm = norm_cls(64).to(torch.bfloat16)
    x = (torch.randn(4, 64) * 1000).bfloat16()  # large values: a bf16 mean of squares is coarse
    out = norm(x)
    assert out.dtype == torch.bfloat16
    fp32_norm = norm_cls(64)
    torch.testing.assert_close(out, fp32_norm(x.float()).bfloat16(), rtol=0, atol=0)


def test_layernorm_matches_torch_and_drops_bias_on_request():
    x = torch.randn(3, 8, dtype=torch.float64)
    torch.testing.assert_close(LayerNorm(8).double()(x), F.layer_norm(x, (8,)))
    assert LayerNorm(8, bias=False).bias is None
