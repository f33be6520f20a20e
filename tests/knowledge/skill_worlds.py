"""Builders for small, valid skill worlds in tmp_path, so broken variants can be checked one at a time."""

from __future__ import annotations

from pathlib import Path

import yaml

HUB = "transformer-architecture"


def make_skill(skill_id: str, delegates=(), receives=(), keywords=None, edges=None) -> dict:
    """A minimal skill that satisfies the schema; tests mutate the dict to break one thing."""
    return {
        "id": skill_id,
        "name": skill_id.replace("-", " ").title(),
        "version": "1.0.0",
        "description": f"Use when working on {skill_id}. Not for anything else.",
        "triggers": {"keywords": keywords or [skill_id]},
        "philosophy": "Say why.",
        "principles": [f"principle {i}" for i in range(5)],
        "sections": [{"title": "Basics", "points": ["a point"]}],
        "patterns": [],
        "anti_patterns": [],
        "sharp_edges": edges
        or [
            {
                "id": f"edge-{i}",
                "severity": "HIGH",
                "title": f"edge {i}",
                "why": "because",
                "summary": f"Fix edge {i}.",
                "solution": "fix it",
                "solution_code": "x = 1",
                "symptoms": ["it breaks"],
            }
            for i in range(5)
        ],
        "tradeoffs": [],
        "failure_modes": [],
        "decision_guides": [],
        "handoffs": [{"trigger": f"needs {t}", "delegate_to": t, "context": "c"} for t in delegates],
        "receives_from": [{"skill": s, "context": "c"} for s in receives],
        "related": [],
        "references": [],
    }


def hub_world(others=("alpha-skill", "beta-skill")) -> dict[str, dict]:
    """A hub that hands off to and receives from every other skill, and each other skill likewise."""
    world = {HUB: make_skill(HUB, delegates=others, receives=others)}
    for other in others:
        world[other] = make_skill(other, delegates=[HUB], receives=[HUB])
    return world


def write_world(directory: Path, world: dict[str, dict]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for skill_id, data in world.items():
        (directory / f"{skill_id}.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return directory


def rule_spec(code: str, skill_ref: str) -> dict:
    return {
        "code": code,
        "name": f"rule-{code.lower()}",
        "title": "t",
        "severity": "error",
        "message": "m",
        "rationale": "r",
        "examples": {"bad": [f'x = 1  # expect: {code} "m"\n'], "good": ["x = 2\n"]},
        "use_instead": "u",
        "skill": skill_ref,
        "reference_impl": "attention:attention_ref",
    }


def write_rules(directory: Path, specs: list[dict]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for spec in specs:
        (directory / f"{spec['code']}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return directory
