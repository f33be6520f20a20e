"""All skills, checked against each other and linked both ways with the rule specs.

Cross-validation refuses a knowledge base where a handoff, receiver or related skill does not
exist, where handoffs and receives_from disagree, or where a rule and a sharp edge do not name
each other. Errors name the file and the field, as schema errors do.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import sharpedges.skills
from sharpedges.knowledge.schema import SharpEdge, Skill, load_skill
from sharpedges.specs import RULES_DIR, RuleSpec, load_specs
from sharpedges.yaml_io import DataFileError

SKILLS_DIR = Path(sharpedges.skills.__file__).resolve().parent
# The skill every other one hands work back to, and which hands off to every other one.
HUB_SKILL = "transformer-architecture"


class UnknownSkillError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


class UnknownRuleError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class EdgeRef:
    skill: Skill
    edge: SharpEdge


@dataclass(frozen=True)
class KnowledgeBase:
    skills: dict[str, Skill]
    specs: dict[str, RuleSpec]
    paths: dict[str, Path]

    def skill(self, skill_id: str) -> Skill:
        try:
            return self.skills[skill_id]
        except KeyError:
            raise UnknownSkillError(f"unknown skill '{skill_id}' (known: {', '.join(self.skills)})") from None

    def edge_for_rule(self, code: str) -> EdgeRef:
        """The sharp edge a rule enforces, from the rule spec's `skill: id#edge` link."""
        if code not in self.specs:
            raise UnknownRuleError(f"unknown rule '{code}'")
        skill_id, edge_id = self.specs[code].skill.split("#", 1)
        skill = self.skills[skill_id]
        edge = skill.edge(edge_id)
        assert edge is not None, "cross-validation guarantees the link"
        return EdgeRef(skill, edge)

    def rules_for_edge(self, skill_id: str, edge_id: str) -> list[RuleSpec]:
        edge = self.skill(skill_id).edge(edge_id)
        if edge is None:
            raise UnknownSkillError(f"skill '{skill_id}' has no sharp edge '{edge_id}'")
        return [self.specs[code] for code in edge.rules]


def load_skills(directory: Path = SKILLS_DIR) -> tuple[dict[str, Skill], dict[str, Path]]:
    paths = sorted(directory.glob("*.yaml"))
    skills = {}
    for path in paths:
        skill = load_skill(path)
        skills[skill.id] = skill
    return skills, {path.stem: path for path in paths}


def cross_validate(
    skills: dict[str, Skill], specs: dict[str, RuleSpec], paths: dict[str, Path], rules_dir: Path = RULES_DIR
) -> None:
    problems = [
        *_unknown_references(skills, paths),
        *_collaboration_mismatches(skills, paths),
        *_hub_gaps(skills, paths),
        *_rule_link_problems(skills, specs, paths, rules_dir),
    ]
    if problems:
        extra = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise DataFileError(problems[0] + extra)


def _unknown_references(skills: dict[str, Skill], paths: dict[str, Path]) -> list[str]:
    problems = []
    for skill in skills.values():
        refs = [(f"handoffs.{i}.delegate_to", h.delegate_to) for i, h in enumerate(skill.handoffs)]
        refs += [(f"receives_from.{i}.skill", r.skill) for i, r in enumerate(skill.receives_from)]
        refs += [(f"related.{i}", other) for i, other in enumerate(skill.related)]
        problems += [
            f"{paths[skill.id]}: field '{field}': unknown skill '{other}'"
            for field, other in refs
            if other not in skills
        ]
        problems += [
            f"{paths[skill.id]}: field '{field}': a skill cannot name itself"
            for field, other in refs
            if other == skill.id
        ]
    return problems


def _collaboration_mismatches(skills: dict[str, Skill], paths: dict[str, Path]) -> list[str]:
    """A hands off to B exactly when B says it receives from A."""
    problems = []
    for sender in skills.values():
        for target in sender.delegates:
            receiver = skills.get(target)
            if receiver is not None and sender.id not in {r.skill for r in receiver.receives_from}:
                problems.append(
                    f"{paths[target]}: field 'receives_from': missing '{sender.id}', which hands off to {target}"
                )
    for receiver in skills.values():
        for index, entry in enumerate(receiver.receives_from):
            named = skills.get(entry.skill)
            if named is not None and receiver.id not in named.delegates:
                problems.append(
                    f"{paths[receiver.id]}: field 'receives_from.{index}.skill': "
                    f"{entry.skill} has no handoff to {receiver.id}"
                )
    return problems


def _hub_gaps(skills: dict[str, Skill], paths: dict[str, Path]) -> list[str]:
    hub = skills.get(HUB_SKILL)
    if hub is None:
        return []
    problems = []
    for other in sorted(set(skills) - {HUB_SKILL}):
        if other not in hub.delegates:
            problems.append(f"{paths[HUB_SKILL]}: field 'handoffs': no handoff to {other}")
        if HUB_SKILL not in skills[other].delegates:
            problems.append(f"{paths[other]}: field 'handoffs': no handoff to {HUB_SKILL}")
    return problems


def _rule_link_problems(
    skills: dict[str, Skill], specs: dict[str, RuleSpec], paths: dict[str, Path], rules_dir: Path
) -> list[str]:
    problems = []
    for code, spec in specs.items():
        skill_id, edge_id = spec.skill.split("#", 1)
        where = f"{rules_dir / code}.yaml: field 'skill'"
        skill = skills.get(skill_id)
        if skill is None:
            problems.append(f"{where}: unknown skill '{skill_id}'")
        elif (edge := skill.edge(edge_id)) is None:
            problems.append(f"{where}: skill '{skill_id}' has no sharp edge '{edge_id}'")
        elif code not in edge.rules:
            index = skill.sharp_edges.index(edge)
            problems.append(
                f"{paths[skill_id]}: field 'sharp_edges.{index}.rules': missing {code}, whose spec names {spec.skill}"
            )
    for skill in skills.values():
        for index, edge in enumerate(skill.sharp_edges):
            for code in edge.rules:
                field = f"{paths[skill.id]}: field 'sharp_edges.{index}.rules'"
                if code not in specs:
                    problems.append(f"{field}: no rule spec {code}")
                elif specs[code].skill != f"{skill.id}#{edge.id}":
                    problems.append(f"{field}: {code} belongs to {specs[code].skill}")
    return problems


def build_knowledge(skills_dir: Path = SKILLS_DIR, rules_dir: Path = RULES_DIR) -> KnowledgeBase:
    skills, paths = load_skills(skills_dir)
    specs = load_specs(rules_dir)
    cross_validate(skills, specs, paths, rules_dir)
    return KnowledgeBase(skills=skills, specs=specs, paths=paths)


@lru_cache(maxsize=1)
def load_knowledge() -> KnowledgeBase:
    """The installed skills and rules, validated once per process."""
    return build_knowledge()
