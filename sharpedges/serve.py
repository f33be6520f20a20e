"""A Model Context Protocol server over stdio, so coding agents can lint and consult the skills
while they write ML code. A thin face on the official `mcp` SDK (`pip install sharpedges[mcp]`):
every tool calls the same functions as the CLI.

`check_paths` reads only inside the roots the server was started with: a path is resolved
(symlinks followed) before it is compared, so a link pointing out of a root is refused like a
path that names the outside directly.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.prompts.base import Prompt
from mcp.server.mcpserver.resources.types import FunctionResource

from sharpedges import __version__
from sharpedges.diagnostics import FileError
from sharpedges.discovery import PYTHON_SUFFIXES, discover
from sharpedges.runner import DEFAULT_TIME_LIMIT, CheckOptions, RunResult

INSTRUCTIONS = (
    "sharpedges finds transformer bugs that run without crashing (unscaled attention, inverted causal "
    "masks, unbounded KV caches, MoE routing without a balancing loss, ...). Call check_code on code you "
    "write, explain_rule for any finding, route to pick the expert skill for a task and get_skill to read "
    "it; kv_cache_bytes and chinchilla do the sizing arithmetic."
)


class CheckReport(TypedDict):
    diagnostics: list[dict[str, Any]]  # CONVENTIONS.md diagnostics, each with an `explanation`
    errors: list[dict[str, Any]]
    summary: dict[str, int]


class RuleSummary(TypedDict):
    code: str
    name: str
    title: str
    severity: str
    default: bool
    fix: str
    skill: str
    reference_impl: str


class RuleList(TypedDict):
    rules: list[RuleSummary]


class SkillSummary(TypedDict):
    id: str
    name: str
    version: str
    description: str


class SkillList(TypedDict):
    skills: list[SkillSummary]


class SkillText(TypedDict):
    id: str
    name: str
    section: str | None
    markdown: str


class RouteMatch(TypedDict):
    skill: str
    score: float
    reason: str


class RouteAnswer(TypedDict):
    skill: str | None
    matches: list[RouteMatch]


class KvCacheAnswer(TypedDict):
    bytes: int
    bytes_per_token: float
    human: str


class ChinchillaAnswer(TypedDict):
    params: float
    tokens: float
    flops: float
    human: str


class PathGuard:
    """Which files `check_paths` may read: those whose real path lies inside one of the roots."""

    def __init__(self, roots: list[Path]) -> None:
        self.roots = [root.resolve() for root in roots]

    def inside(self, path: Path) -> bool:
        real = Path(os.path.realpath(path))
        return any(real == root or root in real.parents for root in self.roots)

    def resolve(self, text: str) -> Path:
        """The path to check, relative paths taken from the first root; raises ToolError for a path
        outside the roots (directly or through a symlink), a missing path or a non-Python file."""
        given = Path(text).expanduser()
        path = given if given.is_absolute() else self.roots[0] / given
        if not self.inside(path):
            through = " through a symlink" if os.path.realpath(path) != os.path.abspath(path) else ""
            roots = ", ".join(str(root) for root in self.roots)
            raise ToolError(f"{text}: refused: resolves{through} outside the server's roots ({roots})")
        if not path.exists():
            raise ToolError(f"{text}: no such file or directory")
        if not path.is_dir() and path.suffix not in PYTHON_SUFFIXES:
            raise ToolError(f"{text}: refused: not a Python file (.py or .pyi)")
        return path

    def python_files(self, texts: list[str]) -> tuple[list[str], list[FileError]]:
        """Every Python file the paths name or contain; files under a directory that resolve outside
        the roots are reported as errors, never read."""
        files: list[str] = []
        errors: list[FileError] = []
        for text in texts:
            path = self.resolve(text)
            if not path.is_dir():
                files.append(str(path))
                continue
            for candidate in discover([str(path)], [], errors):
                if self.inside(candidate.path):
                    files.append(candidate.display)
                else:
                    errors.append(FileError(candidate.display, "refused: resolves through a symlink outside the "
                                                               "server's roots, not read"))
        return files, errors


def _explained(result: RunResult) -> CheckReport:
    from sharpedges.knowledge.explain import explain_rule
    from sharpedges.outputs.json import document
    from sharpedges.review import explanation_fields

    data = document(result)
    explanations = {code: explanation_fields(explain_rule(code)) for code in {d.rule for d in result.diagnostics}}
    for item in data["diagnostics"]:
        item["explanation"] = explanations[item["rule"]]
    return CheckReport(diagnostics=data["diagnostics"], errors=data["errors"], summary=data["summary"])


def _markdown_of(kb, skill, render_markdown):
    """A function with no parameters (so the prompt takes no arguments) rendering one skill."""
    def markdown() -> str:
        return render_markdown(kb, skill)

    return markdown


def build_server(roots: list[Path]) -> MCPServer:
    from sharpedges import calculators
    from sharpedges.config import find_config
    from sharpedges.knowledge.explain import explain_rule as explain
    from sharpedges.knowledge.registry import UnknownRuleError, UnknownSkillError, load_knowledge
    from sharpedges.knowledge.render import render_markdown
    from sharpedges.knowledge.routing import default_router
    from sharpedges.runner import build_engine, check_source, run_check

    guard = PathGuard(roots)
    kb = load_knowledge()
    server = MCPServer("sharpedges", version=__version__, instructions=INSTRUCTIONS, log_level="WARNING")
    # Reading only: no result cache is written into the user's tree, and one process, since
    # forking a pool from a server thread is not safe.
    options = CheckOptions(use_cache=False, jobs=1)

    @server.tool()
    def check_code(source: str, filename: str = "snippet.py") -> CheckReport:
        """Lint Python source text for transformer bugs. `filename` names it in the results and picks
        the project configuration; it must end in .py or .pyi."""
        if not filename.endswith(PYTHON_SUFFIXES):
            raise ToolError(f"{filename}: refused: not a Python file name (.py or .pyi)")
        engine = build_engine(find_config(guard.roots[0] / filename), options)
        found = check_source(engine, filename, source.encode("utf-8"), DEFAULT_TIME_LIMIT)
        return _explained(RunResult(found.diagnostics, found.errors, 1))

    @server.tool()
    def check_paths(paths: list[str]) -> CheckReport:
        """Lint Python files or directories inside the server's roots (relative paths start at the
        first root). Paths outside the roots, symlinks out of them and non-Python files are refused."""
        if not paths:
            raise ToolError("give at least one path")
        files, errors = guard.python_files(paths)
        result = run_check(CheckOptions(paths=files, use_cache=False, jobs=1)) if files else RunResult([], [], 0)
        result.errors.extend(errors)
        return _explained(result)

    @server.tool()
    def explain_rule(code: str) -> dict[str, Any]:
        """A rule (e.g. SHP101) with the sharp edge it enforces: why it matters, symptoms, the fix and
        the reference implementation."""
        try:
            return explain(code.strip().upper(), kb)
        except UnknownRuleError:
            raise ToolError(f"unknown rule '{code}' (known: {', '.join(kb.specs)})") from None

    @server.tool()
    def list_rules() -> RuleList:
        """Every lint rule: code, name, title, severity, whether it is on by default, fix safety."""
        return RuleList(rules=[RuleSummary(code=s.code, name=s.name, title=s.title, severity=s.severity,
                                           default=s.default, fix=s.fix, skill=s.skill,
                                           reference_impl=s.reference_impl) for s in kb.specs.values()])

    @server.tool()
    def get_skill(id: str, section: str | None = None) -> SkillText:
        """One expert skill as Markdown, whole or one section (overview, principles, knowledge,
        glossary, patterns, anti-patterns, sharp-edges, tradeoffs, failure-modes, decision-guides,
        collaboration, references)."""
        try:
            skill = kb.skill(id)
            text = render_markdown(kb, skill, section)
        except (UnknownSkillError, ValueError) as exc:
            raise ToolError(str(exc)) from None
        return SkillText(id=skill.id, name=skill.name, section=section, markdown=text)

    @server.tool()
    def list_skills() -> SkillList:
        """Every expert skill: id, name, version and when to use it."""
        return SkillList(skills=[SkillSummary(id=s.id, name=s.name, version=s.version, description=s.description)
                                 for s in kb.skills.values()])

    @server.tool()
    def route(request: str) -> RouteAnswer:
        """The skill that should own a request (null when none does), with every skill that matched
        and why: the same answer as `sharpedges route --format json`."""
        return default_router().route(request).to_json()

    @server.tool()
    def kv_cache_bytes(layers: int, kv_heads: int, head_dim: int, seq_len: int = 1, batch: int = 1,
                       dtype: str = "float16") -> KvCacheAnswer:
        """Memory of a full KV cache: 2 (K and V) x layers x kv_heads x head_dim x dtype bytes per
        token, times seq_len and batch. Use the KV head count (smaller than query heads with GQA)."""
        try:
            return calculators.kv_cache_bytes(layers, kv_heads, head_dim, seq_len, batch, dtype).to_json()
        except ValueError as exc:
            raise ToolError(str(exc)) from None

    @server.tool()
    def chinchilla(params: float | None = None, tokens: float | None = None,
                   flops: float | None = None) -> ChinchillaAnswer:
        """Compute-optimal model size, training tokens and FLOPs from exactly one of them
        (20 tokens per parameter, C = 6 N D)."""
        try:
            return calculators.chinchilla(params, tokens, flops).to_json()
        except ValueError as exc:
            raise ToolError(str(exc)) from None

    for skill in kb.skills.values():
        skill_markdown = _markdown_of(kb, skill, render_markdown)
        server.add_resource(FunctionResource.from_function(
            skill_markdown, uri=f"skill://{skill.id}", name=skill.id, title=skill.name,
            description=skill.description, mime_type="text/markdown"))
        server.add_prompt(Prompt.from_function(skill_markdown, name=skill.id, title=skill.name,
                                               description=f"System prompt: {skill.description}"))
    return server
