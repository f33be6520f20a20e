"""SHP701: dropout that stays on after `model.eval()`: `F.dropout` without `training=`, an attention
kernel's `dropout_p` not gated on `self.training`, `nn.Dropout` built inside forward, or a training
gate evaluated once in `__init__`."""

from __future__ import annotations

import libcst as cst

from sharpedges.analysis.registries import registry_calls
from sharpedges.analysis.training_flags import under_training_branch
from sharpedges.analysis.training_mode import (
    attention_dropout_without_mode,
    dropout_module_built_in_forward,
    functional_dropout_without_mode,
    gated,
    in_autograd_function,
    is_module_method,
    partial_dropout_without_mode,
    saved_by_autograd_forward,
    switched_random_drops,
    training_read_in_init,
    wrapper_dropout_without_mode,
    written_out_dropout,
)
from sharpedges.analysis.vocabulary import KERNEL_TOKENS, REGISTRY_TOKENS
from sharpedges.analysis.walk import is_a
from sharpedges.detector import Detector, Finding, Fix, Replacement


class DropoutNotGated(Detector):
    code = "SHP701"
    tokens = (
        b"dropout",
        b"drop_rate",
        b"self.training",
        b"bernoulli",
        b".rand(",
        b"rand_like",
        b"uniform_(",
        b"topk(",
        *KERNEL_TOKENS,
        *REGISTRY_TOKENS,
    )

    def check(self, ctx):
        for call in ctx.calls():
            found = (
                functional_dropout_without_mode(ctx, call)
                or attention_dropout_without_mode(ctx, call)
                or dropout_module_built_in_forward(ctx, call)
                or wrapper_dropout_without_mode(ctx, call)
                or partial_dropout_without_mode(ctx, call)
                or written_out_dropout(ctx, call)
            )
            if found is not None and found.kind == "wrapper" and found.probability is not None:
                yield Finding(found.probability, variant="attention")  # where the wrapper's caller passes it
            elif found is not None and found.kind == "partial" and found.probability is not None:
                yield Finding(found.probability, variant="partial")  # where the partial fixes it
            elif (
                found is not None
                and found.kind == "attention"
                and found.probability is not None
                and ctx.index.contains(call, found.probability)  # spelled among the call's own arguments
            ):
                yield Finding(found.probability, variant="attention")  # the kernel's own `dropout_p=` argument
            elif found is not None:
                variant = None if found.kind == "functional" else found.kind  # "attention", "module-in-forward"
                yield Finding(call, variant=variant, fix=_training_fix(ctx, found))
        for attribute in ctx.index.nodes(cst.Attribute):
            if training_read_in_init(ctx, attribute):
                yield Finding(attribute, variant="frozen-gate")
        for probability in _registry_dropout_without_mode(ctx):
            yield Finding(probability, variant="attention")
        for drop in switched_random_drops(ctx):
            if is_module_method(ctx, ctx.function_of(drop.switch)):
                related = ((drop.draw, "draw"),)
                yield Finding(drop.switch, variant="switched", related=related, fix=_switch_fix(ctx, drop.switch))


def _registry_dropout_without_mode(ctx):
    """`attention_interface(self, q, k, v, mask, dropout=self.attention_dropout)`: a registry call that may
    run SDPA or flash-attention, whose dropout knows nothing of `self.training` (the eager function's does).
    A probability the enclosing function takes from its caller is the caller's to gate."""
    for registry in registry_calls(ctx):
        call = registry.call
        probability = registry.kernel.argument(call, "dropout")
        if probability is None or not any(kernel.drops_in_eval for kernel in registry.implementations):
            continue
        if gated(ctx, probability) or saved_by_autograd_forward(ctx, probability) or _parameter(ctx, probability):
            continue
        if not under_training_branch(ctx, call) and not in_autograd_function(ctx, call):
            yield probability


def _parameter(ctx, expr) -> bool:
    function = ctx.function_of(expr)
    if function is None or not is_a(expr, cst.Name):
        return False
    definitions = ctx.function_facts(function).reaching(expr.value, ctx.order(expr))
    return bool(definitions) and all(d.kind == "param" for d in definitions)


def _training_fix(ctx, found) -> Fix | None:
    """`F.dropout(x, p)` -> `F.dropout(x, p, training=self.training)` inside an nn.Module method. Safe: in
    training mode `self.training` is True, the default it replaces; in eval mode dropout stops, which
    is what `eval()` promises (Monte Carlo dropout passes `training=True` and is never reported)."""
    if (
        found.kind != "functional"
        or not found.call.args
        or any(arg.star for arg in found.call.args)  # spread arguments: the message says what to pass
        or not is_module_method(ctx, ctx.function_of(found.call))
    ):
        return None
    call = found.call
    args = list(call.args)
    if not isinstance(args[-1].comma, cst.Comma):
        args[-1] = args[-1].with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
    training = cst.Arg(
        keyword=cst.Name("training"),
        value=cst.parse_expression("self.training"),
        equal=cst.AssignEqual(whitespace_before=cst.SimpleWhitespace(""), whitespace_after=cst.SimpleWhitespace("")),
    )
    return Fix("safe", (Replacement(call, ctx.code(call.with_changes(args=[*args, training]))),))


def _switch_fix(ctx, switch) -> Fix:
    """`if self.p > 0:` -> `if self.training and self.p > 0:`. Unsafe: eval stops drawing, which changes
    what the module computes there (the point, unless the randomness was meant for inference)."""
    test = ctx.code(switch)
    if is_a(switch, (cst.BooleanOperation, cst.IfExp, cst.Lambda, cst.NamedExpr)):
        test = f"({test})"
    return Fix("unsafe", (Replacement(switch, f"self.training and {test}"),))
