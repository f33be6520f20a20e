"""`sharpedges skills`: list the expert skills."""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "skills", help="list the expert skills", description="List the expert skills and what each one covers."
    )
    parser.add_argument(
        "--format", choices=("text", "json"), default="text", help="text for people, json for scripts (default: text)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from sharpedges.knowledge.registry import load_knowledge
    from sharpedges.yaml_io import DataFileError

    try:
        kb = load_knowledge()
    except DataFileError as exc:
        print(f"sharpedges: {exc}", file=sys.stderr)
        return 2
    if args.format == "json":
        entries = [
            {
                "id": skill.id,
                "name": skill.name,
                "version": skill.version,
                "description": skill.description,
                "sharp_edges": [edge.id for edge in skill.sharp_edges],
                "rules": [code for edge in skill.sharp_edges for code in edge.rules],
                "handoffs": skill.delegates,
            }
            for skill in kb.skills.values()
        ]
        print(json.dumps({"skills": entries}, indent=2))
        return 0
    width = max(len(skill_id) for skill_id in kb.skills)
    for skill in kb.skills.values():
        rules = sum(len(edge.rules) for edge in skill.sharp_edges)
        print(f"{skill.id:<{width}}  {skill.name} ({len(skill.sharp_edges)} sharp edges, {rules} lint rules)")
    return 0
