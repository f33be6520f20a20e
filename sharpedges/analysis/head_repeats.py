"""How grouped-query attention repeats its KV heads: in grouped order ([k0, k0, k1, k1], what query
head h = g * ratio + i expects) or in tile order ([k0, k1, k0, k1]).

Every form that puts the copies of the whole head axis one after another is tile order:

    k.repeat(1, ratio, 1, 1)                    torch.tile(k, (1, ratio, 1, 1))
    torch.cat([k] * ratio, dim=1)               torch.cat([k for _ in range(ratio)], dim=1)
    k.unsqueeze(1).expand(b, ratio, n_kv, n, d).reshape(...)

and the forms that put the copies of each head next to each other are grouped order:
`k.repeat_interleave(ratio, dim=1)`, `'b h n d -> b (h r) n d'`, `k[:, :, None].expand(b, n_kv, ratio,
n, d)`, a repeat of a fresh axis after the heads.

einops' `'b h n d -> b (r h) n d'` is tile order too. x-transformers writes it on purpose for models it
trains from scratch, where a tile order used everywhere is only a permutation of the query heads; it is
a bug where the same class also pairs heads in grouped order (`enable_gqa=True`, `repeat_interleave`), so
that query head h meets a different KV head on each path (native-sparse-attention-pytorch 0.0.30).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import libcst as cst

from sharpedges.analysis.attention import is_head_ratio, is_kv_head_count
from sharpedges.analysis.calls import argument, is_true, literal_int, method_name, receiver
from sharpedges.analysis.context import FileContext
from sharpedges.analysis.names import dotted
from sharpedges.analysis.summaries import bind_arguments, call_sites, imported_summary, positional_parameters
from sharpedges.analysis.values import possible_values
from sharpedges.analysis.vocabulary import TILE_FUNCTIONS, einops_axes, is_library_namespace
from sharpedges.analysis.walk import is_a


def is_ratio_value(ctx: FileContext, expr: cst.BaseExpression, depth: int = 0) -> bool:
    """Whether `expr` holds the grouped-query group size (`is_head_ratio`): written in place, bound to a
    name or a `self.` attribute anywhere in the file, or a helper's parameter that every call of the
    helper in this file passes one.

    Ex) `def repeat_kv(x, n_rep): ... x.repeat(1, n_rep, 1, 1)`, called as `repeat_kv(k, self.n_rep)`
    """
    if is_head_ratio(ctx, expr) or dotted(expr) in ctx.memo("head_ratio_holders", lambda: _ratio_holders(ctx)):
        return True
    return depth < MAX_HELPER_DEPTH and _passed_ratio(ctx, expr, depth)


MAX_HELPER_DEPTH = 2  # a helper's helper: `repeat_kv` called by `_expand_kv` called by `forward`


def _ratio_holders(ctx: FileContext) -> frozenset[str]:
    """Names and `self.` attributes bound to a head ratio anywhere in the file."""
    holders = set()
    for assign in ctx.index.nodes(cst.Assign):
        if is_head_ratio(ctx, assign.value):
            for target in assign.targets:
                text = dotted(target.target)
                if text is not None:
                    holders.add(text)
    return frozenset(holders)


def _passed_ratio(ctx: FileContext, expr: cst.BaseExpression, depth: int) -> bool:
    """A parameter no assignment in its function rebinds, given a head ratio by every call in this file."""
    if not is_a(expr, cst.Name) or (function := ctx.function_of(expr)) is None:
        return False
    name = expr.value
    facts = ctx.function_facts(function)
    if name not in facts.parameters or any(d.kind != "param" for d in facts.reaching(name, ctx.order(expr))):
        return False
    passed = [bind_arguments(call, names).get(name) for call, names in call_sites(ctx, function)]
    return bool(passed) and all(value is not None and is_ratio_value(ctx, value, depth + 1) for value in passed)


_IsRatio = Callable[[cst.BaseExpression], bool]


@dataclass(frozen=True)
class TiledHeads:
    """A call that repeats KV heads in tile order: how it is written, and for `x.repeat(...)` /
    `tile(...)` the position of the ratio among the repeat counts (the axis it tiles)."""

    how: str
    position: int | None = None


def tiled_heads(ctx: FileContext, call: cst.Call) -> TiledHeads | None:
    """The tile-order repeat `call` makes of a tensor's heads, by the group size (`is_ratio_value`); None
    for any other call, and for the grouped-order forms."""
    return _tiled_by(ctx, call, lambda factor: is_ratio_value(ctx, factor))


def _tiled_by(ctx: FileContext, call: cst.Call, is_ratio: _IsRatio) -> TiledHeads | None:
    """The tile-order repeat `call` makes of a tensor's heads when `is_ratio` picks out its group size."""
    return (
        _repeated_axis(ctx, call, is_ratio)
        or _concatenated_copies(ctx, call, is_ratio)
        or _expanded_before_heads(ctx, call, is_ratio)
        or _einops_tiled_against_grouped(ctx, call, is_ratio)
    )


