"""`sharpedges calc kv-cache|chinchilla`: the skill's sizing arithmetic on the command line."""

from __future__ import annotations

import argparse
import json
import sys


def _count(text: str) -> float:
    from sharpedges.calculators import parse_count

    try:
        return parse_count(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _size(text: str) -> int:
    from sharpedges.calculators import parse_whole

    try:
        return parse_whole(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "calc",
        help="KV-cache memory and Chinchilla scaling arithmetic",
        description="Back-of-envelope numbers for transformer sizing.",
    )
    kinds = parser.add_subparsers(dest="calculator", metavar="CALCULATOR", required=True)

    kv = kinds.add_parser(
        "kv-cache",
        help="memory of a full KV cache",
        description="Bytes of a KV cache: 2 (K and V) x layers x kv-heads x head-dim x "
        "dtype bytes per token, times seq-len and batch. Sizes accept "
        "suffixes of 1000: 128k, 1M.",
    )
    kv.add_argument("--layers", type=_size, required=True, help="transformer layers")
    kv.add_argument("--kv-heads", type=_size, required=True, help="key/value heads (fewer than query heads with GQA)")
    kv.add_argument("--head-dim", type=_size, required=True, help="channels per attention head")
    kv.add_argument("--seq-len", type=_size, default=1, help="positions cached per sequence (default: 1, per token)")
    kv.add_argument("--batch", type=_size, default=1, help="sequences cached at once (default: 1)")
    kv.add_argument(
        "--dtype", default="float16", help="float32, float16, bfloat16, float8, int8, int4 (default: float16)"
    )
    kv.add_argument(
        "--format", choices=("text", "json"), default="text", help="text for people, json for scripts (default: text)"
    )
    kv.set_defaults(handler=run)

    scaling = kinds.add_parser(
        "chinchilla",
        help="compute-optimal params, tokens and FLOPs from any one",
        description="Chinchilla scaling: 20 tokens per parameter, C = 6 N D. "
        "Numbers accept suffixes of 1000: 7B, 1.4T, 128k, 5.9e23.",
    )
    given = scaling.add_mutually_exclusive_group(required=True)
    given.add_argument("--params", type=_count, help="model parameters N")
    given.add_argument("--tokens", type=_count, help="training tokens D")
    given.add_argument("--flops", type=_count, help="training compute C")
    scaling.add_argument(
        "--format", choices=("text", "json"), default="text", help="text for people, json for scripts (default: text)"
    )
    scaling.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from sharpedges.calculators import ChinchillaEstimate, KvCacheEstimate, chinchilla, kv_cache_bytes

    estimate: KvCacheEstimate | ChinchillaEstimate
    try:
        if args.calculator == "kv-cache":
            estimate = kv_cache_bytes(args.layers, args.kv_heads, args.head_dim, args.seq_len, args.batch, args.dtype)
        else:
            estimate = chinchilla(args.params, args.tokens, args.flops)
    except ValueError as exc:
        print(f"sharpedges: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(estimate.to_json()) if args.format == "json" else estimate.human)
    return 0
