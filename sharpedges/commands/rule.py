"""`sharpedges rule CODE`: one rule's doc in ruff's order, plus the reference implementation."""

from __future__ import annotations

import sys


def register(subparsers) -> None:
    parser = subparsers.add_parser("rule", help="explain one rule")
    parser.add_argument("code", help="a rule code, e.g. SHP101")
    parser.set_defaults(handler=run)


def run(args) -> int:
    from sharpedges.docs import rule_markdown
    from sharpedges.specs import load_specs

    code = args.code.strip().upper()
    specs = load_specs()
    if code not in specs:
        print(f"sharpedges: error: unknown rule code {args.code} (see `sharpedges rules`)", file=sys.stderr)
        return 2
    sys.stdout.write(rule_markdown(specs[code]))
    return 0
