"""Which files to check: directories recursively, `.py`/`.pyi` files, `.gitignore`, excludes."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pathspec

from sharpedges.diagnostics import FileError

PYTHON_SUFFIXES = (".py", ".pyi")


@dataclass(frozen=True)
class Candidate:
    display: str  # as the user spelled it (relative stays relative)
    path: Path


def _gitignore_spec(directory: Path) -> pathspec.PathSpec | None:
    ignore = directory / ".gitignore"
    try:
        lines = ignore.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    return pathspec.PathSpec.from_lines("gitwildmatch", lines)


def _exclude_spec(patterns: list[str]) -> pathspec.PathSpec:
    return pathspec.PathSpec.from_lines("gitwildmatch", patterns)


def discover(arguments: list[str], exclude: list[str], errors: list[FileError],
             force_explicit: bool = False) -> Iterator[Candidate]:
    """Yield the files to check, in a deterministic order. Files named explicitly are checked
    whatever their suffix or excludes say unless `force_explicit` is False and they are excluded;
    problems (missing paths, symlink loops) go to `errors`."""
    excluded = _exclude_spec(exclude)
    seen: set[str] = set()
    for argument in arguments:
        path = Path(argument)
        try:
            mode = path.stat().st_mode
        except OSError as exc:
            reason = "symlink loop" if exc.errno == 40 else (exc.strerror or str(exc)).lower()
            errors.append(FileError(argument, f"cannot read: {reason}"))
            continue
        if stat.S_ISDIR(mode):
            yield from _walk(path, argument, excluded, errors, seen)
        else:
            if excluded.match_file(path.as_posix()) and not force_explicit:
                continue
            key = os.path.realpath(path)
            if key not in seen:
                seen.add(key)
                yield Candidate(argument, path)


def _walk(root: Path, display_root: str, excluded: pathspec.PathSpec, errors: list[FileError],
          seen: set[str]) -> Iterator[Candidate]:
    ignores: list[tuple[Path, pathspec.PathSpec]] = []
    visited_dirs: set[str] = set()

    def is_ignored(path: Path, is_dir: bool) -> bool:
        relative = path.relative_to(root).as_posix() + ("/" if is_dir else "")
        if excluded.match_file(relative) or excluded.match_file(path.name + ("/" if is_dir else "")):
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
            if is_ignored(path, is_dir):
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
