"""`sharpedges route TEXT...`: which skill should own a request."""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "route",
        help="pick the skill that should own a request",
        description="Pick the expert skill that should own a request.",
    )
    parser.add_argument(
        "--format", choices=("text", "json"), default="text", help="text for people, json for scripts (default: text)"
    )
    parser.add_argument("text", nargs="+", metavar="TEXT", help="the request (several words are joined)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from sharpedges.knowledge.routing import default_router
    from sharpedges.yaml_io import DataFileError

    try:
        router = default_router()
    except DataFileError as exc:
        print(f"sharpedges: {exc}", file=sys.stderr)
        return 2
    route = router.route(" ".join(args.text))
    if args.format == "json":
        print(json.dumps(route.to_json()))
        return 0
    print(route.skill or "no skill owns this request")
    for match in route.matches:
        print(f"  {match.score:6.2f}  {match.skill}: {match.reason}")
    return 0
