"""Attention registries: calls whose kernel a string picks at run time.

transformers (>= 4.48), and code copied from it, runs attention through a variable that is the
model's own eager function or an entry of `ALL_ATTENTION_FUNCTIONS`, looked up by
`config._attn_implementation`:

    attention_interface: Callable = eager_attention_forward
    if self.config._attn_implementation != "eager":
        attention_interface = ALL_ATTENTION_FUNCTIONS[self.config._attn_implementation]
    attn_output, attn_weights = attention_interface(self, q, k, v, attention_mask, dropout=..., scaling=...)

Such a call reaches every kernel the variable may hold (both, here), each with the argument meanings
of `vocabulary.ATTENTION_INTERFACE` and the mask convention and dropout behaviour of its
`vocabulary.Implementation`. Each kernel runs only when the string is its key: `chosen` says so as a
branch `Condition`, so a value built under `== "sdpa"` pairs with the SDPA kernel and never with the
eager function (`dataflow.FunctionFacts.reaching(..., chosen=...)`). Older releases pick a class
(`LLAMA_ATTENTION_CLASSES[config._attn_implementation](config)`): `registry_classes` names them.
"""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst

from sharpedges.analysis.calls import argument, method_name, receiver
from sharpedges.analysis.context import FileContext
from sharpedges.analysis.dataflow import ANYWHERE, Choice, Condition, string_choice_path
from sharpedges.analysis.names import dotted
from sharpedges.analysis.values import module_assignments, possible_values
from sharpedges.analysis.vocabulary import (
    ATTENTION_CLASS_REGISTRY,
    ATTENTION_FUNCTION_REGISTRIES,
    ATTENTION_INTERFACE,
    EAGER_IMPLEMENTATION,
    IMPLEMENTATIONS,
    REGISTERED_IMPLEMENTATIONS,
    REGISTRY_LOOKUP_METHODS,
    REGISTRY_TOKENS,
    Implementation,
    Kernel,
)
from sharpedges.analysis.walk import is_a


@dataclass(frozen=True)
class RegistryCall:
    """A call through an attention registry: the kernels it may run and the string path that picks one."""

    call: cst.Call
    path: str | None  # `config._attn_implementation`; None when the key is a literal
    implementations: tuple[Implementation, ...]
    kernel: Kernel = ATTENTION_INTERFACE

    def reaches(self, key: str) -> bool:
        return any(implementation.key == key for implementation in self.implementations)

    def chosen(self, implementation: Implementation) -> Condition:
        """The branch condition under which this call runs `implementation`."""
        if self.path is None:
            return ANYWHERE
        return Condition((Choice(self.path, frozenset({implementation.key})),))


def registry_calls(ctx: FileContext) -> list[RegistryCall]:
    """Every call in the file that runs an attention registry's kernels (nothing, at no cost, in a file
    that names no registry)."""
    if not ctx.mentions(*REGISTRY_TOKENS):
        return []
    return ctx.memo("registry_calls", lambda: [found for call in ctx.calls() if (found := registry_call(ctx, call))])


def registry_call(ctx: FileContext, call: cst.Call) -> RegistryCall | None:
    """The registry kernels `call` runs: `ALL_ATTENTION_FUNCTIONS[impl](...)` directly, or through a name
    every definition of which is a registry lookup or the model's eager function."""
    lookup = _lookup(ctx, call.func)
    if lookup is not None:
        return RegistryCall(call, *lookup)
    if not is_a(call.func, cst.Name):
        return None
    values = possible_values(ctx, call.func)
    if not values:
        return None
    paths: set[str | None] = set()
    keys: dict[str, Implementation] = {}
    registry = False
    for value in values:
        found = _lookup(ctx, value)
        if found is not None:
            registry = True
            paths.add(found[0])
            keys.update((implementation.key, implementation) for implementation in found[1])
        elif _is_eager_function(value):
            keys[EAGER_IMPLEMENTATION] = IMPLEMENTATIONS[EAGER_IMPLEMENTATION]
        else:
            return None  # something else may run: nothing to say of what this call reaches
    if not registry or len(paths) != 1:
        return None
    return RegistryCall(call, paths.pop(), tuple(keys.values()))


def _lookup(ctx: FileContext, expr: cst.BaseExpression) -> tuple[str | None, tuple[Implementation, ...]] | None:
    """For a registry lookup: the path of its key and the kernels it may return where it is evaluated.

    Ex) `ALL_ATTENTION_FUNCTIONS[self.config._attn_implementation]` under `!= "eager"`: every registered one
    Ex) `ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_attention_forward)`
    Ex) `ALL_ATTENTION_FUNCTIONS["sdpa"]`: SDPA only
    """
    default = None
    if is_a(expr, cst.Subscript) and _is_function_registry(expr.value) and len(expr.slice) == 1:
        index = expr.slice[0].slice
        key = index.value if is_a(index, cst.Index) else None
    elif (
        is_a(expr, cst.Call) and method_name(expr) in REGISTRY_LOOKUP_METHODS and _is_function_registry(receiver(expr))
    ):
        key, default = argument(expr, "attn_implementation", 0), argument(expr, "default", 1)
    else:
        return None
    if key is None:
        return None
    if is_a(key, cst.SimpleString):
        literal = IMPLEMENTATIONS.get(str(key.evaluated_value))
        return (None, (literal,)) if literal is not None else None
    path = string_choice_path(key)
    if path is None:
        return None
    keys = set(REGISTERED_IMPLEMENTATIONS)
    if default is not None and _is_eager_function(default):
        keys.add(EAGER_IMPLEMENTATION)
    function = ctx.function_of(expr)
    condition = ctx.function_facts(function).condition(expr) if function is not None else ANYWHERE
    included, excluded = condition.admitted(path)
    admitted = (keys if included is None else keys & included) - excluded
    return path, tuple(IMPLEMENTATIONS[key] for key in sorted(admitted))


def _is_function_registry(expr: cst.BaseExpression | None) -> bool:
    name = dotted(expr) if expr is not None else None
    return name is not None and name.rsplit(".", 1)[-1] in ATTENTION_FUNCTION_REGISTRIES


def _is_eager_function(expr: cst.BaseExpression) -> bool:
    """The model's own eager attention function, by HF's name for it (`eager_attention_forward`,
    `vision_eager_attention_forward`)."""
    name = dotted(expr)
    return name is not None and EAGER_IMPLEMENTATION in name.rsplit(".", 1)[-1]


def registry_classes(ctx: FileContext, call: cst.Call) -> dict[str, str]:
    """For `LLAMA_ATTENTION_CLASSES[config._attn_implementation](config)`: implementation key -> the class
    it builds, from the registry's dict literal at the top of the file (empty for anything else).

    Ex) `LLAMA_ATTENTION_CLASSES = {"eager": LlamaAttention, "sdpa": LlamaSdpaAttention}`
    """
    func = call.func
    if not ctx.mentions(b"attention_classes") or not is_a(func, cst.Subscript) or not is_a(func.value, cst.Name):
        return {}
    if not ATTENTION_CLASS_REGISTRY.search(func.value.value):
        return {}
    assignments = module_assignments(ctx).get(func.value.value, [])
    if len(assignments) != 1 or not is_a(assignments[0][0], cst.Dict):
        return {}
    found: dict[str, str] = {}
    for element in assignments[0][0].elements:
        if is_a(element, cst.DictElement) and is_a(element.key, cst.SimpleString):
            cls = ctx.qualify(element.value)
            if cls is not None:
                found[str(element.key.evaluated_value)] = cls
    return found
