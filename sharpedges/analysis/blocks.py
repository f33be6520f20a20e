"""Residual and normalisation structure of transformer blocks, and how deep they are stacked.

A block's residual add either feeds a norm (post-norm, `x = norm(x + f(x))`), feeds a norm with
the residual up-weighted (DeepNorm, `x = norm(alpha * x + f(x))`), or takes a branch that starts
from a norm (pre-norm, `x = x + f(norm(x))`). A class's style is the union of what its own
methods and the in-file classes it constructs do; both pre and post means a switchable block.

A stack is a block class (or `nn.TransformerEncoderLayer`) repeated by a comprehension or loop
over `range(N)`, or by `nn.TransformerEncoder(layer, num_layers=N)`; its depth is resolved from
literals, parameter defaults, `self.` attributes, config-class field defaults and the arguments
of in-file constructor calls. A module whose own forward loops over the layers it holds, adding
each layer's output to one stream, is a stack too (`LoopStack`): the norms it applies are known by
how its layer lists are built (`nn.LayerNorm`, a class of the file, a flag's choice between a norm
and an identity), and by their names only where nothing says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

import libcst as cst

from sharpedges.analysis.calls import argument, has_star_args, is_false, is_true, literal_int, method_name, receiver
from sharpedges.analysis.classes import self_attribute
from sharpedges.analysis.context import FileContext
from sharpedges.analysis.dataflow import Definition, FunctionFacts, unpacked_position
from sharpedges.analysis.names import dotted
from sharpedges.analysis.project import ProjectScope, imported_names
from sharpedges.analysis.summaries import (
    HeldModules,
    attribute_modules,
    bind_arguments,
    called_classes,
    called_function,
    constructions,
    held_modules,
    positional_parameters,
    return_values,
)
from sharpedges.analysis.values import UNKNOWN, passed_argument, possible_values
from sharpedges.analysis.vocabulary import DROPOUT_MODULES, LOSS_FUNCTIONS, OBJECT_COPY_FUNCTIONS, SHAPE_ONLY_METHODS
from sharpedges.analysis.walk import is_a

PRE, POST, DEEPNORM = "pre", "post", "deepnorm"
NORM_FUNCTIONS = {"torch.nn.functional.layer_norm", "torch.nn.functional.rms_norm"}
# Norms over the feature dim of a token; batch/group/instance norms sit in conv nets, not here.
NORM_TYPE = re.compile(r"(LayerNorm|RMSNorm|RmsNorm|ScaleNorm|Norm)$")
NOT_TOKEN_NORM = re.compile(r"(Batch|Group|Instance|Weight|Spectral)Norm", re.IGNORECASE)
NORM_ATTRIBUTE = re.compile(
    r"(^|_)(ln|norm|layernorm|layer_norm|rmsnorm|rms_norm)(_?\d+|_\w+)?$|^(ln|norm)_?\w*\d$"
    r"|LayerNorm|^norm|norm$",
    re.IGNORECASE,
)
TORCH_LAYERS = {"torch.nn.TransformerEncoderLayer", "torch.nn.TransformerDecoderLayer"}
TORCH_STACKS = {"torch.nn.TransformerEncoder", "torch.nn.TransformerDecoder"}
MAX_HOPS = 6
CONFIG_SUFFIXES = ("Config", "Args", "Arguments", "Params", "Hparams", "Options", "Settings")


# -- norms and residual sums --------------------------------------------------------------------
def is_norm_call(ctx: FileContext, call: cst.Call) -> bool:
    """A LayerNorm/RMSNorm applied to a tensor: `F.layer_norm`, `self.ln_1(x)`, `self.norm[i](x)`."""
    callee = ctx.callee(call)
    if callee in NORM_FUNCTIONS:
        return True
    func = call.func
    if is_a(func, cst.Subscript):
        func = func.value
    attr = self_attribute(func)
    if attr is None:
        # `self.transformer.ln_f(x)`: a norm held in a ModuleDict, known by its name only
        if is_a(func, cst.Attribute) and (dotted(func) or "").startswith("self."):
            return bool(NORM_ATTRIBUTE.search(func.attr.value)) and not NOT_TOKEN_NORM.search(func.attr.value)
        if is_a(func, cst.Name):
            return _local_norm(ctx, call, func)
        return False
    cls = ctx.class_of(call)
    built = ctx.class_facts(cls).constructed_type(attr) if cls is not None else None
    if built is not None:
        short = built.rsplit(".", 1)[-1]
        if NOT_TOKEN_NORM.search(short):
            return False
        if NORM_TYPE.search(short):
            return True
    return bool(NORM_ATTRIBUTE.search(attr)) and not NOT_TOKEN_NORM.search(attr) and "bn" not in attr.lower()


def _local_norm(ctx: FileContext, call: cst.Call, func: cst.Name) -> bool:
    """A norm module held in a local: one the loop that runs the blocks takes from the class's module lists,
    or one a flag chooses in place of an identity (`norm if pre_norm else identity`)."""
    choices = _module_choices(ctx, func, ctx.order(call))
    return NORM in choices and choices <= {NORM, IDENTITY}


def is_flag_chosen_norm(ctx: FileContext, call: cst.Call) -> bool:
    """A norm call whose module may be an identity instead (`ff_norm if pre_norm else identity`,
    `nn.LayerNorm(dim) if pre_norm else nn.Identity()` where the layers are built): a norm in one
    configuration of the model only."""
    return is_a(call.func, cst.Name) and IDENTITY in _module_choices(ctx, call.func, ctx.order(call))


NORM, IDENTITY, OTHER = "norm", "identity", "other"


def _module_choices(ctx: FileContext, expr: cst.BaseExpression, at: int, hops: int = 0) -> frozenset[str]:
    """What a module (or a function called like one) may be, as NORM, IDENTITY or OTHER: a construction,
    by the class it builds; a function that returns its argument; either side of a conditional; a local
    bound to one of those; or an element of the module lists a loop runs (by how the lists are built, or,
    where nothing says, by the loop's name for it).

    Ex) `for mega_layer, mega_norm, ff, ff_norm in self.layers: maybe = mega_norm if pre_norm else identity`
    """
    if hops > MAX_HOPS:
        return frozenset({OTHER})
    if is_a(expr, cst.IfExp):
        return _module_choices(ctx, expr.body, at, hops) | _module_choices(ctx, expr.orelse, at, hops)
    if is_a(expr, cst.Call):
        return _class_choices(ctx, expr.func, at, hops)
    if is_a(expr, cst.Lambda):
        params = expr.params.params
        return frozenset(
            {IDENTITY if params and is_a(expr.body, cst.Name) and expr.body.value == params[0].name.value else OTHER}
        )
    if not is_a(expr, cst.Name):
        return frozenset({OTHER})
    function = ctx.function_of(expr)
    definitions = ctx.function_facts(function).reaching(expr.value, at) if function is not None else []
    if not definitions:
        return frozenset({IDENTITY if _returns_its_argument(ctx, expr.value) else OTHER})
    choices: set[str] = set()
    for definition in definitions:
        if definition.kind == "assign" and definition.value is not None:
            choices |= _module_choices(ctx, definition.value, definition.order, hops + 1)
        elif definition.kind == "loop" and definition.value is not None and _iterates_attribute(definition.value):
            held = held_modules(ctx, expr, at).classes
            known = all(c.startswith("torch.") or c in local_classes(ctx) for c in held)
            choices |= (
                _stacked_choices(ctx, expr, definition, hops)
                or (frozenset(_class_kind(ctx, c) for c in held) if known else frozenset())
                or {_named_kind(expr.value)}
            )
        else:
            choices.add(OTHER)
    return frozenset(choices)


def _class_choices(ctx: FileContext, expr: cst.BaseExpression, at: int, hops: int) -> frozenset[str]:
    """NORM, IDENTITY or OTHER for each class a construction's callee may be: `nn.LayerNorm`, a class of
    this file, a local bound to one (`norm_class = ScaleNorm if use_scalenorm else nn.LayerNorm`), a
    `partial` of one (`norm_fn = partial(norm_class, dim)`), or a parameter known by its name (`norm_layer`)."""
    if hops > MAX_HOPS:
        return frozenset({OTHER})
    if is_a(expr, cst.IfExp):
        return _class_choices(ctx, expr.body, at, hops) | _class_choices(ctx, expr.orelse, at, hops)
    if is_a(expr, cst.Call):
        if ctx.callee(expr) == "functools.partial" and expr.args:
            return _class_choices(ctx, expr.args[0].value, at, hops + 1)
        return frozenset({OTHER})
    if not is_a(expr, cst.Name) or (function := ctx.function_of(expr)) is None:
        return frozenset({_class_kind(ctx, ctx.qualify(expr))})
    definitions = ctx.function_facts(function).reaching(expr.value, at)
    if not definitions:
        return frozenset({_class_kind(ctx, ctx.qualify(expr))})
    choices: set[str] = set()
    for definition in definitions:
        if definition.kind == "assign" and definition.value is not None:
            choices |= _class_choices(ctx, definition.value, definition.order, hops + 1)
        else:
            choices.add(_named_kind(expr.value) if definition.kind == "param" else OTHER)
    return frozenset(choices)


def _class_kind(ctx: FileContext, qualified: str | None) -> str:
    """NORM, IDENTITY or OTHER for a class by its qualified name (`torch.nn.LayerNorm`, `RMSNorm`); a class
    of this file that wraps a module it is given (`PreNorm(dim, fn)`) is no norm, whatever its name."""
    if qualified == "torch.nn.Identity":
        return IDENTITY
    short = (qualified or "").rsplit(".", 1)[-1]
    if (local := local_classes(ctx).get(qualified or "")) is not None and _wraps_a_module(ctx, local):
        return OTHER
    return NORM if NORM_TYPE.search(short) and not NOT_TOKEN_NORM.search(short) else OTHER


def _wraps_a_module(ctx: FileContext, cls: cst.ClassDef) -> bool:
    """`self.fn = fn` in the constructor, with `fn` a parameter of it, and `self.fn(...)` in forward."""
    facts = ctx.class_facts(cls)
    init = facts.methods.get("__init__")
    if init is None:
        return False
    parameters = {param.name.value for param in (*init.params.params, *init.params.kwonly_params)}
    called = {self_attribute(call.func) for call in _forward_nodes(ctx, cls, cst.Call)}
    return any(
        assignment.method == "__init__" and is_a(assignment.value, cst.Name) and assignment.value.value in parameters
        for attr in called
        if attr is not None
        for assignment in facts.assignments.get(attr, ())
    )


def _named_kind(name: str) -> str:
    """NORM for a module known only by its name (`norm`, `attn_norm`, `norm_layer`), else OTHER."""
    return NORM if NORM_ATTRIBUTE.search(name) and not NOT_TOKEN_NORM.search(name) else OTHER


def _stacked_choices(ctx: FileContext, name: cst.Name, definition: Definition, hops: int) -> frozenset[str]:
    """For a name a loop binds from the layers of a stack (`for norm, attn in self.layers` with the layers
    built as `self.layers.append(nn.ModuleList([norm, Attention(dim)]))`), what the construction at its
    position may be: `norm = nn.LayerNorm(dim) if pre_norm else nn.Identity()` is a norm or an identity."""
    position = _loop_position(definition.node, name.value)
    if position is None:
        return frozenset()
    attr, index, count = position
    cls = ctx.class_of(definition.node)
    choices: set[str] = set()
    for stack in stacks(ctx):
        block = stack.block
        if ctx.class_of(stack.node) is not cls or not _assigned_to(ctx, stack.node, attr) or not block.args:
            continue
        listed = block.args[0].value
        if (
            ctx.callee(block) == "torch.nn.ModuleList"
            and is_a(listed, (cst.List, cst.Tuple))
            and len(listed.elements) == count
        ):
            element = listed.elements[index].value
            choices |= _module_choices(ctx, element, ctx.order(element), hops + 1)
    return frozenset(choices)


def _loop_position(loop: cst.CSTNode, name: str) -> tuple[str, int, int] | None:
    """(attribute, position, names) where `for a, b in self.attr` (or `enumerate(self.attr)`) binds `name`."""
    if not is_a(loop, cst.For):
        return None
    iterable: cst.BaseExpression = loop.iter
    target: cst.BaseExpression | None = loop.target
    if is_a(iterable, cst.Call) and dotted(iterable.func) == "enumerate" and iterable.args:
        iterable = iterable.args[0].value
        target = target.elements[1].value if is_a(target, cst.Tuple) and len(target.elements) == 2 else None
    attr = self_attribute(iterable)
    if attr is None or not is_a(target, (cst.Tuple, cst.List)):
        return None
    for index, element in enumerate(target.elements):
        if is_a(element.value, cst.Name) and element.value.value == name:
            return attr, index, len(target.elements)
    return None


def _returns_its_argument(ctx: FileContext, name: str) -> bool:
    """A module-level `def identity(t, *args, **kwargs): return t`."""
    return name in ctx.memo("blocks.identity_functions", lambda: _identity_functions(ctx))


def _identity_functions(ctx: FileContext) -> frozenset[str]:
    found = set()
    for statement in ctx.module.body:
        if is_a(statement, cst.FunctionDef) and (params := statement.params.params):
            returned = return_values(ctx, statement)
            if returned and all(is_a(value, cst.Name) and value.value == params[0].name.value for value in returned):
                found.add(statement.name.value)
    return frozenset(found)


def _iterates_attribute(expr: cst.BaseExpression) -> bool:
    """`self.layers`, or `zip(...)` / `enumerate(...)` over one."""
    if self_attribute(expr) is not None:
        return True
    return (
        is_a(expr, cst.Call)
        and dotted(expr.func) in ("zip", "enumerate")
        and any(_iterates_attribute(arg.value) for arg in expr.args if arg.keyword is None)
    )


def _contains_call(ctx: FileContext, expr: cst.CSTNode) -> bool:
    return is_a(expr, cst.Call) or any(True for _ in ctx.index.descendants(expr, cst.Call))


def _single_value(ctx: FileContext, name: cst.Name, unpacked: bool = False) -> cst.BaseExpression | None:
    """The value of `name` where it is read, when exactly one definition reaches it (with `unpacked`, for a
    name unpacked from a tuple, the whole right side it is unpacked from)."""
    function = ctx.function_of(name)
    if function is None:
        return None
    reaching = ctx.function_facts(function).reaching(name.value, ctx.order(name))
    if len(reaching) == 1 and reaching[0].kind == "assign":
        return reaching[0].value
    if unpacked and len(reaching) == 1 and reaching[0].kind == "unpack":
        return reaching[0].computed_from
    return None


def _is_scaled_stream(expr: cst.BaseExpression) -> bool:
    """`alpha * x`, `x * self.alpha`: a residual multiplied by something that is not a sublayer call."""
    if not (is_a(expr, cst.BinaryOperation) and is_a(expr.operator, cst.Multiply)):
        return False
    return not any(is_a(side, cst.Call) for side in (expr.left, expr.right))


@dataclass(frozen=True)
class ResidualSum:
    node: cst.CSTNode  # the `a + b` expression or the `x += f(x)` statement
    operands: tuple[cst.BaseExpression, ...]


def residual_sum(ctx: FileContext, expr: cst.BaseExpression, hops: int = 0) -> ResidualSum | None:
    """The residual sum `expr` is (directly, or as a name holding one), else None.

    A residual sum adds a branch (a sublayer output: a call, or a name computed by one) to a stream."""
    if is_a(expr, cst.Name) and hops < MAX_HOPS:
        function = ctx.function_of(expr)
        if function is None:
            return None
        reaching = ctx.function_facts(function).reaching(expr.value, ctx.order(expr))
        if len(reaching) != 1:
            return None
        definition = reaching[0]
        node = definition.node
        if is_a(node, cst.AugAssign) and is_a(node.operator, cst.AddAssign):
            return ResidualSum(node, (node.target, node.value)) if _is_branch(ctx, node.value, hops) else None
        if definition.kind == "assign" and definition.value is not None:
            return residual_sum(ctx, definition.value, hops + 1)
        return None
    if (
        is_a(expr, cst.BinaryOperation)
        and is_a(expr.operator, cst.Add)
        and (_is_branch(ctx, expr.left, hops) or _is_branch(ctx, expr.right, hops))
    ):
        return ResidualSum(expr, (expr.left, expr.right))
    return None


def _is_branch(ctx: FileContext, expr: cst.BaseExpression, hops: int) -> bool:
    if is_a(expr, cst.Name):
        # Ex) `res, loss = cast_return(f(x)); x = x + res`: a sublayer output unpacked from what it returns
        value = _single_value(ctx, expr, unpacked=True) if hops < MAX_HOPS else None
        return value is not None and _contains_call(ctx, value)
    if is_a(expr, cst.BinaryOperation):  # `0.5 * ffn(x)`, `h * 0.5` with h a sublayer output
        return _is_branch(ctx, expr.left, hops + 1) or _is_branch(ctx, expr.right, hops + 1)
    return _contains_call(ctx, expr)


def _norm_inside(ctx: FileContext, expr: cst.BaseExpression, hops: int = 0, skip: str | None = None) -> bool:
    """Whether `expr` (following names back through every definition that may reach, so a norm
    applied under `if self.pre_norm:` counts, but not through the name `skip`) applies a norm."""
    return next(_norms_in(ctx, expr, hops, skip), None) is not None


def _norms_in(ctx: FileContext, expr: cst.BaseExpression, hops: int = 0, skip: str | None = None):
    return (node for node in _computed_from(ctx, expr, hops, skip) if is_a(node, cst.Call) and is_norm_call(ctx, node))


def _computed_from(ctx: FileContext, expr: cst.BaseExpression, hops: int = 0, skip: str | None = None):
    """The calls and names of `expr`, then those of the local definitions it is computed from (not
    through the name `skip`), `MAX_HOPS` assignments deep."""
    for node in [expr, *ctx.index.descendants(expr, (cst.Call, cst.Name))]:
        yield node
        if (
            is_a(node, cst.Name)
            and node.value != skip
            and hops < MAX_HOPS
            and (function := ctx.function_of(node)) is not None
        ):
            for definition in ctx.function_facts(function).reaching(node.value, ctx.order(node)):
                value = definition.computed_from
                if definition.kind in ("assign", "unpack") and isinstance(value, cst.BaseExpression):
                    yield from _computed_from(ctx, value, hops + 1, skip)


def _identity(ctx: FileContext, name: cst.Name, hops: int = 0) -> frozenset:
    """The definitions a name's value comes from, seen through copies (`residual = x`)."""
    function = ctx.function_of(name)
    if function is None:
        return frozenset()
    reaching = ctx.function_facts(function).reaching(name.value, ctx.order(name))
    if len(reaching) == 1 and reaching[0].kind == "assign" and is_a(reaching[0].value, cst.Name) and hops < MAX_HOPS:
        return _identity(ctx, reaching[0].value, hops + 1)
    return frozenset(reaching)


