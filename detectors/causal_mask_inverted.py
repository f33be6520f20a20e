"""SHP202: a causal mask whose polarity is wrong: it shows the future, or hides the diagonal."""

from __future__ import annotations

import libcst as cst

from sharpedges.analysis.calls import literal_number, method_name
from sharpedges.analysis.context import FileContext
from sharpedges.analysis.masks import (
    HANDING_TOKENS,
    SYMBOLIC,
    MaskUse,
    Region,
    allowed_region,
    attends_after_the_sequence,
    mask_uses,
    masks_attention_scores,
    verdict,
)
from sharpedges.analysis.walk import is_a
from sharpedges.detector import Detector, Finding, Fix, Replacement


class CausalMaskInverted(Detector):
    code = "SHP202"
    tokens = (b"tril", b"triu", b"arange", b"generate_square_subsequent_mask")
    also_tokens = (HANDING_TOKENS,)

    def check(self, ctx):
        inversions = list(_inversions(ctx))
        reported = set()
        for use, problem, value, path in inversions:
            if (use.node, problem, path) in reported:
                continue  # one mask handed to a module that reads it in two consumers of one convention
            reported.add((use.node, problem, path))
            related = _where_built(ctx, use, value)
            facts = {"consumer": use.consumer}
            if path is not None:
                # one path's definition is inverted: the finding is there, the consumer a related location
                variant = "path" if problem == "future" else problem
                related = tuple((node, note) for node, note in related if not ctx.index.contains(path, node))
                yield Finding(path, variant=variant, facts=facts, related=((use.node, "consumer"), *related))
                continue
            if problem == "ignored":
                yield Finding(use.node, variant="ignored", facts=facts, related=related)
                continue
            if problem in ("after-sequence", "open", "empty"):  # no flip fixes it: a value, width or operator is wrong
                yield Finding(use.node, variant=problem, facts=facts, related=related)
                continue
            variant = None if problem == "future" else "diagonal"
            fix = _fix(ctx, use, value, len(inversions))
            yield Finding(use.node, variant=variant, facts=facts, fix=fix, related=related)


def _inversions(ctx: FileContext):
    """(use, problem, value, path): `path` is None when the mask is known on every path to the consumer,
    else the definition that makes it inverted on the paths through it."""
    for use in mask_uses(ctx):
        if not use.geometry:
            continue  # the consumer sees the mask rearranged: which way its triangle points there is unknown
        evaluator = use.evaluator(ctx)
        value = evaluator.value(use.mask)
        candidates = [(value, None)] if value is not None else evaluator.values_by_path(use.mask)
        if not any(candidate.triangular for candidate, _ in candidates) or not masks_attention_scores(ctx, use):
            continue
        for candidate, path in candidates:
            problem = _problem(candidate, use)
            if problem is not None and (path is None or problem != "ignored"):
                yield use, problem, candidate, path


def _problem(value, use: MaskUse) -> str | None:
    if not value.triangular:
        return None
    allowed = allowed_region(value, use.convention)
    if allowed == "ignored":
        return "ignored"
    if allowed is not None and attends_after_the_sequence(value, use.convention):
        return "after-sequence"  # Ex) F.pad(tril, (0, write), value=True) as a keep-mask: the write slots are kept
    if allowed is None or (use.convention in ("block", "allow") and _window_bound(allowed)):
        return None
    found = verdict(allowed)
    if found == "future" and value.region.cut_past_the_matrix:
        return "empty"  # Ex) ones(t, n).triu(1 + n): a triangle with no cell in it
    return found if found in ("future", "diagonal", "open") else None


def _where_built(ctx: FileContext, use: MaskUse, value) -> tuple:
    """The triangles and comparisons that decide the mask's orientation, outside the consuming call."""
    return tuple(
        (node, "triangle" if is_a(node, cst.Call) else "polarity")
        for node in value.flips
        if not ctx.index.contains(use.node, node)
    )


def _window_bound(allowed: Region) -> bool:
    """masked_fill and where only add blocking: blocking everything below an offset the code computes
    (`tril(..., diagonal=past - window - 1)`) bounds a sliding window, and the causal half may be
    applied by another step."""
    return allowed.lo == SYMBOLIC and allowed.hi is None and not allowed.negated


def _fix(ctx: FileContext, use: MaskUse, value, found: int) -> Fix | None:
    """Flip one comparison (`== 1` -> `== 0`) or swap tril/triu, inside the consuming statement, when the
    file then has one inversion fewer and no new one."""
    statement = ctx.index.statement_of(use.node)
    for node in reversed(value.flips):
        if not ctx.index.contains(statement, node):
            continue
        replacement = _flipped(node)
        if replacement is None:
            continue
        if _removes_an_inversion(ctx, replacement, found):
            return Fix("unsafe", (replacement,))
    return None


