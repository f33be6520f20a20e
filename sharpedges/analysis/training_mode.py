"""Training-mode questions: which methods of a module run during `forward` (and so after `model.eval()`,
`model.half()` or `model.to(bf16)`), whether an expression consults `self.training`, and where a
dropout probability is handed to a call that cannot see the module's mode.

`nn.Module.eval()` flips `self.training` on every submodule; a functional call only sees it when the
code passes it on. That is the whole question here: does the mode reach the call.
"""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst

from sharpedges.analysis.calls import argument, literal_number, method_name, receiver
from sharpedges.analysis.classes import self_attribute
from sharpedges.analysis.context import FileContext
from sharpedges.analysis.names import dotted
from sharpedges.analysis.summaries import call_sites, called_function, forwarded_arguments
from sharpedges.analysis.tensors import module_class
from sharpedges.analysis.training_flags import MAX_DEPTH, mentions_training, under_training_branch
from sharpedges.analysis.values import UNKNOWN, PassedArgument, kernel_argument, passed_argument
from sharpedges.analysis.vocabulary import DROPOUT_MODULES, KERNELS, PARTIALS, kernel_of
from sharpedges.analysis.walk import is_a

FORWARD_ENTRY_POINTS = ("forward", "__call__")
# Functional dropouts: the probability's position and the position of their `training` argument.
FUNCTIONAL_DROPOUTS = {
    "torch.nn.functional.dropout": 2,
    "torch.nn.functional.dropout1d": 2,
    "torch.nn.functional.dropout2d": 2,
    "torch.nn.functional.dropout3d": 2,
    "torch.nn.functional.alpha_dropout": 2,
    "torch.nn.functional.feature_alpha_dropout": 2,
}
# Attention kernels with a dropout probability and no way to know the module's mode.
AUTOGRAD_FUNCTIONS = {"torch.autograd.Function", "torch.autograd.function.Function"}


def forward_path_methods(ctx: FileContext, cls: cst.ClassDef) -> frozenset[str]:
    """Names of the methods of `cls` that `forward` runs: forward itself and every method it reaches
    through `self.method(...)` calls, transitively."""

    def compute():
        facts = ctx.class_facts(cls)
        reached: set[str] = set()
        pending = [name for name in FORWARD_ENTRY_POINTS if name in facts.methods]
        while pending:
            name = pending.pop()
            if name in reached:
                continue
            reached.add(name)
            for call in ctx.index.descendants(facts.methods[name].body, cst.Call, prune=(cst.ClassDef,)):
                callee = self_attribute(call.func)
                if callee in facts.methods and callee not in reached:
                    pending.append(callee)
        return frozenset(reached)

    return ctx.memo(("forward_path_methods", id(cls)), compute)


def is_module_method(ctx: FileContext, function: cst.FunctionDef | None) -> bool:
    """A method (first parameter `self`) of a class that may be an `nn.Module`: one that derives from it, or
    from a base this file cannot see; not a plain class, through this file's base classes or not, and not
    one that keeps its own `training` flag."""
    if function is None:
        return False
    cls = ctx.index.parents.get(ctx.index.parents[function])
    if not is_a(cls, cst.ClassDef) or not cls.bases or module_class(ctx, cls) is False:
        return False
    params = function.params.params
    return bool(params) and params[0].name.value == "self"


def saved_by_autograd_forward(ctx: FileContext, probability: cst.BaseExpression) -> bool:
    """`dropout_p=ctx.dropout_p` in a backward op (diffusers' `_native_attention_backward_op(ctx, ...)`): the
    probability was saved on the autograd context by the forward, which decided it; the recomputation must
    repeat it."""
    if not is_a(probability, cst.Attribute) or not is_a(probability.value, cst.Name):
        return False
    function = ctx.function_of(probability)
    params = function.params.params if function is not None else ()
    return bool(params) and params[0].name.value == probability.value.value == "ctx"


