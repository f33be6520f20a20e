"""Engine results in the editor's terms: LSP diagnostics, quick fixes, `# noqa`, fix-all and the
hover text. Pure functions of a checked text and its results; positions go through the client's
position encoding (`PositionCodec`)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.workspace.position_codec import PositionCodec

from sharpedges.diagnostics import Diagnostic, Edit, FileError
from sharpedges.fixes import apply_edits, still_parses
from sharpedges.lines import source_lines
from sharpedges.specs import RULES_DIR
from sharpedges.suppression import NOQA

SOURCE = "sharpedges"
FILE_ERROR_CODE = "SHP000"  # CONVENTIONS.md: "file could not be checked", shown as a diagnostic
FIX_ALL_KIND = "source.fixAll.sharpedges"
SEVERITIES = {
    "error": types.DiagnosticSeverity.Error,
    "warning": types.DiagnosticSeverity.Warning,
    "info": types.DiagnosticSeverity.Information,
}
_AT = re.compile(r"\bat (\d+):(\d+)\b")


@dataclass(frozen=True)
class Finding:
    """One engine diagnostic and what the editor was sent for it."""

    source: Diagnostic
    lsp: types.Diagnostic


@dataclass(frozen=True)
class CheckedText:
    """A document version, its text and what the check found in it."""

    uri: str
    version: int | None
    text: str
    lines: list[str]  # as Python numbers them, without line breaks
    codec: PositionCodec
    findings: list[Finding]
    problems: list[types.Diagnostic]  # SHP000: the file (or part of it) could not be checked

    @property
    def diagnostics(self) -> list[types.Diagnostic]:
        return [*self.problems, *(finding.lsp for finding in self.findings)]


def to_range(
    lines: list[str], codec: PositionCodec, line: int, column: int, end_line: int, end_column: int
) -> types.Range:
    """1-based engine lines and code-point columns to a client range."""
    return codec.range_to_client_units(
        lines,
        types.Range(
            start=types.Position(line=line - 1, character=column - 1),
            end=types.Position(line=end_line - 1, character=end_column - 1),
        ),
    )


def code_description(diagnostic: Diagnostic) -> types.CodeDescription:
    """Where the rule's doc lives: its help URI when it is a link, else the rule's spec file."""
    if re.match(r"^[a-z][a-z0-9+.-]*://", diagnostic.help):
        return types.CodeDescription(href=diagnostic.help)
    return types.CodeDescription(href=(RULES_DIR / f"{diagnostic.rule}.yaml").as_uri())


def _lines_of(path: str) -> list[str]:
    try:
        return source_lines(Path(path).read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return []


def related_information(
    diagnostic: Diagnostic, uri: str, lines: list[str], codec: PositionCodec
) -> list[types.DiagnosticRelatedInformation] | None:
    """The locations a finding rests on (where the mask was built, where the scale was lost): in
    this buffer, or in another file (its text on disk gives the client's columns)."""
    related = []
    for item in diagnostic.related:
        where_uri, where_lines = uri, lines
        if item.get("path") and item["path"] != diagnostic.path:
            where_uri, where_lines = Path(item["path"]).absolute().as_uri(), _lines_of(item["path"])
        span = to_range(where_lines, codec, item["line"], item["column"], item["end_line"], item["end_column"])
        related.append(
            types.DiagnosticRelatedInformation(
                location=types.Location(uri=where_uri, range=span), message=item["message"]
            )
        )
    return related or None


def to_lsp(diagnostic: Diagnostic, uri: str, lines: list[str], codec: PositionCodec) -> types.Diagnostic:
    return types.Diagnostic(
        range=to_range(lines, codec, diagnostic.line, diagnostic.column, diagnostic.end_line, diagnostic.end_column),
        message=diagnostic.message,
        severity=SEVERITIES[diagnostic.severity],
        code=diagnostic.rule,
        code_description=code_description(diagnostic),
        source=SOURCE,
        related_information=related_information(diagnostic, uri, lines, codec),
    )


def problem_to_lsp(error: FileError, lines: list[str], codec: PositionCodec) -> types.Diagnostic:
    """A file that could not be checked (syntax error, bad encoding, crashed detector, config error):
    at the position its message names, else on the first line."""
    line, column = 1, 1
    if (at := _AT.search(error.message)) is not None:
        line, column = int(at.group(1)), int(at.group(2))
    text = lines[line - 1] if 0 < line <= len(lines) else ""
    return types.Diagnostic(
        range=to_range(lines, codec, line, column, line, max(len(text) + 1, column + 1)),
        message=f"sharpedges could not check this file: {error.message}",
        severity=types.DiagnosticSeverity.Warning,
        code=FILE_ERROR_CODE,
        source=SOURCE,
    )


def checked_text(uri: str, version: int | None, text: str, codec: PositionCodec, result: dict[str, Any]) -> CheckedText:
    """`result` is what `checking.check_buffer` returned for `text`."""
    lines = source_lines(text)
    findings = [Finding(d, to_lsp(d, uri, lines, codec)) for d in map(Diagnostic.from_json, result["diagnostics"])]
    problems = [problem_to_lsp(FileError(**e), lines, codec) for e in result["errors"]]
    return CheckedText(uri, version, text, lines, codec, findings, problems)


def _overlaps(a: types.Range, b: types.Range) -> bool:
    def key(position: types.Position) -> tuple[int, int]:
        return position.line, position.character

    return key(a.start) <= key(b.end) and key(b.start) <= key(a.end)


def _text_edit(checked: CheckedText, edit: Edit) -> types.TextEdit:
    return types.TextEdit(
        range=to_range(checked.lines, checked.codec, edit.line, edit.column, edit.end_line, edit.end_column),
        new_text=edit.content,
    )


def _workspace_edit(uri: str, edits: list[types.TextEdit]) -> types.WorkspaceEdit:
    return types.WorkspaceEdit(changes={uri: edits})


def fix_action(checked: CheckedText, finding: Finding) -> types.CodeAction | None:
    """The rule's own fix: preferred when safe; an unsafe fix says so in its title."""
    fix, source = finding.source.fix, finding.source
    if not fix:
        return None
    safe = fix.safe
    title = (
        f"Fix {source.rule} ({source.name})"
        if safe
        else f"Fix {source.rule} ({source.name}), unsafe: changes numerics, review it"
    )
    return types.CodeAction(
        title=title,
        kind=types.CodeActionKind.QuickFix,
        diagnostics=[finding.lsp],
        is_preferred=safe or None,
        edit=_workspace_edit(checked.uri, [_text_edit(checked, edit) for edit in fix.edits]),
    )


def noqa_action(checked: CheckedText, finding: Finding) -> types.CodeAction | None:
    """`# noqa: CODE` on the reported line, joining a `# noqa: ...` list already there."""
    number, code = finding.source.line, finding.source.rule
    if not 0 < number <= len(checked.lines):
        return None
    line = checked.lines[number - 1]
    if line.rstrip().endswith("\\"):
        return None  # a comment after a line continuation would not parse
    existing = next((match for match in NOQA.finditer(line) if match.group("codes")), None)
    if existing is not None:  # insert after the last code listed
        column = end_column = existing.end("codes") + 1
        insert = f", {code}"
    else:  # append, replacing trailing blanks
        column, end_column = len(line.rstrip()) + 1, len(line) + 1
        insert = f"  # noqa: {code}"
    edit = Edit(number, column, number, end_column, insert, original=line[column - 1 : end_column - 1])
    return types.CodeAction(
        title=f"Suppress {code} on this line (# noqa)",
        kind=types.CodeActionKind.QuickFix,
        diagnostics=[finding.lsp],
        edit=_workspace_edit(checked.uri, [_text_edit(checked, edit)]),
    )


def fixed_text(checked: CheckedText) -> str | None:
    """The file with every safe fix applied (as `check --fix` would), or None when that changes
    nothing or would not parse. Costs a parse: call it off the event loop."""
    fixes = [finding.source.fix for finding in checked.findings if finding.source.fix and finding.source.fix.safe]
    if not fixes:
        return None
    fixed = apply_edits(checked.text, fixes).text
    if fixed == checked.text or not still_parses(fixed):
        return None
    return fixed


def fix_all_action(checked: CheckedText, fixed: str) -> types.CodeAction:
    lines = checked.lines
    if not lines or checked.text.endswith(("\n", "\r")):  # the end is the start of the line after the last
        end = types.Position(line=len(lines), character=0)
    else:
        end = types.Position(line=len(lines) - 1, character=checked.codec.client_num_units(lines[-1]))
    whole = types.Range(start=types.Position(line=0, character=0), end=end)
    return types.CodeAction(
        title="Fix all safe sharpedges problems in this file",
        kind=FIX_ALL_KIND,
        edit=_workspace_edit(checked.uri, [types.TextEdit(range=whole, new_text=fixed)]),
    )


def wanted(kind: str, only: Sequence[str] | None) -> bool:
    """LSP kinds are hierarchical: asking for `source.fixAll` includes `source.fixAll.sharpedges`."""
    return not only or any(kind == wanted_kind or kind.startswith(f"{wanted_kind}.") for wanted_kind in only)


def quick_fixes(checked: CheckedText, where: types.Range) -> list[types.CodeAction]:
    """The fixes for the findings on the lines of `where` (a cursor anywhere on the line will do,
    as editors show a line's diagnostics)."""
    actions = []
    for finding in checked.findings:
        found = finding.lsp.range
        if found.start.line <= where.end.line and where.start.line <= found.end.line:
            actions += [action for action in (fix_action(checked, finding), noqa_action(checked, finding)) if action]
    return actions


def findings_at(checked: CheckedText, position: types.Position) -> list[Finding]:
    point = types.Range(start=position, end=position)
    return [finding for finding in checked.findings if _overlaps(finding.lsp.range, point)]


@lru_cache(maxsize=64)
def hover_markdown(code: str) -> str:
    """The rule's doc (what it does, why it is bad, use instead, the reference implementation and
    where it lives), then the sharp edge it enforces: why, and how it shows up."""
    from sharpedges.docs import rule_markdown
    from sharpedges.knowledge.explain import explain_rule
    from sharpedges.knowledge.registry import load_knowledge

    kb = load_knowledge()
    explanation = explain_rule(code, kb)
    edge = explanation["sharp_edge"]
    parts = [
        rule_markdown(kb.specs[code]).rstrip("\n"),
        "",
        f"## Sharp edge: {edge['title']}",
        "",
        f"From the `{explanation['skill']['id']}` skill "
        f"(`sharpedges skill {explanation['skill']['id']} --section sharp-edges`).",
        "",
        "### Why",
        "",
        edge["why"].strip(),
        "",
    ]
    if edge["symptoms"]:
        parts += ["### Symptoms", "", *[f"- {symptom.strip()}" for symptom in edge["symptoms"]], ""]
    return "\n".join(parts)
