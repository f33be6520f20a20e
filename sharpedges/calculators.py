"""The back-of-envelope numbers the transformer skill teaches: KV-cache memory and Chinchilla scaling.

Pure arithmetic, no torch: the CLI (`sharpedges calc`) and the MCP server both call these.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from typing_extensions import TypedDict  # pydantic (the MCP server's output schema) needs this one before 3.12

# Bits rather than bytes so sub-byte cache formats (int4) stay exact.
DTYPE_BITS = {
    "float32": 32,
    "fp32": 32,
    "float16": 16,
    "fp16": 16,
    "bfloat16": 16,
    "bf16": 16,
    "float8": 8,
    "fp8": 8,
    "int8": 8,
    "int4": 4,
}
# Hoffmann et al. 2022 (Chinchilla): compute-optimal training uses about 20 tokens per parameter,
# and training costs about 6 FLOPs per parameter per token (2 forward, 4 backward).
TOKENS_PER_PARAM = 20
FLOPS_PER_PARAM_TOKEN = 6
_BINARY_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
_COUNT_SUFFIXES = {"K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12}


class KvCacheAnswer(TypedDict):
    """`sharpedges calc kv-cache --format json` and the MCP `kv_cache_bytes` tool."""

    bytes: int
    bytes_per_token: float
    human: str


class ChinchillaAnswer(TypedDict):
    """`sharpedges calc chinchilla --format json` and the MCP `chinchilla` tool."""

    params: float
    tokens: float
    flops: float
    human: str


@dataclass(frozen=True)
class KvCacheEstimate:
    bytes: int
    bytes_per_token: float  # per sequence position of one sequence, K and V over all layers
    human: str

    def to_json(self) -> KvCacheAnswer:
        return {"bytes": self.bytes, "bytes_per_token": self.bytes_per_token, "human": self.human}


@dataclass(frozen=True)
class ChinchillaEstimate:
    params: float
    tokens: float
    flops: float
    human: str

    def to_json(self) -> ChinchillaAnswer:
        return {"params": self.params, "tokens": self.tokens, "flops": self.flops, "human": self.human}


def _positive_int(name: str, value: int | str) -> int:
    if isinstance(value, str):  # as people write sizes: 128k, 1M
        return parse_whole(value, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def kv_cache_bytes(
    layers: int | str,
    kv_heads: int | str,
    head_dim: int | str,
    seq_len: int | str = 1,
    batch: int | str = 1,
    dtype: str = "float16",
) -> KvCacheEstimate:
    """Memory of a full KV cache: K and V (x2) for every layer, KV head, head dim, position and sequence.

    Use the number of *KV* heads: with grouped-query attention it is smaller than the query heads,
    which is the whole point of GQA. Sizes may be strings as people write them (128k). Raises
    ValueError for a non-positive size or unknown dtype.
    """
    sizes = {
        name: _positive_int(name, value)
        for name, value in (
            ("layers", layers),
            ("kv_heads", kv_heads),
            ("head_dim", head_dim),
            ("seq_len", seq_len),
            ("batch", batch),
        )
    }
    bits = DTYPE_BITS.get(dtype.lower()) if isinstance(dtype, str) else None
    if bits is None:
        raise ValueError(f"unknown dtype {dtype!r} (known: {', '.join(DTYPE_BITS)})")
    per_token_bits = 2 * sizes["layers"] * sizes["kv_heads"] * sizes["head_dim"] * bits
    total = math.ceil(per_token_bits * sizes["seq_len"] * sizes["batch"] / 8)
    per_token = per_token_bits / 8
    human = f"{format_bytes(total)} ({format_bytes(per_token)} per token)"
    return KvCacheEstimate(bytes=total, bytes_per_token=per_token, human=human)


def _positive_number(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def chinchilla(
    params: float | None = None, tokens: float | None = None, flops: float | None = None
) -> ChinchillaEstimate:
    """The compute-optimal triple from any one of model size N, training tokens D or compute C,
    with D = 20 N and C = 6 N D (so C = 120 N^2). Raises ValueError unless exactly one is given."""
    given = {
        name: value for name, value in (("params", params), ("tokens", tokens), ("flops", flops)) if value is not None
    }
    if len(given) != 1:
        raise ValueError("give exactly one of params, tokens or flops")
    ((name, value),) = given.items()
    value = _positive_number(name, value)
    if name == "params":
        n = value
    elif name == "tokens":
        n = value / TOKENS_PER_PARAM
    else:
        n = math.sqrt(value / (FLOPS_PER_PARAM_TOKEN * TOKENS_PER_PARAM))
    d = TOKENS_PER_PARAM * n
    c = FLOPS_PER_PARAM_TOKEN * n * d
    if not math.isfinite(c):
        raise ValueError(f"{name} is too large: the compute {FLOPS_PER_PARAM_TOKEN} x N x D overflows")
    human = f"{format_count(n)} parameters, {format_count(d)} tokens, {c:.3g} FLOPs"
    return ChinchillaEstimate(params=n, tokens=d, flops=c, human=human)


def format_bytes(count: float) -> str:
    """1024-based, as memory is sold: 524288 -> '512 KiB'."""
    value, unit = float(count), 0
    while value >= 1024 and unit < len(_BINARY_UNITS) - 1:
        value, unit = value / 1024, unit + 1
    return f"{value:.4g} {_BINARY_UNITS[unit]}"


def format_count(count: float) -> str:
    """1000-based, as model sizes are quoted: 7e9 -> '7B'."""
    for suffix, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= scale:
            return f"{count / scale:.4g}{suffix}"
    return f"{count:.4g}"


def parse_count(text: str | float) -> float:
    """'7e9', '7B', '1.4T', '70m', '128k', '1_000' -> a number (suffixes are powers of 1000, as model
    sizes and context lengths are quoted: 128k = 128,000). The one parser the CLI and the MCP
    tools share; a number passes through. Raises ValueError naming the text otherwise."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    if not isinstance(text, str):
        raise ValueError(f"not a number: {text!r} (examples: 7e9, 7B, 1.4T, 128k)")
    cleaned = text.strip().replace("_", "").replace(",", "")
    suffix = cleaned[-1:].upper()
    scale = _COUNT_SUFFIXES.get(suffix, 1.0) if cleaned[-1:].isalpha() and cleaned[:-1] else 1.0
    body = cleaned[:-1] if scale != 1.0 else cleaned
    try:
        value = float(body) * scale
    except ValueError:
        raise ValueError(f"not a number: {text!r} (examples: 7e9, 7B, 1.4T, 128k)") from None
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {text!r}")
    return value


def parse_whole(text: str | int, name: str = "value") -> int:
    """`parse_count` for sizes that must be whole and positive: '128k' -> 128000, '32' -> 32."""
    try:
        value = parse_count(text)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None
    if value < 1 or value != int(value):
        raise ValueError(f"{name} must be a positive whole number, got {text!r}")
    return int(value)
