"""Function summaries: what a call runs, what that function returns, and which of its parameters
reach which attention-kernel argument, computed once per function and cached on the file context.

A call `self._attend(q, k, v)`, `attend(q, k, v)` (a module-level or enclosing function) or a static
method resolves to its definition in the file; callers then ask the summary instead of stopping at
the function boundary.
"""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst

from sharpedges.analysis.classes import self_attribute
from sharpedges.analysis.context import FileContext
from sharpedges.analysis.names import dotted
from sharpedges.analysis.values import possible_values
from sharpedges.analysis.vocabulary import KERNELS, PARTIALS, Kernel, kernel_of
from sharpedges.analysis.walk import is_a

HELPER_SCOPES = (cst.FunctionDef, cst.ClassDef, cst.Lambda)


@dataclass(frozen=True)
class KernelParameter:
    """A parameter of a function that reaches an attention kernel's argument of this meaning."""

    kernel: Kernel
    meaning: str  # "causal", "mask", "query", ... (vocabulary.Kernel)
    call: cst.Call  # the kernel call, possibly inside a further wrapper


# -- what a call runs ---------------------------------------------------------------------------------
def called_function(ctx: FileContext, call: cst.Call) -> tuple[cst.FunctionDef, list[str]] | None:
    """The function a call runs when it is defined in this file, with the parameter names its
    positional arguments bind to: `self._shape(...)` in the same class, a module-level function, or a
    function nested in an enclosing one."""
    func = call.func
    attr = self_attribute(func)
    if attr is not None:
        cls = ctx.class_of(call)
        method = ctx.class_facts(cls).methods.get(attr) if cls is not None else None
        if method is None:
            return None
        static = any(dotted(d.decorator) == "staticmethod" for d in method.decorators)
        names = positional_parameters(method)
        return method, names if static else names[1:]
    if not is_a(func, cst.Name):
        return None
    by_name = ctx.memo("function_definitions", lambda: _functions_by_name(ctx))
    visible = {None, *ctx.index.ancestors(call)}
    candidates = [
        fn
        for fn in by_name.get(func.value, ())
        if ctx.index.enclosing(fn, HELPER_SCOPES) in visible
        and not is_a(ctx.index.enclosing(fn, HELPER_SCOPES), cst.ClassDef)
    ]
    if len(candidates) != 1:
        return None
    return candidates[0], positional_parameters(candidates[0])


def module_call_sites(ctx: FileContext, cls: cst.ClassDef) -> list[tuple[cst.Call, list[str]]]:
    """Where an instance of an `nn.Module` class of this file is called like a function, with the names
    of `forward`'s parameters its positional arguments bind to.

    Ex) `self.attention = DotAttention(...)` in another class, then `self.attention(q, k, v, mask)`
    """
    forward = ctx.class_facts(cls).methods.get("forward")
    if forward is None:
        return []

    def compute() -> list[tuple[cst.Call, list[str]]]:
        names = positional_parameters(forward)[1:]
        found = []
        for call in ctx.calls():
            attr = self_attribute(call.func)
            holder = ctx.class_of(call)
            if (
                attr is not None
                and holder is not None
                and ctx.class_facts(holder).constructed_type(attr) == cls.name.value
            ):
                found.append((call, names))
        return found

    return ctx.memo(f"module_call_sites:{ctx.order(cls)}", compute)


def _functions_by_name(ctx: FileContext) -> dict[str, list[cst.FunctionDef]]:
    found: dict[str, list[cst.FunctionDef]] = {}
    for function in ctx.index.nodes(cst.FunctionDef):
        found.setdefault(function.name.value, []).append(function)
    return found


def positional_parameters(function: cst.FunctionDef) -> list[str]:
    return [p.name.value for p in (*function.params.posonly_params, *function.params.params)]


