"""Checks one file: screen the bytes, parse once, run every enabled detector, position and
suppress what they found. Knows nothing of files on disk, config files or output formats."""

from __future__ import annotations

import ast
import functools
import gc
import re
import signal
import sys
import threading
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import libcst as cst
from libcst._nodes.base import CSTNode
from libcst._nodes.internal import CodegenState
from libcst.metadata import MetadataWrapper, PositionProvider
from libcst.metadata.position_provider import NEWLINE_RE, PositionProvidingCodegenState

from sharpedges.analysis.context import FileContext
from sharpedges.analysis.walk import is_a
from sharpedges.detector import Finding, Replacement
from sharpedges.diagnostics import Diagnostic, DiagnosticFix, Edit, FileError, FileResult
from sharpedges.lines import line_starts, source_lines, span_offsets
from sharpedges.project import ProjectScopes
from sharpedges.registry import Rule
from sharpedges.suppression import suppressed_by_noqa, unknown_noqa_codes

# A file with a finding on every line costs about 1.2 GB per MiB to check (30,000 findings in
# 0.4 MiB peaked at 0.45 GB; 10 MiB reached 10.9 GB): 2 MiB keeps a run on a laptop, and real model
# files are far smaller (the largest in the pinned corpus is under 0.5 MiB).
DEFAULT_MAX_BYTES = 2 * 1024 * 1024
# CPython refuses more than 200 nested brackets; libcst's native parser slows to a halt or overflows
# its stack far beyond that, so such files are refused before parsing.
MAX_BRACKET_DEPTH = 200
_ONLY_BRACKETS = bytes(set(range(256)) - set(b"()[]{}"))
_ONE_BRACKET_KIND = bytes.maketrans(b"[{]}", b"(())")


def bracket_depth_exceeds(data: bytes, limit: int = MAX_BRACKET_DEPTH) -> bool:
    """Whether brackets nest deeper than `limit`, at C speed: each pass deletes the innermost pairs.
    Brackets inside strings and comments can only make this err towards parsing."""
    brackets = data.translate(_ONE_BRACKET_KIND, _ONLY_BRACKETS)
    for _ in range(limit):
        if b"()" not in brackets:
            return False
        brackets = brackets.replace(b"()", b"")
    return b"()" in brackets


# libcst's native parser also recurses once per level of nesting that needs no brackets (`a and a
# and ...`, elif chains, operator chains): up to ~1.5 KiB of stack a level, so some 10,000 levels
# overflow a process's 8 MiB main stack and kill it, run and all (3,000 levels of every kind parse
# there). A file that could nest deeper (bounded by counting every operator, bracket and nesting
# keyword) parses on a thread whose stack fits the bound: reserved, touched only as deep as used.
STACK_PER_LEVEL = 2 * 1024
MAIN_STACK_BUDGET = 6 * 2**20
MAX_PARSE_STACK = 2**30
_ONLY_NESTING_BYTES = bytes(set(range(256)) - set(b".([{+-*/%@&|^~<>=!"))
_NESTING_WORDS = (b"and", b"or", b"not", b"if", b"lambda", b"await")


def nesting_bound(data: bytes) -> int:
    """An upper bound on how deeply a parse of `data` can nest, at C speed."""
    return len(data.translate(None, _ONLY_NESTING_BYTES)) + sum(data.count(word) for word in _NESTING_WORDS)


def _no_validation(node: CSTNode) -> None:
    pass


class _ValidationSwitch:
    """libcst's validation of new nodes, off while at least one parse runs (parses on several threads,
    as an editor's server may run them, overlap safely: the last one to finish turns it back on)."""

    validate = CSTNode.__dict__.get("__post_init__")  # None: a libcst that validates elsewhere
    lock = threading.Lock()
    parses = 0


@contextmanager
def _trusting_the_parser() -> Iterator[None]:
    """Nodes built meanwhile skip libcst's validation. Every node libcst builds validates itself
    (`CSTNode.__post_init__`), which a tree fresh from its own parser passes by construction: about a
    tenth of a parse ("PERF: ... would allow us to avoid validating the tree when parsing a file",
    says libcst at that method). The tree is the same. Nodes built outside a parse, by fixes and
    rewrites, are validated as always."""
    switch = _ValidationSwitch
    if switch.validate is None:
        yield
        return
    with switch.lock:
        switch.parses += 1
        CSTNode.__post_init__ = _no_validation  # type: ignore[method-assign, assignment]
    try:
        yield
    finally:
        with switch.lock:
            switch.parses -= 1
            if switch.parses == 0:
                CSTNode.__post_init__ = switch.validate  # type: ignore[method-assign]


