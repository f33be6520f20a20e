"""`path:line:col: SHP101 [*] short message`, ruff style, one line of at most about 120 characters
per finding; then errors and a summary on stdout. The whole message is in `--format full`."""

from __future__ import annotations

from sharpedges.outputs import plural
from sharpedges.outputs.style import Painter, colour_enabled

LINE_WIDTH = 120
_MIN_MESSAGE = 40  # a long path still leaves this much of the message


def short_message(message: str, room: int) -> str:
    """The message's first clause (up to a top-level ': ' or '; ' outside backticks), cut at a word
    boundary with '...' when it does not fit in `room` characters."""
    in_code = False
    for index, char in enumerate(message):
        if char == "`":
            in_code = not in_code
        elif not in_code and char in ":;" and message[index + 1 : index + 2] == " " and index >= 20:
            message = message[:index]
            break
    if len(message) <= room:
        return message
    cut = message[: room - 2].rsplit(" ", 1)[0]  # the cut and "..." fit in room
    return cut.rstrip(",;:(") + "..."


def diagnostic_line(d, paint: Painter | None = None) -> str:
    paint = paint or Painter(False)
    fixable = " [*]" if d.fix and d.fix.safe else ""
    prefix = f"{d.path}:{d.line}:{d.column}: {d.rule}{fixable} "
    message = short_message(d.message, max(_MIN_MESSAGE, LINE_WIDTH - len(prefix)))
    location = f"{paint(d.path, 'bold')}{paint(':', 'cyan')}{d.line}{paint(':', 'cyan')}{d.column}{paint(':', 'cyan')}"
    code = paint(d.rule, "red" if d.severity == "error" else "yellow")
    return f"{location} {code}{paint(fixable, 'cyan') if fixable else ''} {message}"


def error_line(e, paint: Painter | None = None) -> str:
    paint = paint or Painter(False)
    return f"{paint(e.path, 'bold')}{paint(':', 'cyan')} {paint('error', 'red')}: {e.message}"


def summary(result, paint: Painter | None = None) -> str:
    """'Found 3 problems in 2 of 5 files.' (files with problems of files checked), what could not be
    checked, and how many findings `--fix` and `--fix --unsafe-fixes` would fix."""
    paint = paint or Painter(False)
    findings = result.diagnostics
    if findings:
        with_problems = len({d.path for d in findings})
        lines = [f"Found {plural(len(findings), 'problem')} in {with_problems} of {plural(result.files, 'file')}."]
    elif result.errors:  # a file that could not be read did not pass: never "all checks passed"
        lines = [f"No problems found in {plural(result.files, 'file')}." if result.files else ""]
    elif result.files:
        lines = [paint(f"All checks passed ({plural(result.files, 'file')}).", "green")]
    else:
        lines = ["No Python files checked."]
    if result.errors:
        lines[0] = f"{lines[0]} {plural(len(result.errors), 'file')} could not be checked.".lstrip()
    safe = sum(1 for d in findings if d.fix and d.fix.safe)
    unsafe = sum(1 for d in findings if d.fix and not d.fix.safe)
    hidden = f"{plural(unsafe, 'hidden fix')} can be enabled with `--fix --unsafe-fixes`"
    if safe:
        lines.append(f"{paint('[*]', 'cyan')} {safe} fixable with `--fix`" + (f" ({hidden})." if unsafe else "."))
    elif unsafe:
        lines.append(f"No fixes available with `--fix` ({hidden}).")
    return "\n".join(lines)


def render(result, specs) -> str:
    paint = Painter(colour_enabled())
    lines = [diagnostic_line(d, paint) for d in result.diagnostics]
    lines += [error_line(e, paint) for e in result.errors]
    lines.append(summary(result, paint))
    return "\n".join(lines) + "\n"
