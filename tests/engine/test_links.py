"""A rule's links are checked where they are declared: a dangling `reference_impl` or `skill` stops
`check` and `rule` with exit 2, naming the spec, the field and the missing target."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import sharpedges.specs as specs
from sharpedges.cli import main
from sharpedges.registry import all_rules

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def broken_rules(tmp_path, monkeypatch):
    """A copy of rules/ whose links can be broken one at a time; the CLI reads it."""
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "rules", rules)
    monkeypatch.setattr(specs, "RULES_DIR", rules)
    monkeypatch.setenv("SHARPEDGES_SPEC_CACHE", str(tmp_path / "spec-cache"))
    monkeypatch.setattr(specs, "SPEC_CACHE", tmp_path / "spec-cache")

    def clear():
        specs.load_specs.cache_clear()
        all_rules.cache_clear()

    clear()
    yield rules
    clear()


@pytest.mark.parametrize(
    "old, new, message",
    [
        (
            "reference_impl: attention:attention_ref",
            "reference_impl: norm:NoSuchSymbol",
            "SHP101.yaml: field 'reference_impl': "
            "no top-level function or class 'NoSuchSymbol' in reference_impls/norm.py",
        ),
        (
            "skill: transformer-architecture#attention-scaling",
            "skill: transformer-architecture#no-such-edge",
            "SHP101.yaml: field 'skill': skill 'transformer-architecture' has no sharp edge 'no-such-edge'",
        ),
        (
            "skill: transformer-architecture#attention-scaling",
            "skill: no-such-skill#attention-scaling",
            "SHP101.yaml: field 'skill': no skill 'no-such-skill'",
        ),
        (
            "skill: transformer-architecture#attention-scaling",
            "skill: transformer-architecture#causal-mask",
            "SHP101.yaml: field 'skill': sharp edge 'transformer-architecture#causal-mask' does not name SHP101 back",
        ),
    ],
)
def test_a_dangling_link_stops_check_and_rule(broken_rules, tmp_path, monkeypatch, capsys, old, new, message):
    spec = broken_rules / "SHP101.yaml"
    text = spec.read_text()
    assert old in text
    spec.write_text(text.replace(old, new))
    (tmp_path / "model.py").write_text("x = 1\n")
    monkeypatch.chdir(tmp_path)
    assert main(["check", "--no-cache", "model.py"]) == 2
    assert message in capsys.readouterr().err
    specs.load_specs.cache_clear()
    assert main(["rule", "SHP101"]) == 2
    assert message in capsys.readouterr().err


def test_the_installed_rules_have_no_dangling_link(broken_rules):
    assert len(specs.load_specs()) == len(list(broken_rules.glob("SHP*.yaml")))
