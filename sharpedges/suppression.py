"""Every way a user turns a finding off, in one place and in one order.

1. Files: `exclude` / `extend-exclude` and `.gitignore` decide which files are read at all
   (sharpedges.discovery walks them; nothing else here).
2. Rules: `select` replaces the default set, `extend-select` adds, `ignore` removes; opt-in rules come
   in by their exact code or with `--preview` (`select_rules`). Only the chosen detectors run.
3. Lines: a `# noqa` (every rule) or `# noqa: CODE, ...` on the finding's first line or on the first
   line of its statement drops that finding (`suppressed_by_noqa`); an SHP code no rule has is a
   warning (`unknown_noqa_codes`), never a silent no-op; other linters' codes are left to them.
4. Paths: `per-file-ignores` drops the findings of the listed codes in files matching a pattern
   (`per_file_ignored`), applied to fresh and cached results alike.
"""

from __future__ import annotations

import os
import re
from bisect import bisect_right
from functools import lru_cache
from pathlib import Path

from sharpedges.config import Config, selector_problem
from sharpedges.diagnostics import Diagnostic
from sharpedges.discovery import gitignore_spec
from sharpedges.lines import line_starts
from sharpedges.registry import RegistryError, Rule, all_rules
from sharpedges.specs import CODE_PREFIX

NOQA = re.compile(r"#\s*noqa(?::\s*(?P<codes>[A-Z]+[0-9]+(?:\s*,\s*[A-Z]+[0-9]+)*))?", re.IGNORECASE)


def matches(code: str, selector: str) -> bool:
    return selector == "ALL" or code.startswith(selector)


def select_rules(
    select: list[str] | None, extend_select: list[str], ignore: list[str], preview: bool = False
) -> list[Rule]:
    """Ruff's selection: `select` replaces the default set, `extend-select` adds, `ignore` removes.
    Opt-in (preview) rules come in by their exact code, or by any selector with `preview`."""
    rules = all_rules()
    for selector in [*(select or []), *extend_select, *ignore]:
        if problem := selector_problem(selector):
            raise RegistryError(problem)
    chosen: set[str] = set()
    if select is None:
        chosen = {code for code, rule in rules.items() if rule.spec.default or preview}
    for selector in [*(select or []), *extend_select]:
        chosen |= {
            code
            for code, rule in rules.items()
            if matches(code, selector) and (rule.spec.default or preview or code == selector)
        }
    chosen = {code for code in chosen if not any(matches(code, s) for s in ignore)}
    return [rules[code] for code in sorted(chosen)]


def suppressed_by_noqa(code: str, lines: list[str], line_numbers: set[int]) -> bool:
    """A bare `# noqa`, or one naming `code`, on any of `line_numbers` (1-based)."""
    for number in line_numbers:
        if not 0 < number <= len(lines) or "#" not in lines[number - 1]:
            continue
        for match in NOQA.finditer(lines[number - 1]):
            codes = match.group("codes")
            if codes is None or code in {c.strip().upper() for c in codes.split(",")}:
                return True
    return False


def unknown_noqa_codes(path: str, data: bytes) -> list[str]:
    """One warning per SHP code a `# noqa:` comment names that no rule has (a typo silences nothing).
    Other codes are other linters' (`# noqa: F401` is ruff's): not ours to judge, as ruff's `external`."""
    known = all_rules()
    text = data.decode("utf-8", "replace")
    starts = line_starts(text)
    warnings = []
    for match in NOQA.finditer(text):
        for code in (match.group("codes") or "").split(","):
            code = code.strip().upper()
            if code.startswith(CODE_PREFIX) and code not in known:
                line = bisect_right(starts, match.start())
                warnings.append(f"{path}:{line}: unknown rule code '{code}' in # noqa (see `sharpedges rules`)")
    return warnings


@lru_cache(maxsize=256)
def _pattern(pattern: str):
    return gitignore_spec([pattern])


def per_file_ignored(config: Config, diagnostic: Diagnostic) -> bool:
    """The config's `per-file-ignores` name this finding's code for its file (paths relative to the
    config's directory)."""
    if not config.per_file_ignores:
        return False
    path = Path(diagnostic.path)
    try:
        relative = Path(os.path.abspath(path)).relative_to(os.path.abspath(config.root)).as_posix()
    except ValueError:
        relative = path.as_posix()
    for pattern, codes in config.per_file_ignores.items():
        if _pattern(pattern).match_file(relative) and any(
            diagnostic.rule.startswith(code) or code == "ALL" for code in codes
        ):
            return True
    return False
