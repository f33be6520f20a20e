"""`sharpedges skill ID [--section NAME]`: one skill as Markdown."""

from __future__ import annotations

import argparse
import sys

# Kept here, not imported from the renderer, so `--help` stays cheap; a test keeps the two equal.
SECTIONS = (
    "overview",
    "principles",
    "knowledge",
    "glossary",
    "patterns",
    "anti-patterns",
    "sharp-edges",
    "tradeoffs",
    "failure-modes",
    "decision-guides",
    "collaboration",
    "references",
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "skill",
        help="show one expert skill as Markdown",
        description="Show one expert skill as Markdown, whole or one section.",
    )
    parser.add_argument("skill_id", metavar="ID", help="skill id, as listed by `sharpedges skills`")
    parser.add_argument("--section", metavar="NAME", help=f"one of: {', '.join(SECTIONS)}")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from sharpedges.knowledge.registry import UnknownSkillError, load_knowledge
    from sharpedges.knowledge.render import render_markdown
    from sharpedges.yaml_io import DataFileError

    if args.section is not None and args.section not in SECTIONS:
        print(f"sharpedges: unknown section '{args.section}' (choose from: {', '.join(SECTIONS)})", file=sys.stderr)
        return 2
    try:
        kb = load_knowledge()
        skill = kb.skill(args.skill_id)
    except (DataFileError, UnknownSkillError) as exc:
        print(f"sharpedges: {exc}", file=sys.stderr)
        return 2
    text = render_markdown(kb, skill, args.section)
    if not text:
        print(f"sharpedges: skill '{skill.id}' has no {args.section}", file=sys.stderr)
        return 0
    sys.stdout.write(text)
    return 0
