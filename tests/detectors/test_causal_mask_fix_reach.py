"""SHP202 verifies a fix on the part of the file the flip can reach; the fixes it offers are the ones
verifying on the whole module offers, on its examples, the example models and the files made from
them by flipping one triangle or one `== 0` / `== 1`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sharpedges.detectors import causal_mask_inverted
from sharpedges.engine import Engine
from sharpedges.registry import all_rules
from tests.detectors.modules import NANOGPT_ATTENTION

ROOT = Path(__file__).resolve().parent.parent.parent
RULE = all_rules()["SHP202"]
BASES = [
    *RULE.spec.examples.bad,
    *RULE.spec.examples.good,
    NANOGPT_ATTENTION,
    *(path.read_text(encoding="utf-8") for path in sorted((ROOT / "examples").glob("*.py"))),
]
FLIP = re.compile(r"\btril\b|\btriu\b|==\s*[01]\b")


def flipped(source: str) -> list[str]:
    """`source` with each triangle or `== 0` / `== 1` flipped, one at a time."""
    out = []
    for match in FLIP.finditer(source):
        token = match.group(0)
        swapped = {"tril": "triu", "triu": "tril"}.get(token) or token[:-1] + ("1" if token.endswith("0") else "0")
        out.append(source[: match.start()] + swapped + source[match.end() :])
    return out


SOURCES = list(dict.fromkeys(source for base in BASES for source in [base, *flipped(base)]))


def shp202(source: str) -> list[dict]:
    result = Engine([RULE]).check("model.py", source.encode())
    return [d.to_json() for d in result.diagnostics]


@pytest.mark.parametrize("index", range(len(SOURCES)))
def test_fixes_equal_those_verified_on_the_whole_module(index: int, monkeypatch: pytest.MonkeyPatch) -> None:
    source = SOURCES[index]
    found = shp202(source)
    monkeypatch.setattr(causal_mask_inverted, "_reach", lambda ctx, top, names: None)
    assert found == shp202(source)


def test_fixes_are_offered_and_verified_on_less_than_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    reaches = []
    reach = causal_mask_inverted._reach

    def spy(ctx, top, names):
        found = reach(ctx, top, names)
        reaches.append(found is not None and len(found) < len(ctx.module.body))
        return found

    monkeypatch.setattr(causal_mask_inverted, "_reach", spy)
    assert sum(1 for source in SOURCES for d in shp202(source) if d["fix"]) >= 5
    assert any(reaches)
