"""One `check` invocation: options from the command line, the run, fixes, output, exit code."""

from __future__ import annotations

import argparse
import difflib
import hashlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from sharpedges.diagnostics import Diagnostic, FileError
from sharpedges.engine import Engine
from sharpedges.fixes import (
    FixRefused,
    apply_edits,
    decode_source,
    encode_source,
    still_parses,
    writable_target,
    write_fixed,
)
from sharpedges.outputs import render
from sharpedges.outputs.concise import error_line
from sharpedges.runner import (
    CheckOptions,
    RunResult,
    build_engine,
    check_source,
    run_check,
    stderr_progress,
)
from sharpedges.suppression import per_file_ignored

MACHINE_FORMATS = ("json", "sarif", "github")


def check_options(args: argparse.Namespace) -> CheckOptions:
    return CheckOptions(
        paths=list(args.paths),
        select=args.select,
        extend_select=args.extend_select,
        ignore=args.ignore,
        preview=args.preview,
        use_cache=not getattr(args, "no_cache", False),
        cache_dir=getattr(args, "cache_dir", None),
        jobs=getattr(args, "jobs", None),
        shard=getattr(args, "shard", None),
        progress=None if args.format in MACHINE_FORMATS else stderr_progress(),
    )


def check_stdin(options: CheckOptions, filename: str, data: bytes) -> RunResult:
    """Standard input checked as the file `filename` would be: its config, rules and per-file-ignores."""
    from sharpedges.config import find_config
    from sharpedges.discovery import exclusion_test

    config = find_config(Path(filename).resolve())
    _, is_excluded = exclusion_test([*config.exclude, *config.extend_exclude], config.root)
    if filename != "-" and is_excluded(Path(os.path.abspath(filename)), False):
        print(
            f"sharpedges: warning: {filename}: excluded by the configured exclude patterns, not checked",
            file=sys.stderr,
        )
        return RunResult([], [], 0, {})
    result = check_source(build_engine(config, options), filename, data, options.time_limit)
    kept = [d for d in result.diagnostics if not per_file_ignored(config, d)]
    return RunResult(kept, result.errors, 1, {filename: hashlib.sha256(data).hexdigest()}, result.warnings)


def _fix_key(d: Diagnostic) -> tuple:
    return d.rule, d.line, d.column, d.end_line, d.end_column


@dataclass
class FixOutcome:
    diffs: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    fixed: int = 0
    errors: list[FileError] = field(default_factory=list)


class CheckSession:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.options = check_options(args)
        if args.paths == ["-"] and not args.stdin_filename:
            args.stdin_filename = "-"  # `check -` reads standard input, as ruff and black do
        self.stdin = sys.stdin.buffer.read() if args.stdin_filename else b""
        self._engines: dict[int, Engine] = {}

    def _check(self) -> RunResult:
        if self.args.stdin_filename:
            return check_stdin(self.options, self.args.stdin_filename, self.stdin)
        return run_check(self.options)

    def run(self) -> int:
        from sharpedges.specs import load_specs

        result = self._check()
        for warning in result.warnings:  # said once, before anything is fixed; they change no exit code
            print(f"sharpedges: warning: {warning}", file=sys.stderr)
        wants_fix = self.args.fix or self.args.diff
        fixes = FixOutcome()
        if wants_fix:
            fixes = self._fix(result)
            if self.args.diff:
                sys.stdout.write("".join(fixes.diffs))
                self._report_errors(fixes.errors)
                return 2 if fixes.errors else 1 if fixes.diffs else 0
            if self.args.stdin_filename:
                fixed_source = fixes.written[0] if fixes.written else self.stdin.decode("utf-8", "replace")
                sys.stdout.write(fixed_source)
                self._report_errors(fixes.errors)
                return 2 if fixes.errors or result.errors else 1 if len(result.diagnostics) > fixes.fixed else 0
            if fixes.written:
                result = self._check()  # report what is left after fixing
            result.errors.extend(fixes.errors)
            result.errors.sort(key=lambda e: (e.path, e.message))
        human = self.args.format not in MACHINE_FORMATS
        if self.args.statistics:  # only the table; what could not be checked goes to stderr
            from sharpedges.outputs import statistics

            sys.stdout.write(statistics.render(result, self.args.format))
            sys.stderr.write("".join(f"{error_line(e)}\n" for e in result.errors))
        else:
            sys.stdout.write(render(self.args.format, result, load_specs()))
            if self.args.fix and human:
                print(f"({fixes.fixed} fixed, {len(result.diagnostics)} remaining)")
        if result.errors:
            return 2
        if result.diagnostics and not self.args.exit_zero:
            return 1
        return 0

    @staticmethod
    def _report_errors(errors: list[FileError]) -> None:
        for error in errors:
            print(error_line(error), file=sys.stderr)

    def _fix(self, result: RunResult) -> FixOutcome:
        """Fix (or diff) the files whose reported findings have an allowed fix. Fixes are computed
        afresh from the bytes on disk (never taken from the cache) and only if those bytes are the
        ones that were checked; each edit must find the code it replaces."""
        allowed = {"safe", "unsafe"} if self.args.unsafe_fixes else {"safe"}
        wanted: dict[str, set[tuple]] = {}
        for d in result.diagnostics:
            if d.fix and d.fix.applicability in allowed:
                wanted.setdefault(d.path, set()).add(_fix_key(d))
        outcome = FixOutcome()
        for path, keys in sorted(wanted.items()):
            try:
                self._fix_file(path, keys, allowed, result.checked.get(path), outcome)
            except FixRefused as exc:
                outcome.errors.append(FileError(path, f"fix not applied: {exc}"))
        return outcome

    def _fix_file(
        self, path: str, keys: set[tuple], allowed: set[str], checked: str | None, outcome: FixOutcome
    ) -> None:
        stdin = bool(self.args.stdin_filename)
        if stdin:
            data = self.stdin
        else:
            if not self.args.diff:
                writable_target(Path(path))
            try:
                data = Path(path).read_bytes()
            except OSError as exc:
                raise FixRefused(f"cannot read: {(exc.strerror or str(exc)).lower()}") from None
        if checked is None or hashlib.sha256(data).hexdigest() != checked:
            raise FixRefused("the file changed since it was checked; run again")
        text, encoding = decode_source(data)
        fresh = check_source(self._engine_for(path), path, data, self.options.time_limit)
        fixes = [d.fix for d in fresh.diagnostics if d.fix and d.fix.applicability in allowed and _fix_key(d) in keys]
        applied = apply_edits(text, fixes)
        if applied.refused:
            outcome.errors.append(
                FileError(
                    path,
                    f"{applied.refused} fix(es) not applied: the code at the fix is not "
                    "the code it was computed for (please report this)",
                )
            )
        if applied.text == text:
            return
        if not still_parses(applied.text):
            raise FixRefused("the fixed file would not parse (please report this)")
        fixed = encode_source(applied.text, encoding)
        if self.args.diff:
            outcome.diffs.append(
                "".join(
                    difflib.unified_diff(text.splitlines(True), applied.text.splitlines(True), f"a/{path}", f"b/{path}")
                )
            )
        elif stdin:
            outcome.written.append(applied.text)
        else:
            write_fixed(Path(path), data, fixed)
            outcome.written.append(path)
        outcome.fixed += applied.applied

    def _engine_for(self, path: str) -> Engine:
        from sharpedges.config import find_config

        config = find_config(Path(path).resolve())
        if id(config) not in self._engines:
            self._engines[id(config)] = build_engine(config, self.options)
        return self._engines[id(config)]
