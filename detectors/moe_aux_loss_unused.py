"""SHP502: a load-balancing loss is computed and then dropped."""

from __future__ import annotations

import libcst as cst

from sharpedges.analysis.moe import (
    balancing_definitions,
    is_balancing_apply,
    is_dead,
    mentions_experts,
    returns_balancing_loss,
)
from sharpedges.analysis.walk import is_a
from sharpedges.detector import Detector, Finding


class MoeAuxLossUnused(Detector):
    code = "SHP502"
    # a loss by name, or the arithmetic that computes one (z-loss, expert counts, dispersion)
    tokens = (b"loss", b"aux", b"balanc", b"logsumexp", b"one_hot", b"bincount", b"histc", b".var(", b".std(")
    also_tokens = ((b"expert", b"router", b"routing", b"gate", b"gating", b"moe"),)

    def check(self, ctx):
        for function in ctx.index.nodes(cst.FunctionDef):
            cls = ctx.class_of(function)
            if not mentions_experts(ctx, cls if cls is not None else function):
                continue
            facts = ctx.function_facts(function)
            # One finding per name, at its last dead definition: `aux = ...; aux = aux * coef` is one loss.
            dead = {d.name: d for d in balancing_definitions(ctx, function) if is_dead(ctx, facts, d)}
            for definition in dead.values():
                yield Finding(definition.node, facts={"name": definition.name})
        for statement in ctx.index.nodes(cst.Expr):
            call = statement.value
            if not is_a(call, cst.Call):
                continue
            if is_balancing_apply(ctx, call):
                yield Finding(call, variant="function-result")
            elif returns_balancing_loss(ctx, call) and mentions_experts(
                ctx, ctx.class_of(call) or ctx.function_of(call) or ctx.module
            ):
                yield Finding(call, variant="call-result")