def _normalises_stream(ctx: FileContext, branch: cst.BaseExpression, stream: cst.BaseExpression) -> bool:
    """Whether the branch starts from a norm of the very stream it is added to (`x + f(norm(x))`,
    `residual + attn(norm(h))` with `residual = h`): pre-norm. In a post-norm block the branch starts
    from the previous sublayer's norm output, a different value than the stream it is added to."""
    if not is_a(stream, cst.Name):
        return False
    target = _identity(ctx, stream)
    return bool(target) and any(
        norm.args and is_a(arg := norm.args[0].value, cst.Name) and _identity(ctx, arg) == target
        for norm in _norms_in(ctx, branch)
    )


# -- block styles -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ResidualNorm:
    node: cst.CSTNode  # the norm call (post, deepnorm) or the sum (pre)
    style: str


def residual_norms(ctx: FileContext, function: cst.FunctionDef) -> list[ResidualNorm]:
    """Every residual/norm arrangement in one function, in source order."""
    found: list[ResidualNorm] = []
    normed_sums: set[cst.CSTNode] = set()
    for call in ctx.index.descendants(function.body, cst.Call, prune=(cst.FunctionDef, cst.ClassDef)):
        if not is_norm_call(ctx, call) or not call.args:
            continue
        summed = residual_sum(ctx, call.args[0].value)
        if summed is None or _sum_survives(ctx, call, call.args[0].value):
            continue
        style = DEEPNORM if any(_is_scaled_stream(o) for o in summed.operands) else POST
        found.append(ResidualNorm(call, style))
        if not is_flag_chosen_norm(ctx, call):  # Mega's `x = ff_maybe_postnorm(x)` may be an identity
            normed_sums.add(summed.node)
    # A sum no norm consumes, whose branch starts from a norm: pre-norm. (In a post-norm block the
    # branch starts from the previous sublayer's norm too, but that sum feeds a norm: seen above.)
    for node in ctx.index.descendants(
        function.body, (cst.BinaryOperation, cst.AugAssign), prune=(cst.FunctionDef, cst.ClassDef)
    ):
        if node in normed_sums:
            continue
        pairs: tuple[tuple[cst.BaseExpression, cst.BaseExpression], ...]
        if is_a(node, cst.BinaryOperation) and is_a(node.operator, cst.Add) and not _feeds_norm(ctx, node):
            pairs = ((node.left, node.right), (node.right, node.left))
        elif is_a(node, cst.AugAssign) and is_a(node.operator, cst.AddAssign):
            # `x += f(norm(x))`, and `out = f(norm(x)); out += residual` with `residual = x`
            pairs = ((node.target, node.value), (node.value, node.target))
        else:
            continue
        if any(_is_branch(ctx, branch, 0) and _normalises_stream(ctx, branch, stream) for stream, branch in pairs):
            found.append(ResidualNorm(node, PRE))
    found.sort(key=lambda r: ctx.order(r.node))
    return found


def _sum_survives(ctx: FileContext, norm: cst.Call, argument_: cst.BaseExpression) -> bool:
    """Whether the un-normalised sum is read again after the norm (ViT, MPT: `h = x + attn(...);
    y = norm(h); out = h + mlp(y)`): then the norm feeds a branch, and the stream stays raw."""
    if not is_a(argument_, cst.Name) or (function := ctx.function_of(norm)) is None:
        return False
    facts = ctx.function_facts(function)
    held = facts.reaching(argument_.value, ctx.order(argument_))
    for use in facts.uses.get(argument_.value, ()):
        # `x + mlp(ln_2(x))` reads the same sum outside the norm, in the same statement
        if not ctx.index.contains(norm, use) and any(
            d in held for d in facts.reaching(argument_.value, ctx.order(use))
        ):
            return True
    return False


def _feeds_norm(ctx: FileContext, node: cst.BinaryOperation) -> bool:
    parent = ctx.index.parents.get(node)
    return is_a(parent, cst.Arg) and is_a(call := ctx.index.parents.get(parent), cst.Call) and is_norm_call(ctx, call)


def local_classes(ctx: FileContext) -> dict[str, cst.ClassDef]:
    return ctx.memo("blocks.classes", lambda: {c.name.value: c for c in ctx.index.nodes(cst.ClassDef)})


def block_styles(ctx: FileContext, cls: cst.ClassDef) -> frozenset[str]:
    """Styles of residual/norm arrangements in `cls` and in the in-file classes it builds."""
    memo: dict[cst.ClassDef, frozenset[str]] = ctx.memo("blocks.styles", dict)
    if cls in memo:
        return memo[cls]
    memo[cls] = frozenset()  # a cycle of classes building each other contributes nothing
    styles: set[str] = set()
    facts = ctx.class_facts(cls)
    for method in facts.methods.values():
        styles.update(r.style for r in residual_norms(ctx, method))
    classes = local_classes(ctx)
    for assignments in facts.assignments.values():
        for assignment in assignments:
            for call in _calls_in(ctx, assignment.value):
                name = call.func.value if is_a(call.func, cst.Name) else None
                if name in classes and classes[name] is not cls:
                    styles.update(block_styles(ctx, classes[name]))
    memo[cls] = frozenset(styles)
    return memo[cls]


def _calls_in(ctx: FileContext, expr: cst.BaseExpression | None) -> list[cst.Call]:
    if expr is None:
        return []
    return ([expr] if is_a(expr, cst.Call) else []) + list(ctx.index.descendants(expr, cst.Call))


def is_post_norm_class(ctx: FileContext, cls: cst.ClassDef) -> bool:
    """Post-norm everywhere: no pre-norm branch (a switchable block is not judged) and not DeepNorm."""
    return block_styles(ctx, cls) == {POST}


# -- block loops in a module's own forward ------------------------------------------------------
SWITCHABLE = "switchable"


@dataclass(frozen=True)
class LoopStack:
    """A loop in a module's own forward over the layers it holds, whose body updates one stream by residual
    sums of those layers' outputs: the module is its own stack of blocks.

    Ex) `for attn_norm, attn, ff_norm, ff in self.layers: x = attn(attn_norm(x)) + x; x = ff(ff_norm(x)) + x`
    """

    loop: cst.For
    container: str  # the (first) `self.` attribute the loop runs
    stream: str  # the name the residual sums update
    style: str  # PRE, POST, or SWITCHABLE (pre-norm sums, and norms of the stream a flag may turn off)
    sums: tuple[cst.CSTNode, ...]  # the residual sums, in source order


