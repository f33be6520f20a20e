"""`sharpedges review`: the findings a change introduces, explained for a pull-request review."""

from __future__ import annotations

import argparse
import json
import sys

REVIEW_FORMATS = ("markdown", "json", "github", "sarif")


def register(subparsers) -> None:
    from sharpedges.commands.check import add_rule_selection

    parser = subparsers.add_parser(
        "review",
        help="review the Python files changed since a revision",
        description="Lint the Python files changed since --base (default: the merge base with the default "
        "branch, else HEAD; the working tree, staged or not, and untracked files count) and report "
        "the findings on changed lines, each with why it matters and how to fix it.",
    )
    parser.add_argument(
        "paths",
        nargs="*",
        default=[],
        help="only changes under these paths (default: the whole repository; '..' works)",
    )
    parser.add_argument("--base", metavar="REV", default=None, help="compare against this revision")
    parser.add_argument(
        "--diff-file",
        metavar="FILE",
        default=None,
        help="read the change as a unified diff from FILE ('-': standard input) instead of git",
    )
    parser.add_argument("--all-lines", action="store_true", help="keep findings anywhere in the changed files")
    add_rule_selection(parser)
    parser.add_argument(
        "--format",
        choices=REVIEW_FORMATS,
        default="markdown",
        help="markdown: a review to post on a pull request (default); json, sarif: for tools; "
        "github: GitHub Actions annotations",
    )
    parser.add_argument("--exit-zero", action="store_true", help="exit 0 even when problems are found")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the result cache")
    parser.set_defaults(handler=run)


def _changes(args: argparse.Namespace):
    from sharpedges.review import ReviewError, diff_changes, git_changes

    if args.diff_file is None:
        return git_changes(args.base, args.paths)
    if args.base is not None:
        raise ReviewError("--base and --diff-file exclude each other: the diff already says what changed")
    if args.diff_file == "-":
        return diff_changes(sys.stdin.read(), args.paths, "standard input")
    try:
        with open(args.diff_file, encoding="utf-8", errors="replace") as handle:
            return diff_changes(handle.read(), args.paths, args.diff_file)
    except OSError as exc:
        raise ReviewError(f"cannot read {args.diff_file}: {exc.strerror}") from None


def run(args: argparse.Namespace) -> int:
    from sharpedges.config import ConfigError
    from sharpedges.registry import RegistryError
    from sharpedges.review import ReviewError, review_changes, review_document
    from sharpedges.runner import CheckOptions
    from sharpedges.yaml_io import DataFileError

    options = CheckOptions(
        select=args.select,
        extend_select=args.extend_select,
        ignore=args.ignore,
        preview=args.preview,
        use_cache=not args.no_cache,
    )
    try:
        review = review_changes(_changes(args), options, all_lines=args.all_lines)
    except (ReviewError, ConfigError, RegistryError, DataFileError, ValueError) as exc:
        print(f"sharpedges: error: {exc}", file=sys.stderr)
        return 2
    if args.format == "markdown":
        from sharpedges.outputs.markdown import render as render_markdown

        sys.stdout.write(render_markdown(review))
    elif args.format == "json":
        sys.stdout.write(json.dumps(review_document(review), indent=2) + "\n")
    else:
        from sharpedges.outputs import render
        from sharpedges.review import paths_from_repository_root
        from sharpedges.specs import load_specs

        # GitHub places an annotation by its path from the repository root, wherever review ran.
        result = paths_from_repository_root(review.result) if args.format == "github" else review.result
        sys.stdout.write(render(args.format, result, load_specs()))
    if review.result.errors:
        return 2
    return 1 if review.result.diagnostics and not args.exit_zero else 0
