"""Whether code consults the module's mode: an expression that depends on a training flag, and a node that
sits in a branch on one. Every question about dropout in eval (training_mode.py) and the function
summaries that an importing file reads (summaries.py) ask it."""

from __future__ import annotations

import libcst as cst

from sharpedges.analysis.calls import is_false
from sharpedges.analysis.context import FileContext
from sharpedges.analysis.walk import is_a

MAX_DEPTH = 6


def mentions_training(ctx: FileContext, expr: cst.BaseExpression | None, depth: int = 0) -> bool:
    """Whether the value of `expr` depends on a training flag: `self.training`, a `training` /
    `is_training` name, or a local bound to an expression that does."""
    if expr is None or depth > MAX_DEPTH:
        return False
    # Every call's `if` ancestors are asked again for each call under them, and each local is followed
    # through its definitions: the answer for (expression, depth) is a fact of the file, computed once.
    known: dict[tuple[cst.BaseExpression, int], bool] = ctx.memo("training_mode.mentions_training", dict)
    key = (expr, depth)
    found = known.get(key)
    if found is None:
        found = known[key] = _mentions_training(ctx, expr, depth)
    return found


def _mentions_training(ctx: FileContext, expr: cst.BaseExpression, depth: int) -> bool:
    for node in (expr, *ctx.index.descendants(expr)):
        if is_a(node, cst.Attribute) and node.attr.value in ("training", "is_training"):
            return True
        if is_a(node, cst.Name) and _is_training_name(node.value):
            return True
        if is_a(node, cst.Name) and _local_mentions_training(ctx, node, depth):
            return True
    return False


def _is_training_name(name: str) -> bool:
    return name in ("training", "is_training", "train", "train_mode", "deterministic")


def _local_mentions_training(ctx: FileContext, name: cst.Name, depth: int) -> bool:
    function = ctx.function_of(name)
    if function is None:
        return False
    definitions = ctx.function_facts(function).reaching(name.value, ctx.order(name))
    return any(
        d.value is not None and d.kind == "assign" and mentions_training(ctx, d.value, depth + 1) for d in definitions
    )


def under_training_branch(ctx: FileContext, node: cst.CSTNode) -> bool:
    """Inside `if self.training:` (or an `if` on any training flag), or a conditional expression on one,
    or after an `if` on one that leaves the function (`if not self.training: return x`)."""
    child = node
    for ancestor in ctx.index.ancestors(node):
        if is_a(ancestor, (cst.If, cst.IfExp)) and child is not ancestor.test and mentions_training(ctx, ancestor.test):
            return True
        if is_a(ancestor, cst.IndentedBlock) and _left_earlier_on_training(ctx, ancestor, child):
            return True
        if is_a(ancestor, cst.FunctionDef):
            return False
        child = ancestor
    return False


def _left_earlier_on_training(ctx: FileContext, block: cst.IndentedBlock, statement: cst.CSTNode) -> bool:
    """An `if` earlier in `block` than `statement` that holds in eval mode and whose body returns or
    raises: what follows it runs in training only."""
    for earlier in block.body:
        if earlier is statement:
            return False
        if (
            is_a(earlier, cst.If)
            and earlier.orelse is None
            and _holds_in_eval(ctx, earlier.test)
            and is_a(earlier.body, cst.IndentedBlock)
            and earlier.body.body
            and _leaves(earlier.body.body[-1])
        ):
            return True
    return False


def _leaves(statement: cst.BaseStatement) -> bool:
    return is_a(statement, cst.SimpleStatementLine) and any(
        is_a(small, (cst.Return, cst.Raise)) for small in statement.body
    )


def _holds_in_eval(ctx: FileContext, test: cst.BaseExpression) -> bool:
    """`not self.training`, `training is False`, `training == False`, or an `or` with one of them
    (`drop_prob == 0.0 or not training`): true whenever the module is in eval mode."""
    if is_a(test, cst.UnaryOperation) and is_a(test.operator, cst.Not):
        return mentions_training(ctx, test.expression)
    if is_a(test, cst.BooleanOperation) and is_a(test.operator, cst.Or):
        return _holds_in_eval(ctx, test.left) or _holds_in_eval(ctx, test.right)
    if is_a(test, cst.Comparison) and len(test.comparisons) == 1:
        target = test.comparisons[0]
        return (
            is_a(target.operator, (cst.Is, cst.Equal))
            and is_false(target.comparator)
            and mentions_training(ctx, test.left)
        )
    return False