def loop_stacks(ctx: FileContext, cls: cst.ClassDef) -> list[LoopStack]:
    """The block loops of `cls.forward`, once per class."""
    memo: dict[cst.ClassDef, list[LoopStack]] = ctx.memo("blocks.loop_stacks", dict)
    if cls not in memo:
        memo[cls] = _loop_stacks(ctx, cls)
    return memo[cls]


def _loop_stacks(ctx: FileContext, cls: cst.ClassDef) -> list[LoopStack]:
    forward = ctx.class_facts(cls).methods.get("forward")
    if forward is None:
        return []
    pre_sums: set[cst.CSTNode] | None = None
    found = []
    for loop in ctx.index.descendants(forward.body, cst.For, prune=(cst.FunctionDef, cst.ClassDef)):
        container = _first_attribute(loop.iter)
        if container is None:
            continue
        modules = _loop_names(ctx, loop)
        by_stream: dict[str, list[cst.CSTNode]] = {}
        for node in ctx.index.descendants(loop.body, (cst.BinaryOperation, cst.AugAssign), prune=(cst.FunctionDef,)):
            stream = _assigned_name(ctx, node)
            summed = residual_sum(ctx, node) if is_a(node, cst.BinaryOperation) else _aug_residual(ctx, node)
            if stream is not None and summed is not None and _adds_a_layer(ctx, summed, stream, modules):
                by_stream.setdefault(stream, []).append(node)
        for stream, sums in by_stream.items():
            if pre_sums is None:
                pre_sums = {r.node for r in residual_norms(ctx, forward) if r.style == PRE}
            pre = [s for s in sums if s in pre_sums or _wrapper_branch(ctx, s, stream, modules)]
            style = _loop_style(ctx, loop, stream, pre)
            if style is not None:
                found.append(LoopStack(loop, container, stream, style, tuple(sums)))
    return found


def _loop_names(ctx: FileContext, loop: cst.For) -> set[str]:
    """The names a loop binds: `layer` in `for layer in self.layers`, `attn, ff` in `for attn, ff in ...`."""
    return {node.value for node in (loop.target, *ctx.index.descendants(loop.target)) if is_a(node, cst.Name)}


def _wrapper_branch(ctx: FileContext, node: cst.CSTNode, stream: str, modules: set[str]) -> bool:
    """The sum adds a loop module called on the stream that norms it before anything else: a class that
    wraps its function in a norm (`x = attn(x) + x` with the layers built as `PreNorm(dim, Attention(dim))`),
    one whose forward reads that argument only through a norm (flamingo's `latents = attn(media, latents)
    + latents`), or an `nn.Sequential` that starts with a norm (`ff = FeedForward(dim)` returning one)."""
    operands: tuple[cst.BaseExpression, ...] = ()
    if is_a(node, cst.BinaryOperation):
        operands = (node.left, node.right)
    elif is_a(node, cst.AugAssign):
        operands = (node.value,)
    for operand in operands:
        while is_a(operand, cst.Subscript):  # `attn(x)[0]`
            operand = operand.value
        if not (is_a(operand, cst.Call) and is_a(operand.func, cst.Name) and operand.func.value in modules):
            continue
        position = next(
            (
                index
                for index, arg in enumerate(operand.args)
                if arg.keyword is None and not arg.star and is_a(arg.value, cst.Name) and arg.value.value == stream
            ),
            None,
        )
        if position is not None and _norms_on_entry(ctx, held_modules(ctx, operand.func), position):
            return True
    return False


def _norms_on_entry(ctx: FileContext, held: HeldModules, position: int) -> bool:
    """Every module that `held` may be norms its `position`-th argument before it reads it."""
    if held.classes:
        classes = local_classes(ctx)
        wrappers = [classes.get(name) for name in held.classes]
        return all(
            w is not None and ((position == 0 and _normalises_input(ctx, w)) or _norms_input_first(ctx, w, position))
            for w in wrappers
        )
    first = held.elements[0].classes if held.positional and held.elements else frozenset()
    return (
        position == 0
        and bool(first)
        and all(NORM_TYPE.search(name) and not NOT_TOKEN_NORM.search(name) for name in first)
    )


def _loop_style(ctx: FileContext, loop: cst.For, stream: str, pre: list[cst.CSTNode]) -> str | None:
    """PRE when sums add branches that start from a norm of the stream and no norm's output becomes the
    stream; SWITCHABLE when the norms that do are each one a flag may turn into an identity (Mega's
    `x = ff_maybe_postnorm(x)`); POST when each layer leaves the stream normed; None with no norm."""
    stream_norms = [
        statement.value
        for statement in ctx.index.descendants(loop.body, cst.Assign, prune=(cst.FunctionDef,))
        if is_a(statement.value, cst.Call)
        and _assigned_name(ctx, statement) == stream
        and is_norm_call(ctx, statement.value)
    ]
    if not pre:
        return POST if stream_norms else None
    if any(not is_flag_chosen_norm(ctx, call) for call in stream_norms):
        return POST
    return SWITCHABLE if stream_norms else PRE


def _first_attribute(expr: cst.BaseExpression) -> str | None:
    """The attribute a loop over `self.layers`, `zip(self.norms, self.layers)` or `enumerate(...)` runs."""
    if (attr := self_attribute(expr)) is not None:
        return attr
    if is_a(expr, cst.Call) and dotted(expr.func) in ("zip", "enumerate"):
        for arg in expr.args:
            if arg.keyword is None and (attr := _first_attribute(arg.value)) is not None:
                return attr
    return None


def _assigned_name(ctx: FileContext, node: cst.CSTNode) -> str | None:
    """The name the statement holding `node` assigns (`x = ...`, `x += ...`), when it assigns one name."""
    statement = ctx.index.statement_of(node)
    for small in statement.body if is_a(statement, cst.SimpleStatementLine) else ():
        if not ctx.index.contains(small, node):
            continue
        if is_a(small, cst.Assign) and len(small.targets) == 1 and is_a(small.targets[0].target, cst.Name):
            return small.targets[0].target.value
        if is_a(small, cst.AugAssign) and is_a(small.target, cst.Name):
            return small.target.value
    return None


def _aug_residual(ctx: FileContext, node: cst.AugAssign) -> ResidualSum | None:
    """`x += f(x)`: a residual sum."""
    if is_a(node.operator, cst.AddAssign) and _is_branch(ctx, node.value, 0):
        return ResidualSum(node, (node.target, node.value))
    return None


def _adds_a_layer(ctx: FileContext, summed: ResidualSum, stream: str, modules: set[str]) -> bool:
    """The sum adds the output of one of the loop's modules to the stream (`x = attn(norm(x)) + x`). A
    branch computed from something else (`x = x + self.proj(x)` after `x = layer(x)`) adds no layer."""
    return any(
        not (is_a(operand, cst.Name) and operand.value == stream) and _runs(ctx, operand, modules, skip=stream)
        for operand in summed.operands
    )


def _runs(
    ctx: FileContext, expr: cst.BaseExpression, modules: set[str], hops: int = 0, skip: str | None = None
) -> bool:
    """Whether `expr`, or a local it is computed from (not through the name `skip`), calls one of the
    loop's modules."""
    return any(
        is_a(node, cst.Call) and is_a(node.func, cst.Name) and node.func.value in modules
        for node in _computed_from(ctx, expr, hops, skip)
    )


# -- torch.nn layers ----------------------------------------------------------------------------
def resolve_expression(ctx: FileContext, expr: cst.BaseExpression | None) -> cst.BaseExpression | None:
    """What a local name or `self.attr` holds, when one assignment defines it."""
    for _ in range(MAX_HOPS):
        if is_a(expr, cst.Name):
            expr = _single_value(ctx, expr)
        elif (
            expr is not None and (attr := self_attribute(expr)) is not None and (cls := ctx.class_of(expr)) is not None
        ):
            assignments = ctx.class_facts(cls).assignments.get(attr, ())
            expr = assignments[0].value if len(assignments) == 1 else None
        else:
            return expr
    return None


def torch_layer_is_post_norm(ctx: FileContext, layer: cst.Call) -> bool:
    """`nn.TransformerEncoderLayer(...)` left at `norm_first=False` (its default), as written."""
    if ctx.callee(layer) not in TORCH_LAYERS or has_star_args(layer):
        return False
    norm_first = argument(layer, "norm_first")
    if norm_first is None:
        return len([a for a in layer.args if a.keyword is None]) < 10  # norm_first is positional no. 10
    return is_false(norm_first)


# -- stacks and depth ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Stack:
    node: cst.CSTNode  # what builds the repetition: comprehension, loop, or nn.TransformerEncoder call
    block: cst.Call  # one block's construction
    depth: cst.BaseExpression


def stacks(ctx: FileContext) -> list[Stack]:
    """Repetitions of one block construction: `[Block() for _ in range(N)]`, `for _ in range(N):
    layers.append(Block())`, and `nn.TransformerEncoder(layer, num_layers=N)`."""
    return ctx.memo("blocks.stacks", lambda: _find_stacks(ctx))


def _find_stacks(ctx: FileContext) -> list[Stack]:
    found: list[Stack] = []
    for comp in (*ctx.index.nodes(cst.ListComp), *ctx.index.nodes(cst.GeneratorExp)):
        depth = _range_length(ctx, comp.for_in)
        if depth is not None and comp.for_in.inner_for_in is None and is_a(comp.elt, cst.Call):
            found.append(Stack(comp, _copied_block(ctx, comp.elt), depth))
    for loop in ctx.index.nodes(cst.For):
        depth = _range_length(ctx, loop)
        if depth is None:
            continue
        for call in ctx.index.descendants(loop.body, cst.Call, prune=(cst.FunctionDef, cst.For, cst.While)):
            if method_name(call) != "append" or len(call.args) != 1:
                continue
            # Ex) `block = Residual(Block(dim)); self.layers.append(block)`
            appended = call.args[0].value
            appended = resolve_expression(ctx, appended) if is_a(appended, cst.Name) else appended
            if is_a(appended, cst.Call):
                found.append(Stack(loop, _copied_block(ctx, appended), depth))
    for call in ctx.calls():
        if ctx.callee(call) in TORCH_STACKS:
            layer, depth = (
                argument(call, "encoder_layer", 0) or argument(call, "decoder_layer", 0),
                argument(call, "num_layers", 1),
            )
            layer = resolve_expression(ctx, layer)
            if is_a(layer, cst.Call) and depth is not None:
                found.append(Stack(call, layer, depth))
    return found


def _copied_block(ctx: FileContext, call: cst.Call) -> cst.Call:
    """The construction a stack repeats: the call itself, or, for `copy.deepcopy(layer)`, the one
    construction `layer` holds."""
    if ctx.callee(call) in OBJECT_COPY_FUNCTIONS and len(call.args) == 1:
        original = resolve_expression(ctx, call.args[0].value)
        if is_a(original, cst.Call):
            return original
    return call


def _range_length(ctx: FileContext, loop: cst.For | cst.CompFor) -> cst.BaseExpression | None:
    iterator = loop.iter
    if not (is_a(iterator, cst.Call) and ctx.callee(iterator) == "range" and len(iterator.args) == 1):
        return None
    return iterator.args[0].value


@dataclass(frozen=True)
class Depth:
    value: int
    where: cst.CSTNode  # the literal or argument that sets it


def resolve_depths(ctx: FileContext, expr: cst.BaseExpression, hops: int = 0) -> list[Depth]:
    """Every value `expr` can take that the file spells out: literals, defaults, config fields,
    in-file constructor arguments. Empty when it depends on something outside the file."""
    if hops > MAX_HOPS:
        return []
    value = literal_int(expr)
    if value is not None:
        return [Depth(value, expr)]
    if is_a(expr, cst.BinaryOperation) and is_a(expr.operator, (cst.Add, cst.Multiply)):
        combine = (lambda a, b: a + b) if is_a(expr.operator, cst.Add) else (lambda a, b: a * b)
        lefts, rights = resolve_depths(ctx, expr.left, hops + 1), resolve_depths(ctx, expr.right, hops + 1)
        return [
            Depth(combine(a.value, b.value), b.where if literal_int(expr.left) is not None else a.where)
            for a in lefts
            for b in rights
        ]
    if is_a(expr, cst.Name):
        return _name_depths(ctx, expr, hops)
    if is_a(expr, cst.Attribute):
        attr = self_attribute(expr)
        if attr is not None and (cls := ctx.class_of(expr)) is not None:
            values = [a.value for a in ctx.class_facts(cls).assignments.get(attr, ()) if a.value is not None]
            if values:
                return [d for v in values for d in resolve_depths(ctx, v, hops + 1)]
        return _field_depths(ctx, expr.attr.value)
    return []


