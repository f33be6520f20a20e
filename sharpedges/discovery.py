"""Which files to check: directories recursively, `.py`/`.pyi` files, `.gitignore`, excludes."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pathspec

from sharpedges.diagnostics import FileError

PYTHON_SUFFIXES = (".py", ".pyi")


@dataclass(frozen=True)
class Candidate:
    display: str  # as the user spelled it (relative stays relative)
    path: Path


def gitignore_spec(patterns: list[str]) -> pathspec.PathSpec:
    """Gitignore-style patterns, matched by RE2 (linear time): a pattern such as
    `*a*a*a*a*a*a*a*a*a*ab` makes a backtracking matcher run for minutes on a 60-character name."""
    return pathspec.PathSpec.from_lines("gitignore", patterns, backend="re2")


def _gitignore_spec(directory: Path) -> pathspec.PathSpec | None:
    """The directory's `.gitignore`, read only when it is a regular file: opening a FIFO named
    `.gitignore` for reading would block the walk forever."""
    try:
        descriptor = os.open(directory / ".gitignore", os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    with os.fdopen(descriptor, "rb") as handle:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            return None
        lines = handle.read().decode("utf-8", errors="replace").splitlines()
    return gitignore_spec(lines)


def exclusion_test(exclude: list[str], exclude_root: Path | None):
    """`is_excluded(path, is_dir)`: the patterns match the path relative to `exclude_root` (the
    config's directory), or its bare name."""
    excluded = gitignore_spec(exclude)
    anchor = Path(os.path.abspath(exclude_root or Path.cwd()))

    def is_excluded(path: Path, is_dir: bool) -> bool:
        suffix = "/" if is_dir else ""
        try:
            if excluded.match_file(Path(os.path.abspath(path)).relative_to(anchor).as_posix() + suffix):
                return True
        except ValueError:
            pass
        return excluded.match_file(path.name + suffix)

    return excluded, is_excluded


def discover(
    arguments: list[str],
    exclude: list[str],
    errors: list[FileError],
    exclude_root: Path | None = None,
    within: Callable[[Path], bool] | None = None,
    notices: list[str] | None = None,
) -> Iterator[Candidate]:
    """Yield the files to check, in a deterministic order. Exclude patterns match paths relative
    to `exclude_root` (the config's directory) or to the directory walked, and bare names;
    problems (missing paths, symlink loops) go to `errors`, and a file named in `arguments` that
    an exclude pattern drops is said in `notices`. With `within`, a directory or file for which it
    is false is passed over without a word: never entered, listed or named."""
    excluded, is_excluded = exclusion_test(exclude, exclude_root)

    seen: set[str] = set()
    for argument in arguments:
        path = Path(argument)
        try:
            mode = path.stat().st_mode
        except OSError as exc:
            reason = "symlink loop" if exc.errno == errno.ELOOP else (exc.strerror or str(exc)).lower()
            errors.append(FileError(argument, f"cannot read: {reason}"))
            continue
        if stat.S_ISDIR(mode):
            found = 0
            for candidate in _walk(path, argument, excluded, is_excluded, errors, seen, within or (lambda _: True)):
                found += 1
                yield candidate
            if not found and notices is not None:
                notices.append(f"{argument}: no Python files to check in this directory")
        else:
            if is_excluded(path, False):
                if notices is not None:
                    notices.append(f"{argument}: excluded by the configured exclude patterns, not checked")
                continue
            key = os.path.realpath(path)
            if key not in seen:
                seen.add(key)
                yield Candidate(argument, path)


def _walk(
    root: Path,
    display_root: str,
    excluded: pathspec.PathSpec,
    is_excluded,
    errors: list[FileError],
    seen: set[str],
    within: Callable[[Path], bool],
) -> Iterator[Candidate]:
    ignores: list[tuple[Path, pathspec.PathSpec]] = []
    visited_dirs: set[str] = set()

    def is_ignored(path: Path, is_dir: bool) -> bool:
        relative = path.relative_to(root).as_posix() + ("/" if is_dir else "")
        if excluded.match_file(relative) or is_excluded(path, is_dir):
            return True
        for base, spec in ignores:
            if base == path or base not in path.parents:
                continue
            if spec.match_file(path.relative_to(base).as_posix() + ("/" if is_dir else "")):
                return True
        return False

    def walk(directory: Path) -> Iterator[Candidate]:
        real = os.path.realpath(directory)
        if real in visited_dirs:
            errors.append(FileError(_display(directory), "symlink loop, not followed"))
            return
        visited_dirs.add(real)
        spec = _gitignore_spec(directory)
        if spec is not None:
            ignores.append((directory, spec))
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            errors.append(FileError(_display(directory), f"cannot read directory: {exc.strerror}"))
            return
        for entry in entries:
            path = Path(entry.path)
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if is_ignored(path, is_dir) or not within(path):
                continue
            if is_dir:
                yield from walk(path)
            elif entry.name.endswith(PYTHON_SUFFIXES):
                if entry.is_symlink() and not os.path.exists(entry.path):
                    errors.append(FileError(_display(path), "cannot read: broken symlink or symlink loop"))
                    continue
                key = os.path.realpath(path)
                if key not in seen:
                    seen.add(key)
                    yield Candidate(_display(path), path)

    def _display(path: Path) -> str:
        relative = path.relative_to(root)
        return (Path(display_root) / relative).as_posix() if str(relative) != "." else display_root

    yield from walk(root)
