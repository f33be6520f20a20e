"""Applying fixes: edits to text, validated by a re-parse, written atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import libcst as cst


def _offsets(text: str) -> list[int]:
    starts = [0]
    for line in text.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    return starts


def apply_edits(text: str, fixes: list[dict]) -> tuple[str, int]:
    """Apply the edits of each fix (skipping any that overlap an earlier one); returns the new
    text and how many fixes were applied."""
    starts = _offsets(text)
    spans = []
    for fix in fixes:
        edits = [(starts[e["line"] - 1] + e["column"] - 1, starts[e["end_line"] - 1] + e["end_column"] - 1, e["content"])
                 for e in fix["edits"]]
        spans.append(sorted(edits))
    taken: list[tuple[int, int]] = []
    chosen = []
    for edits in spans:
        if any(start < end_taken and end > start_taken for start, end, _ in edits for start_taken, end_taken in taken):
            continue
        taken += [(start, end) for start, end, _ in edits]
        chosen += edits
    for start, end, content in sorted(chosen, reverse=True):
        text = text[:start] + content + text[end:]
    return text, len([s for s in spans if s])


def still_parses(text: str) -> bool:
    try:
        cst.parse_module(text)
    except Exception:
        return False
    return True


def write_atomically(path: Path, text: str) -> None:
    """Write to a temporary file beside `path` and rename it over: a crash half-way leaves the
    original intact. Keeps the file's permissions."""
    mode = path.stat().st_mode & 0o7777
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