def parse_module(data: bytes) -> cst.Module:
    """`libcst.parse_module` without the redundant validation, on a thread with stack enough for the
    file's possible nesting."""
    with _trusting_the_parser():
        return _parse_module(data)


def _parse_module(data: bytes) -> cst.Module:
    stack = nesting_bound(data) * STACK_PER_LEVEL
    if stack <= MAIN_STACK_BUDGET:
        return cst.parse_module(data)
    outcome: list = []

    def parse() -> None:
        try:
            outcome.append(cst.parse_module(data))
        except BaseException as exc:  # re-raised on the calling thread, where the engine sorts it
            outcome.append(exc)

    # The native parser cannot be interrupted, and an alarm that interrupts the join leaves a
    # thread CPython aborts on at exit: the time limit waits until the parse is done (bounded by
    # MAX_NESTING and the file size). The thread inherits the blocked signal.
    blocked = hasattr(signal, "pthread_sigmask") and signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    try:
        previous = threading.stack_size(min(stack, MAX_PARSE_STACK))
        try:
            thread = threading.Thread(target=parse, daemon=True)
            thread.start()
        except (RuntimeError, MemoryError):  # no room for the stack: parse here, as for a shallow file
            return cst.parse_module(data)
        finally:
            threading.stack_size(previous)
        thread.join()
    finally:
        if blocked is not False:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


# Python's own parser reads a file in a tenth of the time libcst takes, so every file is checked
# by it first: a syntax error is reported with Python's message and position, and nesting deeper
# than MAX_NESTING levels is refused before libcst sees it. libcst's parser is slower than
# quadratic in the depth of a chain (900 subscripts take 4 s, 1,800 take 19 s, in native code no
# alarm can stop) and overflows its stack on a few thousand nested lambdas. CPython builds its AST
# under the interpreter's recursion limit at three levels per frame, which makes the limit a
# depth guard at no extra cost.
MAX_NESTING = 500


# A directory check reads some files twice, as the summary an importer needs (sharpedges.project)
# and as a file to check, mostly a few dozen files apart: the refusal is kept by content for the
# last sources. (Their trees are not kept: the collector's passes over them cost more than parsing.)
@functools.lru_cache(maxsize=64)
def python_refusal(data: bytes) -> str | None:
    return _python_refusal(data)


def _python_refusal(data: bytes) -> str | None:
    """Why Python's own parser refuses `data` (one line), or None when it reads it."""
    frames = _frame_depth()
    previous = sys.getrecursionlimit()
    # The time limit's alarm waits until the AST is built: raised inside CPython's AST constructor
    # it becomes a SystemError about recursion depth instead of a timeout.
    blocked = hasattr(signal, "pthread_sigmask") and signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SyntaxWarnings belong to the user's own tools
            sys.setrecursionlimit(frames + MAX_NESTING // 3)
            try:
                compile(data, "<checked>", "exec", ast.PyCF_ONLY_AST, dont_inherit=True)
            except SystemError:  # a Python callback (gc) interrupted the constructor: read it again
                compile(data, "<checked>", "exec", ast.PyCF_ONLY_AST, dont_inherit=True)
    except (RecursionError, MemoryError):
        return f"nested too deeply (more than {MAX_NESTING} levels), not checked"
    except SyntaxError as exc:
        message = " ".join(str(exc.msg).split())
        if not exc.lineno or exc.lineno < 1:  # e.g. an unknown coding cookie: no position
            return f"syntax error: {message}"
        return f"syntax error at {exc.lineno}:{exc.offset or 1}: {message}"
    except ValueError as exc:
        return f"cannot decode: {exc}"
    finally:
        sys.setrecursionlimit(previous)
        if blocked is not False:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    return None


def _positions(module: cst.Module):
    """libcst's positions, which recurse a few Python frames per level of nesting: the file is at
    most MAX_NESTING levels deep (Python's parser vouched for it), so lift the recursion limit to
    what that needs."""
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(max(previous, _frame_depth() + 10 * MAX_NESTING))
    try:
        return MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider)
    finally:
        sys.setrecursionlimit(previous)


