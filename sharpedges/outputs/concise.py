"""`path:line:col: SHP101 message`, ruff style, then errors and a summary line on stdout."""

from __future__ import annotations


def diagnostic_line(d) -> str:
    fixable = " [*]" if d.fix and d.fix["applicability"] == "safe" else ""
    return f"{d.path}:{d.line}:{d.column}: {d.rule}{fixable} {d.message}"


def error_line(e) -> str:
    return f"{e.path}: error: {e.message}"


def summary(result) -> str:
    parts = []
    if result.diagnostics:
        count = len(result.diagnostics)
        parts.append(f"Found {count} problem{'s' if count != 1 else ''} in {result.files} file{'s' if result.files != 1 else ''}.")
    else:
        parts.append(f"All checks passed ({result.files} file{'s' if result.files != 1 else ''}).")
    if result.errors:
        parts.append(f"{len(result.errors)} file{'s' if len(result.errors) != 1 else ''} could not be checked.")
    return " ".join(parts)


def render(result, specs) -> str:
    lines = [diagnostic_line(d) for d in result.diagnostics]
    lines += [error_line(e) for e in result.errors]
    lines.append(summary(result))
    return "\n".join(lines) + "\n"
