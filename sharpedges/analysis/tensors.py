"""What tensor operations do to what they are called on, and which expressions evidently hold a tensor
or an `nn.Module`.

One table says, for every method and function the rules reason about, whether it returns a new tensor
(so dropping its result loses it), works in place (a trailing `_`, `out=`, a module's casts) or returns
nothing worth keeping. "Evidently a tensor" is deliberately narrow: a local whose every reaching
definition is a tensor-producing torch function (`torch.zeros`, `F.pad`; not `torch.hub.load` or an
`nn` constructor), a tensor method, a matrix product or an index into such a value, or a parameter
annotated `Tensor`. A module, a list, a set, a matplotlib axis or anything unknown is not a tensor here.
"""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst

from sharpedges.analysis.calls import argument, literal_int, method_name, receiver
from sharpedges.analysis.classes import self_attribute
from sharpedges.analysis.context import FileContext
from sharpedges.analysis.dataflow import FunctionFacts
from sharpedges.analysis.names import dotted
from sharpedges.analysis.project import imported_module_class
from sharpedges.analysis.summaries import (
    bind_arguments,
    called_function,
    module_call_sites,
    passed_values,
    positional_parameters,
    return_values,
)
from sharpedges.analysis.values import constant_number, possible_values, registered_buffers
from sharpedges.analysis.vocabulary import (
    CAST_METHODS,
    COPY_METHODS,
    PLACEMENT_METHODS,
    REORDER_METHODS,
    casts_to_runtime_dtype,
    is_library_namespace,
)
from sharpedges.analysis.walk import is_a

MAX_DEPTH = 8

