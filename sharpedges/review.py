"""A review of a change: which lines changed (git or a unified diff), the findings on them, and
the expert explanation of each rule found, ready for the Markdown / JSON / GitHub / SARIF faces.

Data flows one way: (git diff | diff text) -> changed lines per file -> run_check on the changed
Python files -> keep findings that touch a changed line -> explanations from the knowledge base.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sharpedges.diagnostics import Diagnostic
from sharpedges.discovery import PYTHON_SUFFIXES
from sharpedges.runner import CheckOptions, RunResult, run_check

SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}
# Tried in order when no --base is given; the first that exists is the default branch.
DEFAULT_BRANCH_CANDIDATES = ("origin/main", "origin/master", "main", "master")
_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


class ReviewError(Exception):
    """The change could not be determined (not a git repository, unknown revision, bad diff)."""


@dataclass(frozen=True)
class ChangeSet:
    # display path -> new-side line numbers that were added or changed; None: the whole file is new
    lines: dict[str, frozenset[int] | None]
    base: str  # what the change is measured against, for people: "main", "merge base with origin/main (1a2b3c4)"


@dataclass(frozen=True)
class Review:
    result: RunResult  # only the findings that are kept
    explanations: dict[str, dict[str, Any]]  # rule code -> sharpedges.knowledge.explain.explain_rule()
    base: str
    files: list[str]  # the changed Python files that were checked
    all_lines: bool


_C_ESCAPES = {"a": 7, "b": 8, "t": 9, "n": 10, "v": 11, "f": 12, "r": 13, '"': 34, "\\": 92}


def unquote_path(text: str) -> str:
    """A path as git prints it: C-style quoted ("a\\"b\\tc.py", octal bytes) when it holds a quote,
    a backslash or a control character; plain otherwise."""
    if not (len(text) >= 2 and text.startswith('"') and text.endswith('"')):
        return text
    out = bytearray()
    body, index = text[1:-1], 0
    while index < len(body):
        char = body[index]
        if char != "\\":
            out += char.encode("utf-8", "surrogateescape")
            index += 1
        elif body[index + 1 : index + 4].isdigit() and len(body[index + 1 : index + 4]) == 3:
            out.append(int(body[index + 1 : index + 4], 8) & 0xFF)
            index += 4
        elif body[index + 1 : index + 2] in _C_ESCAPES:
            out.append(_C_ESCAPES[body[index + 1]])
            index += 2
        else:
            raise ReviewError(f"malformed quoted path in the diff: {text}")
    return out.decode("utf-8", "surrogateescape")


def _target(header: str) -> str:
    """The path of a `+++ ` header line: quoted or not, a trailing tab and date dropped."""
    target = header[4:]
    target = target if target.startswith('"') else target.split("\t")[0].strip()
    return unquote_path(target.rstrip("\t"))


def parse_unified_diff(text: str) -> dict[str, frozenset[int]]:
    """New-side line numbers of the added lines per file of a unified diff (git or `diff -u`).
    Deleted files are left out; `a/` and `b/` prefixes are dropped; quoted paths are unquoted.
    Hunk lengths are counted, so an added line that reads "++ x" is not mistaken for a file
    header; a hunk whose counts run past its lines (into the next header) is rejected."""
    changed: dict[str, set[int]] = {}
    current: set[int] = set()  # a deleted file's hunks are counted into a set nobody keeps
    old_left = new_left = line_number = 0
    # Split on "\n" only: str.splitlines() also splits on \x1c, \x85, U+2028 ... inside a line.
    rows = text.split("\n")
    for number, raw in enumerate(rows[:-1] if rows[-1] == "" else rows, 1):
        raw = raw[:-1] if raw.endswith("\r") else raw
        if old_left > 0 or new_left > 0:
            if raw.startswith("+"):
                current.add(line_number)
                line_number, new_left = line_number + 1, new_left - 1
            elif raw.startswith("-"):
                old_left -= 1
            elif raw.startswith(" ") or raw == "":  # context ("" when a mailer stripped the space)
                line_number, old_left, new_left = line_number + 1, old_left - 1, new_left - 1
            elif not raw.startswith("\\"):  # "\ No newline at end of file" is no line
                raise ReviewError(f"malformed diff at line {number}: the hunk before it counts more lines than it has")
            if old_left < 0 or new_left < 0:
                raise ReviewError(f"malformed diff at line {number}: more lines than its hunk header counts")
        elif raw.startswith("+++ "):
            target = _target(raw)
            current = (
                set()
                if target == "/dev/null"
                else changed.setdefault(target[2:] if target.startswith("b/") else target, set())
            )
        elif hunk := _HUNK.match(raw):
            old_left = int(hunk.group(2) or 1)
            line_number, new_left = int(hunk.group(3)), int(hunk.group(4) or 1)
    if old_left > 0 or new_left > 0:
        raise ReviewError("malformed diff: the last hunk counts more lines than it has")
    return {path: frozenset(lines) for path, lines in changed.items()}


def _git(*args: str) -> str:
    try:
        completed = subprocess.run(
            ["git", "-c", "core.quotepath=off", *args],
            capture_output=True,
            check=False,
            encoding="utf-8",
            errors="surrogateescape",
        )
    except FileNotFoundError:
        raise ReviewError("git is not installed; pass a diff with --diff-file") from None
    if completed.returncode != 0:
        raise ReviewError(f"git {args[0]} failed: {completed.stderr.strip() or completed.stdout.strip()}")
    return completed.stdout


def _verified(rev: str) -> str | None:
    try:
        return _git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").strip()
    except ReviewError:
        return None


def default_base() -> tuple[str, str]:
    """(revision, description): the merge base with the default branch, else HEAD."""
    try:
        origin_head = _git("symbolic-ref", "--quiet", "--short", "refs/remotes/origin/HEAD").strip()
    except ReviewError:
        origin_head = ""
    for branch in filter(None, (origin_head, *DEFAULT_BRANCH_CANDIDATES)):
        if _verified(branch):
            merge_base = _git("merge-base", branch, "HEAD").strip()
            return merge_base, f"merge base with {branch} ({merge_base[:7]})"
    return "HEAD", "HEAD"


def repository_root() -> str:
    return _git("rev-parse", "--show-toplevel").rstrip("\n")


def git_changes(base: str | None, paths: list[str]) -> ChangeSet:
    """Changed lines between `base` (default: see default_base) and the working tree, staged or
    not, plus untracked files that are not ignored, anywhere in the repository (or under `paths`,
    which may lead outside the current directory: `..`, `../model.py`). Paths in the result are
    relative to the current directory, as `check` shows them."""
    top = repository_root()  # a clear error outside a repository
    if _verified("HEAD") is None:
        raise ReviewError("the repository has no commits yet; pass a diff with --diff-file")
    if base is None:
        revision, description = default_base()
    elif _verified(base) is None:
        raise ReviewError(f"unknown revision '{base}'")
    else:
        revision, description = base, base
    pathspec = ["--", *paths] if paths else ["--", ":/"]  # ":/": the whole repository, wherever we stand
    here = os.getcwd()

    def from_root(path: str) -> str:
        return os.path.relpath(os.path.join(top, path), here)

    # No --relative: it drops every change outside the current directory, even ones named in `paths`.
    diff = _git("diff", "--no-color", "--no-ext-diff", "--no-renames", "--unified=0", revision, *pathspec)
    lines: dict[str, frozenset[int] | None] = {
        from_root(path): changed for path, changed in parse_unified_diff(diff).items()
    }
    untracked = _git("ls-files", "-z", "--full-name", "--others", "--exclude-standard", *pathspec)
    for path in filter(None, untracked.split("\0")):
        lines[from_root(path)] = None
    return ChangeSet(lines, description)


def paths_from_repository_root(result: RunResult) -> RunResult:
    """The same result with paths relative to the repository root (GitHub annotations need them);
    unchanged outside a repository."""
    try:
        top = repository_root()
    except ReviewError:
        return result

    def rooted(path: str) -> str:
        return Path(os.path.relpath(os.path.abspath(path), top)).as_posix()

    return RunResult(
        [replace(d, path=rooted(d.path)) for d in result.diagnostics],
        [replace(e, path=rooted(e.path)) for e in result.errors],
        result.files,
    )


def diff_changes(text: str, paths: list[str], source: str) -> ChangeSet:
    """Changed lines from a unified diff's text, kept to files under `paths` (all when empty)."""
    if text.strip() and not re.search(r"^\+\+\+ ", text, re.MULTILINE):
        raise ReviewError(f"{source}: not a unified diff (no '+++' file header)")
    lines = parse_unified_diff(text)
    prefixes = [os.path.normpath(path) for path in paths]

    def wanted(path: str) -> bool:
        normal = os.path.normpath(path)
        return not prefixes or any(p == "." or normal == p or normal.startswith(p + os.sep) for p in prefixes)

    return ChangeSet({path: changed for path, changed in lines.items() if wanted(path)}, f"the diff in {source}")


def touches_change(diagnostic: Diagnostic, changes: dict[str, frozenset[int] | None]) -> bool:
    """Whether the change touches the finding's lines or any location its claim rests on: a
    change that inverts the mask where it is built is what causes the finding where it is used."""
    for path, first, last in diagnostic.related_spans():
        if path not in changes:
            continue
        changed = changes[path]
        if changed is None or any(line in changed for line in range(first, last + 1)):
            return True
    return False


def severity_key(diagnostic: Diagnostic) -> tuple:
    return (SEVERITY_ORDER[diagnostic.severity], diagnostic.line, diagnostic.column, diagnostic.rule)


def review_changes(changes: ChangeSet, options: CheckOptions, all_lines: bool = False) -> Review:
    """Lint the changed Python files and keep the findings on changed lines (all with `all_lines`)."""
    from sharpedges.knowledge.explain import explain_rule

    files = sorted(path for path in changes.lines if path.endswith(PYTHON_SUFFIXES))
    result = run_check(replace(options, paths=files)) if files else RunResult([], [], 0)
    kept = [d for d in result.diagnostics if all_lines or touches_change(d, changes.lines)]
    explanations = {code: explain_rule(code) for code in sorted({d.rule for d in kept})}
    return Review(RunResult(kept, result.errors, result.files), explanations, changes.base, files, all_lines)


def explanation_fields(explanation: dict[str, Any]) -> dict[str, Any]:
    """What a reviewer needs beside a diagnostic: why (the sharp edge), how it shows, the fix."""
    from sharpedges.docs import reference_excerpt

    edge = explanation["sharp_edge"]
    return {
        "title": explanation["title"],
        "why": edge["why"],
        "symptoms": edge["symptoms"],
        "use_instead": explanation["use_instead"],
        "reference_impl": explanation["reference_impl"],
        "reference_location": reference_excerpt(explanation["reference_impl"])[0],
        "skill": f"{explanation['skill']['id']}#{edge['id']}",
    }


def review_document(review: Review) -> dict[str, Any]:
    """The `check --format json` document (CONVENTIONS.md), each diagnostic with an `explanation`,
    and a `review` object saying what was compared."""
    from sharpedges.outputs.json import document

    data = document(review.result)
    for item in data["diagnostics"]:
        item["explanation"] = explanation_fields(review.explanations[item["rule"]])
    data["review"] = {"base": review.base, "files": review.files, "all_lines": review.all_lines}
    return data