def _einops_tiled_against_grouped(ctx: FileContext, call: cst.Call, is_ratio: _IsRatio) -> TiledHeads | None:
    """`repeat(k, 'b h n d -> b (g h) n d', g=ratio)`: a new axis of the ratio's size merged in front of an
    input axis, in a class that pairs heads in grouped order elsewhere."""
    axes = einops_axes(ctx, call)
    if axes is None or (ctx.callee(call) or "").rsplit(".", 1)[-1] != "repeat":
        return None
    before, after = axes
    existing = {axis for token in before for axis in token.strip("()").split()}
    ratios = {arg.keyword.value for arg in call.args if arg.keyword is not None and is_ratio(arg.value)}
    for token in after:
        group = token.strip("()").split() if token.startswith("(") else []
        for i, axis in enumerate(group):
            if axis in ratios and axis not in existing and any(later in existing for later in group[i + 1 :]):
                scope = ctx.class_of(call) or ctx.module
                return TiledHeads(f"einops repeat '{token}'") if _grouped_elsewhere(ctx, scope) else None
    return None


def _grouped_elsewhere(ctx: FileContext, scope: cst.CSTNode) -> bool:
    """The scope also pairs query and KV heads in grouped order: a kernel told `enable_gqa=True` (query
    head h with KV head h // ratio), or a `repeat_interleave` of heads."""
    for call in ctx.index.descendants(scope, cst.Call):
        if method_name(call) == "repeat_interleave" or ctx.callee(call) == "torch.repeat_interleave":
            return True
        if any(
            arg.keyword is not None and arg.keyword.value == "enable_gqa" and is_true(arg.value) for arg in call.args
        ):
            return True
    return False


def _repeated_axis(ctx: FileContext, call: cst.Call, is_ratio: _IsRatio) -> TiledHeads | None:
    """`x.repeat(...)` / `torch.tile(x, (...))` with the ratio at an existing axis (not a fresh unsqueezed
    one, whose repeat is the grouped order)."""
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
    positions = [i for i, factor in enumerate(factors) if is_ratio(factor)]
    if len(factors) < 3 or len(positions) != 1 or tensor is None or _fresh_axis(tensor) is not None:
        return None
    return TiledHeads(f"{method_name(call) or 'torch.tile'}(...)", positions[0])


def _concatenated_copies(ctx: FileContext, call: cst.Call, is_ratio: _IsRatio) -> TiledHeads | None:
    """`torch.cat([k] * ratio, dim=1)` or `torch.cat([k for _ in range(ratio)], dim=1)`: whole copies of
    the tensor one after another."""
    if ctx.callee(call) != "torch.cat":
        return None
    tensors = argument(call, "tensors", 0)
    if is_a(tensors, cst.BinaryOperation) and is_a(tensors.operator, cst.Multiply):
        copies = tensors.right if is_a(tensors.left, (cst.List, cst.Tuple)) else tensors.left
        if is_ratio(copies):
            return TiledHeads("cat([...] * n)")
    if is_a(tensors, (cst.ListComp, cst.GeneratorExp)) and tensors.for_in.inner_for_in is None:
        loop = tensors.for_in
        counted = loop.iter
        if is_a(counted, cst.Call) and ctx.callee(counted) == "range" and len(counted.args) == 1:
            element, target = tensors.elt, loop.target
            if is_ratio(counted.args[0].value) and not (
                is_a(target, cst.Name)
                and any(n.value == target.value for n in ctx.index.descendants(element, cst.Name))
            ):
                return TiledHeads("cat([... for _ in range(n)])")
    return None


def _expanded_before_heads(ctx: FileContext, call: cst.Call, is_ratio: _IsRatio) -> TiledHeads | None:
    """`k.unsqueeze(1).expand(b, ratio, n_kv, n, d)`: a fresh axis expanded to the ratio right in front of
    the KV-head axis, which the reshape after merges into [copy, head] order. The axis after it may be
    kept as it is (`-1`) when the fresh axis is axis 1: in front of the heads of (B, H, T, D); in front of
    (B, T, H, D)'s time it would be no head expansion at all.

    Ex) `k[:, None].expand(-1, n_rep, -1, -1, -1).flatten(1, 2)`
    """
    if method_name(call) != "expand" or (tensor := receiver(call)) is None or _fresh_axis(tensor) is None:
        return None
    sizes = [arg.value for arg in call.args if arg.keyword is None and not arg.star]
    if len(sizes) == 1:
        sizes = _elements(ctx, sizes[0]) or sizes
    fresh = _fresh_axis(tensor)
    for i, size in enumerate(sizes[:-1]):
        if not is_ratio(size):
            continue
        if is_kv_head_count(sizes[i + 1]) or (i == fresh == 1 and literal_int(sizes[i + 1]) == -1):
            return TiledHeads("expand(...)")
    return None