# -- the table -----------------------------------------------------------------------------
# Methods only tensors have, each returning a new tensor: the method alone says the receiver is a tensor.
TENSOR_ONLY_METHODS = frozenset(
    {
        "masked_fill",
        "masked_scatter",
        "masked_select",
        "index_fill",
        "index_add",
        "index_copy",
        "index_put",
        "scatter_add",
        "scatter_reduce",
        "clamp_min",
        "clamp_max",
        "type_as",
        "repeat_interleave",
        "unsqueeze",
        "new_zeros",
        "new_ones",
        "new_full",
        "new_empty",
        "nan_to_num",
        "addcmul",
        "addcdiv",
        "tril",
        "triu",
        "expand_as",
        "contiguous",
    }
)
# Out-of-place tensor methods that other types also have, with other meanings (`Module.to` and
# `Module.half` work in place, `set.add` mutates, `ax.scatter` draws): flagged only on an evident tensor.
SHARED_OUT_OF_PLACE_METHODS = frozenset(
    {
        "to",
        "float",
        "half",
        "double",
        "bfloat16",
        "int",
        "long",
        "bool",
        "cuda",
        "cpu",
        "type",
        "add",
        "sub",
        "mul",
        "div",
        "pow",
        "exp",
        "log",
        "sqrt",
        "rsqrt",
        "abs",
        "neg",
        "sigmoid",
        "tanh",
        "relu",
        "clip",
        "clamp",
        "where",
        "detach",
        "clone",
        "view",
        "reshape",
        "transpose",
        "permute",
        "squeeze",
        "flatten",
        "expand",
        "repeat",
        "t",
        "sum",
        "mean",
        "max",
        "min",
        "round",
        "sign",
        "roll",
        "flip",
        "scatter",
        "softmax",
        "log_softmax",
        "lerp",
    }
)
# Out-of-place methods whose in-place twin (`name_`) exists on torch.Tensor.
HAS_INPLACE_VARIANT = frozenset(
    {
        "masked_fill",
        "masked_scatter",
        "index_fill",
        "index_add",
        "index_copy",
        "index_put",
        "scatter",
        "scatter_add",
        "scatter_reduce",
        "clamp",
        "clamp_min",
        "clamp_max",
        "clip",
        "unsqueeze",
        "squeeze",
        "transpose",
        "t",
        "nan_to_num",
        "addcmul",
        "addcdiv",
        "lerp",
        "tril",
        "triu",
        "add",
        "sub",
        "mul",
        "div",
        "pow",
        "exp",
        "log",
        "sqrt",
        "rsqrt",
        "abs",
        "neg",
        "sigmoid",
        "tanh",
        "relu",
        "detach",
        "round",
        "sign",
    }
)
# Pure torch functions whose only effect is the tensor they return (unless given `out=`).
PURE_FUNCTIONS = frozenset(
    {
        "torch.clamp",
        "torch.clip",
        "torch.where",
        "torch.masked_fill",
        "torch.softmax",
        "torch.log_softmax",
        "torch.cat",
        "torch.stack",
        "torch.transpose",
        "torch.reshape",
        "torch.nan_to_num",
        "torch.tril",
        "torch.triu",
        "torch.nn.functional.pad",
        "torch.nn.functional.normalize",
        "torch.add",
        "torch.mul",
        "torch.div",
        "torch.sub",
    }
)
# The keyword through which a torch function writes its result into an existing tensor.
OUT_KEYWORD = "out"
# Methods that change an `nn.Module` in place and return it: dropping their result loses nothing.
MODULE_IN_PLACE_METHODS = frozenset(
    {
        "to",
        "float",
        "half",
        "double",
        "bfloat16",
        "cuda",
        "cpu",
        "type",
        "train",
        "eval",
        "requires_grad_",
        "zero_grad",
        "apply",
        "to_empty",
        "share_memory",
        "xpu",
        "ipu",
        "mtia",
    }
)
# Verbs of calls made for their effect, which return nothing (None, or a handle nobody needs):
# `reset_aux_loss()`, `set_aux_loss_group(g)`, `register_forward_hook(hook)`.
RETURNS_NOTHING_PREFIXES = (
    "reset",
    "set_",
    "register",
    "clear",
    "zero_",
    "init",
    "log",
    "record",
    "update",
    "add_",
    "enable",
    "disable",
    "print",
    "save",
    "load_state",
    "remove",
    "accumulate",
    "_reset",
    "_set_",
    "_register",
    "_clear",
    "_log",
    "_record",
    "_update",
)
# Namespaces of torch whose functions return tensors; other `torch.x.*` (hub, jit, cuda, distributed,
# ao, fx, export ...) return models, handles or nothing.
TENSOR_NAMESPACES = ("torch.nn.functional.", "torch.linalg.", "torch.fft.", "torch.special.")
NON_TENSOR_TORCH_FUNCTIONS = frozenset(
    {
        "manual_seed",
        "set_default_dtype",
        "save",
        "load",
        "compile",
        "set_grad_enabled",
        "no_grad",
        "enable_grad",
        "inference_mode",
        "set_printoptions",
        "use_deterministic_algorithms",
        "get_default_dtype",
        "is_tensor",
        "is_grad_enabled",
        "device",
        "dtype",
        "Generator",
        "Size",
        "finfo",
        "iinfo",
        "set_float32_matmul_precision",
        "autocast",
    }
)
TENSOR_ANNOTATIONS = frozenset({"torch.Tensor", "Tensor", "torch.FloatTensor", "torch.LongTensor", "torch.BoolTensor"})
# Libraries whose objects are never tensors (plotting, tables, containers, logging).
NON_TENSOR_LIBRARIES = ("matplotlib.", "pandas.", "collections.", "logging.")
MODULE_BASES = frozenset({"torch.nn.Module", "torch.nn.modules.module.Module", "nn.Module"})


def writes_in_place(name: str | None, call: cst.Call) -> bool:
    """`x.add_(y)`, `torch.add(a, b, out=c)`: the result is already where it belongs."""
    if name is not None and name.endswith("_") and not name.startswith("_"):
        return True
    return argument(call, OUT_KEYWORD) is not None


