"""GitHub Actions workflow commands: one `::error`/`::warning`/`::notice` line per finding."""

from __future__ import annotations

import re

LEVELS = {"error": "error", "warning": "warning", "info": "notice"}
POSITION = re.compile(r"\bat (\d+):(\d+):")  # "syntax error at 3:7: ..." as the engine words it


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def render(result, specs) -> str:
    lines = []
    for d in result.diagnostics:
        lines.append(
            f"::{LEVELS[d.severity]} file={_escape_property(d.path)},line={d.line},col={d.column},"
            f"endLine={d.end_line},endColumn={d.end_column},title={d.rule}::"
            f"{_escape_data(f'{d.rule} {d.message}')}"
        )
    for e in result.errors:
        # A file that could not be checked has no rule to explain it: no code in the title, and the
        # line where Python stopped reading it, so the annotation lands on the code.
        where = POSITION.search(e.message)
        position = f",line={where.group(1)},col={where.group(2)}" if where else ""
        lines.append(
            f"::error file={_escape_property(e.path)}{position},title=sharpedges%3A file not checked::"
            f"{_escape_data(e.message)}"
        )
    return "\n".join(lines) + ("\n" if lines else "")