def in_autograd_function(ctx: FileContext, node: cst.CSTNode) -> bool:
    """Inside a `torch.autograd.Function`: it has no mode of its own (its backward recomputes what forward
    decided), so its caller is the one to gate."""
    cls = ctx.class_of(node)
    return cls is not None and any(q in AUTOGRAD_FUNCTIONS for q in ctx.class_facts(cls).base_names())


def method_of(ctx: FileContext, node: cst.CSTNode) -> tuple[cst.ClassDef, cst.FunctionDef] | None:
    """The class and method directly holding `node` (not a nested function)."""
    function = ctx.function_of(node)
    if function is None:
        return None
    cls = ctx.index.parents.get(ctx.index.parents[function])
    return (cls, function) if is_a(cls, cst.ClassDef) else None


MAX_CALLER_HOPS = 2


def runs_in_forward(ctx: FileContext, node: cst.CSTNode, hops: int = 0) -> bool:
    """`node` runs when a module is called: in a method on its forward path, or in a module-level
    function of this file that such a method calls (`emb = rope(ids, dim, theta)` in `forward`)."""
    found = method_of(ctx, node)
    if found is not None:
        return found[1].name.value in forward_path_methods(ctx, found[0])
    function = ctx.function_of(node)
    if function is None or hops >= MAX_CALLER_HOPS or not is_a(ctx.index.parents.get(function), cst.Module):
        return False
    return any(runs_in_forward(ctx, site, hops + 1) for site, _ in call_sites(ctx, function, forwarded=False))


def gated(ctx: FileContext, expr: cst.BaseExpression | None) -> bool:
    """Whether a probability follows the mode: it is zero, it mentions a training flag, or a local bound to it
    is defined under a branch on one (`if not self.training: p = 0.0 else: p = self.p`)."""
    if expr is None or is_zero(expr) or mentions_training(ctx, expr):
        return True
    if not is_a(expr, cst.Name):
        return False
    function = ctx.function_of(expr)
    if function is None:
        return False
    return any(
        under_training_branch(ctx, d.node)
        for d in ctx.function_facts(function).reaching(expr.value, ctx.order(expr))
        if d.kind != "param"
    )


def gated_by_every_caller(ctx: FileContext, call: cst.Call, probability: cst.BaseExpression | None) -> bool:
    """The function holding `call` is only called, in this file, under a training branch or with a gated
    probability for the parameter the probability comes from."""
    function = ctx.function_of(call)
    if function is None:
        return False
    parameter = _root_parameter(ctx, probability)
    params = [p.name.value for p in function.params.params]
    offset = 1 if params and params[0] in ("self", "cls") else 0
    callers = _callers(ctx, function)
    if not callers:
        return False
    for caller in callers:
        if under_training_branch(ctx, caller):
            continue
        if parameter is None or parameter not in params or params.index(parameter) < offset:
            return False
        value = passed_argument(ctx, caller, parameter, params.index(parameter) - offset)
        if value is UNKNOWN:
            return False
        if value is None:
            default = function.params.params[params.index(parameter)].default
            if not is_zero(default):
                return False
        elif not gated(ctx, value):
            return False
    return True


def _callers(ctx: FileContext, function: cst.FunctionDef) -> list[cst.Call]:
    """Calls of `function` in this file: `self.name(...)` inside its class for a method, `name(...)` for a
    module-level function."""
    name = function.name.value
    cls = ctx.class_of(function)
    scope: cst.CSTNode
    if cls is not None and ctx.function_of(function) is None:
        wanted, scope = f"self.{name}", cls
    elif cls is None and ctx.function_of(function) is None:
        wanted, scope = name, ctx.module
    else:
        return []
    return [call for call in ctx.index.descendants(scope, cst.Call) if dotted(call.func) == wanted]


