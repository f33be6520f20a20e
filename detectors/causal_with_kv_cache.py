"""SHP204: `is_causal=True` on SDPA where keys come from a KV cache, so queries are fewer than keys."""

from __future__ import annotations

import libcst as cst

from sharpedges.analysis.caches import built_from_cache, cache_gate
from sharpedges.analysis.calls import is_true
from sharpedges.analysis.project import imported_names
from sharpedges.analysis.summaries import (
    bind_arguments,
    called_function,
    imported_function,
    in_branch,
    kernel_parameters,
    module_forward,
    module_forwards,
    positional_parameters,
)
from sharpedges.analysis.values import UNKNOWN, fixed_at_construction, kernel_argument, possible_values
from sharpedges.analysis.vocabulary import KERNELS, SDPA, kernel_of
from sharpedges.analysis.walk import is_a
from sharpedges.detector import Detector, Finding

SDPA_KERNEL = KERNELS["torch.nn.functional.scaled_dot_product_attention"]


class CausalWithKvCache(Detector):
    code = "SHP204"
    tokens = (b"causal", b"cat(", b".update(")  # a caller of an imported wrapper names no kernel

    def check(self, ctx):
        gated = set()
        for call in ctx.calls():
            function = ctx.function_of(call)
            # Ex) is_causal=cache is None: a chunk of new tokens over the cache sees its own future
            for keyword, passed_flag, keys in causal_consumers(ctx, call) if function is not None else ():
                local = ctx.function_of(passed_flag) is function  # its names are this function's
                gate = cache_gate(ctx, function, passed_flag, keys, ctx.order(call)) if local else None
                if gate is not None:
                    gated.add(call)
                    # Ex) `offset == 0`, `len(cache) == 0`: the cache is passed all along and holds tokens later
                    counted = is_a(ctx.index.parents.get(gate), (cst.Attribute, cst.Arg))
                    when = "holds past tokens" if counted else "is passed"
                    facts = {"argument": keyword, "flag": ctx.code(passed_flag), "cache": gate.value, "when": when}
                    yield Finding(call, variant="cache-gated", facts=facts)
                    break
            if ctx.callee(call) not in SDPA or call in gated:
                continue
            key = SDPA_KERNEL.argument(call, "key")
            passed = kernel_argument(ctx, call, SDPA_KERNEL, "causal")  # also through `**attn_kwargs`
            flag = passed if passed is not UNKNOWN else None
            causal = _causal(ctx, flag) if function is not None else None
            if function is None or causal is None or in_branch(ctx, call):
                continue
            if key is not None and built_from_cache(ctx, function, key, ctx.order(call), importers=True):
                if causal == "always":
                    yield Finding(call)
                else:
                    yield Finding(call, variant="flag", facts={"flag": ctx.code(flag)})
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
        if not any(built_from_cache(ctx, function, arg.value, at) for arg in call.args):
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
        if any(built_from_cache(ctx, function, key, at) for key in keys):
            yield Finding(call)


def causal_consumers(ctx, call: cst.Call) -> list[tuple[str, cst.BaseExpression, cst.BaseExpression]]:
    """(keyword, causal flag, keys) that `call` hands to an attention kernel: the kernel's own arguments, or
    those a helper or module of this file forwards to one (`self.inner_attn(q, kv, causal=causal)`)."""
    kernel = kernel_of(ctx, call)
    if kernel is not None:
        flag, key = kernel_argument(ctx, call, kernel, "causal"), kernel.argument(call, "key")
        keyword = kernel.keyword("causal")
        if isinstance(flag, cst.BaseExpression) and key is not None and keyword is not None:
            return [(keyword, flag, key)]
        return []
    function = ctx.function_of(call)
    if function is None or not any(_may_hold_a_test(ctx, function, arg.value) for arg in call.args):
        return []  # nothing this call passes can be a flag that tests the cache
    target = called_function(ctx, call)
    forward = module_forward(ctx, call) if target is None else None
    forwards = [forward] if forward is not None else module_forwards(ctx, call) if target is None else []
    targets = [target] if target is not None else [(f, positional_parameters(f)[1:]) for f in forwards]
    found = []
    for callee, positional in targets:
        bound = bind_arguments(call, positional)
        meanings = {use.meaning: name for name, uses in kernel_parameters(ctx, callee).items() for use in uses}
        flag_name, key_name = meanings.get("causal"), meanings.get("key")
        if flag_name in bound and key_name in bound:
            found.append((flag_name, bound[flag_name], bound[key_name]))
    return found


TESTS = (cst.Comparison, cst.UnaryOperation, cst.BooleanOperation, cst.IfExp)


def _may_hold_a_test(ctx, function: cst.FunctionDef, expr: cst.BaseExpression) -> bool:
    """A test written in the call, or a local some assignment of the function binds to one."""
    if is_a(expr, TESTS):
        return True
    definitions = ctx.function_facts(function).definitions.get(expr.value, ()) if is_a(expr, cst.Name) else ()
    return any(is_a(definition.value, TESTS) for definition in definitions)


def _causal(ctx, flag: cst.BaseExpression | None) -> str | None:
    """ "always" for `is_causal=True`, or a local, attribute or constant that is True on every path;
    "built" for a flag fixed when the module is built (`is_causal=self.causal`: every causal instance);
    None otherwise: `q_len > 1`-style flags are gated."""
    values = possible_values(ctx, flag) or []
    if values and all(is_true(value) for value in values):
        return "always"
    return "built" if fixed_at_construction(ctx, flag) else None
