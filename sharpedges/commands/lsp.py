"""`sharpedges lsp`: a Language Server over stdio for editors (diagnostics, fixes, hover)."""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "lsp",
        help="run the language server over stdio (needs sharpedges[lsp])",
        description="Serve diagnostics, quick fixes and rule explanations to an editor over the Language Server "
        "Protocol (stdio). Needs the optional extra: pip install 'sharpedges[lsp]'.",
    )
    parser.add_argument(
        "--stdio", action="store_true", help="accepted for clients that pass it; stdio is the only transport"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        from sharpedges.lsp.server import serve
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in ("pygls", "lsprotocol"):
            print("sharpedges: error: `lsp` needs pygls: pip install 'sharpedges[lsp]'", file=sys.stderr)
            return 2
        raise
    return serve()
