"""Object facts: which `nn.Module` class of this file an expression holds an instance of, and the
precision a class runs in because its instances are cast where they are built or used.

A module is cast in place and returns itself, so every form below makes `Attention`'s forward run in
float16, and so do the modules it builds in `__init__` (a parent cast to half casts its children):

    model = Attention(64).half()
    model = Attention(64); model = model.to(torch.float16)
    def build(): m = Attention(64); m.half(); return m          # a builder function that casts
    net = build(); net.to("cuda", torch.float16)                  # the builder's instance, cast later
    model = Attention.from_pretrained(path).half()                # in a file next to the class's

An `autocast` region is no cast of the module: autocast runs softmax in float32 by itself.
"""

from __future__ import annotations

from typing import Any

import libcst as cst

from sharpedges.analysis.calls import method_name, receiver
from sharpedges.analysis.context import FileContext
from sharpedges.analysis.importers import importer_half_casts
from sharpedges.analysis.project import ImportedName, imported_names
from sharpedges.analysis.registries import registry_classes
from sharpedges.analysis.summaries import called_function, held_modules, return_values
from sharpedges.analysis.tensors import MODULE_IN_PLACE_METHODS, class_named, module_class
from sharpedges.analysis.values import MAX_DEPTH, possible_values
from sharpedges.analysis.vocabulary import INSTANCE_CONSTRUCTORS, cast_precision
from sharpedges.analysis.walk import is_a


def instance_classes(ctx: FileContext, expr: cst.BaseExpression | None, depth: int = 0) -> frozenset[str]:
    """The `nn.Module` classes of this file that `expr` may hold an instance of: a constructor call, a
    name bound to one, a module method that returns the module (`.to(...)`, `.cuda()`, `.eval()`), a
    call of a function of this file that returns one, or an element of a container of modules (`block`
    in `for block in self.blocks`, `self.layers[0]`). Empty when nothing says so."""
    if expr is None or depth > MAX_DEPTH:
        return frozenset()
    if is_a(expr, (cst.Name, cst.Subscript)):
        held = _module_classes(ctx, held_modules(ctx, expr).classes)  # a loop over a container, an index into one
        values = possible_values(ctx, expr) if is_a(expr, cst.Name) else None
        if values is None or values == [expr]:
            return held
        return held.union(*(instance_classes(ctx, value, depth + 1) for value in values))
    if not is_a(expr, cst.Call):
        return frozenset()
    if is_a(expr.func, cst.Name):
        cls = class_named(ctx, expr.func.value)
        if cls is not None:
            return frozenset({cls.name.value}) if module_class(ctx, cls) is True else frozenset()
    if method_name(expr) in MODULE_IN_PLACE_METHODS:
        return instance_classes(ctx, receiver(expr), depth + 1)
    target = called_function(ctx, expr)
    if target is None:
        return frozenset()
    returned = [instance_classes(ctx, value, depth + 1) for value in return_values(ctx, target[0])]
    return frozenset().union(*returned)


def _module_classes(ctx: FileContext, names: frozenset[str]) -> frozenset[str]:
    """The names that are `nn.Module` classes of this file."""
    return frozenset(
        name for name in names if (cls := class_named(ctx, name)) is not None and module_class(ctx, cls) is True
    )


def half_cast_classes(ctx: FileContext) -> dict[str, cst.Call | None]:
    """Class name -> the call that casts its instances to float16 (None: a file next to this one casts
    them, `importer_half_casts`): the class itself cast where it is built or used, every module class it
    constructs in its body (children are cast with their parent), and the classes of this file it derives
    from (their methods run on the cast instance)."""

    def compute() -> dict[str, cst.Call | None]:
        cast: dict[str, cst.Call | None] = {}
        for call in ctx.calls():
            if cast_precision(ctx, call) != "half":
                continue
            for name in sorted(instance_classes(ctx, receiver(call))):
                cast.setdefault(name, call)
        for name in sorted(importer_half_casts(ctx)):
            if (cls := class_named(ctx, name)) is not None and module_class(ctx, cls) is True:
                cast.setdefault(name, None)
        pending = list(cast)
        while pending:
            cls = class_named(ctx, pending.pop())
            if cls is None:
                continue
            for related in _constructed_classes(ctx, cls) + _local_bases(ctx, cls):
                if related not in cast:
                    cast[related] = cast[cls.name.value]
                    pending.append(related)
        return cast

    return ctx.memo("objects.half_cast_classes", compute)


def _constructed_classes(ctx: FileContext, cls: cst.ClassDef) -> list[str]:
    """The module classes of this file a class builds inside its body (`self.attn = Attention(...)`,
    `nn.ModuleList([Block(...) for _ in range(n)])`)."""
    found = []
    for call in ctx.index.descendants(cls, cst.Call):
        names = [call.func.value] if is_a(call.func, cst.Name) else []
        # Ex) `GPT_NEOX_ATTENTION_CLASSES[config._attn_implementation](config)`: every class it may build
        names += [qualified for qualified in registry_classes(ctx, call).values() if "." not in qualified]
        for name in names:
            built = class_named(ctx, name)
            if built is not None and built is not cls and module_class(ctx, built) is True:
                found.append(built.name.value)
    return found


def _local_bases(ctx: FileContext, cls: cst.ClassDef) -> list[str]:
    return [
        base.value.value
        for base in cls.bases
        if is_a(base.value, cst.Name) and (local := class_named(ctx, base.value.value)) is not None and local is not cls
    ]


def imported_half_casts(ctx: FileContext) -> list[dict[str, Any]]:
    """The classes imported from other modules whose instances this file casts to float16, each as the
    import names it (`module`, `level`, `class`): what the module that defines the class needs to know
    that its forward runs in half precision.

    Ex) `from .model import GPT`, then `model = GPT(config).half()`
    Ex) `model = OPTForCausalLM.from_pretrained(path); model.to(torch.float16)`
    """
    names = imported_names(ctx)
    if not names or not ctx.mentions(b"half", b"float16"):
        return []
    found: list[dict[str, Any]] = []
    for call in ctx.calls():
        if cast_precision(ctx, call) != "half":
            continue
        for source in _imported_instances(ctx, receiver(call), names):
            entry = {"module": source.module, "level": source.level, "class": source.name}
            if entry not in found:
                found.append(entry)
    return found


def _imported_instances(
    ctx: FileContext, expr: cst.BaseExpression | None, names: dict[str, ImportedName], depth: int = 0
) -> list[ImportedName]:
    """The imported names whose instance `expr` may hold: a call of one (or of its `from_pretrained` /
    `from_config`), a module method that returns the module, or a name bound to either."""
    if expr is None or depth > MAX_DEPTH:
        return []
    if is_a(expr, cst.Name):
        values = possible_values(ctx, expr)
        if values is None or values == [expr]:
            return []
        return [source for value in values for source in _imported_instances(ctx, value, names, depth + 1)]
    if not is_a(expr, cst.Call):
        return []
    func = expr.func
    if is_a(func, cst.Attribute) and func.attr.value in INSTANCE_CONSTRUCTORS:
        func = func.value
    if is_a(func, cst.Name) and (source := names.get(func.value)) is not None and source.name:
        return [source]
    if method_name(expr) in MODULE_IN_PLACE_METHODS:
        return _imported_instances(ctx, receiver(expr), names, depth + 1)
    return []