def returns_nothing(name: str) -> bool:
    """A call named for an effect (`reset_...`, `set_...`, `register_...`): its result is not a value."""
    return name.lower().startswith(RETURNS_NOTHING_PREFIXES)


def tensor_function(qualified: str) -> bool:
    """`torch.zeros`, `torch.nn.functional.pad`, `torch.linalg.norm`: a function that returns a tensor."""
    if qualified.startswith(TENSOR_NAMESPACES):
        return True
    parts = qualified.split(".")
    return (
        len(parts) == 2
        and parts[0] == "torch"
        and parts[1] not in NON_TENSOR_TORCH_FUNCTIONS
        and not parts[1][:1].isupper()
    )


# -- modules -------------------------------------------------------------------------------
def class_named(ctx: FileContext, name: str) -> cst.ClassDef | None:
    for cls in ctx.index.nodes(cst.ClassDef):
        if cls.name.value == name and ctx.class_of(cls) is None:
            return cls
    return None


def class_family(ctx: FileContext, cls: cst.ClassDef) -> list[cst.ClassDef]:
    """The top-level classes of this file that share an implementation with `cls` through inheritance:
    itself, its bases and subclasses in this file, and theirs (HF's `FlashAttention2(SelfAttention)`)."""
    edges: dict[cst.ClassDef, set[cst.ClassDef]] = ctx.memo(("class-family-edges",), lambda: _inheritance_edges(ctx))
    family, todo = [cls], [cls]
    while todo:
        for related in edges.get(todo.pop(), ()):
            if related not in family:
                family.append(related)
                todo.append(related)
    return family


def helper_called(ctx: FileContext, call: cst.Call) -> tuple[cst.FunctionDef, list[str]] | None:
    """The function of this file a call runs (`summaries.called_function`), or for `self.name(...)` that
    the class of the call does not define, the one method of that name its family in this file defines:
    a helper of a base class, or the hook a base class's `forward` calls and its one subclass provides."""
    found = called_function(ctx, call)
    attr = self_attribute(call.func) if found is None else None
    cls = ctx.class_of(call) if attr is not None else None
    if attr is None or cls is None or attr in ctx.class_facts(cls).methods:
        return found
    methods = {m for c in class_family(ctx, cls) if (m := ctx.class_facts(c).methods.get(attr)) is not None}
    if len(methods) != 1:
        return None
    [method] = methods
    names = positional_parameters(method)
    return method, names if any(dotted(d.decorator) == "staticmethod" for d in method.decorators) else names[1:]


def returned_number(ctx: FileContext, expr: cst.BaseExpression | None, depth: int = 0) -> float | None:
    """`values.constant_number`, through calls of this file's helpers (the one number every return of the
    helper is: `self.mask_value()` that returns `-1e9`), and through parameters (`passed_values`: what the
    calls in this file pass, or the default: `self.mask_value = mask_value` in
    `def __init__(self, mask_value=-1e9)`)."""
    number = constant_number(ctx, expr)
    if number is not None or expr is None or depth > MAX_DEPTH:
        return number
    if is_a(expr, cst.Call):
        helper = helper_called(ctx, expr)
        values = return_values(ctx, helper[0]) if helper is not None else []
    elif is_a(expr, cst.Name):
        values = passed_values(ctx, expr) or []
    elif (attr := self_attribute(expr)) is not None and (cls := ctx.class_of(expr)) is not None:
        values = [a.value for a in ctx.class_facts(cls).assignments.get(attr, ()) if a.value is not None]
    else:
        return None
    numbers = {returned_number(ctx, value, depth + 1) for value in values if value is not expr}
    return numbers.pop() if len(numbers) == 1 and len(values) > 0 else None


@dataclass(frozen=True)
class LocalLambda:
    node: cst.Lambda
    parameters: list[str]


