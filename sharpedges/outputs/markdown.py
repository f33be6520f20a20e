"""A review a person would post on a pull request: a summary line, then the findings grouped by
file, most severe first, each with its code, why it matters and how to fix it.

Takes a `sharpedges.review.Review` (findings plus rule explanations) rather than a bare result:
the explanation is what makes it a review. The first finding of a rule carries the full
explanation; later ones point back to it, so a rule found ten times is explained once.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from sharpedges.docs import reference_excerpt
from sharpedges.knowledge.render import code_fence, one_line
from sharpedges.lines import source_lines
from sharpedges.outputs import plural
from sharpedges.review import SEVERITY_ORDER, Review, severity_key

EXCERPT_LINES = 6  # a finding spanning more lines shows its first ones


def summary_line(review: Review) -> str:
    findings = review.result.diagnostics
    scope = "in the changed files" if review.all_lines else "on changed lines"
    checked = f"Checked {plural(len(review.files), 'changed Python file')} against {review.base}."
    if not findings:
        text = f"**sharpedges found no problems {scope}.** {checked}"
    else:
        counts = Counter(d.severity for d in findings)
        by_severity = ", ".join(plural(counts[s], s) for s in SEVERITY_ORDER if counts[s])
        text = f"**sharpedges found {plural(len(findings), 'problem')} {scope}** ({by_severity}). {checked}"
    if review.result.errors:
        text += f" {plural(len(review.result.errors), 'file')} could not be checked."
    return text


def _excerpt(lines: list[str], first: int, last: int) -> str:
    shown = range(first, min(last, first + EXCERPT_LINES - 1) + 1)
    return "\n".join(lines[number - 1] for number in shown if 0 < number <= len(lines))


def _explained(explanation: dict) -> list[str]:
    edge = explanation["sharp_edge"]
    out = [f"**Why it matters.** {one_line(edge['why'])}", ""]
    if edge["symptoms"]:
        out += ["**How it shows up:**", *[f"- {one_line(symptom)}" for symptom in edge["symptoms"]], ""]
    out += [f"**Fix.** {one_line(explanation['use_instead'])}", ""]
    where, code = reference_excerpt(explanation["reference_impl"])
    title = f"Reference implementation: `sharpedges.reference_impls.{explanation['reference_impl']}` ({where})"
    if code:
        out += ["<details>", f"<summary>{title}</summary>", "", code_fence(code, "python"), "", "</details>", ""]
    else:
        out += [title, ""]
    skill = explanation["skill"]
    out += [
        f"Skill: {skill['name']}, sharp edge *{one_line(edge['title'])}* "
        f"(`sharpedges skill {skill['id']} --section sharp-edges`; "
        f"full rule: `sharpedges rule {explanation['code']}`).",
        "",
    ]
    return out


def render(review: Review) -> str:
    out = ["## sharpedges review", "", summary_line(review), ""]
    by_file: dict[str, list] = {}
    for d in review.result.diagnostics:
        by_file.setdefault(d.path, []).append(d)
    first_seen: dict[str, str] = {}
    order = sorted(by_file, key=lambda path: (min(SEVERITY_ORDER[d.severity] for d in by_file[path]), path))
    for path in order:
        try:
            lines = source_lines(Path(path).read_text(encoding="utf-8", errors="replace"))
        except OSError:
            lines = []
        out += [f"### `{path}`", ""]
        for d in sorted(by_file[path], key=severity_key):
            span = f"line {d.line}" if d.end_line == d.line else f"lines {d.line}-{d.end_line}"
            out += [f"#### {d.severity}: {d.rule} {d.name} ({span})", ""]
            excerpt = _excerpt(lines, d.line, d.end_line)
            if excerpt:
                out += [code_fence(excerpt, "python"), ""]
            out += [one_line(d.message), ""]
            out += [
                f"- rests on `{item.get('path', d.path)}:{item['line']}`: {one_line(item['message'])}"
                for item in d.related
            ]
            out += [""] if d.related else []
            if d.rule in first_seen:
                out += [f"Same rule as {first_seen[d.rule]} above: the explanation there applies.", ""]
            else:
                first_seen[d.rule] = f"`{path}:{d.line}`"
                out += _explained(review.explanations[d.rule])
    if review.result.errors:
        out += ["### Files that could not be checked", ""]
        out += [f"- `{e.path}`: {one_line(e.message)}" for e in review.result.errors]
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"
