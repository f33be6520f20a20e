"""Cross-validation: skills, handoffs and rule links must agree, in every direction."""

from __future__ import annotations

import pytest

from sharpedges.knowledge.registry import UnknownRuleError, UnknownSkillError, build_knowledge
from sharpedges.yaml_io import DataFileError
from tests.knowledge.skill_worlds import HUB, hub_world, rule_spec, write_rules, write_world

SKILL_IDS = {
    "transformer-architecture",
    "distributed-training",
    "model-optimization",
    "llm-fine-tuning",
    "reinforcement-learning",
    "nlp-advanced",
    "computer-vision-deep",
    "adversarial-ml",
    "cnn-architecture",
    "generative-models",
    "graph-neural-networks",
    "multimodal-learning",
    "neural-architecture-search",
}


def build(tmp_path, world, specs=()):
    return build_knowledge(write_world(tmp_path / "skills", world), write_rules(tmp_path / "rules", list(specs)))


def test_consistent_world_loads_and_links_rules(tmp_path):
    world = hub_world()
    world[HUB]["sharp_edges"][0]["rules"] = ["SHP901"]
    kb = build(tmp_path, world, [rule_spec("SHP901", f"{HUB}#edge-0")])
    ref = kb.edge_for_rule("SHP901")
    assert (ref.skill.id, ref.edge.id) == (HUB, "edge-0")
    assert [spec.code for spec in kb.rules_for_edge(HUB, "edge-0")] == ["SHP901"]
    assert kb.rules_for_edge(HUB, "edge-1") == []
    with pytest.raises(UnknownSkillError):
        kb.skill("no-such-skill")
    with pytest.raises(UnknownRuleError):
        kb.edge_for_rule("SHP999")


def test_handoff_to_missing_skill(tmp_path):
    world = hub_world()
    world["alpha-skill"]["handoffs"].append({"trigger": "t", "delegate_to": "ghost-skill", "context": "c"})
    with pytest.raises(
        DataFileError, match=r"alpha-skill\.yaml: field 'handoffs\.1\.delegate_to': unknown skill 'ghost-skill'"
    ):
        build(tmp_path, world)


def test_related_to_missing_skill(tmp_path):
    world = hub_world()
    world["beta-skill"]["related"] = ["ghost-skill"]
    with pytest.raises(DataFileError, match=r"beta-skill\.yaml: field 'related\.0': unknown skill"):
        build(tmp_path, world)


def test_handoff_without_matching_receives_from(tmp_path):
    world = hub_world()
    world["alpha-skill"]["handoffs"].append({"trigger": "t", "delegate_to": "beta-skill", "context": "c"})
    with pytest.raises(DataFileError, match=r"beta-skill\.yaml: field 'receives_from': missing 'alpha-skill'"):
        build(tmp_path, world)


def test_receives_from_without_matching_handoff(tmp_path):
    world = hub_world()
    world["alpha-skill"]["receives_from"].append({"skill": "beta-skill", "context": "c"})
    with pytest.raises(
        DataFileError, match=r"alpha-skill\.yaml: field 'receives_from\.1\.skill': beta-skill has no handoff"
    ):
        build(tmp_path, world)


def test_hub_must_hand_off_to_every_skill(tmp_path):
    world = hub_world()
    world[HUB]["handoffs"] = [h for h in world[HUB]["handoffs"] if h["delegate_to"] != "beta-skill"]
    world["beta-skill"]["receives_from"] = []
    with pytest.raises(DataFileError, match=rf"{HUB}\.yaml: field 'handoffs': no handoff to beta-skill"):
        build(tmp_path, world)


def test_every_skill_must_hand_back_to_the_hub(tmp_path):
    world = hub_world()
    world["alpha-skill"]["handoffs"] = []
    world[HUB]["receives_from"] = [r for r in world[HUB]["receives_from"] if r["skill"] != "alpha-skill"]
    with pytest.raises(DataFileError, match=r"alpha-skill\.yaml: field 'handoffs': no handoff to transformer"):
        build(tmp_path, world)


def test_rule_naming_a_missing_edge(tmp_path):
    with pytest.raises(DataFileError, match=r"SHP901\.yaml: field 'skill': skill '.*' has no sharp edge 'ghost'"):
        build(tmp_path, hub_world(), [rule_spec("SHP901", f"{HUB}#ghost")])


def test_rule_naming_a_missing_skill(tmp_path):
    with pytest.raises(DataFileError, match=r"SHP901\.yaml: field 'skill': unknown skill 'ghost-skill'"):
        build(tmp_path, hub_world(), [rule_spec("SHP901", "ghost-skill#edge-0")])


def test_edge_listing_a_rule_without_spec(tmp_path):
    world = hub_world()
    world["alpha-skill"]["sharp_edges"][3]["rules"] = ["SHP902"]
    with pytest.raises(DataFileError, match=r"alpha-skill\.yaml: field 'sharp_edges\.3\.rules': no rule spec SHP902"):
        build(tmp_path, world)


def test_rule_pointing_at_an_edge_that_does_not_list_it(tmp_path):
    with pytest.raises(DataFileError, match=r"field 'sharp_edges\.0\.rules': missing SHP901"):
        build(tmp_path, hub_world(), [rule_spec("SHP901", f"{HUB}#edge-0")])


def test_edge_listing_a_rule_that_belongs_elsewhere(tmp_path):
    world = hub_world()
    world[HUB]["sharp_edges"][0]["rules"] = ["SHP901"]
    world["alpha-skill"]["sharp_edges"][0]["rules"] = ["SHP901"]
    with pytest.raises(DataFileError, match=r"alpha-skill\.yaml: field 'sharp_edges\.0\.rules': SHP901 belongs to"):
        build(tmp_path, world, [rule_spec("SHP901", f"{HUB}#edge-0")])


def test_the_shipped_skills_and_rules_cross_validate(real_kb):
    assert set(real_kb.skills) == SKILL_IDS, f"missing skills: {sorted(SKILL_IDS - set(real_kb.skills))}"
    hub = real_kb.skill(HUB)
    assert set(hub.delegates) == SKILL_IDS - {HUB}
    assert {entry.skill for entry in hub.receives_from} == SKILL_IDS - {HUB}
    for code in real_kb.specs:
        assert code in real_kb.edge_for_rule(code).edge.rules


def test_transformer_has_every_edge_the_rules_need():
    from sharpedges.knowledge.registry import SKILLS_DIR
    from sharpedges.knowledge.schema import load_skill

    expected = [
        "attention-scaling",
        "causal-mask",
        "mask-polarity",
        "causal-alignment-kv-cache",
        "mask-fill-overflow",
        "softmax-dim-and-precision",
        "post-norm-depth",
        "final-norm",
        "prenorm-residual",
        "kv-cache-growth",
        "moe-load-balancing",
        "router-precision",
        "rope-precision",
        "gqa-head-grouping",
        "rope-layout",
        "dropout-in-eval",
        "discarded-op-result",
        "position-extrapolation",
    ]
    assert [edge.id for edge in load_skill(SKILLS_DIR / f"{HUB}.yaml").sharp_edges] == expected