def called_lambda(ctx: FileContext, call: cst.Call) -> LocalLambda | None:
    """`logits(q, k)` where the one binding of the local `logits` that reaches the call is a lambda
    (`logits = lambda a, b: a @ b.transpose(-2, -1)`); its body reads the function's other names as they
    are at the call."""
    function = ctx.function_of(call)
    if function is None or not is_a(call.func, cst.Name):
        return None
    reaching = ctx.function_facts(function).reaching(call.func.value, ctx.order(call))
    if len(reaching) != 1 or reaching[0].kind != "assign" or not is_a(reaching[0].value, cst.Lambda):
        return None
    node = reaching[0].value
    return LocalLambda(node, [param.name.value for param in (*node.params.posonly_params, *node.params.params)])


def _inheritance_edges(ctx: FileContext) -> dict[cst.ClassDef, set[cst.ClassDef]]:
    edges: dict[cst.ClassDef, set[cst.ClassDef]] = {}
    for cls in ctx.index.nodes(cst.ClassDef):
        for base in cls.bases:
            local = class_named(ctx, base.value.value) if is_a(base.value, cst.Name) else None
            if local is not None and local is not cls:
                edges.setdefault(cls, set()).add(local)
                edges.setdefault(local, set()).add(cls)
    return edges


def module_class(ctx: FileContext, cls: cst.ClassDef, depth: int = 0) -> bool | None:
    """True for a subclass of `nn.Module` (through classes of this file, or an `nn` layer), False for a
    class whose bases in this file end at `object` or that keeps its own `training` flag, None when a
    base comes from elsewhere and the file cannot say."""
    if depth > MAX_DEPTH:
        return None
    bases = [ctx.qualify(base.value) or "" for base in cls.bases]
    if any(module_type(ctx, qualified) for qualified in bases if "." in qualified or qualified in MODULE_BASES):
        return True
    if "training" in ctx.class_facts(cls).assignments:
        return False  # keeps its own `training` flag: not nn.Module's
    verdict: bool | None = False
    for base, qualified in zip(cls.bases, bases, strict=False):
        local = class_named(ctx, qualified) if "." not in qualified and qualified else None
        if local is not None and local is not cls:
            found = module_class(ctx, local, depth + 1)
        elif qualified in ("object", "ABC", "abc.ABC", "typing.Generic", "Generic", "typing.Protocol"):
            found = False
        else:  # Ex) class LayerSkipHook(ModelHook), ModelHook imported from another file of the project
            found = imported_module_class(ctx, dotted(base.value) or "")
        if found:
            return True
        if found is None:
            verdict = None
    return verdict


def module_type(ctx: FileContext, qualified: str | None) -> bool:
    """A qualified callable or annotation that names a module class: `torch.nn.Linear`, or a class of this
    file that derives from nn.Module."""
    if not qualified:
        return False
    if qualified in MODULE_BASES or (
        qualified.startswith("torch.nn.")
        and not qualified.startswith("torch.nn.functional.")
        and qualified.split(".")[-1][:1].isupper()
    ):
        return True
    local = class_named(ctx, qualified) if "." not in qualified else None
    return local is not None and module_class(ctx, local) is True


def project_type(ctx: FileContext, qualified: str | None) -> bool:
    """An annotation or constructor that names a class, not a tensor: `MyModel`, `Observer`, `plt.Axes`."""
    if not qualified or qualified in TENSOR_ANNOTATIONS:
        return False
    return qualified.split(".")[-1][:1].isupper()


