"""Prompt packs: the skills rendered for each agent orchestrator, as {relative path: file text}.

Building a pack is pure (knowledge in, texts out); writing is separate, so tests and the CLI share
one code path and the same knowledge always gives the same bytes.
"""

from __future__ import annotations

import ast
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from sharpedges.knowledge.registry import SKILLS_DIR, KnowledgeBase
from sharpedges.knowledge.render import anchor, by_severity, render, render_markdown, render_parts, skill_context
from sharpedges.knowledge.schema import Skill

MANIFEST_NAME = "sharpedges-skills.json"
# Small helper scripts a skill ships with its claude-skill folder: skills/scripts/<skill id>/*.py.
SCRIPTS_DIR = SKILLS_DIR / "scripts"
CURSOR_GLOBS = "**/*.py"
EDGES_FOLDER = "references/edges/"  # one file per sharp edge, linked from the workflow's checklist
# The claude-skill reference files split by topic, each loaded only when a task needs it:
# (file, title, Markdown parts). Sharp edges and knowledge sections get one file each.
CLAUDE_TOPICS = (
    ("references/principles.md", "principles and glossary", ("principles", "glossary")),
    ("references/patterns.md", "patterns and anti-patterns", ("patterns", "anti-patterns")),
    ("references/tradeoffs.md", "trade-offs and failure modes", ("tradeoffs", "failure-modes")),
    ("references/decisions.md", "decision guides", ("decision-guides",)),
    ("references/collaboration.md", "who hands work here and where it goes next", ("collaboration",)),
    ("references/sources.md", "papers and documentation", ("references",)),
)


def _yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100, default_flow_style=False)


def skill_scripts(skill_id: str) -> dict[str, str]:
    """{file name: source} of the helper scripts a skill ships, in name order."""
    folder = SCRIPTS_DIR / skill_id
    return {path.name: path.read_text(encoding="utf-8") for path in sorted(folder.glob("*.py"))}


def script_purpose(source: str) -> str:
    """A script's first docstring line: what the workflow says it is for."""
    docstring = ast.get_docstring(ast.parse(source)) or ""
    return docstring.strip().splitlines()[0] if docstring.strip() else ""


def _spawner(kb: KnowledgeBase) -> dict[str, str]:
    """The four-file Spawner layout per skill: skill, sharp edges, validations, collaboration."""
    files = {}
    for skill in kb.skills.values():
        body = skill.model_dump(mode="json", exclude={"sharp_edges", "handoffs", "receives_from"})
        edges = [
            {
                "id": edge.id,
                "summary": edge.summary,
                "severity": edge.severity.lower(),
                "title": edge.title,
                "why": edge.why,
                "solution": edge.solution,
                "solution_code": edge.solution_code,
                "symptoms": edge.symptoms,
                "detected_by": edge.rules,
                "grep": edge.grep,
                "references": edge.references,
            }
            for edge in skill.sharp_edges
        ]
        validations = [
            {
                "id": code,
                "name": kb.specs[code].name,
                "severity": kb.specs[code].severity,
                "type": "cst",
                "command": f"sharpedges check --select {code}",
                "message": kb.specs[code].outline(),
                "fix_action": kb.specs[code].use_instead,
                "sharp_edge": edge.id,
                "applies_to": ["**/*.py"],
            }
            for edge in skill.sharp_edges
            for code in edge.rules
        ]
        collaboration = {
            "receives_from": [entry.model_dump() for entry in skill.receives_from],
            "delegation_triggers": [handoff.model_dump() for handoff in skill.handoffs],
            "related": skill.related,
        }
        files[f"{skill.id}/skill.yaml"] = _yaml(body)
        files[f"{skill.id}/sharp-edges.yaml"] = _yaml({"sharp_edges": edges})
        files[f"{skill.id}/validations.yaml"] = _yaml({"validations": validations})
        files[f"{skill.id}/collaboration.yaml"] = _yaml(collaboration)
    return files


def _claude_references(kb: KnowledgeBase, skill: Skill) -> dict[str, tuple[str, str]]:
    """{path in the skill folder: (title, text)}: one file per sharp edge, per knowledge section, per topic."""
    files = {}
    for edge in by_severity(skill.sharp_edges):
        text = render("markdown/edge.md.j2", **skill_context(kb, skill, edge=edge))
        files[f"{EDGES_FOLDER}{edge.id}.md"] = (f"sharp edge: {edge.title}", text)
    for number, section in enumerate(skill.sections, start=1):
        text = render("markdown/section.md.j2", **skill_context(kb, skill, section=section))
        files[f"references/knowledge/{number:02d}-{anchor(section.title)}.md"] = (section.title, text)
    for path, title, parts in CLAUDE_TOPICS:
        body = render_parts(kb, skill, parts, skill_link="../../{id}/SKILL.md")
        if body:
            files[path] = (title, body)
    return {path: (title, f"# {skill.name}: {title}\n\n{text}") for path, (title, text) in files.items()}


