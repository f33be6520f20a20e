"""`sharpedges pack --target T --out DIR`: write a prompt pack for an agent orchestrator."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Kept here, not imported from the pack builder, so `--help` stays cheap; a test keeps the two equal.
TARGETS = ("spawner", "claude-skill", "cursor", "agents-md", "markdown", "json")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pack",
        help="write the skills as a prompt pack",
        description="Write every skill as a prompt pack for an agent orchestrator.",
    )
    parser.add_argument("--target", required=True, metavar="T", help=f"one of: {', '.join(TARGETS)}")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (created)")
    parser.add_argument(
        "--force",
        action="store_true",
        help="overwrite files in DIR whose content differs from the pack (never through symlinks)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from sharpedges.knowledge.packs import PackWriteError, write_pack
    from sharpedges.knowledge.registry import load_knowledge
    from sharpedges.yaml_io import DataFileError

    if args.target not in TARGETS:
        print(f"sharpedges: unknown target '{args.target}' (choose from: {', '.join(TARGETS)})", file=sys.stderr)
        return 2
    try:
        unchanged: list = []
        written = write_pack(load_knowledge(), args.target, args.out, force=args.force, unchanged=unchanged)
    except (DataFileError, PackWriteError) as exc:
        print(f"sharpedges: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"sharpedges: error: cannot write the pack: {where}{(exc.strerror or str(exc)).lower()}", file=sys.stderr)
        return 2
    same = f" ({len(unchanged)} already up to date)" if unchanged else ""
    print(f"wrote {len(written)} file{'' if len(written) == 1 else 's'} to {args.out}{same}")
    return 0
