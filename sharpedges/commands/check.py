"""`sharpedges check`: lint files and report, optionally fixing what can be fixed."""

from __future__ import annotations

import argparse
import sys


def _codes(value: str) -> list[str]:
    from sharpedges.config import parse_selectors

    try:
        return parse_selectors(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _shard(value: str) -> tuple[int, int]:
    try:
        k, n = (int(part) for part in value.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError("expected K/N, e.g. 2/4") from None
    if not 1 <= k <= n:
        raise argparse.ArgumentTypeError("expected 1 <= K <= N")
    return k, n


def add_rule_selection(parser: argparse.ArgumentParser) -> None:
    # action="extend": a repeated flag adds up (`--select SHP1 --select SHP2`), as in ruff.
    parser.add_argument(
        "--select",
        type=_codes,
        action="extend",
        default=None,
        metavar="CODES",
        help="only these rule codes or prefixes (comma-separated, repeatable; replaces the configured select)",
    )
    parser.add_argument(
        "--extend-select",
        type=_codes,
        action="extend",
        default=[],
        metavar="CODES",
        help="also these codes or prefixes, opt-in rules included (comma-separated, repeatable)",
    )
    parser.add_argument(
        "--ignore",
        type=_codes,
        action="extend",
        default=[],
        metavar="CODES",
        help="skip these codes or prefixes (comma-separated, repeatable)",
    )
    parser.add_argument("--preview", action="store_true", help="also enable opt-in (preview) rules")


def register(subparsers) -> None:
    from sharpedges.outputs import FORMATS

    parser = subparsers.add_parser(
        "check",
        help="lint Python files for transformer bugs",
        description="Lint Python files for transformer bugs that run without crashing.",
    )
    parser.add_argument("paths", nargs="*", default=["."], help="files or directories (default: .)")
    add_rule_selection(parser)
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="concise",
        help="concise: one line per finding (default); full: the whole message, source and caret; "
        "json, sarif: for tools; github: GitHub Actions annotations",
    )
    parser.add_argument("--exit-zero", action="store_true", help="exit 0 even when problems are found")
    parser.add_argument("--statistics", action="store_true", help="count findings per rule")
    parser.add_argument("--fix", action="store_true", help="apply safe fixes")
    parser.add_argument("--unsafe-fixes", action="store_true", help="with --fix or --diff, also apply unsafe fixes")
    parser.add_argument("--diff", action="store_true", help="show the fixes as a diff instead of writing them")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the result cache")
    parser.add_argument("--cache-dir", default=None, help="cache directory (default: .sharpedges_cache)")
    parser.add_argument("--jobs", "-j", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument("--shard", type=_shard, default=None, help="check only shard K of N (by path hash)")
    parser.add_argument("--stdin-filename", default=None, help="lint standard input, reported under this name")
    parser.add_argument(
        "--named-only",
        action="store_true",
        help="check only the files named (pre-commit passes changed files; no-op when none)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from sharpedges.config import ConfigError
    from sharpedges.registry import RegistryError
    from sharpedges.session import CheckSession
    from sharpedges.yaml_io import DataFileError

    if args.named_only and args.paths == ["."] and not args.stdin_filename:
        return 0  # pre-commit with zero files: a clean no-op
    try:
        return CheckSession(args).run()
    except (ConfigError, RegistryError, DataFileError, ValueError) as exc:
        print(f"sharpedges: error: {exc}", file=sys.stderr)
        return 2
