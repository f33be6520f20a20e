"""SHP602: grouped-query KV heads expanded in tile order ([k0, k1, k0, k1]) with `.repeat` / `tile`
instead of the grouped order `repeat_interleave` gives ([k0, k0, k1, k1]), or a head ratio taken by
floor division with no divisibility check."""

from __future__ import annotations

import libcst as cst

from sharpedges.analysis.attention import is_head_ratio
from sharpedges.analysis.calls import literal_int, method_name, receiver
from sharpedges.analysis.head_repeats import imported_tiling, launched_ratio, tiled_heads
from sharpedges.analysis.names import dotted
from sharpedges.detector import Detector, Finding, Fix, Replacement


class GqaRepeatNotInterleave(Detector):
    code = "SHP602"
    tokens = (b"head", b"shape[", b"size(")  # head counts by name, or read off the tensors
    # tiling needs a repeat or tile; the divisibility check needs a KV-head count, by name or off a shape
    also_tokens = (
        (b"repeat(", b"tile(", b"cat(", b"expand(", b"kv", b"key_value", b"group", b"local_heads", b"shape"),
    )

    def check(self, ctx):
        for call in ctx.calls():
            tiled = tiled_heads(ctx, call)
            if tiled is not None:
                fix = _fix(ctx, call, tiled.position) if tiled.position is not None else None
                yield Finding(call, facts={"how": tiled.how}, fix=fix)
            elif (tiled := imported_tiling(ctx, call)) is not None:
                yield Finding(call, facts={"how": tiled.how})
        checked = None
        for node in ctx.index.nodes(cst.BinaryOperation):
            if not is_head_ratio(ctx, node):
                continue
            checked = _checked_pairs(ctx) if checked is None else checked
            if (_count_key(node.left), _count_key(node.right)) in checked:
                continue
            facts = {"a": dotted(node.left), "b": dotted(node.right)}
            if (launch := launched_ratio(ctx, node)) is not None:
                kernel = dotted(cst.ensure_type(launch.func, cst.Subscript).value)
                yield Finding(node, variant="kernel", facts={**facts, "kernel": kernel})
            elif ctx.options["check-divisibility"]:
                yield Finding(node, variant="unchecked", facts=facts)


def _checked_pairs(ctx) -> set[tuple[str | None, str | None]]:
    """(heads, kv heads) pairs the file checks with `%` (an assert, an if/raise, a validation helper)."""
    pairs = set()
    for node in ctx.index.nodes(cst.BinaryOperation):
        if isinstance(node.operator, cst.Modulo):
            pairs.add((_count_key(node.left), _count_key(node.right)))
    for call in ctx.calls():
        if dotted(call.func) == "divmod" and len(call.args) == 2:
            pairs.add((_count_key(call.args[0].value), _count_key(call.args[1].value)))
    return pairs


def _count_key(expr: cst.BaseExpression) -> str | None:
    """`n_head` for `n_head`, `self.n_head` and `config.n_head`: the same count wherever it is read."""
    text = dotted(expr)
    return text.rsplit(".", 1)[-1] if text else None


def _fix(ctx, call: cst.Call, position: int) -> Fix | None:
    """`k.repeat(1, n_rep, 1, 1)` -> `k.repeat_interleave(n_rep, dim=1)`: only when every other factor is 1."""
    if method_name(call) != "repeat" or ctx.callee(call) == "torch.tile":
        return None
    factors = [arg.value for arg in call.args]
    if any(arg.keyword is not None or arg.star for arg in call.args) or len(factors) < 3:
        return None
    if any(literal_int(f) != 1 for i, f in enumerate(factors) if i != position):
        return None
    tensor = ctx.code(receiver(call))
    return Fix(
        "unsafe", (Replacement(call, f"{tensor}.repeat_interleave({ctx.code(factors[position])}, dim={position})"),)
    )