def bind_arguments(call: cst.Call, positional: list[str]) -> dict[str, cst.BaseExpression]:
    """Parameter name -> the argument expression a call passes to it (no *args / **kwargs)."""
    bound: dict[str, cst.BaseExpression] = {}
    index = 0
    for arg in call.args:
        if arg.star:
            continue
        if arg.keyword is not None:
            bound[arg.keyword.value] = arg.value
        else:
            if index < len(positional):
                bound[positional[index]] = arg.value
            index += 1
    return bound


def partial_kernel(ctx: FileContext, call: cst.Call) -> tuple[Kernel, cst.Call] | None:
    """For a call of `attend`, `self.attend` bound to `functools.partial(F.scaled_dot_product_attention,
    is_causal=True)`: the kernel it runs and the partial, whose keywords fix some of its arguments."""
    if not ctx.mentions(b"partial") or (not is_a(call.func, cst.Name) and self_attribute(call.func) is None):
        return None
    values = possible_values(ctx, call.func)
    if not values or len(values) != 1 or not is_a(values[0], cst.Call) or ctx.callee(values[0]) not in PARTIALS:
        return None
    partial = values[0]
    positional = [arg for arg in partial.args if arg.keyword is None]
    if len(positional) != 1 or positional[0].star:
        return None
    kernel = KERNELS.get(ctx.qualify(positional[0].value) or "")
    return (kernel, partial) if kernel is not None else None


def parameter_default(function: cst.FunctionDef, name: str) -> cst.BaseExpression | None:
    for param in (*function.params.posonly_params, *function.params.params, *function.params.kwonly_params):
        if param.name.value == name:
            return param.default
    return None


def return_values(ctx: FileContext, function: cst.FunctionDef) -> list[cst.BaseExpression]:
    """What a function returns (nested scopes excluded), computed once."""
    memo: dict[cst.FunctionDef, list[cst.BaseExpression]] = ctx.memo("return_values", dict)
    found = memo.get(function)
    if found is None:
        found = memo[function] = [
            node.value
            for node in ctx.index.descendants(function.body, cst.Return, prune=HELPER_SCOPES)
            if node.value is not None
        ]
    return found


# -- where parameters go ----------------------------------------------------------------------------
def kernel_parameters(ctx: FileContext, function: cst.FunctionDef) -> dict[str, tuple[KernelParameter, ...]]:
    """Parameter name -> the kernel arguments it reaches unchanged, computed once per function (a
    function that reaches itself again through its callees contributes nothing the second time)."""
    memo: dict[cst.FunctionDef, dict[str, tuple[KernelParameter, ...]]] = ctx.memo("kernel_parameters", dict)
    found = memo.get(function)
    if found is None:
        memo[function] = {}
        found = memo[function] = _kernel_parameters(ctx, function)
    return found


def _kernel_parameters(ctx: FileContext, function: cst.FunctionDef) -> dict[str, tuple[KernelParameter, ...]]:
    """Parameters passed unchanged to a kernel argument, directly or through a further wrapper."""
    facts = ctx.function_facts(function)
    found: dict[str, list[KernelParameter]] = {}

    def parameter(expr: cst.BaseExpression | None, at: int) -> str | None:
        if not is_a(expr, cst.Name) or not facts.is_parameter(expr.value):
            return None
        reaching = facts.reaching(expr.value, at)
        return expr.value if len(reaching) == 1 and reaching[0].kind == "param" else None

    for call in ctx.index.descendants(function.body, cst.Call, prune=HELPER_SCOPES):
        at = ctx.order(call)
        kernel = kernel_of(ctx, call)
        if kernel is not None:
            for meaning, _, _ in kernel.arguments:
                name = parameter(kernel.argument(call, meaning), at)
                if name is not None:
                    found.setdefault(name, []).append(KernelParameter(kernel, meaning, call))
            continue
        target = called_function(ctx, call)
        if target is None:
            continue
        inner = kernel_parameters(ctx, target[0])
        for inner_name, value in bind_arguments(call, target[1]).items():
            name = parameter(value, at)
            if name is not None and inner_name in inner:
                found.setdefault(name, []).extend(inner[inner_name])
    return {name: tuple(uses) for name, uses in found.items()}