# Statements whose parent generates their code with no arguments (an `elif` is an If its parent
# generates with `is_elif=True`): generating such a statement alone, from the line, column and
# indentation it starts at, gives the positions a whole-module pass gives.
_STATEMENTS = (cst.SimpleStatementLine, cst.BaseCompoundStatement)
_STATEMENT_PARENTS = (cst.Module, cst.IndentedBlock)


@dataclass
class _StatementStarts(CodegenState):
    """Plain code generation (the module's code) that notes, for each statement in `wanted`, how
    many tokens precede it and the indentation in force there."""

    wanted: dict[cst.CSTNode, tuple[int, tuple[str, ...]] | None] = field(default_factory=dict)

    def before_codegen(self, node: cst.CSTNode) -> None:
        if node in self.wanted:
            self.wanted[node] = (len(self.tokens), tuple(self.indent_tokens))


def _advance(line: int, column: int, tokens: list[str]) -> tuple[int, int]:
    """The 1-based line and 0-based column after `tokens`, counted as libcst's position provider
    counts them (token by token, so a `\r` token followed by a `\n` one is two line breaks)."""
    text = "".join(tokens)
    if "\r" not in text:
        breaks = text.count("\n")
        return (line + breaks, len(text) - text.rfind("\n") - 1) if breaks else (line, column + len(text))
    for token in tokens:
        segments = NEWLINE_RE.split(token)
        if len(segments) == 1:
            column += len(token)
        else:
            line, column = line + len(segments) - 1, len(segments[-1])
    return line, column


def statement_positions(module: cst.Module, parents: Mapping[cst.CSTNode, cst.CSTNode], nodes: Iterable[cst.CSTNode]):
    """The module's code and the positions of `nodes` (libcst's PositionProvider ranges), found by
    generating only the statements that hold them: positions of the whole module cost several
    times what the rules themselves do on a model file. Every node inside those statements gets
    its position too. `parents` maps each node of `module` to its parent."""
    holders: dict[cst.CSTNode, None] = {}
    for node in nodes:
        holder: cst.CSTNode | None = node
        while holder is not None and not (is_a(holder, _STATEMENTS) and is_a(parents.get(holder), _STATEMENT_PARENTS)):
            holder = parents.get(holder)
        if holder is None:  # the module itself, or a node outside any statement: position everything
            return module.code, _positions(module)
        holders[holder] = None
    # a statement inside another one gets its positions from the outer one's pass
    outermost: dict[cst.CSTNode, tuple[int, tuple[str, ...]] | None] = {
        holder: None for holder in holders if not any(a in holders for a in _ancestors(parents, holder))
    }
    plain = _StatementStarts(module.default_indent, module.default_newline, wanted=outermost)
    provider = PositionProvider()
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(max(previous, _frame_depth() + 10 * MAX_NESTING))
    try:
        module._codegen(plain)
        line, column, done = 1, 0, 0
        starts = [(start, statement) for statement, start in plain.wanted.items() if start is not None]
        for (at, indent), statement in sorted(starts, key=lambda item: item[0][0]):
            line, column = _advance(line, column, plain.tokens[done:at])
            done = at
            state = PositionProvidingCodegenState(
                module.default_indent,
                module.default_newline,
                provider,
                indent_tokens=list(indent),
                line=line,
                column=column,
            )
            statement._codegen(state)
    finally:
        sys.setrecursionlimit(previous)
    return "".join(plain.tokens), provider._computed


def _ancestors(parents: Mapping[cst.CSTNode, cst.CSTNode], node: cst.CSTNode):
    parent = parents.get(node)
    while parent is not None:
        yield parent
        parent = parents.get(parent)


