"""Each finding with its whole message, its source lines, a caret under the span, and where the
rule's doc lives."""

from __future__ import annotations

import textwrap
from pathlib import Path

from sharpedges.lines import source_lines
from sharpedges.outputs.concise import LINE_WIDTH, diagnostic_line, error_line, summary
from sharpedges.outputs.style import Painter, colour_enabled


def _source_lines(path: str) -> list[str]:
    try:
        return source_lines(Path(path).read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return []


def render(result, specs) -> str:
    paint = Painter(colour_enabled())
    out: list[str] = []
    cache: dict[str, list[str]] = {}
    for d in result.diagnostics:
        lines = cache.setdefault(d.path, _source_lines(d.path))
        out.append(diagnostic_line(d, paint))
        out += textwrap.wrap(d.message, LINE_WIDTH, initial_indent="  ", subsequent_indent="  ", break_on_hyphens=False)
        width = len(str(d.end_line))
        for number in range(d.line, min(d.end_line, d.line + 3) + 1):
            if 0 < number <= len(lines):
                out.append(f"  {number:>{width}} | {lines[number - 1]}")
                if number == d.line:
                    end = d.end_column if d.end_line == d.line else len(lines[number - 1]) + 1
                    out.append(f"  {' ' * width} | {' ' * (d.column - 1)}{paint('^' * max(1, end - d.column), 'red')}")
        if d.fix:
            how = "" if d.fix.safe else ": run with --fix --unsafe-fixes"
            out.append(f"  = fix available ({d.fix.applicability}){how}")
        out.append(f"  = help: {d.help}")
        out.append("")
    out += [error_line(e, paint) for e in result.errors]
    out.append(summary(result, paint))
    return "\n".join(out) + "\n"