def _name_depths(ctx: FileContext, name: cst.Name, hops: int) -> list[Depth]:
    function = ctx.function_of(name)
    if function is None:
        return _module_constant(ctx, name.value, hops)
    reaching = ctx.function_facts(function).reaching(name.value, ctx.order(name))
    depths: list[Depth] = []
    for definition in reaching:
        if definition.kind == "param":
            if definition.value is not None:
                depths += resolve_depths(ctx, definition.value, hops + 1)
            depths += _call_site_depths(ctx, function, name.value, hops)
        elif definition.kind == "assign" and definition.value is not None:
            depths += resolve_depths(ctx, definition.value, hops + 1)
        else:
            return []
    if not reaching:
        return _module_constant(ctx, name.value, hops)
    return depths


def _module_constant(ctx: FileContext, name: str, hops: int) -> list[Depth]:
    for statement in ctx.module.body:
        if is_a(statement, cst.SimpleStatementLine):
            for small in statement.body:
                if is_a(small, cst.Assign) and any(
                    is_a(t.target, cst.Name) and t.target.value == name for t in small.targets
                ):
                    return resolve_depths(ctx, small.value, hops + 1)
    return []


def _call_site_depths(ctx: FileContext, function: cst.FunctionDef, parameter: str, hops: int) -> list[Depth]:
    """`Encoder(num_layers=24)` in this file, for `parameter` of `Encoder.__init__` (or a function)."""
    cls = ctx.class_of(function)
    callee = cls.name.value if cls is not None and function.name.value == "__init__" else function.name.value
    params = [p.name.value for p in function.params.params]
    position = params.index(parameter) - (1 if cls is not None else 0) if parameter in params else None
    depths: list[Depth] = []
    for call in ctx.calls():
        if is_a(call.func, cst.Name) and call.func.value == callee:
            passed = argument(call, parameter, position)
            if passed is not None:
                depths += resolve_depths(ctx, passed, hops + 1)
    return depths


def _field_depths(ctx: FileContext, field: str) -> list[Depth]:
    """Class-level defaults of a config field (`n_layer: int = 48`) and the keyword given to the
    config's constructor (`GPTConfig(n_layer=48)`) anywhere in the file."""
    depths: list[Depth] = []
    for name, cls in local_classes(ctx).items():
        body = cls.body.body if is_a(cls.body, cst.IndentedBlock) else ()
        defines = False
        for statement in body:
            if not is_a(statement, cst.SimpleStatementLine):
                continue
            for small in statement.body:
                if not is_a(small, (cst.AnnAssign, cst.Assign)):
                    continue
                targets = [small.target] if is_a(small, cst.AnnAssign) else [t.target for t in small.targets]
                if any(is_a(t, cst.Name) and t.value == field for t in targets):
                    defines = True
                    if small.value is not None and (value := literal_int(small.value)) is not None:
                        depths.append(Depth(value, small.value))
        # HF style: `def __init__(self, num_hidden_layers=24): self.num_hidden_layers = num_hidden_layers`
        for assignment in ctx.class_facts(cls).assignments.get(field, ()) if name.endswith(CONFIG_SUFFIXES) else ():
            if assignment.value is not None:
                defines = True
                depths += resolve_depths(ctx, assignment.value, MAX_HOPS - 2)
        if defines:
            for call in ctx.calls():
                if is_a(call.func, cst.Name) and call.func.value == name:
                    passed = argument(call, field)
                    if passed is not None and (value := literal_int(passed)) is not None:
                        depths.append(Depth(value, passed))
    return depths


# -- the residual stream overwritten by its own norm ----------------------------------------------
@dataclass(frozen=True)
class IgnoredResidual:
    """`layer(norm(x), x)` where the layer's forward never reads the raw stream it is handed."""

    call: cst.Call
    layer: str  # the layer's class
    parameter: str  # the parameter that receives the raw stream


def ignored_residuals(ctx: FileContext, function: cst.FunctionDef) -> list[IgnoredResidual]:
    """Calls in `function` that hand a layer of this file the normed stream and the raw one
    (`x = mega_layer(mega_norm(x), x)`), where the layer's forward reads the parameter that receives
    the raw stream only to default it (`residual = default(residual, x)`) and never after: its output
    mixes in the normed input where the caller meant the stream (Mega-pytorch 0.0.12)."""
    found = []
    classes = local_classes(ctx)
    for call in ctx.index.descendants(function.body, cst.Call, prune=(cst.FunctionDef, cst.ClassDef)):
        positional = [arg.value for arg in call.args if arg.keyword is None and not arg.star]
        if len(positional) < 2 or not is_a(normed := positional[0], cst.Call) or not is_norm_call(ctx, normed):
            continue
        stream = positional[1]
        if not (normed.args and is_a(stream, cst.Name) and _same_name(normed.args[0].value, stream)):
            continue
        for name in sorted(called_classes(ctx, call)):
            layer = classes.get(name.rsplit(".", 1)[-1])
            forward = ctx.class_facts(layer).methods.get("forward") if layer is not None else None
            parameters = positional_parameters(forward) if forward is not None else []
            if forward is not None and len(parameters) >= 3 and _only_defaulted(ctx, forward, parameters[2]):
                found.append(IgnoredResidual(call, name.rsplit(".", 1)[-1], parameters[2]))
                break
    return found


def _same_name(expr: cst.BaseExpression, name: cst.Name) -> bool:
    return is_a(expr, cst.Name) and expr.value == name.value


def _only_defaulted(ctx: FileContext, forward: cst.FunctionDef, parameter: str) -> bool:
    """Every read of `parameter` in `forward` is in a statement that binds `parameter` again, and some
    read is (it is defaulted, `residual = default(residual, x)`, then never read)."""
    facts = ctx.function_facts(forward)
    uses = facts.uses.get(parameter, ())
    for use in uses:
        statement = ctx.index.statement_of(use)
        assigns = [small for small in getattr(statement, "body", ()) if is_a(small, cst.Assign)]
        if not any(
            is_a(target.target, cst.Name) and target.target.value == parameter
            for small in assigns
            for target in small.targets
        ):
            return False
    return bool(uses)


@dataclass(frozen=True)
class OverwrittenResidual:
    norm: cst.Call  # `norm(x)` in `x = norm(x)`
    add: cst.CSTNode  # `x = x + f(x)` or `x += f(x)`, whose residual is now the normalised `x`
    name: str
    operand: str | None = None  # the sum's residual operand when it is the norm itself or a copy of it


def overwritten_residuals(ctx: FileContext, function: cst.FunctionDef) -> list[OverwrittenResidual]:
    """`x = norm(x)` then `x = x + f(x)` (pytorch#61165): the sum's residual operand is the normalised
    stream. Not when the norm's input was itself a residual sum (two-step post-norm: the stream *is*
    normalised there), nor when the branch normalises again (an input norm followed by pre-norm)."""
    facts = ctx.function_facts(function)
    found = []
    for node in ctx.index.descendants(
        function.body, (cst.Assign, cst.AugAssign), prune=(cst.FunctionDef, cst.ClassDef)
    ):
        normed = _normed_operand(ctx, facts, node)
        if normed is not None:
            found.append(normed)
            continue
        pair = _stream_and_branch(node)
        if pair is None:
            continue
        stream, branch = pair
        saved = _saved_normed_copy(ctx, facts, stream, branch)
        if saved is not None:
            found.append(OverwrittenResidual(saved[0], node, saved[1]))
            continue
        reaching = facts.reaching(stream.value, ctx.order(stream))
        if (
            not reaching
            or not _computed_by_call(ctx, branch)
            or _norm_inside(ctx, branch, skip=stream.value)
            or not _mentions(ctx, branch, stream.value)
        ):
            continue
        latest = reaching[0]  # the definition that ran last on the straight path to the sum
        value = latest.value
        if (
            latest.kind == "assign"
            and is_a(latest.node, cst.Assign)
            and is_a(value, cst.Call)
            and is_norm_call(ctx, value)
            and value.args
            and is_a(arg := value.args[0].value, cst.Name)
            and arg.value == stream.value
            and not _may_hold_sum(ctx, facts, arg)
        ):
            found.append(OverwrittenResidual(value, node, stream.value))
    return found


def _normed_operand(ctx: FileContext, facts: FunctionFacts, node: cst.CSTNode) -> OverwrittenResidual | None:
    """A sum whose residual operand is the norm of the stream its branch normalises too: `x =
    norm(x) + f(norm(x))`, or `r + f(...)` with `r = norm(x)` and the branch computed from `norm(x)`
    (`residual = norm(x); x = norm(x); x = attn(x); x = residual + x`). Not when `x` may hold a
    residual sum there (a two-step post-norm)."""
    if not (is_a(node, cst.Assign) and is_a(node.value, cst.BinaryOperation) and is_a(node.value.operator, cst.Add)):
        return None
    total = node.value
    for operand, branch in ((total.left, total.right), (total.right, total.left)):
        norm, name = operand, None
        if is_a(operand, cst.Name):  # Ex) residual = self.input_layernorm(hidden_states)
            copies = facts.reaching(operand.value, ctx.order(operand))
            if len(copies) != 1 or copies[0].kind != "assign" or not is_a(copies[0].value, cst.Call):
                continue
            norm, name = copies[0].value, operand.value
        if not (is_a(norm, cst.Call) and is_norm_call(ctx, norm) and len(norm.args) == 1):
            continue
        if not is_a(stream := norm.args[0].value, cst.Name) or _may_hold_sum(ctx, facts, stream):
            continue
        if _branch_of_norm(ctx, facts, branch, ctx.code(norm), stream.value):
            return OverwrittenResidual(norm, node, stream.value, name or ctx.code(norm))
    return None


def _branch_of_norm(ctx: FileContext, facts: FunctionFacts, branch: cst.BaseExpression, norm: str, stream: str) -> bool:
    """`branch` is a sublayer applied to `norm` (the same norm call, by its code), directly
    (`f(norm(x))`) or through the stream rebound to it (`x = norm(x); x = attn(x)`)."""
    if not _computed_by_call(ctx, branch):
        return False
    inner = [c for c in ctx.index.descendants(branch, cst.Call) if c is not branch and ctx.code(c) == norm]
    if inner:
        return True
    if not is_a(branch, cst.Name) or branch.value != stream:
        return False
    seen: set[cst.CSTNode] = set()
    frontier = [branch]
    while frontier:  # the definitions the branch is computed from, back to `stream = norm(stream)`
        name = frontier.pop()
        for definition in facts.reaching(name.value, ctx.order(name)):
            value = definition.computed_from
            if definition.node in seen or value is None:
                continue
            seen.add(definition.node)
            if ctx.code(value) == norm:
                return True
            frontier.extend(n for n in ctx.index.descendants(value, cst.Name) if n.value == stream)
    return False


def _saved_normed_copy(
    ctx: FileContext, facts: FunctionFacts, stream: cst.Name, operand: cst.BaseExpression
) -> tuple[cst.Call, str] | None:
    """The residual kept in a copy taken after the norm: `x = norm(x); residual = x; x = f(x); x +=
    residual`. Returns (`norm(x)`, `x`) when `operand` is a name last bound to a copy of a stream that
    its own norm had just overwritten, and the sum's other side is a sublayer's output. The copy taken
    before the norm (`residual = x; x = norm(x); ...`) is the pre-norm block done right."""
    if not is_a(operand, cst.Name) or operand.value == stream.value:
        return None
    copies = facts.reaching(operand.value, ctx.order(operand))
    if len(copies) != 1 or copies[0].kind != "assign" or not is_a(copy := copies[0].value, cst.Name):
        return None
    if not _computed_by_call(ctx, stream):
        return None
    normed = facts.reaching(copy.value, ctx.order(copy))
    if len(normed) != 1 or normed[0].kind != "assign" or not is_a(norm := normed[0].value, cst.Call):
        return None
    if not (is_norm_call(ctx, norm) and norm.args and is_a(arg := norm.args[0].value, cst.Name)):
        return None
    if arg.value != copy.value or _may_hold_sum(ctx, facts, arg):
        return None
    return norm, copy.value


def _computed_by_call(ctx: FileContext, expr: cst.BaseExpression) -> bool:
    """A sublayer output: a call, or a name bound from one (`out, _ = self.attn(h, h, h)`), not a copy
    of the stream (`residual = x`)."""
    if not is_a(expr, cst.Name):
        return _contains_call(ctx, expr)
    function = ctx.function_of(expr)
    definitions = ctx.function_facts(function).reaching(expr.value, ctx.order(expr)) if function else []
    values = [d.computed_from for d in definitions]
    return any(isinstance(v, cst.BaseExpression) and _contains_call(ctx, v) for v in values)


