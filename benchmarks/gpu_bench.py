"""Benchmark the reference implementations on a GPU (not a test).

    python benchmarks/gpu_bench.py --out gpu_bench.json     # on a CUDA machine
    python benchmarks/gpu_bench.py --smoke --out /tmp/b.json  # tiny sizes, runs on CPU

Sections: the ``Attention`` module's SDPA path against the best pinned SDPA backend
(TFLOP/s and their ratio, target >= 0.95), eager oracle vs SDPA, ``enable_gqa`` vs
repeated KV heads, decode tokens/s and % of HBM bandwidth for the tiny decoder scaled
to ~1B parameters, and MoE grouped-matmul vs loop dispatch. Every attention number
records the backend that actually ran. Results go to JSON with the GPU name, driver
and torch version; a table goes to stdout.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shutil
import statistics
import subprocess
import time

import torch

from sharpedges.reference_impls.attention import Attention, attention_ref
from sharpedges.reference_impls.block import DecoderConfig, TinyDecoder
from sharpedges.reference_impls.flops import attention_flops, observed_sdpa_backends, pinned_sdpa_backend
from sharpedges.reference_impls.moe import TopKRouter, dispatch_loop, dispatch_sorted

# Peak HBM bandwidth in GB/s by device-name fragment (vendor datasheets); first match wins.
PEAK_HBM_GBS = {
    "H200": 4800,
    "H100 PCIe": 2000,
    "H100": 3350,
    "A100-SXM4-80GB": 2039,
    "A100": 1555,
    "L40S": 864,
    "L4": 300,
}
FUSED_BACKENDS = ["FLASH_ATTENTION", "CUDNN_ATTENTION", "EFFICIENT_ATTENTION"]

FULL = {
    "head_dims": [64, 128],
    "seq_lens": [512, 1024, 2048, 4096, 8192, 16384],
    "tokens": 16384,
    "d_model": 2048,
    "math_max_seq": 4096,
    "eager_seq_lens": [512, 1024, 2048, 4096],
    "gqa_seq_lens": [1024, 4096],
    "decoder": DecoderConfig(vocab_size=32000, d_model=2048, n_layers=20, n_heads=16, n_kv_heads=4),
    "prompt": 128,
    "new_tokens": 128,
    "moe": {"tokens": 8192, "d_model": 1024, "d_hidden": 2816, "n_experts": 8, "k": 2},
    "warmup": 5,
    "iters": 20,
}
SMOKE = {
    "head_dims": [16],
    "seq_lens": [64, 128],
    "tokens": 256,
    "d_model": 64,
    "math_max_seq": 128,
    "eager_seq_lens": [64],
    "gqa_seq_lens": [64],
    "decoder": DecoderConfig(vocab_size=256, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2),
    "prompt": 8,
    "new_tokens": 8,
    "moe": {"tokens": 256, "d_model": 32, "d_hidden": 64, "n_experts": 4, "k": 2},
    "warmup": 1,
    "iters": 3,
}


# ---------------------------------------------------------------------------- timing


def median_ms(fn, device: torch.device, warmup: int, iters: int) -> float:
    for _ in range(warmup):
        fn()
    if device.type != "cuda":
        times = []
        for _ in range(iters):
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) * 1e3)
        return statistics.median(times)
    torch.cuda.synchronize()
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(iters)]
    for started, ended in events:
        started.record()
        fn()
        ended.record()
    torch.cuda.synchronize()
    return statistics.median(started.elapsed_time(ended) for started, ended in events)


def pinned_ms(backend: str, fn, device, warmup, iters) -> float | None:
    """Time fn with one SDPA backend allowed; None when that backend cannot serve it."""
    try:
        with pinned_sdpa_backend(backend) as run:
            ms = median_ms(fn, device, warmup, iters)
    except RuntimeError:
        return None
    assert run.ran == backend
    return ms


def tflops(flops: float, ms: float | None) -> float | None:
    return None if ms is None else flops / (ms * 1e-3) / 1e12


# -------------------------------------------------------------------------- sections


def bench_attention(cfg, device, dtype) -> list[dict]:
    rows = []
    for head_dim in cfg["head_dims"]:
        n_heads = cfg["d_model"] // head_dim
        for seq_len in cfg["seq_lens"]:
            batch = max(1, cfg["tokens"] // seq_len)
            q, k, v = (torch.randn(batch, n_heads, seq_len, head_dim, device=device, dtype=dtype) for _ in range(3))
            for causal in (False, True):
                flops = attention_flops(batch, n_heads, seq_len, seq_len, head_dim, causal=causal)
                sdpa = lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)  # noqa: E731
                backends = FUSED_BACKENDS + (["MATH"] if seq_len <= cfg["math_max_seq"] else [])
                pinned = {b: pinned_ms(b, sdpa, device, cfg["warmup"], cfg["iters"]) for b in backends}
                served = {b: ms for b, ms in pinned.items() if ms is not None}
                best = min(served, key=served.__getitem__)
                module = Attention(n_heads * head_dim, n_heads, causal=causal).to(device, dtype).eval()
                attend = lambda: module.attend(q, k, v)  # noqa: E731
                with torch.no_grad():
                    module_ms = median_ms(attend, device, cfg["warmup"], cfg["iters"])
                    module_backends = sorted(observed_sdpa_backends(attend))
                rows.append(
                    {
                        "head_dim": head_dim,
                        "seq_len": seq_len,
                        "batch": batch,
                        "n_heads": n_heads,
                        "causal": causal,
                        "pinned_tflops": {b: tflops(flops, ms) for b, ms in pinned.items()},
                        "best_backend": best,
                        "best_tflops": tflops(flops, served[best]),
                        "module_backends": module_backends,
                        "module_tflops": tflops(flops, module_ms),
                        "module_vs_best": served[best] / module_ms,
                    }
                )
    return rows


def bench_eager_vs_sdpa(cfg, device, dtype) -> list[dict]:
    rows, head_dim = [], cfg["head_dims"][-1]
    n_heads = cfg["d_model"] // head_dim
    module = Attention(cfg["d_model"], n_heads).to(device, dtype).eval()
    for seq_len in cfg["eager_seq_lens"]:
        batch = max(1, cfg["tokens"] // seq_len)
        q, k, v = (torch.randn(batch, n_heads, seq_len, head_dim, device=device, dtype=dtype) for _ in range(3))
        flops = attention_flops(batch, n_heads, seq_len, seq_len, head_dim, causal=True)
        with torch.no_grad():
            eager_ms = median_ms(lambda: attention_ref(q, k, v, causal=True), device, cfg["warmup"], cfg["iters"])
            sdpa_ms = median_ms(lambda: module.attend(q, k, v), device, cfg["warmup"], cfg["iters"])
            backends = sorted(observed_sdpa_backends(lambda: module.attend(q, k, v)))
        rows.append(
            {
                "seq_len": seq_len,
                "head_dim": head_dim,
                "eager_tflops": tflops(flops, eager_ms),
                "sdpa_tflops": tflops(flops, sdpa_ms),
                "sdpa_backends": backends,
                "speedup": eager_ms / sdpa_ms,
            }
        )
    return rows


def bench_gqa(cfg, device, dtype) -> list[dict]:
    rows, head_dim = [], cfg["head_dims"][-1]
    n_heads = cfg["d_model"] // head_dim
    n_kv_heads = max(1, n_heads // 4)
    for seq_len in cfg["gqa_seq_lens"]:
        batch = max(1, cfg["tokens"] // seq_len)
        q = torch.randn(batch, n_heads, seq_len, head_dim, device=device, dtype=dtype)
        k, v = (torch.randn(batch, n_kv_heads, seq_len, head_dim, device=device, dtype=dtype) for _ in range(2))
        flops = attention_flops(batch, n_heads, seq_len, seq_len, head_dim, causal=True)
        row = {"seq_len": seq_len, "n_heads": n_heads, "n_kv_heads": n_kv_heads}
        for label, enable_gqa in (("enable_gqa", True), ("repeat_kv", False)):
            module = Attention(cfg["d_model"], n_heads, n_kv_heads, sdpa_enable_gqa=enable_gqa).to(device, dtype).eval()
            attend = lambda: module.attend(q, k, v)  # noqa: E731
            with torch.no_grad():
                row[f"{label}_tflops"] = tflops(flops, median_ms(attend, device, cfg["warmup"], cfg["iters"]))
                row[f"{label}_backends"] = sorted(observed_sdpa_backends(attend))
        rows.append(row)
    return rows


def bench_decode(cfg, device, dtype, peak_gbs: float | None) -> dict:
    model = TinyDecoder(cfg["decoder"]).to(device, dtype).eval()
    n_params = sum(p.numel() for p in model.parameters())  # the tied embedding counts once
    prompt, new_tokens = cfg["prompt"], cfg["new_tokens"]
    idx = torch.randint(0, cfg["decoder"].vocab_size, (1, prompt), device=device)

    def decode() -> float:
        caches = model.new_caches("static", 1, prompt + new_tokens)
        with torch.no_grad():
            next_token = model(idx, caches=caches)[:, -1:].argmax(-1)
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(new_tokens):
                next_token = model(next_token, caches=caches)[:, -1:].argmax(-1)
            if device.type == "cuda":
                torch.cuda.synchronize()
        return time.perf_counter() - start

    decode()  # warm-up
    seconds = statistics.median(decode() for _ in range(3))
    dcfg = cfg["decoder"]
    kv_bytes_per_token = 2 * dcfg.n_layers * (dcfg.n_kv_heads or dcfg.n_heads) * dcfg.head_dim * dtype.itemsize
    mean_context = prompt + new_tokens / 2
    bytes_per_step = n_params * dtype.itemsize + kv_bytes_per_token * mean_context  # weights + KV read once
    achieved_gbs = bytes_per_step * new_tokens / seconds / 1e9
    return {
        "params": n_params,
        "prompt": prompt,
        "new_tokens": new_tokens,
        "tokens_per_s": new_tokens / seconds,
        "achieved_gbs": achieved_gbs,
        "peak_gbs": peak_gbs,
        "hbm_percent": None if peak_gbs is None else 100 * achieved_gbs / peak_gbs,
    }


def bench_moe(cfg, device, dtype) -> dict:
    m = cfg["moe"]
    x = torch.randn(m["tokens"], m["d_model"], device=device, dtype=dtype)
    w_in = torch.randn(m["n_experts"], m["d_model"], m["d_hidden"], device=device, dtype=dtype) / m["d_model"] ** 0.5
    w_out = torch.randn(m["n_experts"], m["d_hidden"], m["d_model"], device=device, dtype=dtype) / m["d_hidden"] ** 0.5
    with torch.no_grad():
        routing = TopKRouter(m["d_model"], m["n_experts"], m["k"]).to(device)(x)
    args = (x, routing.weights, routing.experts, w_in, w_out)
    variants = {
        "loop": lambda: dispatch_loop(*args),
        "sorted_per_expert": lambda: dispatch_sorted(*args, grouped=False),
    }
    if hasattr(torch.nn.functional, "grouped_mm"):
        variants["sorted_grouped_mm"] = lambda: dispatch_sorted(*args, grouped=True)
    result = {**m, "ms": {}}
    with torch.no_grad():
        for name, fn in variants.items():
            try:
                result["ms"][name] = median_ms(fn, device, cfg["warmup"], cfg["iters"])
            except RuntimeError as error:  # grouped_mm kernels exist only for some devices and dtypes
                result["ms"][name] = None
                result.setdefault("errors", {})[name] = str(error).splitlines()[0]
    return result


# ------------------------------------------------------------------------- reporting


def environment(device: torch.device, dtype: torch.dtype, smoke: bool) -> dict:
    driver = None
    if device.type == "cuda" and shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
        driver = subprocess.run(query, capture_output=True, text=True).stdout.strip().splitlines()[0]
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "device": str(device),
        "cpu": platform.processor() or platform.machine(),
        "driver": driver,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "dtype": str(dtype).removeprefix("torch."),
        "smoke": smoke,
    }


def fmt(value, spec=".1f") -> str:
    return "-" if value is None else format(value, spec)


def print_tables(results: dict) -> None:
    env = results["environment"]
    print(f"# {env['gpu'] or env['cpu']}  torch {env['torch']}  cuda {env['cuda']}  {env['dtype']}  {env['date']}")
    print("\n## Attention module vs best pinned SDPA backend (forward TFLOP/s)")
    print(f"{'D':>4} {'seq':>6} {'causal':>6} {'best backend':>20} {'best':>7} {'module':>7} {'ratio':>6}  module ran")
    for r in results["attention"]:
        print(
            f"{r['head_dim']:>4} {r['seq_len']:>6} {r['causal']!s:>6} {r['best_backend']:>20} "
            f"{fmt(r['best_tflops'], '.3g'):>7} {fmt(r['module_tflops'], '.3g'):>7} {r['module_vs_best']:>6.3f}  "
            f"{','.join(r['module_backends'])}"
        )
    print("\n## Eager oracle vs SDPA (causal, TFLOP/s)")
    for r in results["eager_vs_sdpa"]:
        print(
            f"seq {r['seq_len']:>6}: eager {fmt(r['eager_tflops'], '.3g')}  sdpa {fmt(r['sdpa_tflops'], '.3g')}  "
            f"x{r['speedup']:.1f}  ({','.join(r['sdpa_backends'])})"
        )
    print("\n## enable_gqa vs repeated KV (causal, TFLOP/s)")
    for r in results["gqa"]:
        print(
            f"seq {r['seq_len']:>6} H {r['n_heads']} / KV {r['n_kv_heads']}: "
            f"enable_gqa {fmt(r['enable_gqa_tflops'], '.3g')} ({','.join(r['enable_gqa_backends'])})  "
            f"repeat_kv {fmt(r['repeat_kv_tflops'], '.3g')} ({','.join(r['repeat_kv_backends'])})"
        )
    d = results["decode"]
    print(
        f"\n## Decode, {d['params'] / 1e9:.3g}B params, batch 1: {d['tokens_per_s']:.1f} tokens/s, "
        f"{d['achieved_gbs']:.1f} GB/s = {fmt(d['hbm_percent'])}% of peak HBM ({fmt(d['peak_gbs'], '.0f')} GB/s)"
    )
    moe = results["moe"]
    print(f"\n## MoE dispatch, {moe['tokens']} tokens, {moe['n_experts']} experts, top-{moe['k']} (ms)")
    print("  ".join(f"{name} {fmt(ms, '.3f')}" for name, ms in moe["ms"].items()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes; runs on CPU in seconds")
    parser.add_argument("--out", default="gpu_bench.json", help="where to write the JSON results")
    parser.add_argument("--peak-hbm-gbs", type=float, help="peak memory bandwidth, if the GPU is not in the table")
    args = parser.parse_args(argv)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu" and not args.smoke:
        parser.error("no CUDA device: only --smoke runs on CPU")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    cfg = SMOKE if args.smoke else FULL
    peak = args.peak_hbm_gbs
    if peak is None and device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak = next((gbs for fragment, gbs in PEAK_HBM_GBS.items() if fragment in name), None)

    torch.manual_seed(0)
    results = {
        "environment": environment(device, dtype, args.smoke),
        "attention": bench_attention(cfg, device, dtype),
        "eager_vs_sdpa": bench_eager_vs_sdpa(cfg, device, dtype),
        "gqa": bench_gqa(cfg, device, dtype),
        "decode": bench_decode(cfg, device, dtype, peak),
        "moe": bench_moe(cfg, device, dtype),
    }
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
    print_tables(results)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
