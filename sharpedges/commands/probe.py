"""`sharpedges probe MODULE:FACTORY`: run the runtime probes on a model (needs torch)."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import sys
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "probe",
        help="check a model's behaviour at runtime: causality, caches, padding, precision (needs torch)",
        description="Build a model from a zero-argument factory and check its behaviour against what the "
        "reference implementations guarantee. Needs torch: pip install 'sharpedges[torch]'.",
    )
    parser.add_argument(
        "target",
        metavar="MODULE:FACTORY",
        help="a zero-argument callable returning an nn.Module or a sharpedges.probes.ModelAdapter, "
        "imported from the current directory (e.g. models.tiny:build_model)",
    )
    parser.add_argument(
        "--probe",
        action="append",
        default=None,
        metavar="NAME",
        dest="probes",
        help="run only this probe (repeatable; default: all): causal, eval-deterministic, "
        "kv-cache-consistent, padding-invariant, half-precision, grad-flow",
    )
    parser.add_argument(
        "--format",
        choices=("concise", "json"),
        default="concise",
        help="concise: one line per probe (default); json: for scripts",
    )
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default="cpu", help="where the model runs (default: cpu; cuda needs a GPU)"
    )
    parser.add_argument(
        "--root",
        type=Path,
        default=None,
        metavar="DIR",
        help="import MODULE from DIR instead of the current directory, and refuse a module whose files lie outside DIR",
    )
    parser.set_defaults(handler=run)


def _error(message: str) -> int:
    print(f"sharpedges: error: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("torch") is None:
        return _error("`probe` needs torch: pip install 'sharpedges[torch]'")
    # the probes import torch; this module stays importable without it
    from sharpedges.probes.catalog import PROBES, concise
    from sharpedges.probes.loader import TargetError, load_target
    from sharpedges.probes.runner import device_available, failed, run_probes

    unknown = [name for name in args.probes or [] if name not in PROBES]
    if unknown:
        return _error(f"unknown probe '{unknown[0]}' (known: {', '.join(PROBES)})")
    if args.device is not None and not device_available(args.device):
        return _error(f"--device {args.device}: no CUDA device is available")
    if args.root is not None and not args.root.is_dir():
        return _error(f"--root is not a directory: {args.root}")
    # The user's module and model may print: keep stdout for the report alone.
    with contextlib.redirect_stdout(sys.stderr):
        try:
            target = load_target(args.target, args.root)
        except TargetError as exc:
            return _error(str(exc))
        results = run_probes(target, args.probes, args.device)
    if args.format == "json":
        print(json.dumps({"probes": [result.to_json() for result in results]}, indent=2))
    else:
        print(concise(results))
    return 1 if failed(results) else 0
