"""Counting attention FLOPs and knowing which SDPA kernel produced a number.

``F.scaled_dot_product_attention`` picks a backend silently and falls back to the
slow math path without a word, so a benchmark or accuracy test must pin the backend
it means to measure. With one backend allowed, SDPA raises instead of falling back,
so a block that exits cleanly proves that backend ran.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.profiler import ProfilerActivity, profile

BACKWARD_TO_FORWARD = 2.5  # FlashAttention's convention: backward does 2.5x the forward matmul work


def attention_flops(
    batch: int,
    n_heads: int,
    q_len: int,
    kv_len: int,
    head_dim: int,
    *,
    causal: bool = False,
    mode: Literal["fwd", "bwd", "fwd_bwd"] = "fwd",
) -> float:
    """Matmul FLOPs of attention: 4*B*H*Sq*Sk*D forward (QK^T and PV, 2 FLOPs per MAC),
    halved when causal, 2.5x that for backward. Softmax and masking are not counted."""
    forward = 4.0 * batch * n_heads * q_len * kv_len * head_dim
    if causal:
        forward /= 2
    factor = {"fwd": 1.0, "bwd": BACKWARD_TO_FORWARD, "fwd_bwd": 1.0 + BACKWARD_TO_FORWARD}[mode]
    return forward * factor


@dataclass
class BackendRun:
    requested: str  # the backend pinned, e.g. "FLASH_ATTENTION"
    ran: str | None = None  # set to `requested` once the pinned block finished without error


@contextmanager
def pinned_sdpa_backend(backend: SDPBackend | str) -> Iterator[BackendRun]:
    """Allow exactly one SDPA backend inside the block and record that it ran.

        with pinned_sdpa_backend("FLASH_ATTENTION") as run:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        assert run.ran == "FLASH_ATTENTION"

    A backend that cannot serve the inputs raises ``RuntimeError`` ("No available
    kernel") and ``run.ran`` stays None.
    """
    if isinstance(backend, str):
        backend = SDPBackend.__members__[backend.upper()]
    record = BackendRun(requested=backend.name)
    with sdpa_kernel([backend]):
        yield record
    record.ran = backend.name


# The aten op each backend dispatches to (the CPU flash kernel ends in "_for_cpu").
_BACKEND_OPS = {
    "_scaled_dot_product_flash_attention": "FLASH_ATTENTION",
    "_scaled_dot_product_efficient_attention": "EFFICIENT_ATTENTION",
    "_scaled_dot_product_cudnn_attention": "CUDNN_ATTENTION",
    "_scaled_dot_product_attention_math": "MATH",
}


def observed_sdpa_backends(fn: Callable[[], object]) -> set[str]:
    """Run ``fn`` once under the profiler and name the SDPA backends it dispatched to,
    for code that does not pin one (such as a module's default path)."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return {
        backend
        for event in prof.events()
        for op, backend in _BACKEND_OPS.items()
        if event.name.startswith("aten::" + op)
    }
