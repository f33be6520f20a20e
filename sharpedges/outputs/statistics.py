"""`check --statistics`: only the table of findings per rule, most frequent first (JSON with
`--format json`)."""

from __future__ import annotations

import json
from collections import Counter


def rows(result) -> list[dict]:
    counts = Counter(d.rule for d in result.diagnostics)
    names = {d.rule: d.name for d in result.diagnostics}
    fixable = {d.rule for d in result.diagnostics if d.fix and d.fix.safe}
    return [
        {"code": code, "name": names[code], "count": count, "fixable": code in fixable}
        for code, count in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    ]


def render(result, format_name: str) -> str:
    table = rows(result)
    if format_name == "json":
        return json.dumps(table, indent=2) + "\n"
    return "".join(
        f"{row['count']:5d}  {row['code']}  {'[*] ' if row['fixable'] else ''}{row['name']}\n" for row in table
    )
