"""Every runnable snippet in the other skills runs (the transformer skill's are run in test_transformer_skill)."""

from __future__ import annotations

import sys
import types

import pytest

from sharpedges.knowledge.registry import SKILLS_DIR
from sharpedges.knowledge.schema import load_skill

SKILLS = [load_skill(path) for path in sorted(SKILLS_DIR.glob("*.yaml")) if path.stem != "transformer-architecture"]
SNIPPETS = [
    pytest.param(edge.solution_code, id=f"{skill.id}:edge:{edge.id}") for skill in SKILLS for edge in skill.sharp_edges
] + [
    pytest.param(example.source, id=f"{skill.id}:section:{section.title}")
    for skill in SKILLS
    for section in skill.sections
    for example in section.code
]


@pytest.mark.parametrize("source", SNIPPETS)
def test_snippet_runs(source, tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)  # snippets that write files (ONNX export) write here
    module = types.ModuleType("__snippet__")  # a real module, as when run as a script (dataclasses need it)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(source, "<snippet>", "exec"), module.__dict__)
