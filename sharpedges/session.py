"""One `check` invocation: options from the command line, the run, fixes, output, exit code."""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

from sharpedges.diagnostics import FileError
from sharpedges.fixes import apply_edits, still_parses, write_atomically
from sharpedges.outputs import render
from sharpedges.runner import CheckOptions, RunResult, build_engine, check_source, run_check, stderr_progress

MACHINE_FORMATS = ("json", "sarif", "github")


def check_options(args: argparse.Namespace) -> CheckOptions:
    return CheckOptions(
        paths=list(args.paths), select=args.select, extend_select=args.extend_select, ignore=args.ignore,
        preview=args.preview, use_cache=not getattr(args, "no_cache", False), cache_dir=getattr(args, "cache_dir", None),
        jobs=getattr(args, "jobs", None), shard=getattr(args, "shard", None),
        progress=None if args.format in MACHINE_FORMATS else stderr_progress())


def check_stdin(options: CheckOptions, filename: str) -> RunResult:
    from sharpedges.config import find_config

    engine = build_engine(find_config(Path(filename).resolve()), options)
    data = sys.stdin.buffer.read()
    result = check_source(engine, filename, data, options.time_limit)
    return RunResult(result.diagnostics, result.errors, 1)


class CheckSession:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.options = check_options(args)

    def _check(self) -> RunResult:
        if self.args.stdin_filename:
            return check_stdin(self.options, self.args.stdin_filename)
        return run_check(self.options)

    def run(self) -> int:
        from sharpedges.specs import load_specs

        result = self._check()
        wants_fix = self.args.fix or self.args.diff
        if wants_fix and not self.args.stdin_filename:
            changed, fix_errors = self._fix(result)
            if self.args.diff:
                sys.stdout.write("".join(changed))
                return 1 if changed else 0
            if changed:
                result = self._check()  # report what is left after fixing
            result.errors.extend(fix_errors)
            result.errors.sort(key=lambda e: (e.path, e.message))
        if self.args.statistics:  # only the table; what could not be checked goes to stderr
            from sharpedges.outputs import statistics
            from sharpedges.outputs.concise import error_line

            sys.stdout.write(statistics.render(result, self.args.format))
            sys.stderr.write("".join(f"{error_line(e)}\n" for e in result.errors))
        else:
            sys.stdout.write(render(self.args.format, result, load_specs()))
        if result.errors:
            return 2
        if result.diagnostics and not self.args.exit_zero:
            return 1
        return 0

    def _fix(self, result: RunResult) -> tuple[list[str], list[FileError]]:
        """Apply (or diff) the allowed fixes per file. Returns diff chunks or written paths, and errors."""
        allowed = {"safe", "unsafe"} if self.args.unsafe_fixes else {"safe"}
        by_path: dict[str, list[dict]] = {}
        for d in result.diagnostics:
            if d.fix and d.fix["applicability"] in allowed:
                by_path.setdefault(d.path, []).append(d.fix)
        changed: list[str] = []
        errors: list[FileError] = []
        for path, fixes in sorted(by_path.items()):
            file = Path(path)
            try:
                original = file.read_bytes().decode("utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                errors.append(FileError(path, f"fix not applied: cannot read: {exc}"))
                continue
            fixed, _ = apply_edits(original, fixes)
            if fixed == original:
                continue
            if not still_parses(fixed):
                errors.append(FileError(path, "fix not applied: the fixed file would not parse (please report this)"))
                continue
            if self.args.diff:
                changed.append("".join(difflib.unified_diff(original.splitlines(True), fixed.splitlines(True),
                                                            f"a/{path}", f"b/{path}")))
            else:
                write_atomically(file, fixed)
                changed.append(path)
        return changed, errors
