"""The attention FLOP counter and SDPA backend pinning."""

import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from sharpedges.reference_impls.flops import (  # noqa: E402
    attention_flops,
    observed_sdpa_backends,
    pinned_sdpa_backend,
)


def test_attention_flops_forward_causal_and_backward():
    forward = 4 * 2 * 3 * 5 * 7 * 8
    assert attention_flops(2, 3, 5, 7, 8) == forward
    assert attention_flops(2, 3, 5, 7, 8, causal=True) == forward / 2
    assert attention_flops(2, 3, 5, 7, 8, mode="bwd") == 2.5 * forward
    assert attention_flops(2, 3, 5, 7, 8, causal=True, mode="fwd_bwd") == 3.5 * forward / 2


def test_pinned_backend_records_the_backend_that_ran():
    q = k = v = torch.randn(1, 2, 4, 8)
    with pinned_sdpa_backend("math") as run:
        F.scaled_dot_product_attention(q, k, v)
    assert run.requested == run.ran == "MATH"


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_pinned_backend_that_cannot_run_raises_and_records_nothing():
    q = k = v = torch.randn(1, 2, 4, 8)  # CPU tensors: no memory-efficient kernel here
    with pytest.raises(RuntimeError), pinned_sdpa_backend("EFFICIENT_ATTENTION") as run:
        F.scaled_dot_product_attention(q, k, v)
    assert run.requested == "EFFICIENT_ATTENTION" and run.ran is None


@pytest.mark.parametrize("backend", ["MATH", "FLASH_ATTENTION"])
def test_profiler_names_the_backend_that_ran(backend):
    q = k = v = torch.randn(1, 2, 4, 8)
    with pinned_sdpa_backend(backend):
        observed = observed_sdpa_backends(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))
    assert observed == {backend}


def test_importing_sharpedges_does_not_import_the_reference_impls():
    probe = "import sys, sharpedges; assert 'sharpedges.reference_impls' not in sys.modules"
    subprocess.run([sys.executable, "-c", probe], check=True)