class TensorFacts:
    """Answers "is this expression a tensor?" and "is it an nn.Module?" for one function, following local
    definitions."""

    def __init__(self, ctx: FileContext, function: cst.FunctionDef | None) -> None:
        self.ctx = ctx
        self.function = function
        self.facts: FunctionFacts | None = ctx.function_facts(function) if function is not None else None

    def is_tensor(self, expr: cst.BaseExpression | None, at: int, depth: int = 0) -> bool:
        if expr is None or depth > MAX_DEPTH:
            return False
        if is_a(expr, cst.Name):
            return self._name_is_tensor(expr.value, at, depth)
        if is_a(expr, cst.Subscript):
            return self.is_tensor(expr.value, at, depth + 1)
        if is_a(expr, cst.Attribute) and expr.attr.value == "grad":
            return True  # `p.grad`: autograd's gradient of a tensor (an optimizer's step reads it)
        if (attr := self_attribute(expr)) is not None:
            return self._held_tensor(expr, attr)
        if is_a(expr, cst.BinaryOperation):
            # arithmetic with a tensor on either side gives a tensor
            return (
                is_a(expr.operator, cst.MatrixMultiply)
                or self.is_tensor(expr.left, at, depth + 1)
                or self.is_tensor(expr.right, at, depth + 1)
            )
        if is_a(expr, cst.Call):
            qualified = self.ctx.callee(expr) or ""
            if qualified.startswith("torch."):
                return tensor_function(qualified)
            name = method_name(expr)
            if name in TENSOR_ONLY_METHODS:
                return True
            if name in SHARED_OUT_OF_PLACE_METHODS:
                return self.is_tensor(receiver(expr), at, depth + 1)
            # a module's output (`out = self.wide(x)`): of what forward can return, only a tensor has tensor methods
            return self.is_module(expr.func, at, depth + 1)
        return False

    def is_module(self, expr: cst.BaseExpression | None, at: int, depth: int = 0) -> bool:
        """`nn.Linear(...)`, `MyBlock(...)` for a module class of this file, `self.lm_head` built from one, a
        parameter annotated with one, or a local bound to any of these."""
        if expr is None or depth > MAX_DEPTH:
            return False
        ctx = self.ctx
        if is_a(expr, cst.Call):
            if method_name(expr) in MODULE_IN_PLACE_METHODS:
                return self.is_module(receiver(expr), at, depth + 1)  # model.to(device).half()
            return module_type(ctx, ctx.callee(expr))
        attr = self_attribute(expr)
        if attr is not None:
            cls = ctx.class_of(expr)
            if cls is None:
                return False
            facts = ctx.class_facts(cls)
            return any(
                assignment.value is not None
                and (
                    module_type(ctx, ctx.qualify(_constructor(assignment.value)))
                    # `self.wide = wide` for a parameter `wide: nn.Module`
                    or (
                        is_a(assignment.value, cst.Name)
                        and (method := facts.methods.get(assignment.method)) is not None
                        and TensorFacts(ctx, method).is_module(assignment.value, ctx.order(assignment.node), depth + 1)
                    )
                )
                for assignment in facts.assignments.get(attr, ())
            )
        if is_a(expr, cst.Name) and self.facts is not None:
            definitions = self.facts.reaching(expr.value, at)
            for definition in definitions:
                if definition.kind == "param":
                    annotation = getattr(definition.node, "annotation", None)
                    if annotation is not None and module_type(ctx, ctx.qualify(annotation.annotation)):
                        return True
                elif definition.kind == "assign" and self.is_module(definition.value, definition.order, depth + 1):
                    return True
        return False

    def known_not_tensor(self, expr: cst.BaseExpression | None, at: int) -> bool:
        """The receiver's type is known and is not a tensor: a module, a parameter annotated with a class,
        a local built by a class constructor (`obs = MinMaxObserver()`, `fig, ax = plt.subplots()`)."""
        if expr is None or self.is_module(expr, at):
            return True
        if is_a(expr, cst.Name) and self.facts is not None:
            for definition in self.facts.reaching(expr.value, at):
                if definition.kind == "param":
                    annotation = getattr(definition.node, "annotation", None)
                    if annotation is not None and project_type(self.ctx, self.ctx.qualify(annotation.annotation)):
                        return True
                elif definition.kind in ("assign", "unpack"):
                    value = definition.value if definition.kind == "assign" else getattr(definition.node, "value", None)
                    callee = self.ctx.callee(value) if is_a(value, cst.Call) else None
                    if (
                        callee
                        and not callee.startswith("torch.")
                        and (project_type(self.ctx, callee) or callee.startswith(NON_TENSOR_LIBRARIES))
                    ):
                        return True
        return False

    def _held_tensor(self, expr: cst.BaseExpression, attr: str) -> bool:
        """`self.w` for `self.w = nn.Parameter(...)` or `self.register_buffer("w", ...)`."""
        cls = self.ctx.class_of(expr)
        return cls is not None and (
            self.ctx.class_facts(cls).is_parameter(attr) or attr in registered_buffers(self.ctx, cls)
        )

    def _name_is_tensor(self, name: str, at: int, depth: int) -> bool:
        if self.facts is None:
            return False
        definitions = self.facts.reaching(name, at)
        if not definitions:
            return False
        for definition in definitions:
            if definition.kind == "param":
                if not _annotated_tensor(self.ctx, definition.node):
                    return False
            elif definition.kind == "inplace":
                continue  # `x.mul_(s)` keeps x a tensor; an earlier definition decides
            elif definition.kind in ("assign", "augassign") and definition.value is not None:
                if not self.is_tensor(definition.value, definition.order, depth + 1):
                    return False
            else:
                return False
        return True