def _elements(ctx: FileContext, factors: cst.BaseExpression | None) -> list[cst.BaseExpression]:
    """The counts of a tuple or list, written in place or held in a variable (`reps = [1, g, 1, 1]`)."""
    values = possible_values(ctx, factors)
    if values is None or len(values) != 1 or not is_a(values[0], (cst.Tuple, cst.List)):
        return []
    return [element.value for element in values[0].elements]


def _fresh_axis(tensor: cst.BaseExpression) -> int | None:
    """The position of the new axis of `k[:, :, None]` or `k.unsqueeze(2)`, or None."""
    if is_a(tensor, cst.Subscript):
        for position, element in enumerate(tensor.slice):
            index = element.slice
            if is_a(index, cst.Index) and is_a(index.value, cst.Name) and index.value.value == "None":
                return position
        return None
    if is_a(tensor, cst.Call) and method_name(tensor) == "unsqueeze" and tensor.args:
        axis = literal_int(tensor.args[0].value)
        return axis if axis is not None else -1
    return None


def parameter_tilings(ctx: FileContext) -> dict[str, dict[str, Any]]:
    """Module-level functions that tile a tensor's heads by one of their own parameters, as a repeat
    count -> the names their positional arguments bind to, that parameter (`factor`) and how the tiling is
    written: what an importing file needs to see that `repeat_kv(k, self.n_rep)` tiles k's heads by the
    group size (in this file, `is_ratio_value` follows the callers itself).

    Ex) `def repeat_kv(x, n_rep): return x.repeat(1, n_rep, 1, 1)`
    """
    found: dict[str, dict[str, Any]] = {}
    for statement in ctx.module.body:
        if is_a(statement, cst.FunctionDef) and (tiling := _tiling_by_parameter(ctx, statement)) is not None:
            found[statement.name.value] = {"positional": positional_parameters(statement), **tiling}
    return found


def _tiling_by_parameter(ctx: FileContext, function: cst.FunctionDef) -> dict[str, str] | None:
    """The first tiling in `function` whose repeat count is one parameter, as the caller passed it."""
    facts = ctx.function_facts(function)
    factors: set[str] = set()

    def is_parameter(expr: cst.BaseExpression) -> bool:
        if not is_a(expr, cst.Name) or expr.value not in facts.parameters:
            return False
        if any(d.kind != "param" for d in facts.reaching(expr.value, ctx.order(expr))):
            return False
        factors.add(expr.value)
        return True

    for call in ctx.index.descendants(function.body, cst.Call):
        factors.clear()
        tiled = _tiled_by(ctx, call, is_parameter)
        if tiled is not None and len(factors) == 1:
            return {"factor": factors.pop(), "how": tiled.how}
    return None


def imported_tiling(ctx: FileContext, call: cst.Call) -> TiledHeads | None:
    """A call of a project function that tiles heads by a parameter (`parameter_tilings` of its module),
    given the group size for it.

    Ex) `k = repeat_kv(k, self.n_rep)`, with `repeat_kv` in another file of the project
    """
    if not any(is_ratio_value(ctx, arg.value) for arg in call.args):
        return None  # checked first: reading the summary may summarise the other module
    entry = imported_summary(ctx, call, "head_tilings")
    if entry is None:
        return None
    factor = bind_arguments(call, entry["positional"]).get(entry["factor"])
    if factor is None or not is_ratio_value(ctx, factor):
        return None
    return TiledHeads(f"{entry['how']} in {dotted(call.func)}()")


def launched_ratio(ctx: FileContext, ratio: cst.BinaryOperation) -> cst.Call | None:
    """The custom kernel launch (`kernel[grid](..., G=G)`, Triton's syntax) that a head ratio reaches,
    written in place or through the one name it is assigned to in the same function. A kernel indexes
    the KV head as `i_hq // G` and checks no shapes, so a ratio that does not divide reads past the
    last KV head instead of failing at a matmul.

    Ex) `HQ = q.shape[2]; G = HQ // H; parallel_attn_fwd_kernel[grid](q, k, v, ..., G=G)`
    """
    function = ctx.function_of(ratio)
    if function is None:
        return None
    holder = ctx.index.parents.get(ratio)
    name = None
    if is_a(holder, cst.Assign) and len(holder.targets) == 1 and is_a(holder.targets[0].target, cst.Name):
        name = holder.targets[0].target.value
    for call in ctx.index.descendants(function, cst.Call):
        if not is_a(call.func, cst.Subscript):
            continue
        for arg in call.args:
            if arg.value is ratio or (name is not None and is_a(arg.value, cst.Name) and arg.value.value == name):
                return call
    return None
