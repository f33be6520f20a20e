"""SHP602: grouped-query KV heads expanded in tile order ([k0, k1, k0, k1]) with `.repeat` / `tile`
instead of the grouped order `repeat_interleave` gives ([k0, k0, k1, k1]), or a head ratio taken by
floor division with no divisibility check."""

from __future__ import annotations

import libcst as cst

from sharpedges.analysis.attention import is_head_ratio
from sharpedges.analysis.calls import argument, literal_int, method_name, receiver
from sharpedges.analysis.names import dotted
from sharpedges.analysis.values import possible_values
from sharpedges.analysis.vocabulary import TILE_FUNCTIONS, is_library_namespace
from sharpedges.detector import Detector, Finding, Fix, Replacement


class GqaRepeatNotInterleave(Detector):
    code = "SHP602"
    tokens = (b"head", b"shape[", b"size(")  # head counts by name, or read off the tensors
    # tiling needs a repeat or tile; the divisibility check needs a KV-head count
    also_tokens = ((b"repeat(", b"tile(", b"kv", b"key_value", b"group", b"local_heads"),)

    def check(self, ctx):
        ratios = _ratio_holders(ctx)
        for call in ctx.calls():
            tiled = _tiled_factor(ctx, call, ratios)
            if tiled is not None:
                how = f"{method_name(call) or 'torch.tile'}(...)"
                yield Finding(call, facts={"how": how}, fix=_fix(ctx, call, tiled))
        if not ctx.options["check-divisibility"]:
            return
        checked = _checked_pairs(ctx)
        for node in ctx.index.nodes(cst.BinaryOperation):
            if is_head_ratio(ctx, node) and (_count_key(node.left), _count_key(node.right)) not in checked:
                yield Finding(node, variant="unchecked", facts={"a": dotted(node.left), "b": dotted(node.right)})


def _ratio_holders(ctx) -> set[str]:
    """Names and `self.` attributes bound to a head ratio anywhere in the file."""
    holders = set()
    for assign in ctx.index.nodes(cst.Assign):
        if is_head_ratio(ctx, assign.value):
            for target in assign.targets:
                text = dotted(target.target)
                if text is not None:
                    holders.add(text)
    return holders


def _is_ratio(ctx, expr: cst.BaseExpression, ratios: set[str]) -> bool:
    return is_head_ratio(ctx, expr) or dotted(expr) in ratios


def _tiled_factor(ctx, call: cst.Call, ratios: set[str]) -> int | None:
    """The position of the head ratio among `x.repeat(...)` / `torch.tile(x, (...))` factors, when the
    tensor is repeated along an existing axis (not a fresh unsqueezed one, which is the grouped order)."""
    if ctx.callee(call) in TILE_FUNCTIONS:
        numpy = ctx.callee(call) == "numpy.tile"
        factors = _elements(ctx, argument(call, "reps" if numpy else "dims", 1))
        tensor = argument(call, "A" if numpy else "input", 0)
    elif method_name(call) in ("repeat", "tile") and not is_library_namespace(ctx, receiver(call)):
        factors = [arg.value for arg in call.args if arg.keyword is None and not arg.star]
        if len(factors) == 1:
            factors = _elements(ctx, factors[0]) or factors
        tensor = receiver(call)
    else:
        return None
    positions = [i for i, factor in enumerate(factors) if _is_ratio(ctx, factor, ratios)]
    if len(factors) < 3 or len(positions) != 1 or tensor is None or _fresh_axis_before(tensor, positions[0]):
        return None
    return positions[0]


def _elements(ctx, factors: cst.BaseExpression | None) -> list[cst.BaseExpression]:
    """The repeat counts of a tuple or list, written in place or held in a variable (`reps = [1, g, 1, 1]`)."""
    values = possible_values(ctx, factors)
    if values is None or len(values) != 1 or not isinstance(values[0], (cst.Tuple, cst.List)):
        return []
    return [element.value for element in values[0].elements]


def _fresh_axis_before(tensor: cst.BaseExpression, position: int) -> bool:
    """`k[:, :, None]` or `k.unsqueeze(2)`: the repeated axis is new, so repeating it is grouped order."""
    if isinstance(tensor, cst.Subscript):
        return any(
            isinstance(element.slice, cst.Index)
            and isinstance(element.slice.value, cst.Name)
            and element.slice.value.value == "None"
            for element in tensor.slice
        )
    return isinstance(tensor, cst.Call) and method_name(tensor) == "unsqueeze"


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
