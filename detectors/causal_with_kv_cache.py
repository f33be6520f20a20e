"""SHP204: `is_causal=True` on SDPA where keys come from a KV cache, so queries are fewer than keys."""

from __future__ import annotations

import libcst as cst

from sharpedges.analysis.caches import built_from_cache, cache_gate
from sharpedges.analysis.calls import is_true
from sharpedges.analysis.project import imported_names
from sharpedges.analysis.summaries import bind_arguments, imported_function, in_branch
from sharpedges.analysis.values import UNKNOWN, fixed_at_construction, kernel_argument, possible_values
from sharpedges.analysis.vocabulary import KERNELS, SDPA
from sharpedges.analysis.walk import is_a
from sharpedges.detector import Detector, Finding

SDPA_KERNEL = KERNELS["torch.nn.functional.scaled_dot_product_attention"]


class CausalWithKvCache(Detector):
    code = "SHP204"
    tokens = (b"is_causal", b"cat(", b".update(")  # a caller of an imported wrapper names no kernel

    def check(self, ctx):
        for call in ctx.calls():
            if ctx.callee(call) not in SDPA:
                continue
            function = ctx.function_of(call)
            key = SDPA_KERNEL.argument(call, "key")
            passed = kernel_argument(ctx, call, SDPA_KERNEL, "causal")  # also through `**attn_kwargs`
            flag = passed if passed is not UNKNOWN else None
            # Ex) is_causal=cache is None: a chunk of new tokens over the cache sees its own future
            local = flag is not None and ctx.function_of(flag) is function  # its names are this function's
            gate = cache_gate(ctx, function, flag, key, ctx.order(call)) if function and key and local else None
            if gate is not None:
                yield Finding(call, variant="cache-gated", facts={"flag": ctx.code(flag), "cache": gate.value})
                continue
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


def _causal(ctx, flag: cst.BaseExpression | None) -> str | None:
    """ "always" for `is_causal=True`, or a local, attribute or constant that is True on every path;
    "built" for a flag fixed when the module is built (`is_causal=self.causal`: every causal instance);
    None otherwise: `q_len > 1`-style flags are gated."""
    values = possible_values(ctx, flag) or []
    if values and all(is_true(value) for value in values):
        return "always"
    return "built" if fixed_at_construction(ctx, flag) else None