def _root_parameter(ctx: FileContext, expr: cst.BaseExpression | None, depth: int = 0) -> str | None:
    """The parameter a probability is (bound from): `dropout_p` for `p = dropout_p` and a parameter `dropout_p`."""
    if depth > MAX_DEPTH or not is_a(expr, cst.Name):
        return None
    function = ctx.function_of(expr)
    if function is None:
        return None
    definitions = ctx.function_facts(function).reaching(expr.value, ctx.order(expr))
    if len(definitions) != 1:
        return None
    definition = definitions[0]
    if definition.kind == "param":
        return definition.name
    return _root_parameter(ctx, definition.value, depth + 1) if definition.kind == "assign" else None


def is_zero(expr: cst.BaseExpression | None) -> bool:
    return literal_number(expr) == 0.0


@dataclass(frozen=True)
class UngatedDropout:
    call: cst.Call
    kind: str  # "functional" | "attention" | "wrapper" | "module-in-forward"
    probability: cst.BaseExpression | None


def functional_dropout_without_mode(ctx: FileContext, call: cst.Call) -> UngatedDropout | None:
    """`F.dropout(x, p)` with no `training` argument: it defaults to True, in eval too."""
    position = FUNCTIONAL_DROPOUTS.get(ctx.callee(call) or "")
    if position is None or passed_argument(ctx, call, "training", position) is not None:
        return None  # passed, also in a `**kwargs` dict, or may be (UNKNOWN)
    probability = _known(passed_argument(ctx, call, "p", 1))
    if (probability is not None and gated(ctx, probability)) or _mode_reaches(ctx, call, probability):
        return None
    return UngatedDropout(call, "functional", probability)


def _mode_reaches(ctx: FileContext, call: cst.Call, probability: cst.BaseExpression | None) -> bool:
    """The module's mode decides whether `call` drops: it runs under a training branch, in an autograd
    Function, in a function every caller gates, or in a class that is no `nn.Module` (no eval mode)."""
    return (
        under_training_branch(ctx, call)
        or in_autograd_function(ctx, call)
        or gated_by_every_caller(ctx, call, probability)
        or in_plain_class(ctx, call)
    )


def in_plain_class(ctx: FileContext, node: cst.CSTNode) -> bool:
    """A method of a class known not to be an `nn.Module` (through its bases in this file or in the
    project's other files): it has no eval mode for a dropout to follow. Ex) diffusers' layer-skip
    guidance hook, whose `ModelHook` base lives in hooks.py and applies dropout at inference on purpose."""
    function = ctx.function_of(node)
    cls = ctx.index.parents.get(ctx.index.parents[function]) if function is not None else None
    return is_a(cls, cst.ClassDef) and module_class(ctx, cls) is False


def attention_dropout_without_mode(ctx: FileContext, call: cst.Call) -> UngatedDropout | None:
    """An attention kernel's `dropout_p` taken from the module (an attribute, a config value, a
    literal) with no training gate; a function parameter is left to the caller to gate."""
    kernel = kernel_of(ctx, call)
    if kernel is None:
        return None
    probability = kernel_argument(ctx, call, kernel, "dropout")  # also through `**attn_kwargs`
    if (
        probability is None
        or probability is UNKNOWN
        or _passed_by_a_caller(ctx, probability, call)
        or gated(ctx, probability)
        or in_autograd_function(ctx, call)
        or saved_by_autograd_forward(ctx, probability)
    ):
        return None
    if under_training_branch(ctx, call) or _passed_in(ctx, probability) or gated_by_every_caller(ctx, call, None):
        return None
    return UngatedDropout(call, "attention", probability)


def _passed_by_a_caller(ctx: FileContext, probability: cst.BaseExpression, call: cst.Call) -> bool:
    """The kernel's probability is a keyword a caller of the enclosing function passes into its `**kwargs`:
    it is reported where that caller passes it (`wrapper_dropout_without_mode`)."""
    arg = ctx.index.parents.get(probability)
    outer = ctx.index.parents.get(arg) if is_a(arg, cst.Arg) and arg.keyword is not None else None
    target = called_function(ctx, outer) if is_a(outer, cst.Call) and outer is not call else None
    return target is not None and target[0] is ctx.function_of(call)


