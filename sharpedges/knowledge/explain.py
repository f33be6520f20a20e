"""One rule explained with the expert knowledge behind it: what review and MCP faces show."""

from __future__ import annotations

from typing import Any

from sharpedges.knowledge.registry import KnowledgeBase, load_knowledge


def explain_rule(code: str, kb: KnowledgeBase | None = None) -> dict[str, Any]:
    """The rule spec, the sharp edge it enforces (why, solution, symptoms) and its reference
    implementation. Raises UnknownRuleError (a KeyError) for a code with no spec."""
    kb = kb or load_knowledge()
    ref = kb.edge_for_rule(code)
    spec = kb.specs[code]
    edge = ref.edge
    return {
        "code": spec.code,
        "name": spec.name,
        "title": spec.title,
        "severity": spec.severity,
        "message": spec.outline(),
        "rationale": spec.rationale,
        "use_instead": spec.use_instead,
        "reference_impl": spec.reference_impl,
        "references": spec.references,
        "skill": {"id": ref.skill.id, "name": ref.skill.name},
        "sharp_edge": {
            "id": edge.id,
            "severity": edge.severity,
            "title": edge.title,
            "summary": edge.summary,
            "why": edge.why,
            "solution": edge.solution,
            "solution_code": edge.solution_code,
            "symptoms": edge.symptoms,
            "references": edge.references,
            "other_rules": [other for other in edge.rules if other != code],
        },
    }
