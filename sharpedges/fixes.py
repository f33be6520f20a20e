"""Applying fixes: edits to text, each checked against the code it replaces, written safely.

A fix may only ever change the code it was computed for. Three guards keep a wrong file from
being written:
- lines are split only where Python splits them (see `sharpedges.lines`);
- each edit carries the code it replaces (`original`), and an edit whose span holds anything else
  is refused;
- the file is decoded and encoded as Python reads it (a BOM, a coding cookie), and written only
  if its bytes are still the ones that were checked.
"""

from __future__ import annotations

import codecs
import os
import stat
import tempfile
import tokenize
from collections.abc import Iterable
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import libcst as cst

from sharpedges.diagnostics import DiagnosticFix, Edit
from sharpedges.lines import line_starts, span_offsets


@dataclass
class Applied:
    text: str
    applied: int = 0
    refused: int = 0  # fixes whose span no longer holds the code they were computed for


def apply_edits(text: str, fixes: Iterable[DiagnosticFix]) -> Applied:
    """Apply the edits of each fix, skipping a fix that overlaps an earlier one and refusing one
    whose span does not hold exactly the code it replaces."""
    starts = line_starts(text)
    result = Applied(text)
    taken: list[tuple[int, int]] = []
    chosen: list[tuple[int, int, str]] = []
    for fix in fixes:
        located = [_located(text, starts, edit) for edit in fix.edits]
        edits = [edit for edit in located if edit is not None]
        if len(edits) != len(located):
            result.refused += 1
            continue
        if any(start < end_taken and end > start_taken for start, end, _ in edits for start_taken, end_taken in taken):
            continue
        taken += [(start, end) for start, end, _ in edits]
        chosen += edits
        result.applied += 1 if edits else 0
    for start, end, content in sorted(chosen, reverse=True):
        result.text = result.text[:start] + content + result.text[end:]
    return result


def _located(text: str, starts: list[int], edit: Edit) -> tuple[int, int, str] | None:
    """(start, end, new text) of an edit, or None when its span does not hold the code it replaces."""
    span = span_offsets(starts, edit)
    if span is None or span[0] > span[1] or text[span[0] : span[1]] != edit.original:
        return None
    return span[0], span[1], edit.content


def still_parses(text: str) -> bool:
    try:
        cst.parse_module(text)
    except Exception:
        return False
    return True


class FixRefused(Exception):
    """A fix that must not be written, with the one-line reason."""


def decode_source(data: bytes) -> tuple[str, str]:
    """The text of a Python file and the encoding to write it back with, as Python reads it: a
    UTF-8 BOM is kept (`utf-8-sig`), a coding cookie is honoured."""
    try:
        encoding, _ = tokenize.detect_encoding(BytesIO(data).readline)
        return data.decode(encoding), encoding
    except (SyntaxError, LookupError, UnicodeDecodeError) as exc:
        raise FixRefused(f"cannot decode: {exc}") from None


def encode_source(text: str, encoding: str) -> bytes:
    try:
        return text.encode(encoding)
    except UnicodeEncodeError:
        raise FixRefused(
            f"the fixed code cannot be written in the file's encoding ({codecs.lookup(encoding).name})"
        ) from None


def writable_target(path: Path) -> os.stat_result:
    """The file's status, when a fix may be written to it; otherwise FixRefused says why."""
    try:
        info = os.lstat(path)
    except OSError as exc:
        raise FixRefused(f"cannot read: {(exc.strerror or str(exc)).lower()}") from None
    if stat.S_ISLNK(info.st_mode):
        raise FixRefused("is a symbolic link; fix the file it points to instead")
    if not stat.S_ISREG(info.st_mode):
        raise FixRefused("not a regular file")
    if not info.st_mode & stat.S_IWUSR:
        raise FixRefused("the file is read-only")
    return info


def write_fixed(path: Path, expected: bytes, data: bytes) -> None:
    """Replace the file's bytes `expected` by `data`, keeping its mode, owner and hard links.

    The file is read again just before writing: if it no longer holds `expected`, nothing is
    written. A file with one link is replaced atomically (temporary file + rename); a file with
    several links is rewritten in place, so every link sees the fix."""
    info = writable_target(path)
    try:
        if path.read_bytes() != expected:
            raise FixRefused("the file changed since it was checked; run again")
        if info.st_nlink > 1:
            _write_in_place(path, data)
        else:
            _replace_atomically(path, data, info)
    except OSError as exc:
        raise FixRefused(f"cannot write: {(exc.strerror or str(exc)).lower()}") from None


def _write_in_place(path: Path, data: bytes) -> None:
    with open(path, "r+b") as handle:
        handle.write(data)
        handle.truncate()
        handle.flush()
        os.fsync(handle.fileno())


def _replace_atomically(path: Path, data: bytes, info: os.stat_result) -> None:
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, stat.S_IMODE(info.st_mode))
        try:
            os.chown(temporary, info.st_uid, info.st_gid)
        except PermissionError:
            pass  # only root may give a file away; the file keeps the writer's owner then
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
