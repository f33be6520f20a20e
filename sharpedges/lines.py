"""Lines as Python numbers them: split only at `\\r\\n`, `\\r` and `\\n`.

`str.splitlines()` also splits at form feeds, `\\x1c`-`\\x1e`, `\\x85` and U+2028/2029, which
Python's tokenizer (and libcst's positions) treat as ordinary characters: a line number or an
offset computed with it lands on the wrong code.
"""

from __future__ import annotations

import re

from sharpedges.diagnostics import Edit

LINE_BREAK = re.compile(r"\r\n|\r|\n")


def line_starts(text: str) -> list[int]:
    """Offsets where each line of `text` starts."""
    return [0, *(match.end() for match in LINE_BREAK.finditer(text))]


def source_lines(text: str) -> list[str]:
    """The lines of `text`, without their line breaks."""
    lines = LINE_BREAK.split(text)
    return lines[:-1] if lines and lines[-1] == "" else lines


def span_offsets(starts: list[int], edit: Edit) -> tuple[int, int] | None:
    """Character offsets of an edit's 1-based line/column span, or None when it lies outside."""
    if not (1 <= edit.line <= len(starts) and 1 <= edit.end_line <= len(starts)):
        return None
    return starts[edit.line - 1] + edit.column - 1, starts[edit.end_line - 1] + edit.end_column - 1