def _may_hold_sum(ctx: FileContext, facts, name: cst.Name, hops: int = 0) -> bool:
    """Whether a residual sum may reach `name`, directly or through the modules the stream passes on the
    way (`x = x + attn(x); x, trend = self.decomp(x)`): then `x = norm(x)` is a post-norm step."""
    for definition in facts.reaching(name.value, ctx.order(name)):
        if definition.kind == "augassign" and is_a(definition.operator, cst.AddAssign):
            return True
        if (
            definition.kind == "assign"
            and is_a(definition.value, cst.BinaryOperation)
            and is_a(definition.value.operator, cst.Add)
        ):
            return True
        value = definition.computed_from
        if hops < MAX_HOPS and is_a(value, cst.Call):
            passed = [a.value for a in value.args if is_a(a.value, cst.Name) and a.value.value == name.value]
            if any(_may_hold_sum(ctx, facts, stream, hops + 1) for stream in passed):
                return True
    return False


def _stream_and_branch(node: cst.Assign | cst.AugAssign) -> tuple[cst.Name, cst.BaseExpression] | None:
    """(`x`, `f(x)`) for `x += f(x)`, `x = x + f(x)` and `x = f(x) + x`."""
    if is_a(node, cst.AugAssign):
        if is_a(node.operator, cst.AddAssign) and is_a(node.target, cst.Name):
            return node.target, node.value
        return None
    if len(node.targets) != 1 or not is_a(target := node.targets[0].target, cst.Name):
        return None
    value = node.value
    if not (is_a(value, cst.BinaryOperation) and is_a(value.operator, cst.Add)):
        return None
    for stream, branch in ((value.left, value.right), (value.right, value.left)):
        if is_a(stream, cst.Name) and stream.value == target.value:
            return stream, branch
    return None


METADATA = {"shape", "dtype", "device", "ndim", "size", "dim"}


def _mentions(ctx: FileContext, expr: cst.BaseExpression, name: str, hops: int = 0) -> bool:
    """Whether `expr` reads the data of `name`, directly or through the locals it is computed from.
    Reading only its shape, dtype or device (a position table sized from it) does not count."""
    for node in [expr, *ctx.index.descendants(expr, cst.Name)]:
        if not is_a(node, cst.Name):
            continue
        if node.value == name:
            if not _metadata_read(ctx, node):
                return True
            continue
        if hops < MAX_HOPS and (function := ctx.function_of(node)) is not None:
            for definition in ctx.function_facts(function).reaching(node.value, ctx.order(node)):
                # an unpacked name (`out, _ = attn(h, h, h)`) is computed from the whole right side
                value = definition.computed_from
                if isinstance(value, cst.BaseExpression) and _mentions(ctx, value, name, hops + 1):
                    return True
    return False


# -- pre-norm stacks and the norm before the head --------------------------------------------------
HEAD_TYPES = {"torch.nn.Linear"}


@dataclass(frozen=True)
class UnnormedHead:
    head: cst.Call | cst.Return  # the output projection reading the raw stream, or the return handing it out
    stack: str  # the `self.` attribute holding the pre-norm stack
    unused_norm: cst.CSTNode | None = None  # a norm the class builds and never applies


def unnormed_heads(ctx: FileContext, cls: cst.ClassDef) -> list[UnnormedHead]:
    """In `cls.forward`, a pre-norm stack's output reaching an `nn.Linear` head, or leaving the module
    through `return`, with no norm applied after the stack: the stream a pre-norm stack leaves is
    unnormalised and grows with depth, and a caller cannot know it still needs the final norm."""
    facts = ctx.class_facts(cls)
    forward = facts.methods.get("forward")
    if forward is None:
        return []
    passes = _forward_pass(ctx, cls, forward)
    pre_stacks = {attr: kind for attr in facts.assignments if (kind := _pre_norm_stack(ctx, cls, attr))}
    if any(_is_head(ctx, cls, attr) for attr in facts.assignments):
        # Ex) `x = self.transformer(x); return self.to_logits(x)`, the stack built in another class or module
        called = {self_attribute(c.func) for c in ctx.index.descendants(forward.body, cst.Call)}
        pre_stacks.update(
            (attr, "pre")
            for attr in facts.assignments
            if attr in called and attr not in pre_stacks and hands_out_prenorm_stream(ctx, cls, attr)
        )
    # Ex) `for norm, attn in self.layers: x = attn(norm(x)) + x`: the module's own forward is the stack
    loops = [loop for loop in loop_stacks(ctx, cls) if loop.style in (PRE, SWITCHABLE)]
    for loop in loops:
        pre_stacks.setdefault(loop.container, "pre" if loop.style == PRE else "switchable")
    found = []
    for attr, kind in pre_stacks.items():
        # Ex) timm: `forward` calls `self.forward_features(x)`, where the stack runs and the norm follows it
        outputs: list[tuple[cst.CSTNode, str]] = [(s.loop, s.stream) for s in loops if s.container == attr]
        method = forward
        for method in passes:
            outputs += _stack_outputs(ctx, method, attr)
            if outputs:
                break
        if not outputs:
            found += [UnnormedHead(head, attr, None) for head in _heads_around_stack(ctx, cls, passes, attr)[:1]]
            continue
        delegated = method is not forward  # a caller in forward may still norm what it returns
        end = max(ctx.index.last_order(node) for node, _ in outputs)
        names = {name for _, name in outputs}
        later = _calls_after(ctx, method, end)
        # Ex) `out = self.norm(x)` where the norm is an identity unless a flag, off by default, asks for it
        names |= {name for c in later if (name := _identity_by_default(ctx, cls, c, names)) is not None}
        # Ex) `out = self.ln_f(h)` of another value than the stream is no final norm of it, and
        # `embeds = self.norm(x)` is none for a head that goes on reading `x`
        if any(_final_norm(ctx, cls, c, names) and not _bound_apart(ctx, c, names) for c in later):
            continue
        unused = _unused_norm(ctx, cls, passes)
        for call in later:
            head = self_attribute(call.func)
            if head is not None and _is_head(ctx, cls, head) and call.args and _reads_stream(call.args[0].value, names):
                found.append(UnnormedHead(call, attr, unused))
                break
        else:
            # A pre-norm stack may hand its raw stream to a caller that norms it (a contract); a switchable
            # one hands out a normed stream in post-norm mode and a raw one in pre-norm mode, so no caller
            # can hold it. A module of this file that builds it may apply the norm. A module that builds a
            # norm of its own and never applies it meant to apply it.
            if (
                (kind == "switchable" and not delegated and not _built_in_file(ctx, cls))
                or unused is not None
                or (not delegated and any(loop.container == attr for loop in loops) and _no_user_norms(ctx, cls))
            ):
                found.extend(UnnormedHead(r, attr, unused) for r in _stream_returns(ctx, method, end, names)[:1])
    return found


def _no_user_norms(ctx: FileContext, cls: cst.ClassDef, hops: int = 0) -> bool:
    """A module that hands out a pre-norm stack's raw stream leaves the final norm to whoever runs it. The
    contract holds when some user norms what it returns. It is broken when the modules of this file that
    build it all use the stream raw (into a loss, a head, or out of the model: voicebox's `Transformer`),
    or when no module in sight builds it: neither this file nor another module of its folder names the
    class (flamingo's `PerceiverResampler`, the package's own output)."""
    if hops > MAX_HOPS:
        return False
    users = [(user, attr) for user in local_classes(ctx).values() for attr in _instances_of(ctx, user, cls)]
    if users:
        return not any(_norms_output(ctx, user, attr, hops) for user, attr in users)
    if _built_in_file(ctx, cls):
        return False  # built in a function, or passed along: who norms it is out of sight
    scope: ProjectScope | None = getattr(ctx, "project", None)
    if scope is None:
        return False  # checked with no project around it: its users may be anywhere
    return scope.folder_mentions((cls.name.value.lower().encode(),)) is False


def _hands_out(ctx: FileContext, method: cst.FunctionDef, end: int, names: set[str]) -> bool:
    """A return after `end` hands out the stream itself: the name, picked from (`x[:, 0]`, `out[0]`,
    through locals), or first of a tuple; not a loss or anything else computed from it."""
    for r in ctx.index.descendants(method.body, cst.Return, prune=(cst.FunctionDef, cst.ClassDef)):
        if ctx.order(r) <= end or r.value is None:
            continue
        value = r.value
        if is_a(value, cst.Tuple) and value.elements:
            value = value.elements[0].value
        if _picked_stream(ctx, value, names, 0):
            return True
    return False


def _picked_stream(ctx: FileContext, expr: cst.BaseExpression, names: set[str], hops: int) -> bool:
    if hops > MAX_HOPS:
        return False
    if is_a(expr, cst.Subscript):
        return _picked_stream(ctx, expr.value, names, hops + 1)
    if is_a(expr, cst.Call) and method_name(expr) in SHAPE_ONLY_METHODS and (inner := receiver(expr)) is not None:
        return _picked_stream(ctx, inner, names, hops + 1)
    if not is_a(expr, cst.Name):
        return False
    if expr.value in names:
        return True
    function = ctx.function_of(expr)
    definitions = ctx.function_facts(function).reaching(expr.value, ctx.order(expr)) if function else []
    return any(
        d.kind == "assign" and d.value is not None and _picked_stream(ctx, d.value, names, hops + 1)
        for d in definitions
    )


def _returns_normed(ctx: FileContext, cls: cst.ClassDef) -> bool:
    """Every return of `cls.forward` hands out a norm's output (first of a tuple), through reshapes and
    the locals it is bound to: a stage that ends on its own final norm."""
    forward = ctx.class_facts(cls).methods.get("forward")
    returns = [
        r.value
        for r in (
            ctx.index.descendants(forward.body, cst.Return, prune=(cst.FunctionDef, cst.ClassDef)) if forward else ()
        )
        if r.value is not None
    ]
    return bool(returns) and all(_normed(ctx, value, 0) for value in returns)


def _normed(ctx: FileContext, expr: cst.BaseExpression, hops: int) -> bool:
    if hops > MAX_HOPS:
        return False
    if is_a(expr, cst.Tuple) and expr.elements:
        return _normed(ctx, expr.elements[0].value, hops + 1)
    if is_a(expr, cst.Call):
        if is_norm_call(ctx, expr):
            return True
        inner = receiver(expr) if method_name(expr) in SHAPE_ONLY_METHODS else None
        return inner is not None and _normed(ctx, inner, hops + 1)
    if not is_a(expr, cst.Name) or (function := ctx.function_of(expr)) is None:
        return False
    definitions = ctx.function_facts(function).reaching(expr.value, ctx.order(expr))
    return bool(definitions) and all(
        d.kind == "assign" and d.value is not None and _normed(ctx, d.value, hops + 1) for d in definitions
    )


def _instances_of(ctx: FileContext, user: cst.ClassDef, cls: cst.ClassDef) -> list[str]:
    """The attributes of `user` that hold an instance of `cls`, built by its name (`self.transformer =
    Transformer(...)`)."""
    return [
        attr
        for attr, assignments in ctx.class_facts(user).assignments.items()
        if user is not cls
        and any(
            is_a(a.value, cst.Call) and is_a(a.value.func, cst.Name) and a.value.func.value == cls.name.value
            for a in assignments
        )
    ]


def _norms_output(ctx: FileContext, user: cst.ClassDef, attr: str, hops: int = 0) -> bool:
    """Some method of `user` norms what `self.attr(...)` returns, or is no forward pass that uses it raw. One
    that hands it to its own output head counts too: the finding is the head's (`unnormed_heads` of `user`).
    One that returns the stream as it is hands the contract on to its own users (an encoder-decoder that
    returns what its decoder stack left, to a wrapper that norms it)."""
    facts = ctx.class_facts(user)
    forward = facts.methods.get("forward")
    if forward is None:
        return True  # run from a method we do not follow
    for method in _forward_pass(ctx, user, forward):
        outputs = _stack_outputs(ctx, method, attr)
        if not outputs:
            continue
        end = max(ctx.index.last_order(node) for node, _ in outputs)
        names = {name for _, name in outputs}
        if any(
            _final_norm(ctx, user, call, names)
            or (
                (head := self_attribute(call.func)) is not None
                and _is_head(ctx, user, head)
                and bool(call.args)
                and _reads_stream(call.args[0].value, names)
            )
            for call in _calls_after(ctx, method, end)
        ):
            return True
        later = _calls_after(ctx, method, end)
        if any(ctx.callee(c) in LOSS_FUNCTIONS and c.args and _reads_stream(c.args[0].value, names) for c in later):
            return False  # the raw stream is the prediction a loss reads (voicebox: `F.l1_loss(x, target)`)
        if _hands_out(ctx, method, end, names):
            return not _no_user_norms(ctx, user, hops + 1)
        return True  # the stream goes on into other layers (a U-Net's upsampling blocks): not an output
    return True  # not bound to a name we follow (`self.head(self.transformer(x))` is judged as a head)