def wrapper_dropout_without_mode(ctx: FileContext, call: cst.Call) -> UngatedDropout | None:
    """A probability passed, with no training gate, to a function, method or factory-made closure that
    hands it on unchanged to an attention kernel's dropout: `self._attention_call(q, k, v,
    dropout_p=self.attn_dropout)` where `self._attention_call = _sdpa_or_flex_attention()`."""
    dropouts = [forwarded for forwarded in forwarded_arguments(ctx, call) if forwarded.meaning == "dropout"]
    if not dropouts or under_training_branch(ctx, call) or in_autograd_function(ctx, call):
        return None
    for forwarded in dropouts:
        kernel_call = forwarded.kernel_call
        if kernel_call is not None and (
            under_training_branch(ctx, kernel_call) or in_autograd_function(ctx, kernel_call)
        ):
            continue
        probability = forwarded.value
        if (
            gated(ctx, probability)
            or saved_by_autograd_forward(ctx, probability)
            or _passed_in(ctx, probability)
            or gated_by_every_caller(ctx, call, None)
        ):
            continue
        return UngatedDropout(call, "wrapper", probability)
    return None


def partial_dropout_without_mode(ctx: FileContext, call: cst.Call) -> UngatedDropout | None:
    """`functools.partial(F.scaled_dot_product_attention, dropout_p=p)` built in `__init__`: the
    probability is fixed when the partial is made, so the kernel drops attention weights in eval too.
    A gate read in `__init__` is frozen as well (reported as such); a partial made in forward is judged
    like a direct call."""
    if ctx.callee(call) not in PARTIALS or not call.args or call.args[0].keyword is not None or call.args[0].star:
        return None
    kernel = KERNELS.get(ctx.qualify(call.args[0].value) or "")
    keyword = kernel.keyword("dropout") if kernel is not None else None
    probability = _known(passed_argument(ctx, call, keyword)) if keyword is not None else None  # also in `**kw`
    function = ctx.function_of(call)
    if probability is None or is_zero(probability) or function is None or in_autograd_function(ctx, call):
        return None
    if function.name.value == "__init__":
        return None if mentions_training(ctx, probability) else UngatedDropout(call, "partial", probability)
    if gated(ctx, probability) or under_training_branch(ctx, call) or _passed_in(ctx, probability):
        return None
    return UngatedDropout(call, "partial", probability)


def _passed_in(ctx: FileContext, expr: cst.BaseExpression, depth: int = 0) -> bool:
    """The probability is (bound from) a parameter of the enclosing function: its caller decides. Not
    one of `__init__` (`self.attn_kwargs = dict(dropout_p=dropout)`): that is fixed when the module is built."""
    if depth > MAX_DEPTH or not is_a(expr, cst.Name):
        return False
    function = ctx.function_of(expr)
    if function is None or (function.name.value == "__init__" and ctx.class_of(function) is not None):
        return False
    definitions = ctx.function_facts(function).reaching(expr.value, ctx.order(expr))
    return bool(definitions) and all(
        d.kind == "param" or (d.kind == "assign" and d.value is not None and _passed_in(ctx, d.value, depth + 1))
        for d in definitions
    )


def dropout_module_built_in_forward(ctx: FileContext, call: cst.Call) -> UngatedDropout | None:
    """`nn.Dropout(p)` constructed on the forward path: a fresh module, always in training mode."""
    if ctx.callee(call) not in DROPOUT_MODULES or not runs_in_forward(ctx, call):
        return None
    probability = passed_argument(ctx, call, "p", 0)  # also in `nn.Dropout(**cfg)`
    if is_zero(_known(probability)):
        return None
    return UngatedDropout(call, "module-in-forward", _known(probability))


# Draws of a random keep-mask: Bernoulli samples, uniform noise compared with a probability, or
# `keep + torch.rand(...)` floored (the old drop-path idiom).
BERNOULLI_FUNCTIONS = frozenset({"torch.bernoulli"})
BERNOULLI_METHODS = frozenset({"bernoulli", "bernoulli_"})
UNIFORM_FUNCTIONS = frozenset({"torch.rand", "torch.rand_like"})


