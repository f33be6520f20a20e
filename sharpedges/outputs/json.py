"""The JSON document of CONVENTIONS.md, sorted deterministically."""

from __future__ import annotations

import json


def document(result) -> dict:
    return {
        "version": 1,
        "diagnostics": [d.to_json() for d in result.diagnostics],
        "errors": [e.to_json() for e in result.errors],
        "summary": {"files": result.files, "diagnostics": len(result.diagnostics), "errors": len(result.errors)},
    }


def render(result, specs) -> str:
    return json.dumps(document(result), indent=2) + "\n"