def _forward_pass(ctx: FileContext, cls: cst.ClassDef, forward: cst.FunctionDef) -> list[cst.FunctionDef]:
    """`forward`, then the methods of `cls` it calls on `self` (`self.forward_features(x)`), in order."""
    methods = ctx.class_facts(cls).methods
    called = [
        methods[name]
        for call in ctx.index.descendants(forward.body, cst.Call, prune=(cst.FunctionDef, cst.ClassDef))
        if (name := self_attribute(call.func)) in methods and methods[name] is not forward
    ]
    return [forward, *dict.fromkeys(called)]


def _calls_after(ctx: FileContext, forward: cst.FunctionDef, end: int) -> list[cst.Call]:
    return [
        c
        for c in ctx.index.descendants(forward.body, cst.Call, prune=(cst.FunctionDef, cst.ClassDef))
        if ctx.order(c) > end
    ]


def _returns_raw_stack_stream(ctx: FileContext, cls: cst.ClassDef) -> bool:
    """`cls.forward` runs a pre-norm stack (a block loop of its own, or a stack of pre-norm blocks it
    builds: `self.layers = nn.ModuleList([Residual(PreNorm(dim, ...)) ...])`) and returns the stream it
    leaves with no norm after it."""
    facts = ctx.class_facts(cls)
    forward = facts.methods.get("forward")
    if forward is None:
        return False
    outputs: list[tuple[cst.CSTNode, str]] = [
        (loop.loop, loop.stream) for loop in loop_stacks(ctx, cls) if loop.style in (PRE, SWITCHABLE)
    ]
    for attr in facts.assignments:
        if _pre_norm_stack(ctx, cls, attr):
            outputs += _stack_outputs(ctx, forward, attr)
    for node, stream in outputs:
        end, names = ctx.index.last_order(node), {stream}
        if not any(_final_norm(ctx, cls, c, names) for c in _calls_after(ctx, forward, end)) and _stream_returns(
            ctx, forward, end, names
        ):
            return True
    return False


def _identity_by_default(ctx: FileContext, cls: cst.ClassDef, call: cst.Call, names: set[str]) -> str | None:
    """The name a norm of the stream is bound to when the norm is an identity in the model's default
    configuration: `self.norm = LayerNorm(dim) if norm_out else nn.Identity()`, with `norm_out=False` in
    the constructor's signature and no construction of the class in this file passing True."""
    statement = ctx.index.parents.get(call)
    if (
        not is_a(statement, cst.Assign)
        or len(statement.targets) != 1
        or not is_a(target := statement.targets[0].target, cst.Name)
        or not call.args
        or not _reads_stream(call.args[0].value, names)
        or not _off_by_default(ctx, cls, call)
    ):
        return None
    return target.value


def _off_by_default(ctx: FileContext, cls: cst.ClassDef, call: cst.Call) -> bool:
    """`self.attr(x)` where `self.attr = Norm(...) if flag else nn.Identity()`, `flag` is a constructor
    parameter whose default is False, and no construction of the class in this file passes it."""
    attr = self_attribute(call.func)
    init = ctx.class_facts(cls).methods.get("__init__")
    assignments = ctx.class_facts(cls).assignments.get(attr, ()) if attr is not None else ()
    if init is None or len(assignments) != 1 or not is_a(choice := assignments[0].value, cst.IfExp):
        return False
    flag = next(
        (p for p in (*init.params.params, *init.params.kwonly_params) if dotted(choice.test) == p.name.value), None
    )
    if flag is None or not is_a(flag.default, cst.Name) or flag.default.value != "False":
        return False
    at = ctx.order(choice)
    on, off = _module_choices(ctx, choice.body, at), _module_choices(ctx, choice.orelse, at)
    if on != {NORM} or off != {IDENTITY}:
        return False
    positional = [p.name.value for p in init.params.params][1:]
    position = positional.index(flag.name.value) if flag.name.value in positional else None
    # a construction that spreads `**kwargs` leaves the default to its own caller: the default still holds
    passed = [passed_argument(ctx, built, flag.name.value, position) for built in constructions(ctx, cls)]
    return all(value is None or value is UNKNOWN for value in passed)


def _final_norm(ctx: FileContext, cls: cst.ClassDef, call: cst.Call, names: set[str]) -> bool:
    """`call` norms the stream the stack left: a norm of it, a head that starts with a norm
    (`nn.Sequential(nn.LayerNorm(dim) if pre_norm else nn.Identity(), nn.Linear(dim, vocab))`), or a
    function of this file that returns a norm of its first argument (`x = self.finish(x)`). A norm that is
    an identity unless a flag, off by default, asks for it is none."""
    if _off_by_default(ctx, cls, call):
        return False
    if is_norm_call(ctx, call) or _starts_with_norm(ctx, cls, call):
        return _norms_stream(ctx, call, names)
    called = called_function(ctx, call)
    if called is None or not called[1] or not call.args or call.args[0].keyword is not None:
        return False
    function, parameters = called
    return _norms_stream(ctx, call, names) and any(
        norm.args and _mentions(ctx, norm.args[0].value, parameters[0])
        for value in return_values(ctx, function)
        for norm in _norms_in(ctx, value)
    )


def _bound_apart(ctx: FileContext, call: cst.Call, names: set[str]) -> bool:
    """The norm's result is bound to a name of its own, not back to the stream (`embeds = self.norm(x)`):
    what reads the stream afterwards still reads it raw."""
    statement = ctx.index.parents.get(call)
    return (
        is_a(statement, cst.Assign)
        and len(statement.targets) == 1
        and is_a(target := statement.targets[0].target, cst.Name)
        and target.value not in names
    )


def _starts_with_norm(ctx: FileContext, cls: cst.ClassDef, call: cst.Call) -> bool:
    """`self.attr(x)` with `self.attr = nn.Sequential(norm, ...)`, the norm maybe chosen by a flag."""
    attr = self_attribute(call.func)
    for assignment in ctx.class_facts(cls).assignments.get(attr, ()) if attr is not None else ():
        value = assignment.value
        if (
            is_a(value, cst.Call)
            and ctx.callee(value) == "torch.nn.Sequential"
            and value.args
            and NORM in _module_choices(ctx, value.args[0].value, ctx.order(value))
        ):
            return True
    return False


def _norms_stream(ctx: FileContext, norm: cst.Call, names: set[str]) -> bool:
    """The norm's input is the stream the stack left, or computed from it."""
    return bool(norm.args) and any(_mentions(ctx, norm.args[0].value, name) for name in names)


def _unused_norm(ctx: FileContext, cls: cst.ClassDef, passes: list[cst.FunctionDef]) -> cst.CSTNode | None:
    """A norm module the class builds (`self.norm = nn.LayerNorm(dim)`, `norm_layer(dim) if ... else
    nn.Identity()`) that its forward pass (`forward` and the methods it calls) never reads: where it is
    built. Ex) timm's `forward_features` without its `x = self.norm(x)`: `forward_intermediates` still
    reads the norm, but no forward call runs it."""
    facts = ctx.class_facts(cls)
    for attr, assignments in facts.assignments.items():
        if any(
            a.value is not None and NORM in _module_choices(ctx, a.value, ctx.order(a.node)) for a in assignments
        ) and not facts.is_read(attr, within=passes):
            return assignments[0].node
    return None


def _is_head(ctx: FileContext, cls: cst.ClassDef, attr: str) -> bool:
    """`self.attr` is an output projection: `nn.Linear(...)`, one side of a choice
    (`nn.Linear(dim, vocab) if not return_embeddings else nn.Identity()`), or the last module of an
    `nn.Sequential` (reformer: `nn.Sequential(nn.Linear(dim, emb_dim) if ... else Identity(),
    nn.Linear(emb_dim, num_tokens))`)."""

    def choices(value: cst.BaseExpression | None) -> list[cst.BaseExpression]:
        return [value.body, value.orelse] if is_a(value, cst.IfExp) else [value] if value is not None else []

    for assignment in ctx.class_facts(cls).assignments.get(attr, ()):
        options = choices(assignment.value)
        if is_a(sequence := assignment.value, cst.Call) and ctx.callee(sequence) == "torch.nn.Sequential":
            options = choices(sequence.args[-1].value) if sequence.args and not sequence.args[-1].star else []
        if any(is_a(choice, cst.Call) and ctx.callee(choice) in HEAD_TYPES for choice in options):
            return True
    return False


def _built_in_file(ctx: FileContext, cls: cst.ClassDef) -> bool:
    name = cls.name.value
    return any(is_a(call.func, cst.Name) and call.func.value == name for call in ctx.calls())


def _stream_returns(ctx: FileContext, forward: cst.FunctionDef, end: int, names: set[str]) -> list[cst.Return]:
    """The returns after the stack that hand out the stream it leaves (`return x`, `return out[-1]`
    with `out` collecting it)."""
    return [
        r
        for r in ctx.index.descendants(forward.body, cst.Return, prune=(cst.FunctionDef, cst.ClassDef))
        if ctx.order(r) > end and r.value is not None and any(_mentions(ctx, r.value, name) for name in names)
    ]


def _pre_norm_stack(ctx: FileContext, cls: cst.ClassDef, attr: str) -> Literal["pre", "switchable"] | None:
    """Whether `self.attr` is built, in this class, from a stack of pre-norm blocks (or a norm_first=True
    torch stack with no `norm=`): "pre", or "switchable" when its blocks are pre- or post-norm by a flag."""
    for stack in stacks(ctx):
        if ctx.class_of(stack.node) is not cls or not _assigned_to(ctx, stack.node, attr):
            continue
        block = stack.block
        if ctx.callee(block) in TORCH_LAYERS:
            if (
                is_true(argument(block, "norm_first"))
                and is_a(stack.node, cst.Call)
                and ctx.callee(stack.node) in TORCH_STACKS
                and argument(stack.node, "norm", 2) is None
            ):
                return "pre"
            continue
        styles = {_block_style(ctx, part) for part in _block_parts(ctx, block)}
        if len(styles) == 1 and (style := styles.pop()) is not None:
            return style
    return None


def _block_parts(ctx: FileContext, block: cst.Call) -> list[cst.BaseExpression]:
    """The blocks one layer of a stack is built from: the block itself, or each module of a layer built as
    a list of them (`nn.ModuleList([Residual(PreNorm(dim, attn)), Residual(PreNorm(dim, ff))])`)."""
    if ctx.callee(block) in ("torch.nn.ModuleList", "torch.nn.Sequential") and len(block.args) == 1:
        listed = block.args[0].value
        if is_a(listed, (cst.List, cst.Tuple)) and listed.elements:
            return [element.value for element in listed.elements]
    return [block]


def _block_style(ctx: FileContext, block: cst.BaseExpression) -> Literal["pre", "switchable"] | None:
    """`"pre"` for a block of a class of this file whose residuals are pre-norm, or a residual wrapper around
    one that norms its input; `"switchable"` for one whose residuals are pre- or post-norm by a flag."""
    if not is_a(block, cst.Call) or not is_a(block.func, cst.Name):
        return None
    block_cls = local_classes(ctx).get(block.func.value)
    if block_cls is None or _returns_normed(ctx, block_cls):
        return None  # Ex) Segformer's stage: its own pre-norm blocks, then its own final norm
    if block_styles(ctx, block_cls) == {PRE}:
        return "pre"
    if _switchable(ctx, block_cls):
        return "switchable"
    return "pre" if _residual_around_prenorm(ctx, block_cls, block) else None


def _residual_around_prenorm(ctx: FileContext, wrapper: cst.ClassDef, block: cst.Call) -> bool:
    """`Residual(Block(dim))`: a wrapper with no norm of its own that adds what the module it holds
    returns to its input, around a module of this file that norms its input before anything else
    (`PreNorm(dim, fn)`, or a block whose forward starts with `x = self.norm(x)`)."""
    if block_styles(ctx, wrapper) or not _adds_its_modules(ctx, wrapper):
        return False
    classes = local_classes(ctx)
    for arg in block.args:
        inner = arg.value
        inner_cls = classes.get(inner.func.value) if is_a(inner, cst.Call) and is_a(inner.func, cst.Name) else None
        if inner_cls is not None and (_normalises_input(ctx, inner_cls) or _norms_input_first(ctx, inner_cls)):
            return True
    return False