def written_out_dropout(ctx: FileContext, call: cst.Call) -> UngatedDropout | None:
    """A dropout written by hand on the forward path: a random keep-mask drawn with the probability
    (`x.new(...).bernoulli_(1 - p)`, `torch.rand(...) < keep`, `(keep + torch.rand(...)).floor_()`) in a
    function that also divides by it (the inverted-dropout rescale), with no training flag in sight. It
    keeps dropping after `model.eval()`."""
    probability = _keep_probability(ctx, call)
    function = ctx.function_of(call)
    if probability is None or function is None or not runs_in_forward(ctx, call):
        return None
    drawn = _mentioned_values(ctx, probability)
    rescaled = any(drawn & _mentioned_values(ctx, divisor) for divisor in _divisors(ctx, function))
    if not rescaled or _mode_reaches(ctx, call, None):
        return None
    return UngatedDropout(call, "written-out", probability)


def _keep_probability(ctx: FileContext, call: cst.Call) -> cst.BaseExpression | None:
    """The probability a random keep-mask draw uses, when `call` is one."""
    if ctx.callee(call) in BERNOULLI_FUNCTIONS:
        return argument(call, "input", 0)
    if method_name(call) in BERNOULLI_METHODS:
        return argument(call, "p", 0)
    if ctx.callee(call) not in UNIFORM_FUNCTIONS:
        return None
    parent = ctx.index.parents.get(call)
    if is_a(parent, cst.Comparison) and len(parent.comparisons) == 1:
        other = parent.comparisons[0].comparator if parent.left is call else parent.left
        return other if is_a(parent.comparisons[0].operator, _ORDERINGS) else None
    if is_a(parent, cst.BinaryOperation) and is_a(parent.operator, cst.Add):
        floored = ctx.index.parents.get(parent)
        if (is_a(floored, cst.Call) and ctx.callee(floored) == "torch.floor") or _floored_later(ctx, parent):
            return parent.left if parent.right is call else parent.right
    return None


_ORDERINGS = (cst.LessThan, cst.LessThanEqual, cst.GreaterThan, cst.GreaterThanEqual)


def _floored_later(ctx: FileContext, total: cst.BinaryOperation) -> bool:
    """`r = keep + torch.rand(shape)` followed by `r.floor_()` (or `.floor()`): a Bernoulli sample."""
    statement = ctx.index.parents.get(total)
    function = ctx.function_of(total)
    if not is_a(statement, cst.Assign) or function is None or len(statement.targets) != 1:
        return False
    target = statement.targets[0].target
    if not is_a(target, cst.Name):
        return False
    for call in ctx.index.descendants(function.body, cst.Call):
        floored = receiver(call) if method_name(call) in ("floor", "floor_") else None
        if is_a(floored, cst.Name) and floored.value == target.value:
            return True
    return False


def _divisors(ctx: FileContext, function: cst.FunctionDef) -> list[cst.BaseExpression]:
    """What the function divides by: `a / d`, `a /= d`, `a.div(d)`, `a.div_(d)`."""
    found: list[cst.BaseExpression] = []
    for node in ctx.index.descendants(function.body):
        if is_a(node, cst.BinaryOperation) and is_a(node.operator, cst.Divide):
            found.append(node.right)
        elif is_a(node, cst.AugAssign) and is_a(node.operator, cst.DivideAssign):
            found.append(node.value)
        elif is_a(node, cst.Call) and method_name(node) in ("div", "div_") and node.args:
            found.append(node.args[0].value)
    return found


def _mentioned_values(ctx: FileContext, expr: cst.BaseExpression) -> set[str]:
    """The names and `self.x` attributes an expression reads."""
    found = {
        dotted(node) or "" for node in (expr, *ctx.index.descendants(expr)) if is_a(node, (cst.Name, cst.Attribute))
    }
    return {name for name in found if name and name != "self"}


