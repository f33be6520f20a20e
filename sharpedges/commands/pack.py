"""`sharpedges pack --target T --out DIR`: write a prompt pack for an agent orchestrator."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Kept here, not imported from the pack builder, so `--help` stays cheap; a test keeps the two equal.
TARGETS = ("spawner", "claude-skill", "cursor", "agents-md", "markdown", "json")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("pack", help="write the skills as a prompt pack",
                                   description="Write every skill as a prompt pack for an agent orchestrator.")
    parser.add_argument("--target", required=True, metavar="T", help=f"one of: {', '.join(TARGETS)}")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (created)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from sharpedges.knowledge.packs import write_pack
    from sharpedges.knowledge.registry import load_knowledge
    from sharpedges.yaml_io import DataFileError

    if args.target not in TARGETS:
        print(f"sharpedges: unknown target '{args.target}' (choose from: {', '.join(TARGETS)})", file=sys.stderr)
        return 2
    try:
        written = write_pack(load_knowledge(), args.target, args.out)
    except (DataFileError, OSError) as exc:
        print(f"sharpedges: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(written)} files to {args.out}")
    return 0
