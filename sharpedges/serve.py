"""A Model Context Protocol server over stdio, so coding agents can lint and consult the skills
while they write ML code. A thin face on the official `mcp` SDK (`pip install sharpedges[mcp]`):
every tool calls the same functions as the CLI.

`check_paths` reads only inside the roots the server was started with: a path is resolved
(symlinks followed) before it is compared, so a link pointing out of a root is refused like a
path that names the outside directly. `probe` imports the model's module only from inside the
first root, in a child process (`sharpedges probe --root`) that a hung model cannot outlive.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any, Literal

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.prompts.base import Prompt
from mcp.server.mcpserver.resources.types import FunctionResource
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from sharpedges import __version__
from sharpedges.calculators import ChinchillaAnswer, KvCacheAnswer
from sharpedges.config import Config, find_config
from sharpedges.diagnostics import FileError
from sharpedges.discovery import PYTHON_SUFFIXES, discover
from sharpedges.knowledge.routing import RouteAnswer
from sharpedges.runner import DEFAULT_TIME_LIMIT, CheckOptions, RunResult

MAX_FILES_PER_CALL = 2000
MAX_REQUEST_CHARS = 10_000

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


class ProbeReport(TypedDict):
    probes: list[dict[str, Any]]  # the `sharpedges probe --format json` entries


PROBE_TIME_LIMIT = 600  # seconds for one `probe` call; a model that hangs is stopped, not waited on


async def run_probe_command(root: Path, target: str, probes: list[str] | None, device: str) -> ProbeReport:
    """`sharpedges probe TARGET --root ROOT --format json` in a child process, off the event loop: the
    user's module runs there, confined to ROOT, a fresh import sees its latest code, and the process
    is killed when it runs past the limit."""
    import anyio

    command = [sys.executable, "-m", "sharpedges", "probe", "--root", str(root), "--format", "json", "--device", device]
    for name in probes or []:
        command += ["--probe", name]
    try:
        with anyio.fail_after(PROBE_TIME_LIMIT):
            done = await anyio.run_process([*command, "--", target], cwd=root, check=False)
    except TimeoutError:
        raise ToolError(f"{target}: the probes ran past {PROBE_TIME_LIMIT} s and were stopped") from None
    if done.returncode not in (0, 1):
        errors = [
            line for line in done.stderr.decode(errors="replace").splitlines() if line.startswith("sharpedges: error:")
        ]
        raise ToolError(
            errors[-1].removeprefix("sharpedges: error: ")
            if errors
            else f"{target}: the probe process exited with {done.returncode}"
        )
    try:
        return ProbeReport(probes=json.loads(done.stdout)["probes"])
    except (ValueError, KeyError):
        raise ToolError(f"{target}: the probe process wrote no report (exit {done.returncode})") from None


class PathGuard:
    """Which files `check_paths` may read: those whose real path lies inside one of the roots.

    A path is resolved before it is compared, a directory that resolves outside is never entered,
    and each file is opened once and checked through the descriptor it is read from, so swapping
    a symlink between the check and the read cannot reach outside."""

    def __init__(self, roots: list[Path]) -> None:
        self.roots = [root.resolve() for root in roots]

    def inside(self, path: Path | str) -> bool:
        real = Path(os.path.realpath(path))
        return any(real == root or root in real.parents for root in self.roots)

    def resolve(self, text: str) -> Path:
        """The path to check, relative paths taken from the first root; raises ToolError for a path
        outside the roots (directly or through a symlink), a missing path or a non-Python file."""
        if "\0" in text:
            raise ToolError(f"{text!r}: refused: a path cannot contain a NUL byte")
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

    def python_files(self, texts: list[str], limit: int) -> tuple[list[str], list[FileError]]:
        """Every Python file the paths name or contain, each once; a file or directory under a
        walked directory that resolves outside the roots is named as refused, never entered or read."""
        files: list[str] = []
        errors: list[FileError] = []

        def within(path: Path) -> bool:
            if self.inside(path):
                return True
            errors.append(
                FileError(str(path), "refused: resolves through a symlink outside the server's roots, not read")
            )
            return False

        for text in dict.fromkeys(texts):
            path = self.resolve(text)
            candidates = (
                [str(path)]
                if not path.is_dir()
                else (candidate.display for candidate in discover([str(path)], [], errors, within=within))
            )
            for candidate in candidates:
                if candidate not in files:
                    files.append(candidate)
                if len(files) > limit:
                    raise ToolError(f"too many files (more than {limit}): name fewer paths")
        return files, errors

    def read(self, path: str, max_bytes: int) -> bytes:
        """The bytes of `path`, read from a descriptor whose real path was checked against the roots."""
        try:
            descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
        except OSError as exc:
            raise OSError(f"cannot read: {(exc.strerror or str(exc)).lower()}") from None
        with os.fdopen(descriptor, "rb") as handle:
            info = os.fstat(descriptor)
            opened = f"/proc/self/fd/{descriptor}"
            real = os.readlink(opened) if os.path.islink(opened) else os.path.realpath(path)
            if not self.inside(real):
                raise OSError("refused: resolves through a symlink outside the server's roots, not read")
            if not stat.S_ISREG(info.st_mode):
                raise OSError("not a regular file (FIFO, device or socket), not checked")
            if info.st_size > max_bytes:
                raise OSError(f"file too large ({info.st_size / 2**20:.1f} MiB), not checked")
            return handle.read(max_bytes + 1)

    def config_for(self, path: Path) -> Config:
        """The project configuration for `path`, never one from above the roots."""
        config = find_config(path)
        return config if config.path is None or self.inside(config.path) else Config()


class CallLimits:
    """Checks run off the event loop, at most `concurrent` at once (more are refused, not queued),
    each within `seconds`: the server keeps answering while a file is checked."""

    def __init__(self, concurrent: int = 4, seconds: float = float(DEFAULT_TIME_LIMIT) * 2) -> None:
        self.concurrent = concurrent
        self.seconds = seconds
        self.running = 0

    async def run(self, work):
        import anyio

        if self.running >= self.concurrent:
            raise ToolError(f"busy: {self.running} checks are running; try again when one has finished")
        self.running += 1
        try:
            with anyio.fail_after(self.seconds):
                return await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
        except TimeoutError:
            raise ToolError(f"the check took longer than {self.seconds:g} s and was abandoned") from None
        finally:
            self.running -= 1


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
    from sharpedges.knowledge.explain import explain_rule as explain
    from sharpedges.knowledge.registry import UnknownRuleError, UnknownSkillError, load_knowledge
    from sharpedges.knowledge.render import render_markdown
    from sharpedges.knowledge.routing import default_router
    from sharpedges.runner import build_engine, check_source
    from sharpedges.suppression import per_file_ignored

    guard = PathGuard(roots)
    limits = CallLimits()
    kb = load_knowledge()
    server = MCPServer("sharpedges", version=__version__, instructions=INSTRUCTIONS, log_level="WARNING")
    # Reading only: no result cache is written into the user's tree, and one process, since
    # forking a pool from a server thread is not safe.
    options = CheckOptions(use_cache=False, jobs=1)

    engines: dict[int, Any] = {}

    def engine_for(path: Path):
        config = guard.config_for(path)
        if id(config) not in engines:
            engines[id(config)] = build_engine(config, options)
        return engines[id(config)]

    def check_one(display: str, path: Path, data: bytes) -> RunResult:
        config = guard.config_for(path)
        found = check_source(engine_for(path), display, data, DEFAULT_TIME_LIMIT)
        kept = [d for d in found.diagnostics if not per_file_ignored(config, d)]
        return RunResult(kept, found.errors, 1)

    @server.tool()
    async def check_code(source: str, filename: str = "snippet.py") -> CheckReport:
        """Lint Python source text for transformer bugs. `filename` names it in the results and picks
        the project configuration (a relative path inside the root, ending in .py or .pyi)."""
        if not filename.endswith(PYTHON_SUFFIXES):
            raise ToolError(f"{filename}: refused: not a Python file name (.py or .pyi)")
        if "\0" in filename or Path(filename).is_absolute() or ".." in Path(filename).parts:
            raise ToolError(f"{filename!r}: refused: give a relative file name inside the root, without '..'")
        return _explained(
            await limits.run(
                lambda: check_one(filename, guard.roots[0] / filename, source.encode("utf-8", "surrogatepass"))
            )
        )

    @server.tool()
    async def check_paths(paths: list[str]) -> CheckReport:
        """Lint Python files or directories inside the server's roots (relative paths start at the
        first root). Paths outside the roots, symlinks out of them and non-Python files are refused."""
        if not paths:
            raise ToolError("give at least one path")

        def work() -> RunResult:
            files, errors = guard.python_files(paths, MAX_FILES_PER_CALL)
            result = RunResult([], errors, len(files))
            for file in files:
                try:
                    data = guard.read(file, engine_for(Path(file)).max_bytes)
                except OSError as exc:
                    result.errors.append(FileError(file, str(exc)))
                    continue
                found = check_one(file, Path(file), data)
                result.diagnostics += found.diagnostics
                result.errors += found.errors
            result.diagnostics.sort(key=lambda d: d.sort_key())
            result.errors.sort(key=lambda e: (e.path, e.message))
            return result

        return _explained(await limits.run(work))

    probes_running = 0

    @server.tool()
    async def probe(
        target: str, probes: list[str] | None = None, device: Literal["cpu", "cuda"] = "cpu"
    ) -> ProbeReport:
        """Run the runtime probes (causal, eval-deterministic, kv-cache-consistent, padding-invariant,
        half-precision, grad-flow; default: all) on the model built by `target`, MODULE:FACTORY naming
        a zero-argument callable in a module inside the first root. Needs torch. Each probe passes,
        fails or is skipped, with the rules it confirms and the measured numbers. One run at a time."""
        nonlocal probes_running
        if probes_running:
            raise ToolError("busy: a probe run is in progress; try again when it has finished")
        probes_running += 1
        try:
            return await run_probe_command(guard.roots[0], target, probes, device)
        finally:
            probes_running -= 1

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
        return RuleList(
            rules=[
                RuleSummary(
                    code=s.code,
                    name=s.name,
                    title=s.title,
                    severity=s.severity,
                    default=s.default,
                    fix=s.fix,
                    skill=s.skill,
                    reference_impl=s.reference_impl,
                )
                for s in kb.specs.values()
            ]
        )

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
        return SkillList(
            skills=[
                SkillSummary(id=s.id, name=s.name, version=s.version, description=s.description)
                for s in kb.skills.values()
            ]
        )

    @server.tool()
    def route(request: str) -> RouteAnswer:
        """The skill that should own a request (null when none does), with every skill that matched
        and why: the same answer as `sharpedges route --format json`."""
        if len(request) > MAX_REQUEST_CHARS:
            raise ToolError(f"request too long ({len(request)} characters; at most {MAX_REQUEST_CHARS})")
        return default_router().route(request).to_json()

    @server.tool()
    def kv_cache_bytes(
        layers: int | str,
        kv_heads: int | str,
        head_dim: int | str,
        seq_len: int | str = 1,
        batch: int | str = 1,
        dtype: str = "float16",
    ) -> KvCacheAnswer:
        """Memory of a full KV cache: 2 (K and V) x layers x kv_heads x head_dim x dtype bytes per
        token, times seq_len and batch. Use the KV head count (smaller than query heads with GQA).
        Sizes may be written as the CLI takes them: 128k, 1M."""
        try:
            return calculators.kv_cache_bytes(layers, kv_heads, head_dim, seq_len, batch, dtype).to_json()
        except ValueError as exc:
            raise ToolError(str(exc)) from None

    @server.tool()
    def chinchilla(
        params: float | str | None = None, tokens: float | str | None = None, flops: float | str | None = None
    ) -> ChinchillaAnswer:
        """Compute-optimal model size, training tokens and FLOPs from exactly one of them
        (20 tokens per parameter, C = 6 N D). Numbers may be written as the CLI takes them: 7B, 1.4T."""
        try:
            given = [None if value is None else calculators.parse_count(value) for value in (params, tokens, flops)]
            return calculators.chinchilla(*given).to_json()
        except ValueError as exc:
            raise ToolError(str(exc)) from None

    for skill in kb.skills.values():
        skill_markdown = _markdown_of(kb, skill, render_markdown)
        server.add_resource(
            FunctionResource.from_function(
                skill_markdown,
                uri=f"skill://{skill.id}",
                name=skill.id,
                title=skill.name,
                description=skill.description,
                mime_type="text/markdown",
            )
        )
        server.add_prompt(
            Prompt.from_function(
                skill_markdown, name=skill.id, title=skill.name, description=f"System prompt: {skill.description}"
            )
        )
    return server