def interruption(exc: BaseException) -> BaseException | None:
    """The interrupt (a time limit, Ctrl-C) behind `exc`: libcst's context managers turn one raised
    inside them into a KeyError about their own bookkeeping."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        if not isinstance(current, Exception):
            return current
        seen.add(id(current))
        pending += [current.__context__, current.__cause__]
    return None


def _frame_depth() -> int:
    depth = 0
    frame: FrameType | None = sys._getframe()
    while frame is not None:
        depth, frame = depth + 1, frame.f_back
    return depth


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic collector off while one file is checked. The file's tree (no cycles) and its
    analyses live until the check is done, so every collection during it only scanned them again,
    up to full passes over the whole tree: 1.8 s of a 33 s one-process check of a quarter of the
    pinned corpus. What cycles the check leaves behind are collected by the next file's first
    allocations; peak memory on the pinned corpus is unchanged. A caller that turned the collector
    off keeps it off."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class Engine:
    def __init__(
        self,
        rules: Iterable[Rule],
        options: dict[str, dict[str, Any]] | None = None,
        screen: bool = True,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.rules = list(rules)
        given = options or {}
        self.options = {rule.code: {**rule.spec.option_defaults(), **given.get(rule.code, {})} for rule in self.rules}
        self.screen = screen
        self.max_bytes = max_bytes
        self.current_rule: str | None = None  # what is running now, for time-limit reports
        self.project: ProjectScopes | None = None  # what a file may know of its project (the runner sets it)

    def check(self, path: str, data: bytes) -> FileResult:
        with _collector_paused():
            return self._check(path, data)

    def _check(self, path: str, data: bytes) -> FileResult:
        result = FileResult()
        if len(data) > self.max_bytes:
            result.errors.append(
                FileError(
                    path,
                    f"file too large ({len(data) / 2**20:.1f} MiB > "
                    f"{self.max_bytes / 2**20:.0f} MiB limit), not checked",
                )
            )
            return result
        if b"\0" in data:
            result.errors.append(FileError(path, "binary file (contains NUL bytes), not checked"))
            return result
        if b"noqa" in data:
            result.warnings = unknown_noqa_codes(path, data)
        refusal = python_refusal(data)
        if refusal is not None and not refusal.startswith("syntax error"):
            result.errors.append(FileError(path, refusal))
            return result
        rules = self.rules
        lowered = data.lower()
        if self.screen:
            rules = [rule for rule in rules if rule.detector.may_match(lowered)]
        if not rules and refusal is None:
            return result
        if bracket_depth_exceeds(data):
            result.errors.append(
                FileError(
                    path,
                    f"nested too deeply (more than {MAX_BRACKET_DEPTH} levels of "
                    "brackets, beyond what Python accepts), not checked",
                )
            )
            return result
        try:
            module = parse_module(data)
        except cst.ParserSyntaxError as exc:
            result.errors.append(FileError(path, refusal or _syntax_error(exc)))
            return result
        except (UnicodeDecodeError, LookupError, SyntaxError) as exc:
            result.errors.append(FileError(path, refusal or f"cannot decode: {exc}"))
            return result
        except RecursionError:
            result.errors.append(FileError(path, "nested too deeply to parse"))
            return result
        if not rules:  # code newer than this Python: libcst reads it, and no rule wants it
            return result
        result.parsed = True
        try:
            ctx = FileContext(path, module, lowered)
        except RecursionError:
            result.errors.append(FileError(path, "nested too deeply to analyse"))
            return result
        ctx.project = self.project(path) if self.project is not None else None
        found: list[tuple[Rule, Finding, tuple[str, list[tuple[cst.CSTNode, str]]]]] = []
        for rule in rules:
            ctx.options = self.options[rule.code]
            self.current_rule = rule.code
            try:
                found.extend((rule, finding, _texts(rule, finding)) for finding in rule.detector().check(ctx))
            except RecursionError:
                result.errors.append(FileError(path, f"{rule.code} gave up: nested too deeply", rule.code))
            except Exception as exc:  # a detector bug must not hide the other rules' findings
                if (cause := interruption(exc)) is not None:
                    raise cause from None
                result.errors.append(FileError(path, f"{rule.code} crashed: {type(exc).__name__}: {exc}", rule.code))
        self.current_rule = None
        if ctx.project is not None:
            result.deps = dict(sorted(ctx.project.read.items()))
        if found:
            try:
                result.diagnostics = self._diagnostics(path, ctx, found)
            except RecursionError:  # libcst's position provider recurses once per level of nesting
                result.errors.append(FileError(path, "nested too deeply to locate findings, not reported"))
            except Exception as exc:
                if (cause := interruption(exc)) is not None:
                    raise cause from None
                raise
        # Shared analyses that hold the context (mask evaluators) tie the file's tree into cycles: let go
        # of them, so the tree is freed now instead of at the collector's next full pass over the heap.
        ctx.shared.clear()
        return result

    def _diagnostics(
        self, path: str, ctx: FileContext, found: list[tuple[Rule, Finding, tuple[str, list[tuple[cst.CSTNode, str]]]]]
    ) -> list[Diagnostic]:
        # Positions are computed only for files with findings, and only for the statements that
        # hold what is reported: libcst's PositionProvider over a whole module costs about two parses.
        wanted: list[cst.CSTNode] = []
        for _, finding, (_, notes) in found:
            wanted += [finding.node, finding.anchor or ctx.index.statement_of(finding.node)]
            wanted += [node for node, _ in notes]
            wanted += [replacement.node for replacement in finding.fix.replacements] if finding.fix else []
        code, positions = statement_positions(ctx.module, ctx.index.parents, wanted)
        lines = source_lines(code)
        starts = line_starts(code)
        diagnostics: dict[tuple, Diagnostic] = {}
        for rule, finding, (message, notes) in found:
            span = positions[finding.node]
            anchor = positions[finding.anchor or ctx.index.statement_of(finding.node)]
            if suppressed_by_noqa(rule.code, lines, {span.start.line, anchor.start.line}):
                continue
            fix = None
            if finding.fix is not None:
                edits = [
                    self._edit(ctx, code, positions, starts, replacement) for replacement in finding.fix.replacements
                ]
                located = tuple(edit for edit in edits if edit is not None)
                if len(located) == len(edits):
                    fix = DiagnosticFix(finding.fix.applicability, located)
            diagnostic = Diagnostic(
                rule=rule.code,
                name=rule.spec.name,
                severity=rule.spec.severity,
                path=path,
                line=span.start.line,
                column=span.start.column + 1,
                end_line=span.end.line,
                end_column=span.end.column + 1,
                message=message,
                help=rule.spec.help_uri,
                fix=fix,
                related=[_related(positions[node], note) for node, note in notes],
            )
            diagnostics.setdefault(diagnostic.sort_key(), diagnostic)
        return sorted(diagnostics.values(), key=Diagnostic.sort_key)

    @staticmethod
    def _edit(ctx: FileContext, code: str, positions, starts: list[int], replacement: Replacement) -> Edit | None:
        """The edit as positions plus the code it replaces, or None (no fix offered) when the
        span libcst reports does not hold exactly that node's code."""
        where = positions[replacement.node]
        edit = Edit(
            where.start.line,
            where.start.column + 1,
            where.end.line,
            where.end.column + 1,
            replacement.code,
            ctx.module.code_for_node(replacement.node),
        )
        span = span_offsets(starts, edit)
        if span is None or code[span[0] : span[1]] != edit.original:
            return None
        return edit


def _texts(rule: Rule, finding: Finding) -> tuple[str, list[tuple[cst.CSTNode, str]]]:
    """The finding's message and its related locations with their notes, from the spec's templates (rendered
    while the detector runs, so a missing fact or an unknown template is reported as that rule's crash)."""
    notes = [(node, rule.spec.render_note(name, finding.facts)) for node, name in finding.related]
    return rule.spec.render(finding.variant, finding.facts), notes


def _related(where, message: str) -> dict:
    return {
        "line": where.start.line,
        "column": where.start.column + 1,
        "end_line": where.end.line,
        "end_column": where.end.column + 1,
        "message": message,
    }


def _syntax_error(exc: cst.ParserSyntaxError) -> str:
    """One line: `syntax error at L:C: what was expected` (libcst nests the position in its message)."""
    message = " ".join(exc.message.split())
    match = re.search(r"error at (\d+):(\d+): (.*)", message)
    if match:
        return f"syntax error at {match.group(1)}:{int(match.group(2)) + 1}: {match.group(3)}"
    return f"syntax error at {exc.raw_line}:{exc.raw_column + 1}: {message}"
