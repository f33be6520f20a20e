"""The transformer skill keeps every source-document fact (in corrected wording where a source was wrong),
and every fix it teaches actually runs. Provenance lives in YAML comments; no pack renders it."""

from __future__ import annotations

from pathlib import Path

import pytest

from sharpedges.knowledge.registry import SKILLS_DIR
from sharpedges.knowledge.schema import load_skill

TRANSFORMER = load_skill(SKILLS_DIR / "transformer-architecture.yaml")
FACT_LINES = [
    line
    for line in (Path(__file__).parent / "seed_facts.txt").read_text(encoding="utf-8").splitlines()
    if line.strip() and not line.startswith("#")
]


def normalise(text: str) -> str:
    return " ".join(text.lower().split())


def test_fact_list_covers_all_four_seeds():
    seeds = {line.split(":", 1)[0] for line in FACT_LINES}
    assert seeds == {"000", "001", "002", "003"}
    assert len(FACT_LINES) >= 60


def test_every_seed_fact_is_in_the_rendered_skill(real_kb):
    from sharpedges.knowledge.render import render_markdown

    rendered = normalise(render_markdown(real_kb, real_kb.skill("transformer-architecture")))
    missing = [line for line in FACT_LINES if normalise(line.split(":", 1)[1]) not in rendered]
    assert not missing, f"{len(missing)} seed facts missing: {missing}"


SNIPPETS = [pytest.param(edge.solution_code, id=f"edge:{edge.id}") for edge in TRANSFORMER.sharp_edges] + [
    pytest.param(example.source, id=f"section:{section.title}")
    for section in TRANSFORMER.sections
    for example in section.code
]


@pytest.mark.parametrize("source", SNIPPETS)
def test_solution_code_runs(source, capsys):
    pytest.importorskip("torch")
    exec(compile(source, "<solution_code>", "exec"), {"__name__": "__solution__"})