def _known(passed: PassedArgument) -> cst.BaseExpression | None:
    """The expression passed, or None when none is passed or the model cannot tell which."""
    return None if passed is UNKNOWN else passed


def training_read_in_init(ctx: FileContext, node: cst.Attribute) -> bool:
    """`self.training` read in `__init__` as a condition: it is always True there (a module starts in
    training mode), so the branch is frozen at construction and `eval()` never changes it."""
    if self_attribute(node) != "training":
        return False
    found = method_of(ctx, node)
    if found is None or found[1].name.value != "__init__" or not is_module_method(ctx, found[1]):
        return False  # not an nn.Module: its `training` is its own
    for ancestor in ctx.index.ancestors(node):
        if is_a(ancestor, (cst.IfExp, cst.If)):
            return ctx.index.contains(ancestor.test, node)
        if is_a(ancestor, (cst.SimpleStatementLine, cst.FunctionDef)):
            return False
    return False


# -- a random drop behind a switch: `if self.layer_dropout > 0: to_drop = torch.rand(n) < self.layer_dropout` --
RANDOM_DRAWS = frozenset({"torch.rand", "torch.rand_like", "torch.randn", "torch.randn_like"})
RANDOM_FILLS = frozenset({"uniform_", "normal_"})


@dataclass(frozen=True)
class SwitchedDrop:
    """A random pick of what to drop (layers, tokens, attended positions) that a knob of the module turns
    on (`if self.p > 0:`, `if exists(self.calc_drop):`) and nothing gates on the mode: it drops in eval too."""

    switch: cst.BaseExpression  # the test that turns the drop on
    draw: cst.Call  # the random draw that picks what is dropped


def switched_random_drops(ctx: FileContext) -> list[SwitchedDrop]:
    """Every such drop in the file, once per switch: a uniform draw compared with an amount
    (`torch.empty(n).uniform_(0, 1) < p`), or the top-k of random scores (`torch.randn(n).topk(keep)`),
    whose amount comes from the same module attribute the switch tests. A drop in a module-level helper
    is switched where a forward-path method calls it with that attribute. Fixed at construction, the knob
    is a regulariser's: a per-call argument (MAE's `mask_ratio`) is the caller's choice and not one."""

    def compute() -> list[SwitchedDrop]:
        found: dict[cst.BaseExpression, SwitchedDrop] = {}
        if not ctx.mentions(b"topk", b"uniform_", b"rand"):
            return []  # no draw can pick anything
        for call in ctx.calls():
            amount = _random_pick(ctx, call)
            if amount is None or _mode_reaches(ctx, call, None):
                continue
            function = ctx.function_of(call)
            if function is None:
                continue
            sources = _sources(ctx, function, amount, ctx.order(call))
            for site, site_sources in _switch_candidates(ctx, call, function, sources):
                switch = _switch(ctx, site, site_sources)
                if switch is not None and runs_in_forward(ctx, switch) and not _mode_reaches(ctx, site, None):
                    found.setdefault(switch, SwitchedDrop(switch, call))
        return list(found.values())

    return ctx.memo("training_mode.switched_random_drops", compute)


def _random_pick(ctx: FileContext, call: cst.Call) -> cst.BaseExpression | None:
    """The amount a random pick of positions uses, when `call` is one: the other side of a uniform draw's
    comparison, or the `k` of the top-k of random scores."""
    if method_name(call) == "topk" and _random(ctx, receiver(call), ctx.order(call)):
        return argument(call, "k", 0)
    if ctx.callee(call) == "torch.topk" and _random(ctx, argument(call, "input", 0), ctx.order(call)):
        return argument(call, "k", 1)
    if ctx.callee(call) in UNIFORM_FUNCTIONS or method_name(call) == "uniform_":
        parent = ctx.index.parents.get(call)
        if (
            is_a(parent, cst.Comparison)
            and len(parent.comparisons) == 1
            and is_a(parent.comparisons[0].operator, _ORDERINGS)
        ):
            return parent.comparisons[0].comparator if parent.left is call else parent.left
    return None