def _constructor(value: cst.BaseExpression) -> cst.BaseExpression:
    """`nn.Linear` for `nn.Linear(d, n)`, and for `nn.Linear(d, n).to(dtype)`."""
    while (
        is_a(value, cst.Call)
        and method_name(value) in MODULE_IN_PLACE_METHODS
        and (inner := receiver(value)) is not None
    ):
        value = inner
    return value.func if is_a(value, cst.Call) else value


def _annotated_tensor(ctx: FileContext, param: cst.CSTNode) -> bool:
    annotation = getattr(param, "annotation", None)
    if annotation is None:
        return False
    return ctx.qualify(annotation.annotation) in TENSOR_ANNOTATIONS


# -- ranks ------------------------------------------------------------------------------------------
RANK_KEEPING_METHODS = REORDER_METHODS | COPY_METHODS | CAST_METHODS | PLACEMENT_METHODS | {"masked_fill", "type_as"}


def known_rank(ctx: FileContext, expr: cst.BaseExpression | None, at: int | None = None, depth: int = 0) -> int | None:
    """How many axes a tensor has, where the code spells it: a `view` / `reshape` with one size per axis,
    followed through transposes, casts and copies, local names, and the arguments every caller in the
    file passes to a module's `forward` (`self.attention(q, ...)` with `q = x.view(B, T, H, D).transpose(1, 2)`)."""
    if expr is None or depth > MAX_DEPTH:
        return None
    at = ctx.order(expr) if at is None else at
    if is_a(expr, cst.Name):
        return _agreed(ctx, expr, at, lambda function, d: _defined_rank(ctx, function, d, depth))
    if not is_a(expr, cst.Call) or is_library_namespace(ctx, receiver(expr)):
        return None
    method = method_name(expr)
    sizes = [arg for arg in expr.args if arg.keyword is None]
    if method in ("view", "reshape") and sizes and not any(arg.star for arg in sizes):
        if len(sizes) == 1 and is_a(sizes[0].value, (cst.Tuple, cst.List)):
            return len(sizes[0].value.elements)
        return len(sizes) if len(sizes) > 1 or literal_int(sizes[0].value) is not None else None
    if method in RANK_KEEPING_METHODS:
        return known_rank(ctx, receiver(expr), at, depth + 1)
    return None


SPLITTING_METHODS = frozenset({"chunk", "split", "tensor_split"})


def _agreed(ctx: FileContext, name: cst.Name, at: int, answer) -> int | None:
    """What every definition of a local reaching `at` says (`answer(function, definition)`), when they agree."""
    function = ctx.function_of(name)
    if function is None:
        return None
    answers = {answer(function, d) for d in ctx.function_facts(function).reaching(name.value, at)}
    return answers.pop() if len(answers) == 1 else None


