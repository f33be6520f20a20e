"""How key/value caches grow, and what bounds them.

A cache grows when something is concatenated onto itself: `self.k = torch.cat([self.k, k], dim=-2)`
in a cache class, or a generation `while` loop that passes `past_key_values=past` and takes the
grown `past` back. What bounds it: a slice of the stored tensor to a window, an ordering test of its
length or of a counter (`if self.pos + n > self.max_len: raise`), an eviction (`pop`, `del`), or a loop
condition / `break` that tests a length. A capacity stored and never tested bounds nothing.
Token ids concatenated in a generation loop are not a key/value cache.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import libcst as cst

from sharpedges.analysis.calls import argument, is_false, literal_int, literal_number, method_name, receiver
from sharpedges.analysis.classes import self_attribute
from sharpedges.analysis.context import FileContext
from sharpedges.analysis.dataflow import unpacked_position
from sharpedges.analysis.importers import importer_arguments
from sharpedges.analysis.masks import MAX_DEPTH
from sharpedges.analysis.names import dotted
from sharpedges.analysis.summaries import (
    bind_arguments,
    call_sites,
    called_function,
    in_branch,
    positional_parameters,
    return_values,
)
from sharpedges.analysis.vocabulary import (
    BROADCAST_METHODS,
    CAST_METHODS,
    CONCATENATIONS,
    COPY_METHODS,
    MATMUL_FUNCTIONS,
    REORDER_METHODS,
    REPEAT_METHODS,
    RESHAPE_METHODS,
    SDPA,
)
from sharpedges.analysis.walk import is_a

# Keywords through which a model receives the cache it returned on the previous step.
CACHE_KEYWORDS = {
    "past_key_values",
    "past_key_value",
    "past",
    "layer_past",
    "kv_cache",
    "cache",
    "mems",
    "past_kv",
    "kv_caches",
    "caches",
    "state",
}
# Ops that turn scores into token ids (and `generate`, which returns them): ids, not keys or values.
TOKEN_OPS = {"argmax", "multinomial", "topk", "sample", "argsort", "randint", "generate"}
ORDERING = (cst.LessThan, cst.LessThanEqual, cst.GreaterThan, cst.GreaterThanEqual)
ATTENTION_OPS = MATMUL_FUNCTIONS | SDPA | {"torch.einsum", "torch.baddbmm"}
EVICTIONS = {"pop", "popleft", "popitem", "clear", "reset"}
CAPACITY_NAME = re.compile(r"max|window|capacity|limit|cache_size|block_size|context", re.IGNORECASE)
MAX_HOPS = 4


@dataclass(frozen=True)
class Growth:
    """A cache attribute concatenated onto itself."""

    cat: cst.Call
    label: str  # `self.k_cache`, `self.cache[layer]`, as written
    attribute: str  # the `self.` attribute behind it


def is_cat(ctx: FileContext, call: cst.Call) -> bool:
    return ctx.callee(call) in CONCATENATIONS


def _cat_pieces(call: cst.Call) -> list[cst.BaseExpression]:
    tensors = argument(call, "tensors", 0)
    if is_a(tensors, (cst.List, cst.Tuple)):
        return [e.value for e in tensors.elements if not is_a(e, cst.StarredElement)]
    return []


def base_attribute(expr: cst.BaseExpression) -> str | None:
    """`k_cache` for `self.k_cache`, `self.k_cache[i]`, `self.cache["k"][i]`."""
    while is_a(expr, cst.Subscript):
        expr = expr.value
    return self_attribute(expr)


def attribute_growths(ctx: FileContext) -> list[Growth]:
    """`self.x = torch.cat([self.x, new], ...)` (also of `self.x[i]`, or through a local:
    `k = torch.cat((self.k, k)); self.k = k`), the new piece not token ids."""
    return ctx.memo("caches.growths", lambda: _find_growths(ctx))


def _find_growths(ctx: FileContext) -> list[Growth]:
    found = []
    for assign in ctx.index.nodes(cst.Assign):
        for cat in _cats(ctx, assign.value):
            for target in assign.targets:
                attribute = base_attribute(target.target)
                if attribute is not None and _grows(ctx, cat, ctx.code(target.target)):
                    found.append(Growth(cat, ctx.code(target.target), attribute))
    for cls in ctx.index.nodes(cst.ClassDef):
        for attribute, assignments in ctx.class_facts(cls).assignments.items():
            for assignment in assignments:
                value = assignment.value
                if not is_a(value, cst.Name) or (function := ctx.function_of(value)) is None:
                    continue
                for definition in ctx.function_facts(function).reaching(value.value, ctx.order(value)):
                    for cat in _cats(ctx, definition.value):
                        if _grows(ctx, cat, f"self.{attribute}"):
                            found.append(Growth(cat, f"self.{attribute}", attribute))
    return found


def grows_keys_or_values(ctx: FileContext, growth: Growth) -> bool:
    """Whether what grows is keys or values. Caches grow along the sequence axis of a 3-D or 4-D
    tensor (`dim=-2`, `dim=1`); along the first axis (the default), the grown value must show that it
    is attended over: the growing method hands it back (a cache's `update` returns the keys), or the
    class reads it in an attention product. Indices merged once per call along their only axis are
    not a cache (DeepSpeed's SparseTensor.add, mmdet's AssignResult.add_gt_)."""
    dim = argument(growth.cat, "dim", 1)
    if dim is not None and literal_number(dim) != 0:
        return True
    method, cls = ctx.function_of(growth.cat), ctx.class_of(growth.cat)
    if method is not None and any(
        node.value is not None and ctx.function_of(node) is method for node in ctx.index.descendants(method, cst.Return)
    ):
        return True
    if cls is None:
        return False
    reads = [
        arg.value
        for call in ctx.index.descendants(cls, cst.Call)
        if ctx.callee(call) in ATTENTION_OPS
        for arg in call.args
    ]
    reads += [
        side
        for node in ctx.index.descendants(cls, cst.BinaryOperation)
        if is_a(node.operator, cst.MatrixMultiply)
        for side in (node.left, node.right)
    ]
    return any(growth.attribute in _self_attributes_read(ctx, expr) for expr in reads)


def _cats(ctx: FileContext, value: cst.BaseExpression | None) -> list[cst.Call]:
    """The concatenation `value` is, or either arm of `k if self.k is None else torch.cat(...)`."""
    arms = [value.body, value.orelse] if is_a(value, cst.IfExp) else [value]
    return [arm for arm in arms if is_a(arm, cst.Call) and is_cat(ctx, arm)]


def _grows(ctx: FileContext, cat: cst.Call, text: str) -> bool:
    pieces = _cat_pieces(cat)
    grown = [p for p in pieces if ctx.code(p) == text or _holds(ctx, p, text)]
    return bool(grown) and len(grown) < len(pieces) and not any(is_token_ids(ctx, p) for p in pieces if p not in grown)


def _holds(ctx: FileContext, expr: cst.BaseExpression, text: str) -> bool:
    """`old` in `old = self.k_cache; self.k_cache = torch.cat([old, k])`."""
    if not is_a(expr, cst.Name) or (function := ctx.function_of(expr)) is None:
        return False
    reaching = ctx.function_facts(function).reaching(expr.value, ctx.order(expr))
    return len(reaching) == 1 and reaching[0].value is not None and ctx.code(reaching[0].value) == text


def is_token_ids(ctx: FileContext, expr: cst.BaseExpression, hops: int = 0) -> bool:
    """Whether `expr` comes from sampling or picking tokens (`argmax`, `multinomial`, `topk`, ...)."""
    for node in [expr, *ctx.index.descendants(expr, (cst.Call, cst.Name))]:
        if is_a(node, cst.Call):
            name = method_name(node) or (ctx.callee(node) or "").rsplit(".", 1)[-1]
            if name in TOKEN_OPS:
                return True
        elif is_a(node, cst.Name) and hops < MAX_HOPS and (function := ctx.function_of(node)) is not None:
            for definition in ctx.function_facts(function).reaching(node.value, ctx.order(node)):
                if definition.value is not None and is_token_ids(ctx, definition.value, hops + 1):
                    return True
    return False


# -- bounds on an attribute --------------------------------------------------------------------
def attribute_bounded(ctx: FileContext, cls: cst.ClassDef, attribute: str) -> bool:
    """The class slices the attribute to a window, evicts from it, or tests its length or a
    position counter against something in an `if`/`assert`/`while`."""
    facts = ctx.class_facts(cls)
    for assignment in facts.assignments.get(attribute, ()):
        if _slices(ctx, assignment.value):
            return True
    counters = _counters(ctx, cls)
    grown = {g.attribute for g in attribute_growths(ctx) if ctx.class_of(g.cat) is cls}
    for node in ctx.index.descendants(cls.body, (cst.If, cst.Assert, cst.While, cst.Call, cst.Del)):
        if is_a(node, cst.Call):
            func = node.func
            if method_name(node) in EVICTIONS and is_a(func, cst.Attribute) and base_attribute(func.value) == attribute:
                return True
        elif is_a(node, cst.Del):
            if any(base_attribute(t) == attribute for t in _del_targets(node.target)):
                return True
        elif _tests_length(ctx, node.test, {attribute, *counters}):
            return True
        elif (
            is_a(node, cst.If)
            and _tests_length(ctx, node.test, {*grown, *counters})
            and _resets(ctx, node.body, attribute)
        ):
            return True  # a test of the keys' length whose branch flushes the values too (HF QuantizedLayer)
    return _reseeded(ctx, cls, attribute)


def _reseeded(ctx: FileContext, cls: cst.ClassDef, attribute: str) -> bool:
    """The class starts the attribute over outside `__init__` (a `reset()`, or a prefill branch that
    assigns it afresh): it holds one generation and lives as long as its owner keeps it, like a
    library's dynamic cache. Lazy initialisation (`if self.k is None: self.k = k`) is no reset."""
    for method in ctx.class_facts(cls).methods.values():
        if method.name.value == "__init__":
            continue
        for node in ctx.index.descendants(method.body, cst.Assign):
            targets = [leaf for target in node.targets for leaf in _flatten(target.target)]
            if not any(base_attribute(leaf) == attribute for leaf in targets):
                continue
            if attribute in _self_attributes_read(ctx, node.value) or _cats(ctx, node.value):
                continue  # grows or rewrites it from itself
            # `if self.k is None: self.k, self.v = k, v` lazily starts the pair: a guard on any attribute it sets
            assigned = {base_attribute(leaf) for leaf in targets}
            guards = (n for n in ctx.index.ancestors(node) if is_a(n, cst.If) and ctx.index.contains(method, n))
            if not any(assigned & set(_self_attributes_read(ctx, guard.test)) for guard in guards):
                return True
    return False


def _resets(ctx: FileContext, body: cst.CSTNode, attribute: str) -> bool:
    return any(
        base_attribute(t.target) == attribute and not _cats(ctx, node.value)
        for node in ctx.index.descendants(body, cst.Assign)
        for t in node.targets
    )


def _del_targets(target: cst.BaseExpression) -> list[cst.BaseExpression]:
    return [e.value for e in target.elements] if is_a(target, (cst.Tuple, cst.List)) else [target]


def _slices(ctx: FileContext, value: cst.BaseExpression | None) -> bool:
    """`x[..., -window:, :]`, `torch.cat(...)[:, :, -w:]`, `k[:, :, start:end]`: a bounded slice of the cache."""
    if value is None:
        return False
    for node in [value, *ctx.index.descendants(value, cst.Subscript)]:
        if not is_a(node, cst.Subscript):
            continue
        if any(
            is_a(e.slice, cst.Slice) and (e.slice.lower is not None or e.slice.upper is not None) for e in node.slice
        ):
            return True
    return False


def _counters(ctx: FileContext, cls: cst.ClassDef) -> set[str]:
    """Attributes advanced with `+=` (positions, lengths): testing one bounds the cache too."""
    return {
        attribute
        for node in ctx.index.descendants(cls.body, cst.AugAssign)
        if is_a(node.operator, cst.AddAssign) and (attribute := base_attribute(node.target)) is not None
    }


def _tests_length(ctx: FileContext, test: cst.BaseExpression, attributes: set[str]) -> bool:
    for comparison in [test, *ctx.index.descendants(test, cst.Comparison)]:
        if not is_a(comparison, cst.Comparison):
            continue
        if not any(is_a(c.operator, ORDERING) for c in comparison.comparisons):
            continue
        # `self.k.shape[2]`, `len(self.cache)`, `self.pos + n`, or a local computed from one
        # (`length = self.k.shape[-2]; if length + n >= self.limit:`)
        if _self_attributes_read(ctx, comparison) & attributes:
            return True
    return False


def _self_attributes_read(ctx: FileContext, expr: cst.BaseExpression) -> set[str]:
    def read_in(node: cst.CSTNode) -> set[str]:
        return {attr for a in ctx.index.descendants(node, cst.Attribute) if (attr := self_attribute(a)) is not None}

    found = read_in(expr)
    for name in ctx.index.descendants(expr, cst.Name):
        if (function := ctx.function_of(name)) is not None:
            for definition in ctx.function_facts(function).reaching(name.value, ctx.order(name)):
                if definition.kind == "assign" and definition.value is not None:
                    found |= read_in(definition.value)
    return found


def unenforced_capacity(ctx: FileContext, cls: cst.ClassDef) -> str | None:
    """A capacity-like attribute (`self.max_seq_len`) the class stores but never tests or slices with."""
    facts = ctx.class_facts(cls)
    for attribute in facts.assignments:
        if not CAPACITY_NAME.search(attribute):
            continue
        reads = [
            a
            for a in ctx.index.descendants(cls.body, cst.Attribute)
            if self_attribute(a) == attribute and not is_a(ctx.index.parents.get(a), cst.AssignTarget)
        ]
        if not any(ctx.index.enclosing(r, (cst.Comparison, cst.Slice)) is not None for r in reads):
            return attribute
    return None


# -- generation loops --------------------------------------------------------------------------
@dataclass(frozen=True)
class FedBack:
    loop: cst.While
    node: cst.BaseExpression  # the cache passed back into the model (or concatenated onto itself)
    name: str


def unbounded_while_loops(ctx: FileContext) -> list[FedBack]:
    """`while` loops that hand a cache back to the model (or grow local K/V by `torch.cat`) every
    iteration, with no length test in the condition, no length-tested `break`, and no slice of it."""
    found = []
    for loop in ctx.index.nodes(cst.While):
        if _length_bounded_loop(ctx, loop):
            continue
        assigned = _assigned_in(ctx, loop)
        for node in _fed_back(ctx, loop, assigned):
            if not _sliced_in(ctx, loop, node.value):
                found.append(FedBack(loop, node, node.value))
                break
    return found


def _body_nodes(ctx: FileContext, loop: cst.While, types):
    return ctx.index.descendants(loop.body, types, prune=(cst.FunctionDef, cst.ClassDef, cst.Lambda))


def _length_bounded_loop(ctx: FileContext, loop: cst.While) -> bool:
    if _has_ordering(ctx, loop.test):
        return True
    for node in _body_nodes(ctx, loop, cst.If):
        exits = any(
            is_a(s, (cst.Break, cst.Return, cst.Raise))
            for s in ctx.index.descendants(node.body, (cst.Break, cst.Return, cst.Raise))
        )
        if exits and _has_ordering(ctx, node.test):
            return True
    return False


def _has_ordering(ctx: FileContext, test: cst.BaseExpression) -> bool:
    return any(
        is_a(c, cst.Comparison) and any(is_a(t.operator, ORDERING) for t in c.comparisons)
        for c in [test, *ctx.index.descendants(test, cst.Comparison)]
    )


def _assigned_in(ctx: FileContext, loop: cst.While) -> dict[str, list[cst.BaseExpression | None]]:
    """Names (re)bound in the loop body, with the values they get (None when unpacked)."""
    assigned: dict[str, list] = {}
    for node in _body_nodes(ctx, loop, (cst.Assign, cst.AugAssign, cst.AnnAssign)):
        targets = [t.target for t in node.targets] if is_a(node, cst.Assign) else [node.target]
        for target in targets:
            for element in _flatten(target):
                if is_a(element, cst.Name):
                    value = node.value if element is target else None
                    assigned.setdefault(element.value, []).append(value)
    return assigned


def _flatten(target: cst.BaseExpression) -> list[cst.BaseExpression]:
    if is_a(target, (cst.Tuple, cst.List)):
        return [leaf for e in target.elements for leaf in _flatten(e.value)]
    if is_a(target, cst.StarredElement):
        return _flatten(target.value)
    return [target]


def _fed_back(ctx: FileContext, loop: cst.While, assigned: dict) -> list[cst.Name]:
    fed = []
    for call in _body_nodes(ctx, loop, cst.Call):
        for arg in call.args:
            if (
                arg.keyword is not None
                and arg.keyword.value in CACHE_KEYWORDS
                and is_a(arg.value, cst.Name)
                and arg.value.value in assigned
            ):
                fed.append(arg.value)
        if is_cat(ctx, call):
            parent = ctx.index.parents.get(call)
            if (
                is_a(parent, cst.Assign)
                and len(parent.targets) == 1
                and is_a(target := parent.targets[0].target, cst.Name)
            ):
                pieces = _cat_pieces(call)
                if (
                    any(is_a(p, cst.Name) and p.value == target.value for p in pieces)
                    and not any(is_token_ids(ctx, p) for p in pieces if not _same_name(p, target))
                    and _attended(ctx, loop, target.value)
                ):
                    fed.append(target)
    return fed


def _attended(ctx: FileContext, loop: cst.While, name: str) -> bool:
    """Whether the grown tensor is used as keys or values in the loop: an operand of `@`, `matmul`,
    `einsum` or SDPA. Generated outputs grown the same way (token ids, audio latents) are not a cache."""
    for node in _body_nodes(ctx, loop, (cst.BinaryOperation, cst.Call)):
        if is_a(node, cst.BinaryOperation):
            operands = (node.left, node.right) if is_a(node.operator, cst.MatrixMultiply) else ()
        else:
            operands = tuple(a.value for a in node.args) if ctx.callee(node) in ATTENTION_OPS else ()
        if any(_reads(ctx, operand, name) for operand in operands):
            return True
    return False


def _reads(ctx: FileContext, expr: cst.BaseExpression, name: str) -> bool:
    return any(is_a(n, cst.Name) and n.value == name for n in [expr, *ctx.index.descendants(expr, cst.Name)])


def _same_name(expr: cst.BaseExpression, name: cst.Name) -> bool:
    return is_a(expr, cst.Name) and expr.value == name.value


def _sliced_in(ctx: FileContext, loop: cst.While, name: str) -> bool:
    """`past = [p[..., -window:, :] for p in past]` or `k = k[:, :, -w:]` in the loop: a window."""
    for node in _body_nodes(ctx, loop, cst.Assign):
        targets = (leaf for t in node.targets for leaf in _flatten(t.target))
        if any(is_a(leaf, cst.Name) and leaf.value == name for leaf in targets) and _slices(ctx, node.value):
            return True
    return False


# -- keys built from a cache ----------------------------------------------------------------------
PASS_THROUGH = RESHAPE_METHODS | BROADCAST_METHODS | REORDER_METHODS | COPY_METHODS | CAST_METHODS | REPEAT_METHODS


def built_from_cache(
    ctx: FileContext,
    function: cst.FunctionDef,
    expr: cst.BaseExpression | None,
    at: int,
    depth: int = 0,
    importers: bool = False,
) -> bool:
    """Keys concatenated onto past keys (`torch.cat([past_k, k])`), returned by a cache's
    `.update(...)`, read back from a cache buffer written in the same function, or returned so by a
    helper of this file (`k, v = self._append_to_cache(k, v)`). With `importers`, a module's `forward`
    parameter also asks the files next to this one that call the module (they are summarised for it:
    ask only where a finding hangs on the answer)."""
    return _built_from_cache(ctx, function, expr, at, depth, importers, None)


def _built_from_cache(
    ctx: FileContext,
    function: cst.FunctionDef,
    expr: cst.BaseExpression | None,
    at: int,
    depth: int,
    importers: bool,
    element: int | None,
) -> bool:
    """`built_from_cache`, where `element` is the position a name takes when it unpacks `expr`."""
    if depth > MAX_DEPTH:
        return False

    def built(value: cst.BaseExpression | None, where: int, element: int | None = None) -> bool:
        return _built_from_cache(ctx, function, value, where, depth + 1, importers, element)

    if is_a(expr, cst.Name):
        if _written_buffer(ctx, function, expr):
            return True  # Ex) kv = params.memory[i]; kv[:, start:end] = new_kv
        facts = ctx.function_facts(function)
        for definition in facts.reaching(expr.value, at):
            value = definition.value
            position = None
            if definition.kind == "unpack" and is_a(definition.node, cst.Assign):
                value = definition.node.value
                position = unpacked_position(definition.node, expr.value)
            if (
                value is not None
                and definition.kind in ("assign", "unpack")
                and built(value, definition.order, position)
            ):
                return True
            if definition.kind == "param" and _passed_from_cache(ctx, expr.value, function, depth, importers):
                return True
        return False
    if is_a(expr, cst.Call):
        if ctx.callee(expr) in CONCATENATIONS:
            return True
        method = method_name(expr)
        if method == "update" and receiver(expr) is not None:
            return True
        if method in PASS_THROUGH:
            return built(receiver(expr), at)
        return _returned_from_cache(ctx, expr, depth, importers, element)
    if is_a(expr, cst.Subscript):
        return _written_buffer(ctx, function, expr.value) or built(expr.value, at)
    return False


def _returned_from_cache(ctx: FileContext, call: cst.Call, depth: int, importers: bool, element: int | None) -> bool:
    """A helper of this file returns keys built from a cache: `return k, v` after it concatenated the
    past onto them (element `element` of each returned tuple, when the caller unpacks one)."""
    target = called_function(ctx, call)
    if target is None or target[0] is ctx.function_of(call):
        return False
    helper = target[0]
    for value in return_values(ctx, helper):
        if element is not None and is_a(value, (cst.Tuple, cst.List)):
            if element >= len(value.elements):
                continue
            value = value.elements[element].value
        if _built_from_cache(ctx, helper, value, ctx.order(value), depth + 1, importers, None):
            return True
    return False


def _passed_from_cache(
    ctx: FileContext, parameter: str, function: cst.FunctionDef, depth: int, importers: bool
) -> bool:
    """A caller, outside any branch, passes keys built from a cache to this parameter: `forward`
    concatenates the past onto `k` and hands it to the method that runs SDPA, or (with `importers`) a
    module of another file next to this one does so when it calls this module."""
    for call, names in call_sites(ctx, function):
        caller = ctx.function_of(call)
        argument = bind_arguments(call, names).get(parameter)
        if (
            argument is not None
            and caller is not None
            and not in_branch(ctx, call)
            and built_from_cache(ctx, caller, argument, ctx.order(call), depth + 1, importers)
        ):
            return True
    return importers and _passed_by_importers(ctx, parameter, function)


def _passed_by_importers(ctx: FileContext, parameter: str, function: cst.FunctionDef) -> bool:
    cls = ctx.class_of(function)
    if cls is None or ctx.class_facts(cls).methods.get("forward") is not function:
        return False
    names = positional_parameters(function)[1:]
    keys = [parameter] + ([str(names.index(parameter))] if parameter in names else [])
    return any(arguments.get(key, {}).get("cache") for arguments in importer_arguments(ctx, cls) for key in keys)


def _written_buffer(ctx: FileContext, function: cst.FunctionDef, expr: cst.BaseExpression) -> bool:
    """`self.cache_k[:bsz, start:start + T] = xk` elsewhere in the function: a preallocated cache. A local
    buffer written so is one when it is kept across calls: read from, or stored into, an object the function
    is handed (`kv_cache = params.memory[i]`, `params.memory[i] = kv_cache`)."""
    attrs, locals_ = _buffers_written(ctx, function)
    attr = self_attribute(expr)
    return attr in attrs if attr is not None else is_a(expr, cst.Name) and expr.value in locals_


def _buffers_written(ctx: FileContext, function: cst.FunctionDef) -> tuple[frozenset[str], frozenset[str]]:
    """The `self` attributes and the kept locals the function writes into by index, computed once."""

    def compute() -> tuple[frozenset[str], frozenset[str]]:
        assigns = list(ctx.index.descendants(function.body, cst.Assign, prune=(cst.FunctionDef, cst.ClassDef)))
        attrs, locals_ = set(), set()
        for assign in assigns:
            for target in assign.targets:
                if is_a(target.target, cst.Subscript):
                    if (attr := self_attribute(target.target.value)) is not None:
                        attrs.add(attr)
                    elif is_a(target.target.value, cst.Name):
                        locals_.add(target.target.value.value)
        parameters = set(ctx.function_facts(function).parameters)
        kept = set()
        for assign in assigns:
            targets = [target.target for target in assign.targets]
            if _held_by(assign.value, parameters):  # Ex) kv_cache = params.memory[i]
                kept |= {t.value for t in targets if is_a(t, cst.Name)}
            if is_a(assign.value, cst.Name) and any(_held_by(t, parameters) for t in targets):
                kept.add(assign.value.value)  # Ex) params.memory[i] = kv_cache
        return frozenset(attrs), frozenset(locals_ & kept)

    return ctx.memo(("caches.buffers_written", id(function)), compute)


def _held_by(expr: cst.BaseExpression, parameters: set[str]) -> bool:
    """`params.memory[i]`, `self.cache[i]`: an item or attribute of an object the function is handed."""
    if not is_a(expr, (cst.Subscript, cst.Attribute)):
        return False
    while is_a(expr, (cst.Subscript, cst.Attribute)):
        expr = expr.value
    return is_a(expr, cst.Name) and expr.value in parameters


def cache_gate(
    ctx: FileContext, function: cst.FunctionDef, flag: cst.BaseExpression | None, key: cst.BaseExpression, at: int
) -> cst.Name | None:
    """The cache whose presence switches causal masking off: `is_causal=cache is None` (or `not cache`,
    `past is None and ...`) where the keys are built from that same cache. With a cache, a chunk of
    several new tokens then attends to its own future."""
    if flag is None:
        return None
    for tested in _absence_tests(_flag_test(ctx, function, flag, at)):
        if built_from_cache(ctx, function, key, at) and _reads_name(ctx, function, key, at, tested.value):
            return tested
    return None


def _flag_test(ctx: FileContext, function: cst.FunctionDef, flag: cst.BaseExpression, at: int) -> cst.BaseExpression:
    """The test a causal flag stands for: the flag itself, or the test of the one local it names when that
    local is off in the other case (`causal = None if offset == 0 else False`: on, or left to the module's
    default, only while the cache is empty)."""
    if is_a(flag, cst.Name):
        definitions = ctx.function_facts(function).reaching(flag.value, at)
        value = definitions[0].value if len(definitions) == 1 and definitions[0].kind == "assign" else None
        if is_a(value, cst.IfExp) and is_false(value.orelse):
            return value.test
    return flag


def _absence_tests(expr: cst.BaseExpression) -> list[cst.Name]:
    """The names `expr` is True only without: `x is None`, `not x`, `x.offset == 0` / `len(x) == 0` (nothing
    cached yet), and those joined by `and`."""
    if is_a(expr, cst.BooleanOperation) and is_a(expr.operator, cst.And):
        return _absence_tests(expr.left) + _absence_tests(expr.right)
    if is_a(expr, cst.UnaryOperation) and is_a(expr.operator, cst.Not) and is_a(expr.expression, cst.Name):
        return [expr.expression]
    if not is_a(expr, cst.Comparison) or len(expr.comparisons) != 1:
        return []
    operator, comparator = expr.comparisons[0].operator, expr.comparisons[0].comparator
    if is_a(operator, cst.Is) and is_a(expr.left, cst.Name) and dotted(comparator) == "None":
        return [expr.left]
    if is_a(operator, cst.Equal) and literal_int(comparator) == 0:
        measured = expr.left
        if is_a(measured, cst.Call) and dotted(measured.func) == "len" and len(measured.args) == 1:
            measured = measured.args[0].value
        while is_a(measured, cst.Attribute):
            measured = measured.value
        return [measured] if is_a(measured, cst.Name) else []
    return []


def _reads_name(
    ctx: FileContext, function: cst.FunctionDef, expr: cst.BaseExpression, at: int, name: str, depth: int = 0
) -> bool:
    """Whether `expr`, or a local it is computed from in `function`, reads `name`."""
    if depth > MAX_DEPTH:
        return False
    facts = ctx.function_facts(function)
    for node in [expr, *ctx.index.descendants(expr, cst.Name)]:
        if not is_a(node, cst.Name):
            continue
        if node.value == name:
            return True
        for definition in facts.reaching(node.value, ctx.order(node) if node is not expr else at):
            value = definition.computed_from
            if isinstance(value, cst.BaseExpression) and _reads_name(
                ctx, function, value, definition.order, name, depth + 1
            ):
                return True
    return False
