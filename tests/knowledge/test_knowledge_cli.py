"""The skills, skill and pack faces: thin over the knowledge pipeline, one stderr line and exit 2 on misuse."""

from __future__ import annotations

import json

import pytest

from sharpedges.cli import main
from sharpedges.commands import pack as pack_command
from sharpedges.commands import skill as skill_command
from sharpedges.knowledge.explain import explain_rule
from sharpedges.knowledge.packs import MANIFEST_NAME, TARGETS
from sharpedges.knowledge.registry import UnknownRuleError
from sharpedges.knowledge.render import MARKDOWN_PARTS


def test_cheap_copies_of_choices_match_the_pipeline():
    assert skill_command.SECTIONS == MARKDOWN_PARTS
    assert tuple(TARGETS) == pack_command.TARGETS


def test_skills_lists_every_skill(real_kb, capsys):
    assert main(["skills"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(real_kb.skills)
    assert main(["skills", "--format", "json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    hub = next(entry for entry in payload["skills"] if entry["id"] == "transformer-architecture")
    assert "attention-scaling" in hub["sharp_edges"] and "SHP101" in hub["rules"]


def test_skill_renders_markdown_and_one_section(real_kb, capsys):
    assert main(["skill", "transformer-architecture"]) == 0
    whole = capsys.readouterr().out
    assert whole.startswith("# Transformer Architecture\n") and "## Sharp Edges (Gotchas)" in whole
    assert main(["skill", "transformer-architecture", "--section", "collaboration"]) == 0
    part = capsys.readouterr().out
    assert part.startswith("## Collaboration") and "## Sharp Edges" not in part


@pytest.mark.parametrize(
    "argv, message",
    [
        (["skill", "no-such-skill"], "unknown skill 'no-such-skill'"),
        (["skill", "transformer-architecture", "--section", "nope"], "unknown section 'nope'"),
        (["pack", "--target", "nope", "--out", "x"], "unknown target 'nope'"),
    ],
)
def test_misuse_is_one_stderr_line_and_exit_2(real_kb, capsys, argv, message):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and message in captured.err


def test_pack_writes_the_target(real_kb, tmp_path, capsys):
    assert main(["pack", "--target", "json", "--out", str(tmp_path / "out")]) == 0
    assert json.loads((tmp_path / "out" / MANIFEST_NAME).read_text())["version"] == 1
    assert capsys.readouterr().out.startswith("wrote 1 file to")


def test_explain_rule_joins_spec_and_sharp_edge(real_kb):
    explained = explain_rule("SHP101", real_kb)
    assert explained["name"] == "attention-missing-scale"
    assert explained["reference_impl"] == real_kb.specs["SHP101"].reference_impl
    edge = explained["sharp_edge"]
    assert edge["summary"].startswith("Divide attention scores by sqrt(head_dim)")
    assert (
        edge["id"] == "attention-scaling"
        and edge["why"]
        and edge["symptoms"]
        and "import torch" in edge["solution_code"]
    )
    assert explained["skill"]["id"] == "transformer-architecture"
    with pytest.raises(UnknownRuleError):
        explain_rule("SHP999", real_kb)
