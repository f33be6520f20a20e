"""`sharpedges serve`: a Model Context Protocol server over stdio for coding agents."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run an MCP tool server over stdio (needs sharpedges[mcp])",
        description="Serve lint, rule explanations, skills, routing and calculators to coding agents over the "
        "Model Context Protocol (stdio). Needs the optional extra: pip install 'sharpedges[mcp]'.",
    )
    parser.add_argument(
        "--root",
        action="append",
        type=Path,
        default=None,
        metavar="DIR",
        help="a directory check_paths may read (repeatable; default: the current directory)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from sharpedges.yaml_io import DataFileError

    roots = args.root or [Path.cwd()]
    missing = [str(root) for root in roots if not root.is_dir()]
    if missing:
        print(f"sharpedges: error: --root is not a directory: {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        from sharpedges.serve import build_server
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] == "mcp":
            print("sharpedges: error: `serve` needs the MCP SDK: pip install 'sharpedges[mcp]'", file=sys.stderr)
            return 2
        raise
    try:
        server = build_server(roots)
    except DataFileError as exc:
        print(f"sharpedges: error: {exc}", file=sys.stderr)
        return 2
    server.run("stdio")
    return 0
