"""The links a rule spec declares, checked where they are declared.

A spec names a reference implementation (`attention:attention_ref`) and a sharp edge
(`transformer-architecture#attention-scaling`) that must name the rule back. Both are read from
their files without importing anything: `reference_impls/` needs torch, the linter never does.
"""

from __future__ import annotations

import ast
import importlib.util
from functools import lru_cache
from pathlib import Path

TopLevelDefinition = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef


def _package_root(name: str) -> Path:
    """The directory of one of our data packages, found without importing it (reference_impls imports torch)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"{name} is not installed with sharpedges")
    return Path(spec.submodule_search_locations[0])


REFERENCE_ROOT = _package_root("sharpedges.reference_impls")
SKILLS_ROOT = _package_root("sharpedges.skills")


def linked_files() -> list[Path]:
    """Every file a link can point into: a change to any of them re-checks the links."""
    return sorted([*REFERENCE_ROOT.glob("*.py"), *SKILLS_ROOT.glob("*.yaml")])


def reference_definition(reference: str) -> tuple[Path, TopLevelDefinition, str] | None:
    """The file, top-level definition and source of `module:symbol` in reference_impls/, or None."""
    module, _, symbol = reference.partition(":")
    path = REFERENCE_ROOT / f"{module}.py"
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, ValueError):
        return None
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)) and node.name == symbol:
            return path, node, source
    return None


@lru_cache(maxsize=32)
def _edges(skill_id: str) -> dict[str, list[str]] | None:
    """Sharp edge id -> the rules it names, for one skill file; None when there is no such skill."""
    from sharpedges.yaml_io import load_yaml

    path = SKILLS_ROOT / f"{skill_id}.yaml"
    if not path.is_file():
        return None
    data = load_yaml(path)
    edges = data.get("sharp_edges", []) if isinstance(data, dict) else []
    return {str(edge.get("id")): list(edge.get("rules") or []) for edge in edges if isinstance(edge, dict)}


def link_problems(spec: dict, where: Path) -> list[str]:
    """One line per dangling link of a validated spec, naming the spec file, the field and the target."""
    problems = []
    if reference_definition(spec["reference_impl"]) is None:
        module, _, symbol = spec["reference_impl"].partition(":")
        problems.append(
            f"{where}: field 'reference_impl': no top-level function or class '{symbol}' in reference_impls/{module}.py"
        )
    skill_id, _, edge_id = spec["skill"].partition("#")
    edges = _edges(skill_id)
    if edges is None:
        problems.append(f"{where}: field 'skill': no skill '{skill_id}' (skills/{skill_id}.yaml)")
    elif edge_id not in edges:
        problems.append(f"{where}: field 'skill': skill '{skill_id}' has no sharp edge '{edge_id}'")
    elif spec["code"] not in edges[edge_id]:
        problems.append(
            f"{where}: field 'skill': sharp edge '{spec['skill']}' does not name {spec['code']} back "
            f"(add it to the edge's rules in skills/{skill_id}.yaml)"
        )
    return problems