def _defined_rank(ctx: FileContext, function: cst.FunctionDef, definition, depth: int) -> int | None:
    """The rank a definition gives its name: an assigned tensor's, a parameter's from the calls of its
    module, or for a name unpacked from a tensor (`q, k, v = qkv.permute(2, 0, 3, 1, 4)`, `q, k =
    x.unbind(1)`) one axis less, and for the pieces of `x.chunk(3, dim=-1)` / `x.split(d, dim=-1)` the
    rank of `x`."""
    if definition.kind == "param":
        return _parameter_rank(ctx, function, definition.name, depth)
    if definition.kind == "assign":
        return known_rank(ctx, definition.value, definition.order, depth + 1)
    source = definition.computed_from if definition.kind == "unpack" else None
    if source is None or is_a(source, (cst.Tuple, cst.List)):
        return None
    if is_a(source, cst.Call) and method_name(source) in SPLITTING_METHODS | {"unbind"}:
        whole = known_rank(ctx, receiver(source), definition.order, depth + 1)
        if whole is None:
            return None
        return whole - 1 if method_name(source) == "unbind" else whole
    whole = known_rank(ctx, source, definition.order, depth + 1)
    return whole - 1 if whole is not None and whole > 1 else None


def _parameter_rank(ctx: FileContext, function: cst.FunctionDef, name: str, depth: int) -> int | None:
    cls = ctx.class_of(function)
    if cls is None or function.name.value != "forward":
        return None
    ranks = set()
    for call, names in module_call_sites(ctx, cls):
        argument_value = bind_arguments(call, names).get(name)
        ranks.add(known_rank(ctx, argument_value, None, depth + 1) if argument_value is not None else None)
    return ranks.pop() if len(ranks) == 1 else None


def in_runtime_dtype(ctx: FileContext, expr: cst.BaseExpression, depth: int = 0) -> bool:
    """Some tensor `expr` is computed from was cast to a dtype read at run time (`.to(dtype=self.dtype)`):
    in the expression itself, or where a local it reads is defined, a few assignments back."""
    if depth > MAX_DEPTH:
        return False
    for node in (expr, *ctx.index.descendants(expr, (cst.Call, cst.Name))):
        if casts_to_runtime_dtype(ctx, node):
            return True
        function = ctx.function_of(node) if is_a(node, cst.Name) else None
        if function is not None and any(
            d.kind == "assign" and d.value is not None and in_runtime_dtype(ctx, d.value, depth + 1)
            for d in ctx.function_facts(function).reaching(node.value, ctx.order(node))
        ):
            return True
    return False


def chosen_by_dtype(ctx: FileContext, node: cst.CSTNode) -> bool:
    """Is `node` in a branch of its function that a test of a tensor's dtype chooses (`if
    mask.dtype == torch.float16: ... else: node`, or the dtype read into a local first: `dtype_attn_weights
    = attn_weights.dtype; if dtype_attn_weights == torch.float16:`)? The author wrote that code for the
    dtypes it runs in."""
    for ancestor in ctx.index.ancestors(node):
        if is_a(ancestor, (cst.FunctionDef, cst.Lambda)):
            return False
        test = ancestor.test if is_a(ancestor, (cst.If, cst.IfExp)) else None
        if test is not None and _tests_dtype(ctx, test):
            return True
    return False


def _tests_dtype(ctx: FileContext, test: cst.BaseExpression) -> bool:
    def reads_dtype(expr: cst.BaseExpression) -> bool:
        return any(
            is_a(attribute, cst.Attribute) and attribute.attr.value == "dtype"
            for attribute in (expr, *ctx.index.descendants(expr, cst.Attribute))
        )

    names = [test] if is_a(test, cst.Name) else list(ctx.index.descendants(test, cst.Name))
    return reads_dtype(test) or any(
        value is not name and reads_dtype(value) for name in names for value in possible_values(ctx, name) or ()
    )


