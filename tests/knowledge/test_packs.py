"""Every prompt-pack target, generated from the shipped skills and parsed back file by file."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sharpedges.knowledge.packs import MANIFEST_NAME, TARGETS, build_pack, write_pack
from sharpedges.knowledge.render import anchor

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
AGENTS_MD_BUDGET = 32 * 1024  # Codex reads at most 32 KiB of AGENTS.md by default
SKILL_MD_MAX_LINES = 500  # the Agent Skills guidance for SKILL.md bodies
SKILL_MD_MAX_WORDS = 5000  # the spec suggests under 5000 tokens for the instructions
CURSOR_RULE_MAX_LINES = 500  # Cursor's guidance for a rule file
REFERENCE_MAX_BYTES = 8 * 1024  # topic files small enough to load one at a time
SEVERITIES = ["CRITICAL", "HIGH", "MEDIUM", "LOW"]
# Notes about the documents the skills were distilled from: provenance stays in YAML comments.
SOURCE_NOTES = re.compile(
    r"\bseeds? ?\d{3}\b|\bthe seeds?\b(?!\s+nodes?)|\bseed (?:document|claim|prompt|fact)s?\b|"
    r"\bcorrection\b|bloomwiki|vibeship",
    re.IGNORECASE,
)


@pytest.fixture(scope="module")
def packs(real_kb, tmp_path_factory):
    root = tmp_path_factory.mktemp("packs")
    for target in TARGETS:
        write_pack(real_kb, target, root / target)
    return root


def front_matter(text: str) -> tuple[dict, str]:
    assert text.startswith("---\n"), "front matter must open the file"
    header, body = text[4:].split("\n---\n", 1)
    data = yaml.safe_load(header)
    assert isinstance(data, dict)
    return data, body


def anchors_in(text: str) -> set[str]:
    explicit = set(re.findall(r'<a id="([^"]+)"></a>', text))
    headings = {anchor(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE)}
    return explicit | headings


def assert_links_resolve(path: Path, root: Path) -> int:
    text = path.read_text(encoding="utf-8")
    checked = 0
    for target in LINK.findall(text):
        if target.startswith(("http://", "https://")):
            continue
        file_part, _, fragment = target.partition("#")
        destination = (path.parent / file_part).resolve() if file_part else path
        assert destination.is_file(), f"{path.relative_to(root)} links to missing {target}"
        assert root.resolve() in destination.parents, f"{path} links outside the pack: {target}"
        if fragment:
            assert fragment in anchors_in(destination.read_text(encoding="utf-8")), f"{path}: no anchor {target}"
        checked += 1
    return checked


def test_every_target_is_deterministic(real_kb, tmp_path):
    for target in TARGETS:
        assert build_pack(real_kb, target) == build_pack(real_kb, target)
        first, second = write_pack(real_kb, target, tmp_path / "a"), write_pack(real_kb, target, tmp_path / "b")
        assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]


def test_unknown_target_is_refused(real_kb):
    with pytest.raises(ValueError, match="unknown target 'nope'"):
        build_pack(real_kb, "nope")


def test_spawner_four_files_per_skill(real_kb, packs):
    root = packs / "spawner"
    assert sorted(p.name for p in root.iterdir()) == sorted(real_kb.skills)
    for skill in real_kb.skills.values():
        folder = root / skill.id
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            ["skill.yaml", "sharp-edges.yaml", "validations.yaml", "collaboration.yaml"]
        )
        body = yaml.safe_load((folder / "skill.yaml").read_text(encoding="utf-8"))
        assert body["id"] == skill.id and body["description"] == skill.description and body["triggers"]["keywords"]
        edges = yaml.safe_load((folder / "sharp-edges.yaml").read_text(encoding="utf-8"))["sharp_edges"]
        assert [edge["id"] for edge in edges] == [edge.id for edge in skill.sharp_edges]
        for edge in edges:
            assert edge["severity"] in {"critical", "high", "medium", "low"}
            assert all(edge[key] for key in ("summary", "why", "solution", "solution_code", "symptoms"))
        validations = yaml.safe_load((folder / "validations.yaml").read_text(encoding="utf-8"))["validations"]
        assert {v["id"] for v in validations} == {code for edge in skill.sharp_edges for code in edge.rules}
        for validation in validations:
            assert validation["type"] == "cst" and validation["sharp_edge"] in {e.id for e in skill.sharp_edges}
            assert validation["name"] == real_kb.specs[validation["id"]].name
        collaboration = yaml.safe_load((folder / "collaboration.yaml").read_text(encoding="utf-8"))
        for handoff in collaboration["delegation_triggers"]:
            assert (root / handoff["delegate_to"] / "skill.yaml").is_file()
        for sender in collaboration["receives_from"]:
            assert (root / sender["skill"]).is_dir()
    assert yaml.safe_load((root / "transformer-architecture/validations.yaml").read_text())["validations"]


def test_claude_skill_folders(real_kb, packs):
    root = packs / "claude-skill"
    for skill in real_kb.skills.values():
        folder = root / skill.id
        text = (folder / "SKILL.md").read_text(encoding="utf-8")
        meta, body = front_matter(text)
        assert meta["name"] == skill.id and meta["description"] == " ".join(skill.description.split())
        assert len(meta["description"]) <= 1024
        assert len(body.splitlines()) <= SKILL_MD_MAX_LINES
        assert len(body.split()) <= SKILL_MD_MAX_WORDS
        assert "```" not in body, "code belongs in references/, loaded only when needed"
        links = assert_links_resolve(folder / "SKILL.md", root)
        assert links >= len(skill.sharp_edges) + len(skill.handoffs) + len(skill.sections)
        for edge in skill.sharp_edges:
            assert f"(references/edges/{edge.id}.md)" in body
        for reference in sorted((folder / "references").rglob("*.md")):
            assert_links_resolve(reference, root)
            size = len(reference.read_bytes())
            assert size <= REFERENCE_MAX_BYTES, f"{reference.relative_to(root)} is {size} bytes"


def test_claude_skill_workflow_lints_then_walks_the_checklist_by_severity(real_kb, packs):
    for skill in real_kb.skills.values():
        body = (packs / "claude-skill" / skill.id / "SKILL.md").read_text(encoding="utf-8")
        workflow = body[body.index("## Workflow") : body.index("## Principles")]
        assert "sharpedges check" in workflow and "pip install sharpedges" in workflow
        assert "grep -rnE" in workflow and "Prove the change" in workflow
        checklist = [line for line in workflow.splitlines() if line.strip().startswith("- [ ] **")]
        assert len(checklist) == len(skill.sharp_edges)
        severities = [line.split("**")[1] for line in checklist]
        assert severities == sorted(severities, key=SEVERITIES.index)
        for edge in skill.sharp_edges:
            assert edge.summary in workflow
            if edge.grep:
                assert f"Cue: `{edge.grep}`" in workflow


def test_scripts_ship_with_their_skill_and_are_listed(real_kb, packs):
    folder = packs / "claude-skill" / "transformer-architecture"
    body = (folder / "SKILL.md").read_text(encoding="utf-8")
    for name in ("kv_cache.py", "sdpa_equivalence.py"):
        assert (folder / "scripts" / name).is_file() and f"python scripts/{name}" in body


def test_claude_skill_folders_pass_the_reference_validator(real_kb, packs):
    validator = shutil.which("agentskills") or shutil.which("agentskills", path=str(Path(sys.executable).parent))
    assert validator, "skills-ref (agentskills) is a test dependency: pip install -e '.[test]'"
    for skill_id in real_kb.skills:
        result = subprocess.run(
            [validator, "validate", str(packs / "claude-skill" / skill_id)], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, f"{skill_id}: {result.stdout}{result.stderr}"


def test_cursor_rules(real_kb, packs):
    root = packs / "cursor"
    rules_dir = root / ".cursor" / "rules"
    assert sorted(p.stem for p in rules_dir.glob("*.mdc")) == sorted(real_kb.skills)
    for path in rules_dir.glob("*.mdc"):
        meta, body = front_matter(path.read_text(encoding="utf-8"))
        assert set(meta) == {"description", "globs", "alwaysApply"}
        assert meta["description"].startswith("Use when") and "Not for" in meta["description"]
        assert meta["globs"] == "**/*.py" and meta["alwaysApply"] is False  # attaches to Python files
        assert "sharpedges check" in body and "- [ ] **" in body
        assert len(body.splitlines()) <= CURSOR_RULE_MAX_LINES
        assert assert_links_resolve(path, root) == len(real_kb.skills[path.stem].handoffs)


def test_agents_md(real_kb, packs):
    path = packs / "agents-md" / "AGENTS.md"
    text = path.read_text(encoding="utf-8")
    assert len(text.encode("utf-8")) <= AGENTS_MD_BUDGET
    assert assert_links_resolve(path, packs / "agents-md") >= 2 * len(real_kb.skills)
    assert not re.search(r"\.\.\.(?: Lint: [^\n]*)?$", text, flags=re.MULTILINE), "nothing is cut mid-sentence"
    assert "sharpedges check" in text and "pip install sharpedges" in text
    for skill in real_kb.skills.values():
        assert f"## {skill.name}\n" in text
        for edge in skill.sharp_edges:
            assert edge.summary in text


def test_markdown_system_prompts_have_the_seed_shape(real_kb, packs):
    root = packs / "markdown"
    assert sorted(p.stem for p in root.glob("*.md")) == sorted(real_kb.skills)
    for skill in real_kb.skills.values():
        text = (root / f"{skill.id}.md").read_text(encoding="utf-8")
        headings = (
            ["## Patterns"] * bool(skill.patterns)
            + ["## Anti-Patterns"] * bool(skill.anti_patterns)
            + ["## Sharp Edges (Gotchas)", "## Collaboration", "### When to Hand Off", "### Receives Work From"]
        )
        positions = [text.index(heading) for heading in headings]
        assert positions == sorted(positions)
        assert text.count("**Why it happens:**") == len(skill.sharp_edges)
        assert len(text.encode("utf-8")) < 256 * 1024


def test_json_manifest(real_kb, packs):
    manifest = json.loads((packs / "json" / MANIFEST_NAME).read_text(encoding="utf-8"))
    assert manifest["version"] == 1
    ids = [skill["id"] for skill in manifest["skills"]]
    assert ids == sorted(real_kb.skills)
    codes = {rule["code"] for rule in manifest["rules"]}
    assert codes == set(real_kb.specs)
    edges = {(skill["id"], edge["id"]) for skill in manifest["skills"] for edge in skill["sharp_edges"]}
    for skill in manifest["skills"]:
        assert skill["triggers"]["keywords"] and skill["description"]
        assert all(handoff["delegate_to"] in ids for handoff in skill["handoffs"])
        assert all(code in codes for edge in skill["sharp_edges"] for code in edge["rules"])
    assert all((rule["skill"], rule["sharp_edge"]) in edges for rule in manifest["rules"])


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_no_pack_carries_notes_about_source_documents(packs, target):
    for path in sorted(p for p in (packs / target).rglob("*") if p.is_file()):
        text = path.read_text(encoding="utf-8")
        found = SOURCE_NOTES.search(text)
        assert not found, f"{path.relative_to(packs)}: {text[max(0, found.start() - 60) : found.end() + 60]!r}"


def test_readme_says_where_each_target_goes():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    for destination in (".claude/skills/", ".cursor/rules/", "AGENTS.md"):
        assert destination in readme