def _removes_an_inversion(ctx: FileContext, replacement: Replacement, found: int) -> bool:
    """Whether the file has fewer inversions once `replacement` is made. Only the part of the file
    the change can reach is analysed again (the module analysed whole costs a parse's time per
    finding): the top-level function or class that holds it, what uses that, and what those read."""
    flipped = cst.parse_expression(replacement.code)
    top = _top_level(ctx, replacement.node)
    reach = _reach(ctx, top, {replacement.code}) if top is not None else None
    if top is None or reach is None:
        fixed = ctx.module.deep_replace(replacement.node, flipped)
        # deep_replace hands back the new node itself only when it replaced the whole module
        return is_a(fixed, cst.Module) and len(list(_inversions(FileContext(ctx.path, fixed)))) < found
    changed = top.deep_replace(replacement.node, flipped)
    before = ctx.memo(
        f"SHP202 inversions from top-level statement {ctx.order(top)}",
        lambda: _count_inversions(ctx, reach, ctx.lowered_source),
    )
    after = [changed if statement is top else statement for statement in reach]
    return _count_inversions(ctx, after, ctx.lowered_source + b"\n" + replacement.code.lower().encode()) < before


def _count_inversions(ctx: FileContext, statements: list[cst.CSTNode], lowered_source: bytes) -> int:
    """Inversions in a module of only these top-level statements. `lowered_source` may say more than
    they hold: it screens analyses, and a screen that passes changes no result."""
    part = FileContext(ctx.path, ctx.module.with_changes(body=statements), lowered_source)
    part.project = ctx.project
    return len(list(_inversions(part)))


def _top_level(ctx: FileContext, node: cst.CSTNode) -> cst.BaseStatement | None:
    """The statement of the module's body that holds `node`."""
    for ancestor in ctx.index.ancestors(node):
        if ctx.index.parents.get(ancestor) is ctx.module:
            return next((statement for statement in ctx.module.body if statement is ancestor), None)
    return None


def _reach(ctx: FileContext, top: cst.BaseStatement, new_names: set[str]) -> list[cst.CSTNode] | None:
    """The top-level statements, in order, whose inversions a change inside `top` can alter, with
    everything their analysis reads: the functions and classes that name `top` (transitively), and
    the module's other statements and the definitions those name (transitively). Names are matched
    as words, which can only take in more. None when that is not known to be less than the whole
    file (`top` is not a definition, or a statement that is not one names it)."""
    names = _names_by_statement(ctx)
    defined: dict[cst.CSTNode, str] = {
        statement: statement.name.value for statement in ctx.module.body if is_a(statement, _DEFINITIONS)
    }
    if top not in defined:
        return None
    affected = {defined[top]}
    changed = True
    while changed:  # definitions that name an affected one are affected
        changed = False
        for statement, name in defined.items():
            if name not in affected and names[statement] & affected:
                affected.add(name)
                changed = True
    if any(names[statement] & affected for statement in ctx.module.body if statement not in defined):
        return None
    included: set[cst.CSTNode] = {
        statement for statement in ctx.module.body if statement not in defined or defined[statement] in affected
    }
    wanted = set().union(*(names[statement] for statement in included), new_names)
    changed = True
    while changed:  # and what they name
        changed = False
        for statement, name in defined.items():
            if statement not in included and name in wanted:
                included.add(statement)
                wanted |= names[statement]
                changed = True
    if len(included) == len(ctx.module.body):
        return None
    return [statement for statement in ctx.module.body if statement in included]


_DEFINITIONS = (cst.FunctionDef, cst.ClassDef)


def _names_by_statement(ctx: FileContext) -> dict[cst.CSTNode, set[str]]:
    """Every identifier (names, attributes, parameters) each top-level statement holds."""

    def compute() -> dict[cst.CSTNode, set[str]]:
        return {
            statement: {name.value for name in ctx.index.descendants(statement, cst.Name)}
            for statement in ctx.module.body
        }

    return ctx.memo("SHP202 names by top-level statement", compute)


def _flipped(node: cst.CSTNode) -> Replacement | None:
    if is_a(node, cst.Comparison) and len(node.comparisons) == 1:
        target = node.comparisons[0]
        number = literal_number(target.comparator)
        if is_a(target.operator, cst.Equal) and number in (0, 1):
            comparator = cst.Integer("0" if number == 1 else "1")
            return Replacement(target.comparator, comparator.value)
        return None
    if is_a(node, cst.Call):
        func = node.func
        name = method_name(node) or (func.value if is_a(func, cst.Name) else None)
        swapped = {"tril": "triu", "triu": "tril"}.get(name or "")
        if swapped is None:
            return None
        if is_a(func, cst.Attribute):
            return Replacement(func.attr, swapped)
        return Replacement(func, swapped)
    return None
