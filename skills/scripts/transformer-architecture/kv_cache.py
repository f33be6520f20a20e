"""KV-cache memory: 2 (K and V) x layers x kv_heads x head_dim x bytes, per token, x seq_len x batch.

Standalone (standard library only); `sharpedges calc kv-cache` gives the same numbers.
Example: python kv_cache.py --layers 32 --kv-heads 8 --head-dim 128 --seq-len 32768 --batch 4
"""

from __future__ import annotations

import argparse
import math
import sys

DTYPE_BITS = {"float32": 32, "float16": 16, "bfloat16": 16, "float8": 8, "int8": 8, "int4": 4}


def kv_cache_bytes(
    layers: int, kv_heads: int, head_dim: int, seq_len: int = 1, batch: int = 1, dtype: str = "float16"
) -> int:
    """Use the number of KV heads (fewer than query heads with GQA/MQA), not the query heads."""
    return math.ceil(2 * layers * kv_heads * head_dim * DTYPE_BITS[dtype] * seq_len * batch / 8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, required=True)
    parser.add_argument("--kv-heads", type=int, required=True, help="key/value heads (not query heads)")
    parser.add_argument("--head-dim", type=int, required=True)
    parser.add_argument("--seq-len", type=int, default=1, help="cached positions per sequence")
    parser.add_argument("--batch", type=int, default=1, help="concurrent sequences")
    parser.add_argument("--dtype", choices=sorted(DTYPE_BITS), default="float16")
    args = parser.parse_args(argv)
    if min(args.layers, args.kv_heads, args.head_dim, args.seq_len, args.batch) < 1:
        parser.error("every size must be a positive integer")
    total = kv_cache_bytes(args.layers, args.kv_heads, args.head_dim, args.seq_len, args.batch, args.dtype)
    per_token = kv_cache_bytes(args.layers, args.kv_heads, args.head_dim, 1, 1, args.dtype)
    print(f"{total} bytes = {total / 2**30:.3f} GiB ({per_token / 2**10:.1f} KiB per token)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
