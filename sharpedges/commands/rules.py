"""`sharpedges rules`: every rule with its severity, fix safety and whether it is on by default."""

from __future__ import annotations

import json
import sys


def register(subparsers) -> None:
    parser = subparsers.add_parser("rules", help="list the lint rules")
    parser.add_argument("--format", choices=("text", "json"), default="text",
                        help="text for people, json for scripts (default: text)")
    parser.set_defaults(handler=run)


def run(args) -> int:
    from sharpedges.specs import load_specs

    specs = load_specs()
    if args.format == "json":
        rows = [{"code": s.code, "name": s.name, "title": s.title, "severity": s.severity, "fix": s.fix,
                 "default": s.default, "precision": s.precision, "skill": s.skill,
                 "reference_impl": s.reference_impl} for s in specs.values()]
        json.dump({"rules": rows}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    print(f"{'code':7} {'name':32} {'severity':8} {'fix':6} {'set':7} title")
    for s in specs.values():
        print(f"{s.code:7} {s.name:32} {s.severity:8} {s.fix:6} {'default' if s.default else 'opt-in':7} {s.title}")
    print("\nopt-in rules run only when selected by code or with --preview. "
          "Precision on the pinned real corpus (transformers, timm, x-transformers, torchtune, litgpt):")
    for s in specs.values():
        summary = s.precision.split(". ")[0].strip() or "not yet measured"
        print(f"  {s.code} ({'default' if s.default else 'opt-in'}): {summary}")
    return 0
