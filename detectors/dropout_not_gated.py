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
    training_read_in_init,
)
from sharpedges.detector import Detector, Finding, Fix, Replacement

MESSAGES = {
    "functional": (
        "F.dropout without training=: it defaults to training=True, so it keeps dropping in eval; "
        "pass training=self.training"
    ),
    "attention": (
        "dropout_p is passed to the attention kernel whatever the mode: it cannot see self.training, so "
        "attention weights are dropped in eval too; use dropout_p=p if self.training else 0.0"
    ),
    "module-in-forward": (
        "nn.Dropout built inside forward is a fresh module in training mode: model.eval() never "
        "reaches it; create it in __init__"
    ),
}
FROZEN_GATE = (
    "self.training read in __init__ is always True (a module starts in training mode): the gate is "
    "frozen at construction and eval() never turns it off; decide in forward"
)


class DropoutNotGated(Detector):
    code = "SHP701"
    tokens = (b"dropout", b"drop_rate", b"self.training")

    def check(self, ctx):
        for call in ctx.calls():
            found = (
                functional_dropout_without_mode(ctx, call)
                or attention_dropout_without_mode(ctx, call)
                or dropout_module_built_in_forward(ctx, call)
            )
            if found is not None:
                yield Finding(call, MESSAGES[found.kind], _training_fix(ctx, found))
        for attribute in ctx.index.nodes(cst.Attribute):
            if training_read_in_init(ctx, attribute):
                yield Finding(attribute, FROZEN_GATE)


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
