"""SHP204: `is_causal=True` on SDPA where keys come from a KV cache, so queries are fewer than keys."""

from __future__ import annotations

import libcst as cst

from sharpedges.analysis.calls import is_true, method_name, receiver
from sharpedges.analysis.classes import self_attribute
from sharpedges.analysis.masks import MAX_DEPTH
from sharpedges.analysis.project import imported_names
from sharpedges.analysis.summaries import bind_arguments, call_sites, imported_function, in_branch
from sharpedges.analysis.values import fixed_at_construction, possible_values
from sharpedges.analysis.vocabulary import (
    BROADCAST_METHODS,
    CAST_METHODS,
    CONCATENATIONS,
    COPY_METHODS,
    KERNELS,
    REORDER_METHODS,
    REPEAT_METHODS,
    RESHAPE_METHODS,
    SDPA,
)
from sharpedges.analysis.walk import is_a
from sharpedges.detector import Detector, Finding

PASS_THROUGH = RESHAPE_METHODS | BROADCAST_METHODS | REORDER_METHODS | COPY_METHODS | CAST_METHODS | REPEAT_METHODS
SDPA_KERNEL = KERNELS["torch.nn.functional.scaled_dot_product_attention"]


class CausalWithKvCache(Detector):
    code = "SHP204"
    tokens = (b"is_causal", b"cat(", b".update(")  # a caller of an imported wrapper names no kernel

    def check(self, ctx):
        for call in ctx.calls():
            if ctx.callee(call) not in SDPA:
                continue
            function = ctx.function_of(call)
            causal = _causal(ctx, call) if function is not None else None
            if function is None or causal is None or in_branch(ctx, call):
                continue
            key = SDPA_KERNEL.argument(call, "key")
            if key is not None and _from_cache(ctx, function, key, ctx.order(call), 0):
                if causal == "always":
                    yield Finding(call)
                else:
                    yield Finding(call, variant="flag", facts={"flag": ctx.code(SDPA_KERNEL.argument(call, "causal"))})
        yield from _imported_wrappers(ctx)


def _imported_wrappers(ctx):
    """A function of another project module that runs SDPA with `is_causal=True` (in no branch) on one of
    its parameters as the keys, called here with keys built from a cache. The other module's summary is
    read only for a call that passes such keys."""
    imported = imported_names(ctx)
    for call in ctx.calls():
        function = ctx.function_of(call)
        if not is_a(call.func, cst.Name) or call.func.value not in imported or function is None:
            continue
        if in_branch(ctx, call) or any(arg.star for arg in call.args):
            continue
        at = ctx.order(call)
        if not any(_from_cache(ctx, function, arg.value, at, 0) for arg in call.args):
            continue
        entry = imported_function(ctx, call)
        if entry is None:
            continue
        bound = bind_arguments(call, list(entry["positional"]))
        keys = [
            bound[parameter]
            for parameter, uses in entry["kernels"].items()
            if parameter in bound
            and any(
                kernel in SDPA and meaning == "key" and flags.get("causal") is True and not flags["conditional"]
                for kernel, meaning, flags in uses
            )
        ]
        if any(_from_cache(ctx, function, key, at, 0) for key in keys):
            yield Finding(call)


def _causal(ctx, call: cst.Call) -> str | None:
    """ "always" for `is_causal=True`, or a local, attribute or constant that is True on every path;
    "built" for a flag fixed when the module is built (`is_causal=self.causal`: every causal instance);
    None otherwise: `q_len > 1`-style flags are gated."""
    flag = SDPA_KERNEL.argument(call, "causal")
    values = possible_values(ctx, flag) or []
    if values and all(is_true(value) for value in values):
        return "always"
    return "built" if fixed_at_construction(ctx, flag) else None


def _from_cache(ctx, function, expr: cst.BaseExpression | None, at: int, depth: int) -> bool:
    """Keys concatenated onto past keys (`torch.cat([past_k, k])`), returned by a cache's
    `.update(...)`, or read back from a cache buffer written in the same function."""
    if depth > MAX_DEPTH:
        return False
    if is_a(expr, cst.Name):
        facts = ctx.function_facts(function)
        for definition in facts.reaching(expr.value, at):
            value = definition.value
            if definition.kind == "unpack" and is_a(definition.node, cst.Assign):
                value = definition.node.value
            if (
                value is not None
                and definition.kind in ("assign", "unpack")
                and _from_cache(ctx, function, value, definition.order, depth + 1)
            ):
                return True
            if definition.kind == "param" and _passed_from_cache(ctx, expr.value, function, depth):
                return True
        return False
    if is_a(expr, cst.Call):
        if ctx.callee(expr) in CONCATENATIONS:
            return True
        method = method_name(expr)
        if method == "update" and receiver(expr) is not None:
            return True
        if method in PASS_THROUGH:
            return _from_cache(ctx, function, receiver(expr), at, depth + 1)
        return False
    if is_a(expr, cst.Subscript):
        return _written_buffer(ctx, function, expr.value) or _from_cache(ctx, function, expr.value, at, depth + 1)
    return False


def _passed_from_cache(ctx, parameter: str, function, depth: int) -> bool:
    """A caller in this file, outside any branch, passes keys built from a cache to this parameter:
    `forward` concatenates the past onto `k` and hands it to the method that runs SDPA."""
    for call, names in call_sites(ctx, function):
        caller = ctx.function_of(call)
        argument = bind_arguments(call, names).get(parameter)
        if (
            argument is not None
            and caller is not None
            and not in_branch(ctx, call)
            and _from_cache(ctx, caller, argument, ctx.order(call), depth + 1)
        ):
            return True
    return False


def _written_buffer(ctx, function, expr: cst.BaseExpression) -> bool:
    """`self.cache_k[:bsz, start:start + T] = xk` elsewhere in the function: a preallocated cache."""
    attr = self_attribute(expr)
    if attr is None:
        return False
    for assign in ctx.index.descendants(function.body, cst.Assign, prune=(cst.FunctionDef, cst.ClassDef)):
        for target in assign.targets:
            if is_a(target.target, cst.Subscript) and self_attribute(target.target.value) == attr:
                return True
    return False
