"""Rendering is sandboxed data-in-template, strict about undefined names, and byte-for-byte repeatable."""

from __future__ import annotations

import pytest

from sharpedges.knowledge.packs import TARGETS, build_pack
from sharpedges.knowledge.registry import build_knowledge
from sharpedges.knowledge.render import MARKDOWN_PARTS, code_fence, render_markdown
from tests.knowledge.skill_worlds import HUB, hub_world, write_rules, write_world

PAYLOADS = ["{{ ''.__class__.__mro__ }}", "{% for x in range(3) %}loop{% endfor %}", "{# hidden #}"]


@pytest.fixture
def hostile_kb(tmp_path):
    """A valid world whose text fields carry template syntax."""
    world = hub_world()
    hub = world[HUB]
    hub["philosophy"] = f"Data, not code: {PAYLOADS[0]}"
    hub["principles"][0] = PAYLOADS[1]
    hub["sharp_edges"][0]["why"] = PAYLOADS[2]
    hub["sharp_edges"][0]["title"] = f"title {PAYLOADS[0]}"
    hub["sharp_edges"][1]["solution_code"] = "x = '```'\nprint(x)"
    return build_knowledge(write_world(tmp_path / "skills", world), write_rules(tmp_path / "rules", []))


def test_template_syntax_in_skill_data_comes_out_literally(hostile_kb):
    text = render_markdown(hostile_kb, hostile_kb.skill(HUB))
    for payload in PAYLOADS:
        assert payload in text
    assert "<class" not in text and "looploop" not in text


@pytest.mark.parametrize("target", TARGETS)
def test_template_syntax_survives_every_pack(hostile_kb, target):
    joined = "\n".join(build_pack(hostile_kb, target).values())
    assert "<class 'str'>" not in joined and "looploop" not in joined
    if target != "agents-md":  # AGENTS.md keeps one sentence of the philosophy, and titles
        assert PAYLOADS[0] in joined


def test_code_fence_outgrows_backticks_inside_the_code():
    assert code_fence("x = '```'", "python").startswith("````python\n")
    assert code_fence("plain", "python") == "```python\nplain\n```"


def test_sections_render_alone_and_in_order(hostile_kb):
    skill = hostile_kb.skill(HUB)
    whole = render_markdown(hostile_kb, skill)
    edges = render_markdown(hostile_kb, skill, "sharp-edges")
    assert edges.startswith("## Sharp Edges (Gotchas)") and edges.strip() in whole
    assert render_markdown(hostile_kb, skill, "glossary") == ""
    with pytest.raises(ValueError, match="unknown section 'nope'"):
        render_markdown(hostile_kb, skill, "nope")
    assert len(MARKDOWN_PARTS) == len(set(MARKDOWN_PARTS))


def test_rendering_twice_gives_the_same_bytes(hostile_kb):
    skill = hostile_kb.skill(HUB)
    assert render_markdown(hostile_kb, skill).encode() == render_markdown(hostile_kb, skill).encode()


def test_undefined_template_names_are_errors():
    from jinja2 import UndefinedError

    from sharpedges.knowledge.render import environment

    with pytest.raises(UndefinedError):
        environment().from_string("{{ missing.attribute }}").render()
