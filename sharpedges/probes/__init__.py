"""Runtime probes: check a model's behaviour (causality, determinism in eval, KV-cache and padding
consistency, half precision, gradient flow) against what the reference implementations guarantee.
Needs torch (`pip install 'sharpedges[torch]'`); the linter never imports this package.

In a test suite:

    from sharpedges.probes import assert_causal, assert_kv_cache_consistent

    def test_my_model_is_causal():
        assert_causal(build_model())

Each `assert_*` raises AssertionError with the measured numbers when the probe fails, skips the test
(pytest.skip) when the probe does not apply, and returns the ProbeResult when it passes. A model that
does not follow the Hugging Face conventions is passed wrapped in a `ModelAdapter` subclass.
"""

from __future__ import annotations

from typing import Any

from sharpedges.probes.adapter import ModelAdapter, Outputs, ProbeSkip
from sharpedges.probes.catalog import FAIL, PASS, PROBES, SKIP, ProbeResult
from sharpedges.probes.runner import run_probe, run_probes

__all__ = [
    "FAIL",
    "PASS",
    "PROBES",
    "SKIP",
    "ModelAdapter",
    "Outputs",
    "ProbeResult",
    "ProbeSkip",
    "assert_causal",
    "assert_eval_deterministic",
    "assert_grad_flow",
    "assert_half_precision",
    "assert_kv_cache_consistent",
    "assert_padding_invariant",
    "run_probe",
    "run_probes",
]


def _assert_probe(name: str, target: Any, device: str | None) -> ProbeResult:
    result = run_probe(name, target, device)
    if result.status == FAIL:
        raise AssertionError(f"probe {name} ({'/'.join(result.info.rules)}) failed: {result.detail}")
    if result.status == SKIP:
        import pytest

        pytest.skip(f"probe {name} does not apply: {result.detail}")
    return result


def assert_causal(target: Any, device: str | None = None) -> ProbeResult:
    """Outputs at position t ignore later tokens and depend on earlier ones (SHP201, SHP202)."""
    return _assert_probe("causal", target, device)


def assert_eval_deterministic(target: Any, device: str | None = None) -> ProbeResult:
    """Two eval() forward passes agree exactly; train() passes differ where there is dropout (SHP701)."""
    return _assert_probe("eval-deterministic", target, device)


def assert_kv_cache_consistent(target: Any, device: str | None = None) -> ProbeResult:
    """Cached decoding, token by token and in chunks, matches a full forward (SHP204, SHP401)."""
    return _assert_probe("kv-cache-consistent", target, device)


def assert_padding_invariant(target: Any, device: str | None = None) -> ProbeResult:
    """Left or right padding with an attention mask leaves the real tokens' outputs unchanged (SHP203)."""
    return _assert_probe("padding-invariant", target, device)


def assert_half_precision(target: Any, device: str | None = None) -> ProbeResult:
    """fp16 and bf16 logits are finite and close to fp32, fully masked rows included (SHP103, SHP105, SHP601)."""
    return _assert_probe("half-precision", target, device)


def assert_grad_flow(target: Any, device: str | None = None) -> ProbeResult:
    """Every trainable parameter gets a gradient; an MoE router gets one from the balancing loss (SHP502)."""
    return _assert_probe("grad-flow", target, device)
