"""Function summaries: what a call runs, what that function returns, and which of its parameters
reach which attention-kernel argument, computed once per function and cached on the file context.

A call `self._attend(q, k, v)`, `attend(q, k, v)` (a module-level or enclosing function) or a static
method resolves to its definition in the file; callers then ask the summary instead of stopping at
the function boundary. A factory's summary is the closures it returns: a name or attribute bound to
a call of the factory (`self._attention_call = _sdpa_or_flex_attention()`), in this file or in a
project module it imports, is a call of those closures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import libcst as cst

from sharpedges.analysis.calls import argument, literal_int, method_name, receiver
from sharpedges.analysis.classes import self_attribute
from sharpedges.analysis.context import FileContext
from sharpedges.analysis.names import dotted
from sharpedges.analysis.project import ImportedName, ProjectScope, imported_names
from sharpedges.analysis.registries import registry_classes
from sharpedges.analysis.training_flags import under_training_branch
from sharpedges.analysis.values import MAX_DEPTH, container_additions, kernel_argument, passed_argument, possible_values
from sharpedges.analysis.vocabulary import KERNEL_TOKENS, KERNELS, PARTIALS, Kernel, kernel_of
from sharpedges.analysis.walk import HELPER_SCOPES, is_a


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
    if is_a(func, cst.Attribute) and is_a(func.value, cst.Name):
        return _class_method(ctx, func.value.value, func.attr.value)
    return _visible_function(ctx, func) if is_a(func, cst.Name) else None


def _visible_function(ctx: FileContext, name: cst.Name) -> tuple[cst.FunctionDef, list[str]] | None:
    """The one function of this file that `name` can denote where it stands: module-level, or nested in
    a function around it."""
    by_name = ctx.memo("function_definitions", lambda: _functions_by_name(ctx))
    defined = by_name.get(name.value)
    if not defined:
        return None  # most calls: torch's, builtins, imports
    visible = {None, *ctx.index.ancestors(name)}
    candidates = [
        fn
        for fn in defined
        if ctx.index.enclosing(fn, HELPER_SCOPES) in visible
        and not is_a(ctx.index.enclosing(fn, HELPER_SCOPES), cst.ClassDef)
    ]
    if len(candidates) != 1:
        return None
    return candidates[0], positional_parameters(candidates[0])


def possible_callees(ctx: FileContext, call: cst.Call) -> list[tuple[cst.FunctionDef, list[str]]]:
    """The functions of this file a call may run, with the names its positional arguments bind to: the
    one `called_function` finds, or those a local callee may hold (`attention_interface =
    eager_attention_forward`, rebound to another implementation on some paths)."""
    target = called_function(ctx, call)
    if target is not None:
        return [target]
    if not is_a(call.func, cst.Name) or (function := ctx.function_of(call)) is None:
        return []
    if not any(d.kind == "assign" for d in ctx.function_facts(function).reaching(call.func.value, ctx.order(call))):
        return []
    held = (_visible_function(ctx, value) for value in possible_values(ctx, call.func) or () if is_a(value, cst.Name))
    return [function for function in held if function is not None]


def _class_method(ctx: FileContext, class_name: str, name: str) -> tuple[cst.FunctionDef, list[str]] | None:
    """`Masks.causal(n, dtype)`: a static or class method called on a top-level class of this file."""
    cls = ctx.top_level_classes().get(class_name)
    method = ctx.class_facts(cls).methods.get(name) if cls is not None else None
    if method is None:
        return None
    decorators = {dotted(d.decorator) for d in method.decorators}
    names = positional_parameters(method)
    if "staticmethod" in decorators:
        return method, names
    return (method, names[1:]) if "classmethod" in decorators else None


def module_call_sites(ctx: FileContext, cls: cst.ClassDef, forwarded: bool = True) -> list[tuple[cst.Call, list[str]]]:
    """Where an instance of an `nn.Module` class of this file is called like a function, with the names
    of `forward`'s parameters its positional arguments bind to: every call whose callee `held_modules`
    says may hold one. With `forwarded`, a wrapper that hands its `**kwargs` on (`self.fn(x, **kwargs)`)
    adds the calls of the wrapper: their keyword arguments reach `forward` by name (they bind no
    positional name here, and what they return is the wrapper's result).

    Ex) `self.attention = DotAttention(...)` in another class, then `self.attention(q, k, v, mask)`
    Ex) `self.layers = nn.ModuleList([Block(...) for _ in range(n)])`, then `for block in self.layers:
        x = block(x, mask=mask)`
    """
    forward = ctx.class_facts(cls).methods.get("forward")
    if forward is None:
        return []
    names = positional_parameters(forward)[1:]
    direct = [(call, names) for call in ctx.memo("module_calls", lambda: _module_calls(ctx)).get(cls.name.value, ())]
    if not forwarded:
        return direct
    memo: dict[cst.ClassDef, list[tuple[cst.Call, list[str]]]] = ctx.memo("keyword_forwarders", dict)
    found = memo.get(cls)
    if found is None:
        memo[cls] = []  # a wrapper that reaches itself again through forwarded keywords adds nothing more
        found = memo[cls] = [site for call, _ in direct for site in _keyword_forwarders(ctx, call)]
    return direct + found


def _module_calls(ctx: FileContext) -> dict[str, list[cst.Call]]:
    """Qualified class name -> the calls of an instance it may be, once per file."""
    found: dict[str, list[cst.Call]] = {}
    for call in ctx.calls():
        for name in called_classes(ctx, call):
            found.setdefault(name, []).append(call)
    return found


def called_classes(ctx: FileContext, call: cst.Call) -> frozenset[str]:
    """The classes (qualified, as `held_modules` names them) whose instance `call` may run: its callee is a
    name, an index into a container or a `self.` attribute holding one. Once per call."""
    memo: dict[cst.Call, frozenset[str]] = ctx.memo("summaries.called_classes", dict)
    found = memo.get(call)
    if found is None:
        callee = call.func
        held = is_a(callee, (cst.Name, cst.Subscript)) or self_attribute(callee) is not None
        found = memo[call] = held_modules(ctx, callee).classes if held else frozenset()
    return found


def runs_a_module(ctx: FileContext, call: cst.Call) -> bool:
    """`call` runs the forward of an `nn.Module` instance: every class its callee may hold is a torch.nn
    layer or an `nn.Module` subclass of this file (`self.norm(x)`, `attn(x)` in `for attn, ff in self.layers`)."""
    from sharpedges.analysis.tensors import module_class

    classes = called_classes(ctx, call)
    top_level = ctx.top_level_classes()
    return bool(classes) and all(
        name.startswith("torch.nn.") or (name in top_level and module_class(ctx, top_level[name]) is True)
        for name in classes
    )


def _keyword_forwarders(ctx: FileContext, call: cst.Call) -> list[tuple[cst.Call, list[str]]]:
    """For `self.fn(x, **kwargs)` inside `def forward(self, x, **kwargs)`: the calls of that function
    whose keywords `kwargs` collects (a call that passes one of its named parameters by keyword is left
    out: that keyword stops there), each with no positional names."""
    function = ctx.function_of(call)
    forwarded = next((arg.value for arg in call.args if arg.star == "**"), None)
    if function is None or not is_a(forwarded, cst.Name):
        return []
    collector = function.params.star_kwarg
    if not is_a(collector, cst.Param) or collector.name.value != forwarded.value:
        return []
    params = function.params
    own = {p.name.value for p in (*params.posonly_params, *params.params, *params.kwonly_params)}
    return [
        (outer, [])
        for outer, _ in call_sites(ctx, function)
        if not any(arg.keyword is not None and arg.keyword.value in own for arg in outer.args)
    ]


# -- modules held by a value ---------------------------------------------------------------------------
# Containers of modules, and builtin sequences the modules are gathered in before one is built.
MODULE_CONTAINERS = frozenset({"torch.nn.ModuleList", "torch.nn.Sequential", "torch.nn.ModuleDict", "list", "tuple"})


@dataclass(frozen=True)
class HeldModules:
    """The modules a value may hold, by the qualified name of the callable that built them (`Block` for a
    class of this file, `torch.nn.Linear`): `classes` for the value itself, and for a container of
    modules what its elements hold. `positional` when `elements` are the positions of a literal list, in
    order (`nn.ModuleList([Attention(...), FeedForward(...)])`, unpacked as `for attn, ff in ...`); else
    each entry is what some element may hold. Empty when nothing says."""

    classes: frozenset[str] = frozenset()
    elements: tuple[HeldModules, ...] = ()
    positional: bool = False

    def element(self) -> HeldModules:
        """What any one element holds."""
        return _union(self.elements)

    def at(self, index: int | None) -> HeldModules:
        """What the element at `index` holds (any element's when the positions are unknown)."""
        if self.positional and index is not None and -len(self.elements) <= index < len(self.elements):
            return self.elements[index]
        return self.element()

    def unpacked(self, count: int) -> list[HeldModules]:
        """What each name of a `count`-name unpacking of this value holds."""
        if self.positional and len(self.elements) == count:
            return list(self.elements)
        return [self.element()] * count


NOTHING = HeldModules()


def _union(values: tuple[HeldModules, ...] | list[HeldModules]) -> HeldModules:
    known = list(dict.fromkeys(value for value in values if value != NOTHING))
    if len(known) <= 1:
        return known[0] if known else NOTHING
    classes = frozenset().union(*(value.classes for value in known))
    sizes = {len(value.elements) for value in known}
    if all(value.positional for value in known) and len(sizes) == 1:
        positions = tuple(_union([value.elements[i] for value in known]) for i in range(sizes.pop()))
        return HeldModules(classes, positions, True)
    elements = tuple(dict.fromkeys(element for value in known for element in value.elements))
    return HeldModules(classes, elements)


def _sequence(ctx: FileContext, elements: list[tuple[cst.BaseExpression, bool]], at: int, depth: int) -> HeldModules:
    """A container of these (expression, starred) elements: positional unless one is starred."""
    parts = [held_modules(ctx, value, at, depth + 1) for value, _ in elements]
    if any(starred for _, starred in elements):
        return _flat([part.element() if starred else part for part, (_, starred) in zip(parts, elements, strict=True)])
    return HeldModules(elements=tuple(parts), positional=True)


def _flat(elements: list[HeldModules]) -> HeldModules:
    return HeldModules(elements=tuple(dict.fromkeys(element for element in elements if element != NOTHING)))


def held_modules(
    ctx: FileContext, expr: cst.BaseExpression | None, at: int | None = None, depth: int = 0
) -> HeldModules:
    """What modules `expr` may hold: a constructor call (either side of a conditional expression or an
    `or`); a container of modules (`nn.ModuleList`, `nn.Sequential(*[...])`, `nn.ModuleDict({...})`, a
    list built by a literal, a comprehension or appends); an index into one (`self.layers[0]`,
    `self.heads["attn"]`); a local bound to one of those, or bound by a loop over one (`for layer in
    self.layers`, `for attn, ff in self.layers`, `for i, block in enumerate(self.blocks)`,
    `zip(self.layers, ...)`); `self.x`, across the class and its constructor's arguments (`self.fn = fn`,
    built as `Residual(Block(...))`)."""
    if expr is None or depth > MAX_DEPTH:
        return NOTHING
    at = ctx.order(expr) if at is None else at
    if is_a(expr, cst.Call):
        qualified = ctx.callee(expr)
        if qualified == "torch.nn.Sequential":  # its arguments are its elements: Sequential(*blocks) too
            return _sequence(ctx, [(arg.value, bool(arg.star)) for arg in expr.args if arg.keyword is None], at, depth)
        if qualified in MODULE_CONTAINERS:  # ModuleList(blocks), list(blocks): the elements of one iterable
            items = [arg.value for arg in expr.args if arg.keyword is None and not arg.star]
            container = held_modules(ctx, items[0], at, depth + 1) if len(items) == 1 else NOTHING
            return HeldModules(elements=container.elements, positional=container.positional)
        if qualified is None and (chosen := registry_classes(ctx, expr)):  # Ex) LLAMA_ATTENTION_CLASSES[impl](config)
            return HeldModules(frozenset(chosen.values()))
        if is_a(expr.func, cst.Name) and (choices := local_class_choices(ctx, expr.func)):
            return HeldModules(frozenset(choices))  # Ex) norm_klass(dim, fn=Attention(...))
        built = _built_by_helper(ctx, expr, depth)
        if built != NOTHING:
            return built
        return HeldModules(frozenset({qualified})) if qualified is not None else NOTHING
    if is_a(expr, cst.IfExp):  # Attention(...) if flash else SlowAttention(...)
        return _union([held_modules(ctx, branch, at, depth + 1) for branch in (expr.body, expr.orelse)])
    if is_a(expr, cst.BooleanOperation) and is_a(expr.operator, cst.Or):  # fn or Attention(...)
        return _union([held_modules(ctx, side, at, depth + 1) for side in (expr.left, expr.right)])
    if is_a(expr, (cst.List, cst.Tuple)):
        elements = [(element.value, is_a(element, cst.StarredElement)) for element in expr.elements]
        return _sequence(ctx, elements, at, depth)
    if is_a(expr, (cst.ListComp, cst.GeneratorExp)):
        return _flat([held_modules(ctx, expr.elt, ctx.order(expr.elt), depth + 1)])
    if is_a(expr, cst.Dict):
        values = [element.value for element in expr.elements if is_a(element, cst.DictElement)]
        return _flat([held_modules(ctx, value, at, depth + 1) for value in values])
    if is_a(expr, cst.DictComp):
        return _flat([held_modules(ctx, expr.value, ctx.order(expr.value), depth + 1)])
    if is_a(expr, cst.Subscript):
        container = held_modules(ctx, expr.value, at, depth + 1)
        if len(expr.slice) != 1 or not is_a(expr.slice[0].slice, cst.Index):
            return _flat(list(container.elements))  # a slice of a container holds some of its elements
        return container.at(literal_int(expr.slice[0].slice.value))
    if is_a(expr, cst.Name):
        return _held_by_name(ctx, expr, at, depth)
    attr = self_attribute(expr)
    if attr is not None:
        cls = ctx.class_of(expr)
        return _held_by_attribute(ctx, cls, attr) if cls is not None else NOTHING
    return NOTHING


def _built_by_helper(ctx: FileContext, call: cst.Call, depth: int) -> HeldModules:
    """What a function or method of this file that builds a module returns.

    Ex) fairseq: `self.self_attn = self.build_self_attention(embed_dim, args)`, which returns
        `MultiheadAttention(embed_dim, ...)`
    """
    target = called_function(ctx, call)
    if target is None:
        return NOTHING
    return _union([held_modules(ctx, value, None, depth + 1) for value in return_values(ctx, target[0])])


def _held_by_name(ctx: FileContext, name: cst.Name, at: int, depth: int) -> HeldModules:
    function = ctx.function_of(name)
    if function is None:
        return NOTHING
    held = []
    for definition in ctx.function_facts(function).reaching(name.value, at):
        node = definition.node
        if definition.kind == "assign":
            held.append(held_modules(ctx, definition.value, definition.order, depth + 1))
        elif definition.kind == "loop" and is_a(node, (cst.For, cst.CompFor)):
            element = _iterated(ctx, node.iter, definition.order, depth + 1)
            held.append(_bound_to(node.target, name.value, element))
        elif definition.kind == "unpack" and is_a(node, cst.Assign):
            whole = held_modules(ctx, node.value, definition.order, depth + 1)
            held += [_bound_to(target.target, name.value, whole) for target in node.targets]
    added = _added(ctx, function, name.value, depth) if held else []
    found = _union(held)
    return HeldModules(found.classes, found.elements + tuple(added)) if added else found


def attribute_modules(ctx: FileContext, cls: cst.ClassDef, attr: str) -> HeldModules:
    """What `self.attr` of `cls` may hold (see `held_modules`)."""
    return _held_by_attribute(ctx, cls, attr)


def _held_by_attribute(ctx: FileContext, cls: cst.ClassDef, attr: str) -> HeldModules:
    """`self.attr`: every assignment of it in the class (an `__init__` parameter followed to what the
    class's constructions in this file pass), plus what its methods add to it (`self.layers.append(...)`);
    once per attribute, with a fresh depth budget (one that reaches itself again holds nothing more)."""
    memo: dict[tuple[cst.ClassDef, str], HeldModules] = ctx.memo("summaries.held_by_attribute", dict)
    found = memo.get((cls, attr))
    if found is None:
        memo[cls, attr] = NOTHING
        found = memo[cls, attr] = _attribute_holds(ctx, cls, attr, 0)
    return found


def _attribute_holds(ctx: FileContext, cls: cst.ClassDef, attr: str, depth: int) -> HeldModules:
    facts = ctx.class_facts(cls)
    held: list[HeldModules] = []
    added: list[HeldModules] = []
    for assignment in facts.assignments.get(attr, ()):
        order = ctx.order(assignment.node)
        value = held_modules(ctx, assignment.value, order, depth + 1)
        if is_a(assignment.node, cst.AugAssign):  # self.layers += [Block(...)]
            added += value.elements
            continue
        method = facts.methods.get(assignment.method)
        if value == NOTHING and method is not None and assignment.method == "__init__":
            value = _constructor_argument(ctx, cls, method, assignment.value, order, depth)
        held.append(value)
    for method in facts.methods.values():
        added += _added(ctx, method, f"self.{attr}", depth)
    found = _union(held)
    return HeldModules(found.classes, found.elements + tuple(added)) if added else found


def _constructor_argument(
    ctx: FileContext,
    cls: cst.ClassDef,
    init: cst.FunctionDef,
    value: cst.BaseExpression | None,
    at: int,
    depth: int,
) -> HeldModules:
    """For `self.fn = fn` with `fn` a parameter of `__init__`: what the constructions of the class in
    this file pass it (`Residual(Block(...))`)."""
    if not is_a(value, cst.Name):
        return NOTHING
    definitions = ctx.function_facts(init).reaching(value.value, at)
    if len(definitions) != 1 or definitions[0].kind != "param":
        return NOTHING
    positional = positional_parameters(init)[1:]
    passed = [bind_arguments(call, positional).get(value.value) for call in constructions(ctx, cls)]
    return _union([held_modules(ctx, argument, None, depth + 1) for argument in passed if argument is not None])


def constructions(ctx: FileContext, cls: cst.ClassDef) -> list[cst.Call]:
    """The calls of this file that build an instance of `cls` by its name (`Block(dim, heads)`), or through a
    local bound to it (`norm_klass = SandwichNorm if sandwich_norm else PreNorm; norm_klass(dim, fn=...)`)."""
    return ctx.memo("constructions", lambda: _calls_by_callee(ctx)).get(cls.name.value, [])


def _calls_by_callee(ctx: FileContext) -> dict[str, list[cst.Call]]:
    found: dict[str, list[cst.Call]] = {}
    classes = ctx.top_level_classes()
    for call in ctx.calls():
        if not is_a(call.func, cst.Name):
            continue
        found.setdefault(call.func.value, []).append(call)
        for name in local_class_choices(ctx, call.func) if call.func.value not in classes else ():
            found.setdefault(name, []).append(call)
    return found


def local_class_choices(ctx: FileContext, name: cst.Name) -> list[str]:
    """The classes of this file a local name may hold where it is read: `norm_klass = SandwichNorm if
    sandwich_norm else PreNorm`. Empty for a name no assignment of its function binds."""
    function = ctx.function_of(name)
    if function is None or not any(
        d.kind == "assign" for d in ctx.function_facts(function).reaching(name.value, ctx.order(name))
    ):
        return []
    classes = ctx.top_level_classes()
    values = possible_values(ctx, name) or []
    names = [value.value for value in values if is_a(value, cst.Name)]
    return names if names and len(names) == len(values) and all(n in classes for n in names) else []


def _added(ctx: FileContext, function: cst.FunctionDef, container: str, depth: int) -> list[HeldModules]:
    """What `function` adds to `container` (a local name, or `self.x` spelled so): `.append(x)`,
    `.extend([...])`, `.insert(i, x)`, `.add_module(name, x)`."""
    added: list[HeldModules] = []
    for call, value, many in container_additions(ctx, function).get(container, ()):
        held = held_modules(ctx, value, ctx.order(call), depth + 1)
        added += held.elements if many else [held]
    return [value for value in added if value != NOTHING]


def _iterated(ctx: FileContext, iterable: cst.BaseExpression | None, at: int, depth: int) -> HeldModules:
    """What one element of a loop over `iterable` holds: `enumerate` and `.items()` pair it with an
    index or a key, `zip` pairs the elements of its arguments, `reversed` and `.values()` keep it."""
    if iterable is None or depth > MAX_DEPTH:
        return NOTHING
    if is_a(iterable, cst.Call):
        qualified = ctx.callee(iterable)
        args = [arg.value for arg in iterable.args if arg.keyword is None and not arg.star]
        method = method_name(iterable)
        if qualified == "enumerate" and args:
            return HeldModules(elements=(NOTHING, _iterated(ctx, args[0], at, depth + 1)), positional=True)
        if qualified == "zip" and args:
            return HeldModules(elements=tuple(_iterated(ctx, arg, at, depth + 1) for arg in args), positional=True)
        if qualified == "reversed" and len(args) == 1:
            return _iterated(ctx, args[0], at, depth + 1)
        if method in ("values", "children") and not args:
            return _iterated(ctx, receiver(iterable), at, depth + 1)
        if method == "items" and not args:
            return HeldModules(elements=(NOTHING, _iterated(ctx, receiver(iterable), at, depth + 1)), positional=True)
    return held_modules(ctx, iterable, at, depth).element()


def _bound_to(target: cst.BaseExpression, name: str, value: HeldModules) -> HeldModules:
    """What `name` holds when `target` (a name, or nested tuples of names) is bound to `value`."""
    if is_a(target, cst.Name):
        return value if target.value == name else NOTHING
    if is_a(target, (cst.Tuple, cst.List)) and not any(is_a(e, cst.StarredElement) for e in target.elements):
        parts = value.unpacked(len(target.elements))
        return _union(
            [_bound_to(element.value, name, part) for element, part in zip(target.elements, parts, strict=True)]
        )
    return NOTHING


def call_sites(ctx: FileContext, function: cst.FunctionDef, forwarded: bool = True) -> list[tuple[cst.Call, list[str]]]:
    """Every call in this file that runs `function`, with the parameter names its positional arguments
    bind to: `called_function` inverted once per file, plus, for a module's `forward`, the calls of its
    instances (`module_call_sites`, with the calls of wrappers that forward their keywords to it when
    `forwarded`). What a helper's parameter can be is what these calls pass.

    Ex) `A = attention_normalize(a, l)` in a method, for `def attention_normalize(a, l, dim=-1)`
    """
    by_function: dict[cst.FunctionDef, list[tuple[cst.Call, list[str]]]] = ctx.memo(
        "call_sites", lambda: _calls_by_function(ctx)
    )
    found = list(by_function.get(function, ()))
    cls = ctx.class_of(function)
    if cls is not None and ctx.class_facts(cls).methods.get("forward") is function:
        found += module_call_sites(ctx, cls, forwarded)
    return found


def passed_values(ctx: FileContext, expr: cst.BaseExpression | None) -> list[cst.BaseExpression] | None:
    """`possible_values`, and for a parameter that nothing in its function rebinds before `expr`: what
    the calls of its function in this file pass for it, with its default where a call leaves it out, or
    only its default when the file never calls it. None when a value is unknown.

    Ex) `dtype` in `def _set_cos_sin_cache(self, seq_len, device, dtype)`, called as
        `self._set_cos_sin_cache(seq_len, x.device, x.dtype)`: `x.dtype`
    Ex) `dtype` in `def precompute_freqs_cis(dim, end, dtype=torch.bfloat16)`, never called here: `torch.bfloat16`
    """
    values = possible_values(ctx, expr)
    if values is not None or not is_a(expr, cst.Name) or (function := ctx.function_of(expr)) is None:
        return values
    facts = ctx.function_facts(function)
    name = expr.value
    if name not in facts.parameters or any(d.kind != "param" for d in facts.reaching(name, ctx.order(expr))):
        return None
    default = parameter_default(function, name)
    found: list[cst.BaseExpression] = []
    for call, positional in call_sites(ctx, function, forwarded=False):
        if any(arg.star for arg in call.args):
            return None
        argument = bind_arguments(call, positional).get(name, default)
        if argument is None:
            return None
        found.append(argument)
    if not found and default is not None:
        found.append(default)
    return found or None


def _calls_by_function(ctx: FileContext) -> dict[cst.FunctionDef, list[tuple[cst.Call, list[str]]]]:
    found: dict[cst.FunctionDef, list[tuple[cst.Call, list[str]]]] = {}
    for call in ctx.calls():
        target = called_function(ctx, call)
        if target is not None:
            found.setdefault(target[0], []).append((call, target[1]))
    return found


def result_element_read(ctx: FileContext, function: cst.FunctionDef, position: int) -> bool | None:
    """Whether the callers in this file read element `position` of the tuple `function` returns: False
    when every caller (a method call, or a call of the module whose `forward` it is) unpacks the result
    into names and never reads that one; None when there is no caller, or one does something else with
    the whole result.

    Ex) `weights, idx, router_logits = self.router(x)`, and `router_logits` is never read again
    """
    calls = [call for call, _ in call_sites(ctx, function, forwarded=False)]  # what they get is its result
    if not calls:
        return None
    for call in calls:
        statement = ctx.index.parents.get(call)
        caller = ctx.function_of(call)
        if not is_a(statement, cst.Assign) or len(statement.targets) != 1 or caller is None:
            return None
        target = statement.targets[0].target
        if not is_a(target, (cst.Tuple, cst.List)) or len(target.elements) <= position:
            return None
        if any(not is_a(element.value, cst.Name) for element in target.elements):
            return None  # a starred or nested target: the positions are not the tuple's
        name = target.elements[position].value
        if not is_a(name, cst.Name):
            return None
        if name.value != "_" and ctx.function_facts(caller).later_uses(name.value, ctx.index.last_order(statement)):
            return True
    return False


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
        if len(reaching) == 1 and reaching[0].kind == "assign" and _fills_default(reaching[0].value, expr.value):
            # Ex) causal = self.causal if causal is None else causal: the caller's value wherever it passes one
            reaching = facts.reaching(expr.value, reaching[0].order - 1)
        return expr.value if len(reaching) == 1 and reaching[0].kind == "param" else None

    collected = _spread_keywords(ctx, function)
    for call in ctx.index.descendants(function.body, cst.Call, prune=HELPER_SCOPES):
        at = ctx.order(call)
        kernel = kernel_of(ctx, call)
        if kernel is not None:
            spread = collected is not None and any(
                arg.star == "**" and is_a(arg.value, cst.Name) and arg.value.value == collected for arg in call.args
            )
            for meaning, keyword, _ in kernel.arguments:
                name = parameter(kernel.argument(call, meaning), at)
                if name is None and spread and keyword and argument(call, keyword) is None:
                    name = keyword if not facts.is_parameter(keyword) else None  # a caller's keyword=, via **kwargs
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


def _fills_default(value: cst.BaseExpression | None, name: str) -> bool:
    """`default if name is None else name` (or the other way round): the parameter itself wherever a
    caller passes it."""
    if not is_a(value, cst.IfExp) or not is_a(test := value.test, cst.Comparison) or len(test.comparisons) != 1:
        return False
    if not (is_a(test.left, cst.Name) and test.left.value == name) or dotted(test.comparisons[0].comparator) != "None":
        return False
    operator = test.comparisons[0].operator
    kept = value.orelse if is_a(operator, cst.Is) else value.body if is_a(operator, cst.IsNot) else None
    return is_a(kept, cst.Name) and kept.value == name


def _spread_keywords(ctx: FileContext, function: cst.FunctionDef) -> str | None:
    """The name of the function's `**kwargs` parameter when all it does is spread it into calls
    (`f(q, k, v, **kwargs)`): whatever keyword a caller passes reaches those calls unchanged."""
    star = function.params.star_kwarg
    if not is_a(star, cst.Param):
        return None
    name = star.name.value
    facts = ctx.function_facts(function)
    if len(facts.definitions.get(name, ())) != 1:
        return None  # rebound
    for use in facts.uses.get(name, ()):
        arg = ctx.index.parents.get(use)
        if not (is_a(arg, cst.Arg) and arg.star == "**"):
            return None  # read otherwise: `kwargs.pop("mask")`, `kwargs["is_causal"]` may change what is passed
    return name


# -- closures returned by a factory ---------------------------------------------------------------------
@dataclass(frozen=True)
class ForwardedArgument:
    """An argument a call passes that reaches an attention kernel's argument of this meaning unchanged,
    through the function, method or factory-made closure it runs; `kernel_call` is None when that
    function lives in another file of the project."""

    kernel: Kernel
    meaning: str
    value: cst.BaseExpression
    kernel_call: cst.Call | None


# (positional parameter names, parameter -> (kernel, meaning, kernel call in this file or None))
CallableReach = tuple[list[str], dict[str, list[tuple[Kernel, str, cst.Call | None]]]]


def forwarded_arguments(ctx: FileContext, call: cst.Call) -> list[ForwardedArgument]:
    """The arguments of `call` that reach a kernel argument: `self._attention_call(q, k, v,
    dropout_p=self.attn_dropout)` passes `self.attn_dropout` to SDPA's dropout when the attribute
    holds a closure whose parameter `dropout_p` goes there; also a value a `**attn_kwargs` dict carries."""
    if kernel_of(ctx, call) is not None:
        return []
    found = []
    for positional, reach in _callable_reaches(ctx, call):
        for name, uses in reach.items():
            value = passed_argument(ctx, call, name, positional.index(name) if name in positional else None)
            if isinstance(value, cst.BaseExpression):
                found += [
                    ForwardedArgument(kernel, meaning, value, kernel_call) for kernel, meaning, kernel_call in uses
                ]
    return found


def _callable_reaches(ctx: FileContext, call: cst.Call) -> list[CallableReach]:
    if not call.args:  # nothing to forward
        return []
    target = called_function(ctx, call)
    if target is not None:
        return [(target[1], _local_reach(ctx, target[0]))]
    forward = module_forward(ctx, call)
    if forward is not None:  # self.attend(q, k, v, dropout_p=p), an instance of a module of this file
        return [(positional_parameters(forward)[1:], _local_reach(ctx, forward))]
    entry = imported_module(ctx, call)
    if entry is not None and entry.get("kernels"):  # ... or of a module class another project file summarises
        return [(list(entry["positional"]), _summarised_reach(entry["kernels"]))]
    # attention(q, k, v, dropout_p=self.p), a function of another project file: one that forwards to a
    # kernel takes the query, key and value at least, a screen before its module is read
    function = imported_function(ctx, call) if len(call.args) >= 3 else None
    if function is not None:
        return [(list(function["positional"]), _summarised_reach(function["kernels"]))]
    if not is_a(call.func, cst.Name) and self_attribute(call.func) is None:
        return []
    values = possible_values(ctx, call.func)
    factory_calls = [value for value in values or () if is_a(value, cst.Call)]
    if not values or len(factory_calls) != len(values):
        return []
    reaches: list[CallableReach] = []
    for factory_call in factory_calls:
        made = _closures_made_by(ctx, factory_call)
        if not made:
            return []  # some value is not a closure we know: nothing can be said
        reaches.extend(made)
    return reaches


def _closures_made_by(ctx: FileContext, factory_call: cst.Call) -> list[CallableReach]:
    """The closures a call of a factory returns: defined in this file, or summarised in a project module."""
    factory = called_function(ctx, factory_call)
    if factory is not None:
        return [
            (positional_parameters(closure), _local_reach(ctx, closure))
            for closure in returned_closures(ctx, factory[0])
        ]
    if not is_a(factory_call.func, cst.Name):
        return []
    scope: ProjectScope | None = getattr(ctx, "project", None)
    source = imported_names(ctx).get(factory_call.func.value)
    if scope is None or source is None or not source.name:
        return []
    found = scope.lookup(source, "closures")
    entries = [] if found is None else found[0]
    return [(list(entry["positional"]), _summarised_reach(entry["kernels"])) for entry in entries]


def _summarised_reach(kernels: dict[str, list[list[Any]]]) -> dict[str, list[tuple[Kernel, str, cst.Call | None]]]:
    """A summary's parameter -> [qualified kernel, meaning, ...] as kernels of the vocabulary (the call is
    elsewhere). A kernel call that sits in a branch on a training flag (`training_gated` in a function
    summary's flags) is left out: the function runs it only in training. A branch on anything else (a
    padding mask, packed positions) still runs in eval."""
    return {
        name: [
            (KERNELS[use[0]], use[1], None)
            for use in uses
            if use[0] in KERNELS and not (len(use) > 2 and use[2].get("training_gated"))
        ]
        for name, uses in kernels.items()
    }


def _local_reach(ctx: FileContext, function: cst.FunctionDef) -> dict[str, list[tuple[Kernel, str, cst.Call | None]]]:
    return {
        name: [(use.kernel, use.meaning, use.call) for use in uses]
        for name, uses in kernel_parameters(ctx, function).items()
    }


def returned_closures(ctx: FileContext, function: cst.FunctionDef) -> list[cst.FunctionDef]:
    """The functions defined inside `function` that it returns by name (every return is one of them;
    one closure defined in each branch of an `if` counts once per definition)."""
    returned = return_values(ctx, function)
    names = {value.value for value in returned if is_a(value, cst.Name)}
    if not returned or not all(is_a(value, cst.Name) for value in returned):
        return []
    nested = [
        inner
        for inner in ctx.index.descendants(function.body, cst.FunctionDef, prune=HELPER_SCOPES)
        if inner.name.value in names
    ]
    return nested if {inner.name.value for inner in nested} == names else []


def closure_summaries(ctx: FileContext) -> dict[str, list[dict[str, Any]]]:
    """Module-level factories -> for each closure they return, the names its positional arguments bind to
    and the kernel arguments (qualified kernel, meaning) each parameter reaches: what an importing file
    needs to follow `self._attention_call = _sdpa_or_flex_attention()`."""
    found: dict[str, list[dict[str, Any]]] = {}
    for statement in ctx.module.body:
        if not is_a(statement, cst.FunctionDef):
            continue
        entries = []
        for closure in returned_closures(ctx, statement):
            kernels = {
                name: [[ctx.callee(use.call), use.meaning] for use in uses]
                for name, uses in kernel_parameters(ctx, closure).items()
            }
            entries.append({"positional": positional_parameters(closure), "kernels": kernels})
        if any(entry["kernels"] for entry in entries):
            found[statement.name.value] = entries
    return found


# -- module-level functions, as an importing file sees them ----------------------------------------------
def kernel_call_flags(ctx: FileContext, call: cst.Call, kernel: Kernel) -> dict[str, Any]:
    """What a kernel call fixes by itself: each argument it passes as a literal `True` / `False`, by
    meaning (also in a `**attn_kwargs` that holds it), whether the call sits in a branch of its function
    (`conditional`), and whether that is a branch on a training flag (`training_gated`: the function
    runs it only in training)."""
    flags: dict[str, Any] = {}
    for meaning, _, _ in kernel.arguments:
        value = kernel_argument(ctx, call, kernel, meaning)
        if is_a(value, cst.Name) and value.value in ("True", "False"):
            flags[meaning] = value.value == "True"
    flags["conditional"] = in_branch(ctx, call)
    flags["training_gated"] = under_training_branch(ctx, call)
    return flags


def in_branch(ctx: FileContext, node: cst.CSTNode) -> bool:
    """Inside an `if` or an `x if c else y` of its function (or of the module): the author chose when it runs."""
    for ancestor in ctx.index.ancestors(node):
        if is_a(ancestor, (cst.FunctionDef, cst.Lambda)):
            return False
        if is_a(ancestor, (cst.If, cst.IfExp, cst.Else)):
            return True
    return False


def function_summaries(ctx: FileContext) -> dict[str, dict[str, Any]]:
    """Module-level functions that hand a parameter to an attention kernel -> the names their positional
    arguments bind to, and for each such parameter the (qualified kernel, meaning, the kernel call's flags)
    it reaches: what an importing file needs to follow `causal_attention(q, k, v)` into SDPA."""
    found: dict[str, dict[str, Any]] = {}
    for statement in ctx.module.body:
        if not is_a(statement, cst.FunctionDef):
            continue
        reach = kernel_parameters(ctx, statement)
        if reach:
            found[statement.name.value] = {
                "positional": positional_parameters(statement),
                "kernels": {
                    name: [
                        [ctx.callee(use.call), use.meaning, kernel_call_flags(ctx, use.call, use.kernel)]
                        for use in uses
                    ]
                    for name, uses in reach.items()
                },
            }
    return found


def imported_function(ctx: FileContext, call: cst.Call) -> dict[str, Any] | None:
    """For a call of a function imported from a project module: its `function_summaries` entry there
    (None when the file is checked alone, or the module summarises no such function)."""
    return imported_summary(ctx, call, "functions")


def imported_summary(ctx: FileContext, call: cst.Call, fact: str) -> dict[str, Any] | None:
    """For a call of a function imported from a project module, by its name (`softmax(x)` after `from
    .utils import softmax`) or through its module (`utils.softmax(x)` after `from fairseq import utils`
    or `import fairseq.utils as utils`): the entry its module's summary holds for it under `fact` (None
    when the file is checked alone, or there is no such entry)."""
    scope: ProjectScope | None = getattr(ctx, "project", None)
    source = _imported_function(ctx, call.func) if scope is not None else None
    found = scope.lookup(source, fact) if scope is not None and source is not None else None
    return None if found is None else found[0]


def _imported_function(ctx: FileContext, func: cst.BaseExpression) -> ImportedName | None:
    names = imported_names(ctx)
    if is_a(func, cst.Name):
        source = names.get(func.value)
        return source if source is not None and source.name else None
    if (
        not is_a(func, cst.Attribute)
        or not is_a(func.value, cst.Name)
        or (module := names.get(func.value.value)) is None
    ):
        return None
    if not module.name:  # import fairseq.utils as utils
        return ImportedName(module.module, module.level, func.attr.value)
    package = f"{module.module}.{module.name}" if module.module else module.name  # from fairseq import utils
    return ImportedName(package, module.level, func.attr.value)


# -- module classes: an instance called like a function -----------------------------------------------------
def module_forward(ctx: FileContext, call: cst.Call) -> cst.FunctionDef | None:
    """The `forward` a call runs when its callee holds an instance of one top-level module class of this
    file (`self.attend(...)`, `for attn, ff in self.layers: attn(x)`)."""
    classes = called_classes(ctx, call)
    cls = ctx.top_level_classes().get(next(iter(classes))) if len(classes) == 1 else None
    return ctx.class_facts(cls).methods.get("forward") if cls is not None else None


def module_forwards(ctx: FileContext, call: cst.Call) -> list[cst.FunctionDef]:
    """The `forward` of every top-level module class of this file a call may run, when each class it may
    hold is one (none when some is not, or there are fewer than two: see `module_forward`)."""
    classes = called_classes(ctx, call)
    found = [ctx.top_level_classes().get(name) for name in sorted(classes)]
    forwards = [ctx.class_facts(cls).methods.get("forward") for cls in found if cls is not None]
    if len(classes) < 2 or len(found) != len(classes) or None in found or None in forwards:
        return []
    return [forward for forward in forwards if forward is not None]


def module_summaries(ctx: FileContext) -> dict[str, dict[str, Any]]:
    """Top-level module classes whose `forward` reads a parameter as an attention mask or hands it to an
    attention kernel -> the names its positional arguments bind to (after `self`); `masks`: for each mask
    parameter how it is read ([convention, whether the mask's layout reaches the consumer, the consumer]);
    `kernels`: for each parameter the kernel arguments it reaches ([qualified kernel, meaning]). What an
    importing file needs to follow `self.attend(q, k, v, mask=mask, dropout_p=p)` into a class of this module."""
    from sharpedges.analysis.masks import CONSUMER_TOKENS, parameter_mask_readings
    from sharpedges.analysis.tensors import module_class

    found: dict[str, dict[str, Any]] = {}
    reads_masks = ctx.mentions(*CONSUMER_TOKENS) and ctx.mentions(b"mask")
    if not reads_masks and not ctx.mentions(*KERNEL_TOKENS):
        return found  # no consumer of a mask and no kernel in this file: no cost on the rest
    for name, cls in ctx.top_level_classes().items():
        forward = ctx.class_facts(cls).methods.get("forward")
        if forward is None or module_class(ctx, cls) is False:
            continue
        entry: dict[str, Any] = {}
        if reads_masks:
            entry["masks"] = {
                parameter: [[convention, geometry, consumer] for convention, geometry, consumer, _ in readings]
                for parameter, readings in parameter_mask_readings(ctx, forward).items()
            }
        entry["kernels"] = {
            parameter: [[ctx.callee(use.call), use.meaning] for use in uses]
            for parameter, uses in kernel_parameters(ctx, forward).items()
        }
        entry = {key: value for key, value in entry.items() if value}
        if entry:
            found[name] = {"positional": positional_parameters(forward)[1:], **entry}
    return found


def imported_module(ctx: FileContext, call: cst.Call) -> dict[str, Any] | None:
    """For a call of an instance of a module class imported from a project module (`self.attend = Attend(...)`,
    then `self.attend(q, k, v, mask=mask)`): its `module_summaries` entry there, with its name as `class`."""
    classes = called_classes(ctx, call)
    source = _imported_classes(ctx).get(next(iter(classes))) if len(classes) == 1 else None
    scope: ProjectScope | None = getattr(ctx, "project", None)
    if scope is None or source is None:
        return None
    found = scope.lookup(source, "modules")
    return None if found is None else {**found[0], "class": source.name}


def _imported_classes(ctx: FileContext) -> dict[str, ImportedName]:
    """Qualified name (as `held_modules` names what a call builds) -> the import of that name, for the
    names imported from a file of the project that some call of this file constructs."""
    scope: ProjectScope | None = getattr(ctx, "project", None)

    def build() -> dict[str, ImportedName]:
        if scope is None:
            return {}
        imported = {
            qualified: source
            for local, source in imported_names(ctx).items()
            if source.name and (qualified := ctx.qualify(cst.Name(local)) or local)
        }
        built = sorted({qualified for call in ctx.calls() if (qualified := ctx.callee(call) or "") in imported})
        return {
            qualified: imported[qualified]
            for qualified in built
            if scope.module_file(ImportedName(imported[qualified].module, imported[qualified].level, "")) is not None
        }

    return ctx.memo("summaries.imported_classes", build)


def imported_module_calls(ctx: FileContext) -> bool:
    """Whether some call of this file may run an instance of a class imported from a project module: the
    cheap test before calls are followed into other modules' summaries."""
    imported = _imported_classes(ctx)
    return bool(imported) and any(name in imported for name in ctx.memo("module_calls", lambda: _module_calls(ctx)))
