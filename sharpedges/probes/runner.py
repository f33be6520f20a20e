"""Run probes on a model: each under fixed seeds, timed, with the caller's RNG state restored."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sharpedges.probes import causal, eval_deterministic, grad_flow, half_precision, kv_cache, padding
from sharpedges.probes.adapter import ModelAdapter, ProbeSkip, as_adapter
from sharpedges.probes.catalog import FAIL, PROBES, SKIP, ProbeResult, Verdict

PROBE_FUNCTIONS: dict[str, Callable[[ModelAdapter], Verdict]] = {
    "causal": causal.probe,
    "eval-deterministic": eval_deterministic.probe,
    "kv-cache-consistent": kv_cache.probe,
    "padding-invariant": padding.probe,
    "half-precision": half_precision.probe,
    "grad-flow": grad_flow.probe,
}
assert PROBE_FUNCTIONS.keys() == PROBES.keys()


def _verdict(name: str, adapter: ModelAdapter) -> Verdict:
    import torch

    devices = [adapter.device] if adapter.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(0)
        try:
            return PROBE_FUNCTIONS[name](adapter)
        except ProbeSkip as skip:
            return Verdict(SKIP, str(skip))
        except Exception as exc:  # the model crashed on the probe's input: that is the finding
            message = str(exc).splitlines()[0] if str(exc) else ""
            return Verdict(FAIL, f"stopped by {type(exc).__name__}: {message}")


def run_probes(target: Any, names: list[str] | None = None, device: str | None = None) -> list[ProbeResult]:
    """Run the named probes (default: all) on a model or adapter, moved to `device` when given."""
    adapter = as_adapter(target)
    if device is not None:
        adapter.model.to(device)
    results = []
    for name in names or list(PROBES):
        if name not in PROBES:
            raise ValueError(f"unknown probe '{name}' (known: {', '.join(PROBES)})")
        start = time.perf_counter()
        verdict = _verdict(name, adapter)
        results.append(ProbeResult(name, verdict.status, verdict.detail, verdict.measured, time.perf_counter() - start))
    return results


def run_probe(name: str, target: Any, device: str | None = None) -> ProbeResult:
    [result] = run_probes(target, [name], device)
    return result


def device_available(device: str) -> bool:
    """Whether torch can place a model on `device` here (`cuda` needs a CUDA device)."""
    import torch

    return device != "cuda" or torch.cuda.is_available()


def failed(results: list[ProbeResult]) -> bool:
    return any(result.status == FAIL for result in results)