def _random(ctx: FileContext, expr: cst.BaseExpression | None, at: int, depth: int = 0) -> bool:
    """A tensor of random values: a draw, or a local every definition of which binds one."""
    if expr is None or depth > MAX_DEPTH:
        return False
    if is_a(expr, cst.Call):
        return ctx.callee(expr) in RANDOM_DRAWS or method_name(expr) in RANDOM_FILLS
    function = ctx.function_of(expr)
    if not is_a(expr, cst.Name) or function is None:
        return False
    definitions = ctx.function_facts(function).reaching(expr.value, at)
    return bool(definitions) and all(
        d.kind == "assign" and _random(ctx, d.value, d.order, depth + 1) for d in definitions
    )


def _sources(
    ctx: FileContext, function: cst.FunctionDef, expr: cst.BaseExpression | None, at: int, depth: int = 0
) -> frozenset[str]:
    """What `expr` is computed from, as far as the function tells: the `self.x` attributes it reads and
    the parameters it comes from, through the locals bound on the way."""
    if expr is None or depth > MAX_DEPTH:
        return frozenset()
    found: set[str] = set()
    facts = ctx.function_facts(function)
    for node in (expr, *ctx.index.descendants(expr)):
        name = dotted(node) if is_a(node, cst.Attribute) else None
        if name is not None and name.startswith("self."):
            found.add(".".join(name.split(".")[:2]))
        elif is_a(node, cst.Name) and node.value != "self":
            for definition in facts.reaching(node.value, at):
                if definition.kind == "param":
                    found.add(node.value)
                elif definition.kind == "assign":  # `a, b = x, y` binds each name its own element
                    found |= _sources(ctx, function, definition.value, definition.order, depth + 1)
    return frozenset(found)


def _switch_candidates(
    ctx: FileContext, call: cst.Call, function: cst.FunctionDef, sources: frozenset[str]
) -> list[tuple[cst.Call, frozenset[str]]]:
    """Where a switch may sit, with what it must test: around the draw itself, and for a draw in a
    module-level helper whose amount comes from its parameters, around each call of the helper, tested on
    what the call passes for them."""
    found: list[tuple[cst.Call, frozenset[str]]] = [(call, sources)]
    if ctx.class_of(function) is not None or not is_a(ctx.index.parents.get(function), cst.Module):
        return found
    params = [p.name.value for p in function.params.params]
    for site, _ in call_sites(ctx, function, forwarded=False):
        caller = ctx.function_of(site)
        if caller is None:
            continue
        passed: set[str] = set()
        for parameter in sources & set(params):
            value = passed_argument(ctx, site, parameter, params.index(parameter))
            if value is not None and value is not UNKNOWN:
                passed |= _sources(ctx, caller, value, ctx.order(site))
        if passed:
            found.append((site, frozenset(passed)))
    return found


def _switch(ctx: FileContext, node: cst.CSTNode, sources: frozenset[str]) -> cst.BaseExpression | None:
    """The test of the innermost `if` around `node` that reads a module attribute `node`'s amount comes
    from, and nothing the call passes, when no training flag is tested on the way out. Classifier-free
    guidance's `if cond_drop_prob > 0:` is no such switch: its caller passes 0 or 1 at sampling time."""
    attributes = {source for source in sources if source.startswith("self.")}
    function = ctx.function_of(node)
    child = node
    for ancestor in ctx.index.ancestors(node):
        if ancestor is function:
            return None
        if is_a(ancestor, (cst.If, cst.IfExp)) and child is not ancestor.test:
            if mentions_training(ctx, ancestor.test):
                return None
            tested = (
                _sources(ctx, function, ancestor.test, ctx.order(ancestor)) if function is not None else frozenset()
            )
            if attributes & tested and all(source.startswith("self.") for source in tested):
                return ancestor.test  # a knob of the module alone: a per-call argument is the caller's switch
        child = ancestor
    return None
