"""The `sharpedges` command line: a thin face that dispatches to one module per subcommand."""

from __future__ import annotations

import argparse
import importlib
import sys

from sharpedges import __version__

# Order is the order of `sharpedges --help`.
COMMAND_MODULES = (
    "check",
    "rules",
    "rule",
    "review",
    "skills",
    "skill",
    "route",
    "pack",
    "serve",
    "lsp",
    "calc",
    "probe",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sharpedges",
        description=("Lint rules and expert skills for transformer code: catches the bugs that run without crashing."),
    )
    parser.add_argument("--version", action="version", version=f"sharpedges {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"sharpedges.commands.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    from sharpedges.yaml_io import DataFileError

    parser = build_parser()
    try:
        args = parser.parse_args(argv)  # `--select SHP1` reads the rule specs to check the selector
        if not getattr(args, "handler", None):
            parser.print_help()
            return 2
        return args.handler(args)
    except DataFileError as exc:  # a rule spec, skill or link that cannot be used: every command stops
        print(f"sharpedges: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sharpedges: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