def _claude_skill(kb: KnowledgeBase) -> dict[str, str]:
    """Agent Skills folders: a short SKILL.md with the workflow, details in small topic files."""
    files = {}
    for skill in kb.skills.values():
        references = _claude_references(kb, skill)
        scripts = skill_scripts(skill.id)
        context = skill_context(
            kb,
            skill,
            edge_link=EDGES_FOLDER + "{id}.md",
            scripts_dir="scripts/",
            scripts={name: script_purpose(source) for name, source in scripts.items()},
            references=[
                (path, title) for path, (title, _text) in references.items() if not path.startswith(EDGES_FOLDER)
            ],
        )
        files[f"{skill.id}/SKILL.md"] = render("claude-skill/SKILL.md.j2", **context)
        files.update({f"{skill.id}/{path}": text for path, (_title, text) in references.items()})
        files.update({f"{skill.id}/scripts/{name}": source for name, source in scripts.items()})
    return files


def _cursor(kb: KnowledgeBase) -> dict[str, str]:
    """Auto-attached rules: Cursor adds one to the context whenever a file matching its globs is."""
    return {
        f".cursor/rules/{skill.id}.mdc": render(
            "cursor/rule.mdc.j2",
            **skill_context(kb, skill, globs=CURSOR_GLOBS, edge_link="", scripts={}, scripts_dir=""),
        )
        for skill in kb.skills.values()
    }


def _agents_md(kb: KnowledgeBase) -> dict[str, str]:
    names = {sid: skill.name for sid, skill in kb.skills.items()}
    return {"AGENTS.md": render("agents-md/AGENTS.md.j2", skills=list(kb.skills.values()), names=names)}


def _markdown(kb: KnowledgeBase) -> dict[str, str]:
    return {f"{skill.id}.md": render_markdown(kb, skill) for skill in kb.skills.values()}


def manifest(kb: KnowledgeBase) -> dict[str, Any]:
    """One document an orchestrator can route and delegate from without reading any other file."""

    def skill_entry(skill: Skill) -> dict[str, Any]:
        return {
            "id": skill.id,
            "name": skill.name,
            "version": skill.version,
            "description": skill.description,
            "triggers": skill.triggers.model_dump(),
            "handoffs": [handoff.model_dump() for handoff in skill.handoffs],
            "receives_from": [entry.model_dump() for entry in skill.receives_from],
            "related": skill.related,
            "sharp_edges": [
                {
                    "id": edge.id,
                    "severity": edge.severity,
                    "title": edge.title,
                    "summary": edge.summary,
                    "grep": edge.grep,
                    "rules": edge.rules,
                }
                for edge in skill.sharp_edges
            ],
        }

    rules = [
        {
            "code": spec.code,
            "name": spec.name,
            "title": spec.title,
            "severity": spec.severity,
            "skill": spec.skill.split("#", 1)[0],
            "sharp_edge": spec.skill.split("#", 1)[1],
            "reference_impl": spec.reference_impl,
        }
        for spec in kb.specs.values()
    ]
    return {"version": 1, "skills": [skill_entry(skill) for skill in kb.skills.values()], "rules": rules}


def _json(kb: KnowledgeBase) -> dict[str, str]:
    return {MANIFEST_NAME: json.dumps(manifest(kb), indent=2, ensure_ascii=False) + "\n"}


TARGETS: dict[str, Callable[[KnowledgeBase], dict[str, str]]] = {
    "spawner": _spawner,
    "claude-skill": _claude_skill,
    "cursor": _cursor,
    "agents-md": _agents_md,
    "markdown": _markdown,
    "json": _json,
}


def build_pack(kb: KnowledgeBase, target: str) -> dict[str, str]:
    if target not in TARGETS:
        raise ValueError(f"unknown target '{target}' (choose from: {', '.join(TARGETS)})")
    return dict(sorted(TARGETS[target](kb).items()))


class PackWriteError(Exception):
    """The pack cannot be written as asked; one line naming the file. Nothing was written."""


def _refuse_links(out_dir: Path, path: Path) -> None:
    """Every existing component below `out_dir` must be a real directory (or, last, a regular file)."""
    current = out_dir
    for part in path.relative_to(out_dir).parts:
        current = current / part
        try:
            info = os.lstat(current)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(info.st_mode):
            raise PackWriteError(f"{current} is a symlink; refusing to write through it")
        if current != path and not stat.S_ISDIR(info.st_mode):
            raise PackWriteError(f"{current} is not a directory")
        if current == path and not stat.S_ISREG(info.st_mode):
            raise PackWriteError(f"{current} exists and is not a regular file")


def write_pack(
    kb: KnowledgeBase, target: str, out_dir: Path, force: bool = False, unchanged: list[Path] | None = None
) -> list[Path]:
    """Write the pack under `out_dir` and return the files written; files already identical are
    left alone (and listed in `unchanged`). Refuses, before writing anything, to write through a
    symlink below `out_dir` or, without `force`, to overwrite a file with different content.
    Raises PackWriteError or OSError."""
    planned: list[tuple[Path, bytes]] = []
    unchanged = [] if unchanged is None else unchanged
    for relative, text in build_pack(kb, target).items():
        path = out_dir / relative
        data = text.encode("utf-8")  # bytes: no platform newline translation
        _refuse_links(out_dir, path)
        if path.is_file():
            if path.read_bytes() == data:
                unchanged.append(path)
                continue
            if not force:
                raise PackWriteError(f"{path} exists and differs from the pack; pass --force to overwrite it")
        planned.append((path, data))
    written = []
    for path, data in planned:
        path.parent.mkdir(parents=True, exist_ok=True)
        _refuse_links(out_dir, path)  # again, just before writing: nothing planted since
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        written.append(path)
    return written
