"""SARIF 2.1.0 for code-scanning dashboards, with repo-relative URIs and stable fingerprints."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from sharpedges import __version__
from sharpedges.lines import source_lines

LEVELS = {"error": "error", "warning": "warning", "info": "note"}


def _uri(path: str) -> str:
    candidate = Path(path)
    if candidate.is_absolute():
        try:
            candidate = candidate.relative_to(Path.cwd())
        except ValueError:
            return candidate.as_uri()
    return Path(os.path.normpath(candidate)).as_posix()


def _line_hash(d) -> str:
    try:
        text = source_lines(Path(d.path).read_text(encoding="utf-8", errors="replace"))[d.line - 1].strip()
    except (OSError, IndexError):
        text = ""
    return hashlib.sha256(f"{d.rule}:{text}".encode()).hexdigest()[:16] + ":1"


def _rule(spec) -> dict:
    return {
        "id": spec.code,
        "name": spec.name,
        "shortDescription": {"text": spec.title},
        "fullDescription": {"text": spec.rationale.strip()},
        "help": {
            "text": f"{spec.rationale.strip()}\n\nUse instead: {spec.use_instead.strip()}",
            "markdown": f"**{spec.title}**\n\n{spec.rationale.strip()}\n\n**Use instead:** {spec.use_instead.strip()}",
        },
        "defaultConfiguration": {"level": LEVELS[spec.severity]},
        "properties": {
            "tags": ["transformer", spec.skill.split("#")[0]],
            "fix": spec.fix,
            "skill": spec.skill,
            "reference_impl": spec.reference_impl,
        },
    }


def document(result, specs) -> dict:
    used = sorted({d.rule for d in result.diagnostics})
    rules = [_rule(specs[code]) for code in used if code in specs]
    index = {rule["id"]: i for i, rule in enumerate(rules)}
    results = []
    for d in result.diagnostics:
        region = {"startLine": d.line, "startColumn": d.column, "endLine": d.end_line, "endColumn": d.end_column}
        result_object = {
            "ruleId": d.rule,
            "ruleIndex": index[d.rule],
            "level": LEVELS[d.severity],
            "message": {"text": d.message},
            "locations": [{"physicalLocation": {"artifactLocation": {"uri": _uri(d.path)}, "region": region}}],
            "partialFingerprints": {"primaryLocationLineHash": _line_hash(d)},
        }
        if d.related:
            result_object["relatedLocations"] = [
                {
                    "id": number,
                    "message": {"text": item["message"]},
                    "physicalLocation": {
                        "artifactLocation": {"uri": _uri(item.get("path", d.path))},
                        "region": {
                            "startLine": item["line"],
                            "startColumn": item["column"],
                            "endLine": item["end_line"],
                            "endColumn": item["end_column"],
                        },
                    },
                }
                for number, item in enumerate(d.related, 1)
            ]
        results.append(result_object)
    notifications = [
        {
            "level": "error",
            "message": {"text": e.message},
            "locations": [{"physicalLocation": {"artifactLocation": {"uri": _uri(e.path)}}}],
        }
        for e in result.errors
    ]
    run = {
        "tool": {
            "driver": {
                "name": "sharpedges",
                "version": __version__,
                "informationUri": "https://github.com/sharpedges/sharpedges",
                "rules": rules,
            }
        },
        "results": results,
        "invocations": [{"executionSuccessful": not result.errors, "toolExecutionNotifications": notifications}],
    }
    return {"$schema": "https://json.schemastore.org/sarif-2.1.0.json", "version": "2.1.0", "runs": [run]}


def render(result, specs) -> str:
    return json.dumps(document(result, specs), indent=2) + "\n"