# Elementwise ops and masks: the result has the shape of the tensor they are applied to.
SHAPE_PRESERVING_FUNCTIONS = frozenset(
    {
        "torch.tanh",
        "torch.sigmoid",
        "torch.relu",
        "torch.exp",
        "torch.nn.functional.relu",
        "torch.nn.functional.gelu",
        "torch.nn.functional.dropout",
        "torch.nn.functional.leaky_relu",
        "torch.nn.functional.silu",
        "torch.where",
    }
)
SHAPE_PRESERVING_METHODS = frozenset({"masked_fill", "masked_fill_", "tanh", "sigmoid", "relu", "exp", "contiguous"})


def last_axis_size(
    ctx: FileContext, expr: cst.BaseExpression | None, at: int | None = None, depth: int = 0
) -> int | None:
    """The size of a tensor's last axis where the code fixes it: the output of an `nn.Linear(d, 1)` (a
    module of the class, or the last layer of an `nn.Sequential`), `x.unsqueeze(-1)`, `x[..., None]`, a
    `view` / `reshape` ending in a literal, followed through casts, masks and elementwise ops."""
    if expr is None or depth > MAX_DEPTH:
        return None
    at = ctx.order(expr) if at is None else at
    if is_a(expr, cst.Name):
        return _agreed(
            ctx, expr, at, lambda _, d: last_axis_size(ctx, d.value, d.order, depth + 1) if d.kind == "assign" else None
        )
    if is_a(expr, cst.Subscript):
        index = expr.slice[-1].slice if expr.slice else None
        if is_a(index, cst.Index) and is_a(index.value, cst.Name) and index.value.value == "None":
            return 1
        return None
    if is_a(expr, cst.BinaryOperation) and is_a(expr.operator, (cst.Add, cst.Subtract, cst.Multiply, cst.Divide)):
        # broadcasting: a number keeps the other side's size, a size above 1 wins over 1
        sides = [
            last_axis_size(ctx, side, at, depth + 1)
            for side in (expr.left, expr.right)
            if not is_a(side, (cst.Integer, cst.Float))
        ]
        if any(size is not None and size > 1 for size in sides):
            return max(size for size in sides if size is not None)
        return 1 if sides and all(size == 1 for size in sides) else None
    if not is_a(expr, cst.Call):
        return None
    method, qualified = method_name(expr), ctx.callee(expr)
    if method == "unsqueeze" and expr.args and literal_int(expr.args[0].value) == -1:
        return 1
    if method in ("view", "reshape") and expr.args and not any(arg.star for arg in expr.args):
        first = expr.args[0].value
        last = (
            first.elements[-1].value if is_a(first, (cst.Tuple, cst.List)) and first.elements else expr.args[-1].value
        )
        return literal_int(last)
    if qualified in SHAPE_PRESERVING_FUNCTIONS and expr.args:
        return last_axis_size(ctx, expr.args[0].value, at, depth + 1)
    if method in SHAPE_PRESERVING_METHODS | CAST_METHODS and (inner := receiver(expr)) is not None:
        return last_axis_size(ctx, inner, at, depth + 1)
    return _module_output_size(ctx, expr)


def _module_output_size(ctx: FileContext, call: cst.Call) -> int | None:
    """`self.proj(x)` with `self.proj = nn.Linear(d, 1)` (or an `nn.Sequential` ending in one): 1."""
    attr = self_attribute(call.func)
    cls = ctx.class_of(call) if attr is not None else None
    if cls is None or attr is None:
        return None
    outputs: set[int | None] = set()
    for assignment in ctx.class_facts(cls).assignments.get(attr, ()):
        module = assignment.value
        if is_a(module, cst.Call) and ctx.callee(module) == "torch.nn.Sequential" and module.args:
            module = module.args[-1].value
        if not is_a(module, cst.Call) or ctx.callee(module) != "torch.nn.Linear":
            return None
        outputs.add(literal_int(argument(module, "out_features", 1)))
    return outputs.pop() if len(outputs) == 1 else None