def _norms_input_first(ctx: FileContext, cls: cst.ClassDef, position: int = 0) -> bool:
    """The class's forward reads its input (its `position`-th argument) only through a norm: every read of
    that parameter that the parameter itself reaches is the argument of a norm call (`x = self.norm(x)`
    first thing)."""
    forward = ctx.class_facts(cls).methods.get("forward")
    facts = ctx.function_facts(forward) if forward is not None else None
    if facts is None or len(facts.parameters) < position + 2:
        return False
    stream = facts.parameters[position + 1]
    reads = [
        use
        for use in facts.uses.get(stream, ())
        if any(d.kind == "param" for d in facts.reaching(stream, ctx.order(use)))
    ]
    for use in reads:
        arg = ctx.index.parents.get(use)
        if is_a(arg, cst.Attribute) and arg.attr.value in METADATA:
            continue  # `x.shape[1]`, `x.device`: what the input is, not its values
        norm = ctx.index.parents.get(arg) if is_a(arg, cst.Arg) else None
        if not (is_a(norm, cst.Call) and norm.args and norm.args[0] is arg and is_norm_call(ctx, norm)):
            return False
    return bool(reads)


def _switchable(ctx: FileContext, cls: cst.ClassDef) -> bool:
    """One method of the block is pre-norm and another post-norm (`forward_preln` / `forward_postln`,
    chosen by a flag). A block with both in one method (a Conformer ending on a norm) is neither."""
    per_method = [{r.style for r in residual_norms(ctx, m)} for m in ctx.class_facts(cls).methods.values()]
    return {PRE} in per_method and {POST} in per_method


def _assigned_to(ctx: FileContext, node: cst.CSTNode, attr: str) -> bool:
    """`self.attr = nn.ModuleList([...])`, or `self.attr.append(...)` in a stacking loop."""
    if is_a(node, cst.For):
        return any(
            method_name(c) == "append" and self_attribute(c.func.value) == attr
            for c in ctx.index.descendants(node.body, cst.Call)
        )
    statement = ctx.index.statement_of(node)
    return any(
        is_a(s, cst.Assign) and any(self_attribute(t.target) == attr for t in s.targets)
        for s in getattr(statement, "body", ())
    )


def _stack_outputs(ctx: FileContext, forward: cst.FunctionDef, attr: str) -> list[tuple[cst.CSTNode, str]]:
    """(where, name) for the stream the stack leaves: `for blk in self.attr: x = blk(x)` or `x = self.attr(x)`."""
    outputs = []
    for loop in ctx.index.descendants(forward.body, cst.For, prune=(cst.FunctionDef, cst.ClassDef)):
        if not any(self_attribute(a) == attr for a in [loop.iter, *ctx.index.descendants(loop.iter, cst.Attribute)]):
            continue
        modules = _loop_names(ctx, loop)
        for assign in ctx.index.descendants(loop.body, cst.Assign):
            if is_a(assign.value, cst.Call) and is_a(assign.targets[0].target, (cst.Name, cst.Tuple)):
                target = assign.targets[0].target
                first = target.elements[0].value if is_a(target, cst.Tuple) else target
                if is_a(first, cst.Name):
                    outputs.append((loop, first.value))
                # Ex) HF: `outputs = block(hidden_states, ...); hidden_states = outputs[0]`: the stream is
                # what the block reads, not only the tuple it returns
                call = assign.value
                if is_a(call.func, cst.Name) and call.func.value in modules and call.args:
                    stream = call.args[0].value
                    if call.args[0].keyword is None and is_a(stream, cst.Name):
                        outputs.append((loop, stream.value))
    for assign in ctx.index.descendants(forward.body, cst.Assign, prune=(cst.FunctionDef, cst.ClassDef)):
        value = assign.value
        bound: cst.BaseExpression = assign.targets[0].target
        if is_a(bound, cst.Tuple) and bound.elements:  # `x, aux_loss = self.layers(x)`
            bound = bound.elements[0].value
        if is_a(value, cst.Call) and self_attribute(value.func) == attr and is_a(bound, cst.Name):
            outputs.append((assign, bound.value))
    return outputs


def _heads_around_stack(
    ctx: FileContext, cls: cst.ClassDef, methods: list[cst.FunctionDef], attr: str
) -> list[cst.Call]:
    """Output projections applied straight to what the stack returns, picked or pooled on the way:
    `self.out(self.encoder(x))`, `self.head(self.blocks(x)[:, 0])`, `self.fc(self.encoder(x).mean(1))`."""
    heads = []
    for method in methods:
        for call in ctx.index.descendants(method.body, cst.Call, prune=(cst.FunctionDef, cst.ClassDef)):
            if self_attribute(call.func) != attr:
                continue
            node: cst.CSTNode = call
            parent = ctx.index.parents.get(node)
            while is_a(parent, cst.Subscript) or (
                is_a(parent, cst.Attribute) and is_a(ctx.index.parents.get(parent), cst.Call)
            ):
                node = ctx.index.parents[parent] if is_a(parent, cst.Attribute) else parent
                parent = ctx.index.parents.get(node)
            head = ctx.index.parents.get(parent) if is_a(parent, cst.Arg) else None
            if is_a(head, cst.Call) and head.args and head.args[0] is parent:
                name = self_attribute(head.func)
                if name is not None and _is_head(ctx, cls, name):
                    heads.append(head)
    return heads


def _reads_stream(expr: cst.BaseExpression, names: set[str]) -> bool:
    """`x`, `x[:, -1, :]`, `x.mean(dim=1)`: the stream itself, picked or pooled, as the head's input."""
    while True:
        if is_a(expr, cst.Subscript):
            expr = expr.value
        elif is_a(expr, cst.Call) and is_a(expr.func, cst.Attribute):
            expr = expr.func.value
        else:
            return is_a(expr, cst.Name) and expr.value in names


def _metadata_read(ctx: FileContext, name: cst.Name) -> bool:
    """`x.shape`, `x.size(1)`, or `x` handed to a method of this class that only reads its metadata
    (`self.interpolate_pos_encoding(x, h, w)`)."""
    parent = ctx.index.parents.get(name)
    if is_a(parent, cst.Attribute) and parent.value is name:
        return parent.attr.value in METADATA
    if not is_a(parent, cst.Arg):
        return False
    call = ctx.index.parents.get(parent)
    if not is_a(call, cst.Call) or (method := self_attribute(call.func)) is None:
        return False
    cls = ctx.class_of(call)
    function = ctx.class_facts(cls).methods.get(method) if cls is not None else None
    if function is None or parent.keyword is not None or parent.star:
        return False
    params = [p.name.value for p in function.params.params][1:]  # drop self
    position = [a for a in call.args if a.keyword is None].index(parent)
    if position >= len(params):
        return False
    uses = ctx.function_facts(function).uses.get(params[position], [])
    return bool(uses) and all(
        is_a(p := ctx.index.parents.get(u), cst.Attribute) and p.value is u and p.attr.value in METADATA for u in uses
    )


# -- modules that hand out the raw stream of a pre-norm stack --------------------------------------
# lucidrains-style models: `PreNorm(dim, fn)` wrappers normalise each branch's input, a
# `SequentialSequence(layers)` (often in another module) adds the branches (`x = x + f(x)`), and the
# LM runs `x = self.transformer(x)` and hands `x` to its `nn.Linear` head.
def residual_sequences(ctx: FileContext) -> dict[str, dict[str, Any]]:
    return ctx.memo("blocks.residual_sequences", lambda: _residual_sequences(ctx))


def _residual_sequences(ctx: FileContext) -> dict[str, dict[str, Any]]:
    """Top-level module classes whose forward adds every module of a constructor argument to the stream
    (`self.layers = layers`, then `for f, g in self.layers: x = x + f(x); x = x + g(x)`): class name ->
    the constructor's positional parameter names and that parameter; and those whose forward is a pre-norm
    block loop or a stack of pre-norm blocks of their own and returns the raw stream
    (`returns_prenorm_stream`)."""
    found: dict[str, dict[str, Any]] = {}
    if not ctx.mentions(b"for "):
        return found
    for cls in ctx.module.body:
        if not is_a(cls, cst.ClassDef):
            continue
        methods = ctx.class_facts(cls).methods
        init, forward = methods.get("__init__"), methods.get("forward")
        parameter = _residual_loop_parameter(ctx, cls, init, forward) if init and forward else None
        if parameter is not None and init is not None:
            found[cls.name.value] = {"positional": positional_parameters(init)[1:], "parameter": parameter}
        elif _returns_raw_stack_stream(ctx, cls):
            found[cls.name.value] = {"returns_prenorm_stream": True}
    return found


def _residual_loop_parameter(
    ctx: FileContext, cls: cst.ClassDef, init: cst.FunctionDef, forward: cst.FunctionDef
) -> str | None:
    """The constructor parameter stored in `self.attr` that forward loops over, adding each loop module's
    output to the stream it returns; or whose modules the constructor wraps in residual blocks of this
    file (`self.blocks = nn.ModuleList([ReversibleBlock(f=f, g=g) for f, g in blocks])`, whose forward runs
    `y1 = x1 + self.f(x2)`) that forward runs."""
    facts = ctx.class_facts(cls)
    wrapped = _wrapped_in_residual_blocks(ctx, cls, init, forward)
    if wrapped is not None:
        return wrapped
    for loop in ctx.index.descendants(forward.body, cst.For, prune=(cst.FunctionDef, cst.ClassDef)):
        modules = _loop_names(ctx, loop)
        adds = [
            assign
            for assign in ctx.index.descendants(loop.body, cst.Assign)
            if residual_sum(ctx, assign.value) is not None and _runs_loop_module(ctx, forward, assign.value, modules)
        ]
        if not adds:
            continue
        for attr, assignments in facts.assignments.items():
            if not any(_mentions_attribute(ctx, loop.iter, attr, forward)):
                continue
            for assignment in assignments:
                value = assignment.value
                if (
                    assignment.method == "__init__"
                    and is_a(value, cst.Name)
                    and value.value in positional_parameters(init)
                ):
                    return value.value
    return None


def _wrapped_in_residual_blocks(
    ctx: FileContext, cls: cst.ClassDef, init: cst.FunctionDef, forward: cst.FunctionDef
) -> str | None:
    parameters = positional_parameters(init)
    facts = ctx.class_facts(cls)
    read = {self_attribute(node) for node in ctx.index.descendants(forward.body, cst.Attribute)}
    for attr, assignments in facts.assignments.items():
        if attr not in read:
            continue
        for assignment in assignments:
            value = assignment.value
            if assignment.method != "__init__" or value is None:
                continue
            names = {node.value for node in ctx.index.descendants(value, cst.Name)}
            given = [name for name in parameters if name in names]
            built = [
                wrapper
                for call in ctx.index.descendants(value, cst.Call)
                if is_a(call.func, cst.Name) and (wrapper := local_classes(ctx).get(call.func.value)) is not None
            ]
            if len(given) == 1 and built and all(_adds_its_modules(ctx, wrapper) for wrapper in built):
                return given[0]
    return None


def _forward_nodes(ctx: FileContext, cls: cst.ClassDef, node_type: type) -> list:
    """The nodes of a type in the class's own `forward` (none when it has none)."""
    forward = ctx.class_facts(cls).methods.get("forward")
    if forward is None:
        return []
    return list(ctx.index.descendants(forward.body, node_type, prune=(cst.FunctionDef, cst.ClassDef)))


def _adds_its_modules(ctx: FileContext, cls: cst.ClassDef) -> bool:
    """A residual block: its forward adds the output of a module it holds to its input (`x1 + self.f(x2)`,
    or `y = self.fn(x); return y + x`)."""
    for node in _forward_nodes(ctx, cls, cst.BinaryOperation):
        found = residual_sum(ctx, node)
        if found is not None and any(
            is_a(called := _single_value(ctx, operand) if is_a(operand, cst.Name) else operand, cst.Call)
            and self_attribute(called.func) is not None
            for operand in found.operands
        ):
            return True
    return False


def _runs_loop_module(ctx: FileContext, function: cst.FunctionDef, expr: cst.BaseExpression, modules: set[str]) -> bool:
    """`expr` calls one of the loop's modules, or reads a local computed by such a call
    (`res, loss = cast_return(f(x)); x = x + res`)."""

    def calls_module(node: cst.BaseExpression) -> bool:
        calls = [node] if is_a(node, cst.Call) else []
        return any(
            is_a(c.func, cst.Name) and c.func.value in modules for c in (*calls, *ctx.index.descendants(node, cst.Call))
        )

    if calls_module(expr):
        return True
    facts = ctx.function_facts(function)
    return any(
        (value := definition.computed_from) is not None and calls_module(value)
        for name in ctx.index.descendants(expr, cst.Name)
        for definition in facts.reaching(name.value, ctx.order(name))
    )


