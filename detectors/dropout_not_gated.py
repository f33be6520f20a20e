"""SHP701: dropout that stays on after `model.eval()`: `F.dropout` without `training=`, an attention
kernel's `dropout_p` not gated on `self.training`, `nn.Dropout` built inside forward, or a training
gate evaluated once in `__init__`."""

from __future__ import annotations

import libcst as cst

from sharpedges.analysis.training_mode import (
    attention_dropout_without_mode,
    dropout_module_built_in_forward,
    functional_dropout_without_mode,
    is_module_method,
    partial_dropout_without_mode,
    training_read_in_init,
    wrapper_dropout_without_mode,
)
from sharpedges.analysis.vocabulary import KERNEL_TOKENS
from sharpedges.detector import Detector, Finding, Fix, Replacement


class DropoutNotGated(Detector):
    code = "SHP701"
    tokens = (b"dropout", b"drop_rate", b"self.training", *KERNEL_TOKENS)

    def check(self, ctx):
        for call in ctx.calls():
            found = (
                functional_dropout_without_mode(ctx, call)
                or attention_dropout_without_mode(ctx, call)
                or dropout_module_built_in_forward(ctx, call)
                or wrapper_dropout_without_mode(ctx, call)
                or partial_dropout_without_mode(ctx, call)
            )
            if found is not None and found.kind == "wrapper" and found.probability is not None:
                yield Finding(found.probability, variant="attention")  # where the wrapper's caller passes it
            elif found is not None and found.kind == "partial" and found.probability is not None:
                yield Finding(found.probability, variant="partial")  # where the partial fixes it
            elif found is not None:
                variant = None if found.kind == "functional" else found.kind  # "attention", "module-in-forward"
                yield Finding(call, variant=variant, fix=_training_fix(ctx, found))
        for attribute in ctx.index.nodes(cst.Attribute):
            if training_read_in_init(ctx, attribute):
                yield Finding(attribute, variant="frozen-gate")


def _training_fix(ctx, found) -> Fix | None:
    """`F.dropout(x, p)` -> `F.dropout(x, p, training=self.training)` inside an nn.Module method. Safe: in
    training mode `self.training` is True, the default it replaces; in eval mode dropout stops, which
    is what `eval()` promises (Monte Carlo dropout passes `training=True` and is never reported)."""
    if found.kind != "functional" or not found.call.args or not is_module_method(ctx, ctx.function_of(found.call)):
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