def _mentions_attribute(
    ctx: FileContext, expr: cst.BaseExpression, attr: str, function: cst.FunctionDef, hops: int = 0
):
    """Whether `expr`, or a local it is computed from, reads `self.attr` (`list(zip(self.layers, args))`)."""
    for node in [expr, *ctx.index.descendants(expr, (cst.Attribute, cst.Name))]:
        if is_a(node, cst.Attribute) and self_attribute(node) == attr:
            yield True
        elif is_a(node, cst.Name) and hops < MAX_HOPS:
            for definition in ctx.function_facts(function).reaching(node.value, ctx.order(node)):
                value = definition.computed_from
                if isinstance(value, cst.BaseExpression):
                    yield from _mentions_attribute(ctx, value, attr, function, hops + 1)


def hands_out_prenorm_stream(ctx: FileContext, cls: cst.ClassDef, attr: str, hops: int = 0) -> bool:
    """`self.attr` holds, on some assignment, a module whose forward returns the raw stream of a pre-norm
    stack: a residual sequence (of this file or, through its summary, of another module of the project)
    given branches built from pre-norm wrappers, reached through modules that return `self.inner(x)`."""
    if hops > MAX_HOPS:
        return False
    facts = ctx.class_facts(cls)
    for assignment in facts.assignments.get(attr, ()):
        call, method = assignment.value, facts.methods.get(assignment.method)
        if not is_a(call, cst.Call) and method is not None and assignment.method == "__init__":
            # `self.layer_blocks = layer_blocks`: what the constructions of `cls` in this file pass
            # (x-transformers 0.0.1: `TransformerWrapper(..., layer_blocks=Encoder(dim, depth))`)
            classes = local_classes(ctx)
            if any(
                (local := classes.get(name)) is not None and local is not cls and _returns_raw_stack_stream(ctx, local)
                for name in attribute_modules(ctx, cls, attr).classes
            ):
                return True
        if not is_a(call, cst.Call) or method is None:
            continue
        for name in _constructor_names(ctx, call.func, ctx.index.last_order(assignment.node)):
            local = local_classes(ctx).get(name)
            if local is not None and local is not cls and _returns_prenorm_stream(ctx, local, call, method, hops):
                return True
            sequence = _imported_residual_sequence(ctx, name)
            if sequence is not None and _prenorm_branches(ctx, method, call, sequence):
                return True
    return False


def _constructor_names(ctx: FileContext, func: cst.BaseExpression, at: int) -> list[str]:
    """The class names a constructor call may run: `Stack(...)`, or `execute_type(...)` with
    `execute_type = ReversibleSequence if reversible else SequentialSequence`."""
    if not is_a(func, cst.Name):
        return []
    values = possible_values(ctx, func, at) or []
    return [value.value for value in values if is_a(value, cst.Name)]


def _returns_prenorm_stream(
    ctx: FileContext, cls: cst.ClassDef, call: cst.Call, builder: cst.FunctionDef, hops: int
) -> bool:
    forward = ctx.class_facts(cls).methods.get("forward")
    if forward is None:
        return False
    sequence = residual_sequences(ctx).get(cls.name.value)
    if sequence is not None:
        return _prenorm_branches(ctx, builder, call, sequence)
    returned = [
        _returned_stream(ctx, r.value)
        for r in ctx.index.descendants(forward.body, cst.Return, prune=(cst.FunctionDef, cst.ClassDef))
        if r.value is not None
    ]
    inner = [self_attribute(value.func) for value in returned if is_a(value, cst.Call)]
    return len(inner) == 1 and inner[0] is not None and hands_out_prenorm_stream(ctx, cls, inner[0], hops + 1)


def _returned_stream(ctx: FileContext, value: cst.BaseExpression) -> cst.BaseExpression | None:
    """What a return hands out as the stream: `self.inner(x)`, or the first of a tuple, through the local
    it is bound to or unpacked from first place (`x, loss = self.layers(x); return x, loss`)."""
    if is_a(value, cst.Tuple) and value.elements:
        value = value.elements[0].value
    if not is_a(value, cst.Name):
        return value
    function = ctx.function_of(value)
    reaching = ctx.function_facts(function).reaching(value.value, ctx.order(value)) if function else []
    if len(reaching) == 1 and reaching[0].kind == "unpack" and is_a(assign := reaching[0].node, cst.Assign):
        return assign.value if unpacked_position(assign, value.value) == 0 else None
    return _single_value(ctx, value)


def _imported_residual_sequence(ctx: FileContext, name: str) -> dict[str, Any] | None:
    scope: ProjectScope | None = getattr(ctx, "project", None)
    source = imported_names(ctx).get(name)
    if scope is None or source is None or not source.name:
        return None
    found = scope.lookup(source, "residual_sequences")
    return None if found is None else found[0]


def _prenorm_branches(ctx: FileContext, builder: cst.FunctionDef, call: cst.Call, sequence: dict[str, Any]) -> bool:
    """The branches handed to a residual sequence are pre-norm wrappers: the method that builds it also
    builds modules of a class whose forward normalises its input before its function runs. (A sequence
    whose own loop norms each branch's input hands out a pre-norm stream whatever it is given.)"""
    if sequence.get("returns_prenorm_stream"):
        return True
    if bind_arguments(call, list(sequence["positional"])).get(sequence["parameter"]) is None:
        return False
    for built in ctx.index.descendants(builder.body, cst.Call):
        if not is_a(built.func, cst.Name):
            continue
        for value in possible_values(ctx, built.func, ctx.order(built)) or []:
            if is_a(value, cst.Call) and ctx.callee(value) == "functools.partial" and value.args:
                value = value.args[0].value  # `partial(PreNorm, nn.LayerNorm, dim)`
            wrapper = local_classes(ctx).get(value.value) if is_a(value, cst.Name) else None
            if wrapper is not None and _normalises_input(ctx, wrapper):
                return True
    return False


def _normalises_input(ctx: FileContext, cls: cst.ClassDef) -> bool:
    """`return self.fn(self.norm(x))`, or `x = self.norm(x); return self.fn(x)`: a pre-norm wrapper."""
    for r in _forward_nodes(ctx, cls, cst.Return):
        value = r.value
        if not is_a(value, cst.Call) or self_attribute(value.func) is None or not value.args:
            continue
        first = value.args[0].value
        if is_a(first, cst.Call) and is_norm_call(ctx, first):
            return True
        forward = ctx.function_of(r)
        if is_a(first, cst.Name) and forward is not None:
            definitions = ctx.function_facts(forward).reaching(first.value, ctx.order(r))
            if definitions and all(
                d.kind == "assign" and is_a(d.value, cst.Call) and is_norm_call(ctx, d.value) for d in definitions
            ):
                return True
    return False


@dataclass(frozen=True)
class CarriedNormedResidual:
    norm: cst.Call  # `self.norm2(residual)` in `residual = self.norm2(residual)`
    sublayer: cst.Call  # the next sublayer, which reads the un-normalised branch instead
    name: str  # the residual stream


STREAM_CASTS = ("to", "float", "half", "bfloat16", "type", "contiguous")


def carried_normed_residuals(ctx: FileContext, function: cst.FunctionDef) -> list[CarriedNormedResidual]:
    """`residual = h + residual; residual = norm(residual)`, then `h = self.mlp(h)`: a block that carries
    the residual as a stream of its own (mamba's and flash-attn's `Block`) binds the norm of the sum to
    the residual, so the stream goes on normalised while the next sublayer reads the un-normalised branch.
    The norm belongs to the branch (`h = norm(residual)`). A post-norm block's next sublayer reads the
    normalised stream, and a last post-norm has no next sublayer: neither is reported."""
    carried = _names_returned_beside_another(ctx, function)
    if not carried:
        return []
    facts = ctx.function_facts(function)
    found = []
    for node in ctx.index.descendants(function.body, cst.Assign, prune=(cst.FunctionDef, cst.ClassDef)):
        norm = node.value
        target = node.targets[0].target if len(node.targets) == 1 else None
        if not is_a(target, cst.Name) or target.value not in carried:
            continue
        if not (is_a(norm, cst.Call) and norm.args and is_norm_call(ctx, norm)):
            continue
        stream = norm.args[0].value
        while is_a(stream, cst.Call) and method_name(stream) in STREAM_CASTS and (inner := receiver(stream)):
            stream = inner
        if not (is_a(stream, cst.Name) and stream.value == target.value):
            continue
        branch = _summed_branch(ctx, facts, stream)
        if branch is None:
            continue
        sublayer = _next_sublayer(ctx, function, node)
        if (
            sublayer is not None
            and any(is_a(arg.value, cst.Name) and arg.value.value == branch for arg in sublayer.args)
            and not any(_reads_definition(ctx, facts, arg.value, node) for arg in sublayer.args)
        ):
            found.append(CarriedNormedResidual(norm, sublayer, target.value))
    return found


def _summed_branch(ctx: FileContext, facts: FunctionFacts, stream: cst.Name) -> str | None:
    """`h` when every definition of `stream` reaching here is `stream = h + stream` (or `stream + h`)."""
    branches = set()
    for definition in facts.reaching(stream.value, ctx.order(stream)):
        value = definition.value
        if not (definition.kind == "assign" and is_a(value, cst.BinaryOperation) and is_a(value.operator, cst.Add)):
            return None
        sides = [side.value for side in (value.left, value.right) if is_a(side, cst.Name)]
        if len(sides) != 2 or stream.value not in sides:
            return None
        branches.add(sides[0] if sides[1] == stream.value else sides[1])
    return branches.pop() if len(branches) == 1 else None


def _names_returned_beside_another(ctx: FileContext, function: cst.FunctionDef) -> frozenset[str]:
    """`return hidden_states, residual`: the names a block hands on as streams of their own."""
    names = set()
    for node in ctx.index.descendants(function.body, cst.Return, prune=(cst.FunctionDef, cst.ClassDef)):
        if is_a(node.value, cst.Tuple):
            names |= {element.value.value for element in node.value.elements if is_a(element.value, cst.Name)}
    return frozenset(names)


def _reads_definition(
    ctx: FileContext, facts: FunctionFacts, expr: cst.BaseExpression, definition: cst.CSTNode, hops: int = 0
) -> bool:
    """Whether `expr` reads what the statement `definition` binds, directly or through the locals on the way."""
    for name in [expr, *ctx.index.descendants(expr, cst.Name)]:
        if not is_a(name, cst.Name):
            continue
        for reaching in facts.reaching(name.value, ctx.order(name)):
            if reaching.node is definition:
                return True
            if (
                hops < MAX_HOPS
                and reaching.kind == "assign"
                and reaching.value is not None
                and _reads_definition(ctx, facts, reaching.value, definition, hops + 1)
            ):
                return True
    return False


def _next_sublayer(ctx: FileContext, function: cst.FunctionDef, after: cst.CSTNode) -> cst.Call | None:
    """The first call of a module the class holds (`self.mlp(h)`, also one built from a class it is given)
    after `after`, skipping norms, dropouts and identities, outside the branches that cannot run after it
    (the `else` of its own `if`)."""
    cls = ctx.class_of(function)
    if cls is None:
        return None
    start, facts = ctx.order(after), ctx.class_facts(cls)
    for call in ctx.index.descendants(function.body, cst.Call, prune=(cst.FunctionDef, cst.ClassDef, cst.Lambda)):
        attr = self_attribute(call.func)
        if attr is None or ctx.order(call) <= start or _exclusive(ctx, after, call):
            continue
        if attr not in facts.assignments or attr in facts.methods:
            continue
        if is_norm_call(ctx, call) or facts.constructed_type(attr) in SKIPPED_MODULES:
            continue
        return call
    return None


SKIPPED_MODULES = DROPOUT_MODULES | {"torch.nn.Identity"}


def _exclusive(ctx: FileContext, one: cst.CSTNode, other: cst.CSTNode) -> bool:
    """Whether `one` and `other` sit in the two arms of one `if` statement."""
    for ancestor in ctx.index.ancestors(one):
        if is_a(ancestor, cst.If) and ctx.index.contains(ancestor, other):
            in_body = ctx.index.contains(ancestor.body, one)
            return in_body != ctx.index.contains(ancestor.body, other) and not ctx.index.contains(ancestor.test, other)
        if is_a(ancestor, cst.FunctionDef):
            return False
    return False
