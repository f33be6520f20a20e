"""Mixture-of-experts routing: where tokens are sent to experts, what balances the load, and where
balancing losses flow.

A routing site is a `topk` / `argmax` / `max(dim=...)` whose indices are kept, over scores that come
from a projection (a gate module, `F.linear`, a matmul or einsum with router weights), in a class or
function that deals with experts. Local names are followed through their reaching definitions, so

    router_logits = self.gate(hidden_states)
    routing_weights = F.softmax(router_logits, dim=1, dtype=torch.float)
    routing_weights, selected_experts = torch.topk(routing_weights, self.top_k, dim=-1)

is one path from the gate to the selection, passing an fp32 softmax. What the path passes (a stored
per-expert bias, a transpose to expert-choice, a cast) and where its values go (returned, stored)
answers the balancing and precision questions the MoE rules ask.
"""

from __future__ import annotations

import builtins
import re
from dataclasses import dataclass, field

import libcst as cst
from typing_extensions import TypeIs

from sharpedges.analysis.calls import argument, literal_int, method_name, receiver
from sharpedges.analysis.classes import self_attribute
from sharpedges.analysis.context import FileContext
from sharpedges.analysis.dataflow import Definition, FunctionFacts
from sharpedges.analysis.names import dotted
from sharpedges.analysis.summaries import bind_arguments, call_sites, result_element_read
from sharpedges.analysis.tensors import returns_nothing
from sharpedges.analysis.vocabulary import (
    CAST_METHODS,
    COPY_METHODS,
    FULL_DTYPES,
    FUSED_ROUTING_ARGUMENTS,
    LOW_PRECISION_DTYPES,
    PLACEMENT_METHODS,
    REORDER_METHODS,
    RESHAPE_METHODS,
    TRANSPOSE_FUNCTIONS,
    UPCAST_METHODS,
    is_library_namespace,
)
from sharpedges.analysis.walk import children, is_a

MAX_DEPTH = 16
SELECTION_FUNCTIONS = {"torch.topk": 1, "torch.argmax": 1, "torch.max": 1}  # -> position of `dim`
SELECTION_METHODS = {"topk": 1, "argmax": 0, "max": 0}
PROJECTION_FUNCTIONS = {"torch.nn.functional.linear", "torch.matmul", "torch.mm", "torch.bmm", "torch.einsum"}
# Identifiers that say a scope is about experts, and names under which a balancing loss is kept.
EXPERT_WORD = "expert"
BALANCING_NAME = re.compile(r"loss|^l_aux$|^aux$|balanc", re.IGNORECASE)
# A local that holds a balancing loss by name (a bare `loss` is the task loss).
BALANCING_LOCAL = re.compile(
    r"aux|balanc|z_?loss|lb_loss|load_loss|router_loss|moe_loss|importance|expert_loss", re.IGNORECASE
)
# Loss functions that are not load-balancing losses (the task loss of a model).
TASK_LOSSES = re.compile(r"cross_entropy|nll|mse|l1_loss|bce|kl_div|ctc|margin|huber|smooth", re.IGNORECASE)
# Methods that keep the whole value (reshape, retype); anything else (max, gather, topk) keeps a part.
WHOLE_VALUE_METHODS = RESHAPE_METHODS | COPY_METHODS | CAST_METHODS | PLACEMENT_METHODS
COLLECT_METHODS = {"append", "extend", "insert", "add", "put", "update"}
QUANTILE_METHODS = {"quantile", "nanquantile", "kthvalue"}
ROUTER_RECORD_KEY = re.compile(r"router", re.IGNORECASE)


@dataclass
class ScoreTrace:
    """What the path from router scores to one selection passes through."""

    definitions: set[Definition] = field(default_factory=set)  # local definitions on the path
    parameters: set[str] = field(default_factory=set)  # scores handed in by the caller
    projections: list[cst.CSTNode] = field(default_factory=list)  # gate calls / products the scores start at
    biased: bool = False  # a stored per-expert bias added before the selection (aux-loss-free balancing)
    thresholded: bool = False  # a per-expert quantile subtracted before the selection (it balances the load)
    transposed: bool = False  # experts choose tokens
    # Precision at the selection, from the cast nearest to it: "full" (fp32), "low" (a half type or the
    # activations' dtype), "configured" (a dtype left to a setting); None when no cast says, and the
    # scores have the dtype of the projection they start at.
    precision: str | None = None


@dataclass(frozen=True)
class RoutingSite:
    selection: cst.Call
    scores: cst.BaseExpression
    dim: cst.BaseExpression | None
    function: cst.FunctionDef
    cls: cst.ClassDef | None
    trace: ScoreTrace = field(compare=False, hash=False)

    @property
    def expert_choice(self) -> bool:
        return self.trace.transposed or literal_int(self.dim) in (0, -2)


# -- scopes --------------------------------------------------------------------------------
def mentions_experts(ctx: FileContext, scope: cst.CSTNode) -> bool:
    def compute() -> bool:
        return any(EXPERT_WORD in name.value.lower() for name in ctx.index.descendants(scope, cst.Name))

    return ctx.memo(("mentions_experts", id(scope)), compute)


def layer_of(site: RoutingSite) -> cst.CSTNode:
    """The layer a routing site belongs to: its class, or its function when it has none."""
    return site.cls if site.cls is not None else site.function


# -- routing sites -------------------------------------------------------------------------
def _selection(ctx: FileContext, call: cst.Call) -> tuple[cst.BaseExpression, cst.BaseExpression | None] | None:
    """(scores, dim) for a top-k / argmax / max-with-dim call, else None."""
    qualified = ctx.callee(call)
    if qualified in SELECTION_FUNCTIONS:
        scores, dim = argument(call, "input", 0), argument(call, "dim", SELECTION_FUNCTIONS[qualified])
        if qualified == "torch.max" and not _is_dim(dim):
            return None  # torch.max(a, b) is an elementwise maximum
    elif (name := method_name(call)) in SELECTION_METHODS and not is_library_namespace(ctx, receiver(call)):
        scores, dim = receiver(call), argument(call, "dim", SELECTION_METHODS[name])
        if name == "max" and not _is_dim(dim):
            return None
    else:
        return None
    return (scores, dim) if scores is not None else None


def _is_dim(expr: cst.BaseExpression | None) -> bool:
    return literal_int(expr) is not None or is_a(expr, (cst.Name, cst.Attribute))


def _indices_kept(ctx: FileContext, call: cst.Call) -> bool:
    """False when only the values of the selection are used (`topk(...)[0]`, `.values`)."""
    parent = ctx.index.parents.get(call)
    if is_a(parent, cst.Attribute) and parent.value is call:
        return parent.attr.value != "values"
    if is_a(parent, cst.Subscript) and parent.value is call and len(parent.slice) == 1:
        index = parent.slice[0].slice
        return not (is_a(index, cst.Index) and literal_int(index.value) == 0)
    return True


def routing_sites(ctx: FileContext) -> list[RoutingSite]:
    """Every selection of experts from router scores in the file."""

    def compute() -> list[RoutingSite]:
        sites = []
        for call in ctx.calls():
            found = _selection(ctx, call)
            if found is None or not _indices_kept(ctx, call):
                continue
            function = ctx.function_of(call)
            if function is None:
                continue
            cls = ctx.class_of(function)
            if not mentions_experts(ctx, cls if cls is not None else function):
                continue
            scores, dim = found
            trace = ScoreTracer(ctx, function).trace(scores)
            if (trace.projections or trace.parameters) and _selects_experts(ctx, call, function, trace):
                sites.append(RoutingSite(call, scores, dim, function, cls, trace))
        return sites

    return ctx.memo("moe.routing_sites", compute)


def logits_cast_back_before_fused_routing(ctx: FileContext) -> list[cst.Call]:
    """Calls that hand router logits to a fused MoE layer or kernel of a library (it selects the experts
    itself, in fp32) after casting them down to the activations' dtype: `router_logits =
    self.gate(x.float()); router_logits = router_logits.to(x.dtype); self.experts(hidden_states=x,
    router_logits=router_logits)` rounds what an fp32 gate computed (vLLM 0.30's Sarvam MoE)."""
    if not ctx.mentions(*(keyword.encode() for keyword in FUSED_ROUTING_ARGUMENTS)):
        return []
    found = []
    for call in ctx.calls():
        logits = next((a.value for a in call.args if a.keyword and a.keyword.value in FUSED_ROUTING_ARGUMENTS), None)
        function = ctx.function_of(call)
        if logits is None or function is None or _local_callee(ctx, call) is not None:
            continue  # a layer of this file selects where the file shows it (`routing_sites`)
        trace = ScoreTracer(ctx, function).trace(logits)
        if trace.precision == "low" and trace.projections:
            found.append(call)
    return found


def _names_experts(ctx: FileContext, node: cst.CSTNode) -> bool:
    return any(EXPERT_WORD in name.value.lower() for name in ctx.index.descendants(node, cst.Name))


def _selects_experts(ctx: FileContext, call: cst.Call, function: cst.FunctionDef, trace: ScoreTrace) -> bool:
    """Whether what is selected is a set of experts: the selection, its function, the gate it reads (built
    with the number of experts), or a statement that uses the chosen indices names them."""
    statement = ctx.index.statement_of(call)
    if _names_experts(ctx, statement) or EXPERT_WORD in function.name.value.lower():
        return True
    if any(_gate_names_experts(ctx, projection) for projection in trace.projections):
        return True
    facts = ctx.function_facts(function)
    chosen = _index_definitions(ctx, facts, statement, call)
    for definition in chosen:
        for use in facts.later_uses(definition.name, definition.order - 1):
            if definition not in facts.reaching(definition.name, ctx.order(use)):
                continue
            if _names_experts(ctx, ctx.index.statement_of(use)):
                return True
    return False


def _index_definitions(
    ctx: FileContext, facts: FunctionFacts, statement: cst.CSTNode, call: cst.Call
) -> list[Definition]:
    """The local definitions that bind the chosen indices: `_, idx = x.topk(k)`, `idx = x.topk(k).indices`,
    `idx = x.topk(k)[1]`, `idx = x.argmax(-1)`."""
    if not is_a(statement, cst.SimpleStatementLine) or not is_a(statement.body[0], cst.Assign):
        return []
    assign = statement.body[0]
    names: list[str] = []
    for assign_target in assign.targets:
        target = assign_target.target
        if is_a(target, cst.Name) and (
            method_name(call) == "argmax" or ctx.callee(call) == "torch.argmax" or assign.value is not call
        ):
            names.append(target.value)
        elif (
            is_a(target, (cst.Tuple, cst.List))
            and assign.value is call
            and len(target.elements) == 2
            and is_a(target.elements[1].value, cst.Name)
        ):
            names.append(target.elements[1].value.value)
    return [d for name in names for d in facts.definitions.get(name, ()) if d.node is assign]


def _gate_names_experts(ctx: FileContext, projection: cst.CSTNode) -> bool:
    """The gate module or router weight is built with the number of experts (`nn.Linear(d, n_experts)`)."""
    cls = ctx.class_of(projection)
    if cls is None:
        return False
    facts = ctx.class_facts(cls)
    attrs: list[str] = []
    operands: list[cst.BaseExpression] = []
    if is_a(projection, cst.Call):
        if (attr := self_attribute(projection.func)) is not None:
            attrs.append(attr)
        operands = [arg.value for arg in projection.args]
    elif is_a(projection, cst.BinaryOperation):
        operands = [projection.left, projection.right]
    for value in operands:
        while is_a(value, cst.Call) and (inner := receiver(value)) is not None:
            value = inner  # self.weight.float()
        if (attr := self_attribute(value)) is not None:
            attrs.append(attr)
    return any(
        assignment.value is not None and _names_experts(ctx, assignment.value)
        for attr in attrs
        for assignment in facts.assignments.get(attr, ())
    )


class ScoreTracer:
    """Follows router scores back from a selection to the projection they start at, within one function."""

    def __init__(self, ctx: FileContext, function: cst.FunctionDef) -> None:
        self.ctx = ctx
        self.function = function
        self.facts: FunctionFacts = ctx.function_facts(function)
        self.cls = ctx.class_of(function)
        self.activations = set(self.facts.parameters) - {"self"}  # what the layer is given: its input

    def trace(self, expr: cst.BaseExpression) -> ScoreTrace:
        result = ScoreTrace()
        self._walk(expr, self.ctx.order(expr), result, 0, set())
        return result

    def _walk(self, expr, at: int, out: ScoreTrace, depth: int, seen: set) -> None:
        if depth > MAX_DEPTH or expr is None:
            return
        if is_a(expr, cst.Name):
            for definition in self.facts.reaching(expr.value, at):
                if definition in seen:
                    continue
                seen.add(definition)
                if definition.kind == "param":
                    out.parameters.add(definition.name)
                elif definition.value is not None and definition.kind in ("assign", "augassign", "inplace"):
                    out.definitions.add(definition)
                    value: cst.BaseExpression | None = definition.value
                    if definition.kind == "augassign":
                        self._note_addition(definition.value, definition.operator, out)
                        self._walk(expr, definition.order - 1, out, depth + 1, seen)  # the value added to
                    if definition.kind == "inplace" and is_a(definition.value, cst.Call):
                        self._note_method(definition.method or "", definition.value, out)
                        value = receiver(definition.value)
                    self._walk(value, definition.order, out, depth + 1, seen)
            return
        if is_a(expr, cst.Call):
            self._walk_call(expr, at, out, depth, seen)
        elif is_a(expr, cst.BinaryOperation):
            if is_a(expr.operator, cst.MatrixMultiply):
                out.projections.append(expr)
                return
            self._note_addition(expr.right, expr.operator, out)
            self._note_addition(expr.left, expr.operator, out)
            self._walk(expr.left, at, out, depth + 1, seen)
            self._walk(expr.right, at, out, depth + 1, seen)
        elif is_a(expr, cst.Subscript):
            self._walk(expr.value, at, out, depth + 1, seen)
        elif is_a(expr, cst.Attribute):
            if expr.attr.value in ("T", "mT", "H", "mH"):
                out.transposed = True
            if self_attribute(expr) is None and not is_a(expr.value, cst.Name):
                self._walk(expr.value, at, out, depth + 1, seen)

    def _walk_call(self, call: cst.Call, at: int, out: ScoreTrace, depth: int, seen: set) -> None:
        ctx = self.ctx
        qualified = ctx.callee(call)
        name = method_name(call)
        if qualified in PROJECTION_FUNCTIONS or _is_module_call(ctx, call) or _is_super_forward(call):
            out.projections.append(call)
            # `F.linear(x.float(), w.float())`, `self.gate(x.to(self.router_dtype))`: the product's precision
            # is that of its input
            first = argument(call, "input", 0) if qualified in PROJECTION_FUNCTIONS else argument(call, None, 0)
            self._set_precision(out, self._input_precision(first, at, 0))
            return
        if qualified in TRANSPOSE_FUNCTIONS:
            out.transposed = True
        dtype = argument(call, "dtype")
        if dtype is not None:
            value = (
                argument(call, "input", 0)
                if name is None or is_library_namespace(ctx, receiver(call))
                else receiver(call)
            )
            self._set_precision(out, _cast_precision(ctx, dtype, value, self.activations))
        if name is not None and not is_library_namespace(ctx, receiver(call)):
            self._note_method(name, call, out)
            self._walk(receiver(call), at, out, depth + 1, seen)
            return
        if qualified is not None and qualified.split(".")[0] in ("torch", "einops"):
            self._walk(argument(call, "input", 0) or argument(call, "tensor", 0), at, out, depth + 1, seen)

    def _input_precision(self, expr: cst.BaseExpression | None, at: int, depth: int) -> str | None:
        """The precision a cast gives the input of a projection, following its local definitions."""
        if is_a(expr, cst.Call):
            name = method_name(expr)
            if name in UPCAST_METHODS:
                return "full"
            if name in ("to", "type"):
                target = argument(expr, "dtype", 0)
                return _cast_precision(self.ctx, target, receiver(expr)) if target is not None else None
            if name is not None and depth < 4:
                return self._input_precision(receiver(expr), at, depth + 1)  # x.float().view(...)
        if is_a(expr, cst.Name) and depth < 4:
            for definition in self.facts.reaching(expr.value, at):
                if definition.kind == "assign" and definition.value is not None:
                    found = self._input_precision(definition.value, definition.order, depth + 1)
                    if found is not None:
                        return found
        return None

    def _note_method(self, name: str, call: cst.Call, out: ScoreTrace) -> None:
        if name in REORDER_METHODS:
            out.transposed = True
        elif name in UPCAST_METHODS:
            self._set_precision(out, "full")
        elif name in ("half", "bfloat16"):
            self._set_precision(out, "low")
        elif name == "type_as":
            self._set_precision(
                out, _cast_precision(self.ctx, _dtype_of(argument(call, None, 0)), receiver(call), self.activations)
            )
        elif name in ("to", "type"):
            target = argument(call, "dtype", 0)
            if target is not None:
                self._set_precision(out, _cast_precision(self.ctx, target, receiver(call), self.activations))
        elif name in ("add", "add_"):
            self._note_addition(argument(call, None, 0), cst.Add(), out)

    @staticmethod
    def _set_precision(out: ScoreTrace, value: str | None) -> None:
        if out.precision is None and value != "same":  # walking backwards: the cast nearest the selection decides
            out.precision = value

    def _note_addition(self, term, operator, out: ScoreTrace) -> None:
        """`scores + self.expert_bias`, `scores - bias` for a local bound to a stored bias: a per-expert bias
        shifts which experts are chosen; `scores - torch.quantile(scores, q, dim=0)`: a quantile threshold
        per expert does the same from the batch itself."""
        if not is_a(operator, (cst.Add, cst.AddAssign, cst.Subtract, cst.SubtractAssign)):
            return
        values = [term]
        if is_a(term, cst.Name):
            values += [
                d.value
                for d in self.facts.reaching(term.value, self.ctx.order(term))
                if d.kind == "assign" and d.value is not None
            ]
        for value in values:
            if _stored_attribute(value):
                out.biased = True
            if value is not None and any(
                method_name(call) in QUANTILE_METHODS
                or (self.ctx.callee(call) or "").rsplit(".", 1)[-1] in QUANTILE_METHODS
                for call in (value, *self.ctx.index.descendants(value, cst.Call))
                if is_a(call, cst.Call)
            ):
                out.thresholded = True


def _stored_attribute(expr: cst.BaseExpression | None) -> bool:
    """`self.bias`, `self.gate.e_score_correction_bias`, `self.bias.unsqueeze(0)`: a stored tensor, not
    a module call."""
    while is_a(expr, cst.Call) and method_name(expr) in (
        "unsqueeze",
        "view",
        "to",
        "type_as",
        "reshape",
        "expand",
        "expand_as",
        "float",
        "detach",
    ):
        expr = receiver(expr)
    text = dotted(expr) if expr is not None else None
    return text is not None and text.startswith("self.")


def _is_module_call(ctx: FileContext, call: cst.Call) -> bool:
    """`self.gate(x)`, `gate(x)` for a parameter or local module: a learned projection of the input."""
    if is_a(call.func, cst.Name):
        qualified = ctx.callee(call)
        return qualified == call.func.value and not hasattr(builtins, call.func.value)
    return self_attribute(call.func) is not None


def plain_projection(ctx: FileContext, node: cst.CSTNode) -> bool:
    """A projection whose output has the activations' dtype: `x @ w`, `F.linear`, `einsum`, or an
    `nn.Linear` built without its own dtype. A custom gate module may compute in fp32 inside."""
    if not is_a(node, cst.Call) or ctx.callee(node) in PROJECTION_FUNCTIONS:
        return True
    attr = self_attribute(node.func)
    cls = ctx.class_of(node)
    if attr is None or cls is None:
        return False
    assignments = ctx.class_facts(cls).assignments.get(attr, ())
    return bool(assignments) and all(_plain_linear(ctx, a.value) for a in assignments)


def _plain_linear(ctx: FileContext, value: cst.BaseExpression | None) -> bool:
    """`nn.Linear(d, n)` without a dtype; of `nn.Linear(...) if cond else Router(...)` the Linear is the one
    whose output is selected from directly (a router module returns its own choice)."""
    if is_a(value, cst.IfExp):
        return _plain_linear(ctx, value.body) or _plain_linear(ctx, value.orelse)
    return is_a(value, cst.Call) and ctx.callee(value) == "torch.nn.Linear" and argument(value, "dtype") is None


def _is_super_forward(call: cst.Call) -> bool:
    """`super().forward(x)` in a router that subclasses `nn.Linear`."""
    owner = receiver(call)
    return is_a(owner, cst.Call) and is_a(owner.func, cst.Name) and owner.func.value == "super"


def _dtype_of(expr: cst.BaseExpression | None) -> cst.BaseExpression | None:
    """`other.dtype` for `type_as(other)`."""
    return cst.Attribute(value=expr, attr=cst.Name("dtype")) if expr is not None else None


def _cast_precision(
    ctx: FileContext,
    target: cst.BaseExpression | None,
    value: cst.BaseExpression | None,
    activations: set[str] | None = None,
) -> str:
    """ "full" for fp32/fp64, "low" for a half type or the dtype of the activations (`x.dtype` for a
    parameter `x`), "configured" for a dtype the code leaves to a setting (`self.router_dtype`). A cast
    to the dtype of a local (often the scores themselves) says nothing on its own ("same")."""
    qualified = ctx.qualify(target) if target is not None else None
    if qualified in FULL_DTYPES:
        return "full"
    if qualified in LOW_PRECISION_DTYPES:
        return "low"
    text = dotted(target) if target is not None else None
    if text is not None and text.endswith(".dtype"):
        owner = text[: -len(".dtype")]
        if value is not None and owner == dotted(value):
            return "same"
        if owner.startswith("self.") or owner == "self":
            return "configured"
        return "low" if activations is not None and owner in activations else "same"
    return "configured"


# -- where values go -----------------------------------------------------------------------
def escapes(ctx: FileContext, facts: FunctionFacts, definitions: set[Definition], depth: int = 0) -> bool:
    """Whether a value defined by one of `definitions` leaves the function: returned, yielded, stored
    on an object or collected into a container, directly or inside a tuple, list or dict of aux
    information that leaves (`aux = (router_logits, load); return out, aux`)."""
    for definition in definitions:
        for use in facts.later_uses(definition.name, definition.order - 1):
            if definition not in facts.reaching(definition.name, ctx.order(use)):
                continue
            if _leaves_function(ctx, use):
                return True
            holder = _container_assignment(ctx, use)
            if holder is not None and depth < 3 and escapes(ctx, facts, set(_definitions_by(facts, holder)), depth + 1):
                return True
    return False


def _container_assignment(ctx: FileContext, use: cst.CSTNode) -> cst.CSTNode | None:
    """The `name = (..., use, ...)` / `[...]` / `{...: use}` statement that packs the whole value into a local."""
    child = use
    for ancestor in ctx.index.ancestors(use):
        if is_a(ancestor, cst.Assign):
            return ancestor if child is not use else None
        if not is_a(ancestor, (cst.Tuple, cst.List, cst.Dict, cst.DictElement, cst.Element)):
            return None
        child = ancestor
    return None


def _leaves_function(ctx: FileContext, node: cst.CSTNode) -> bool:
    child = node
    for ancestor in ctx.index.ancestors(node):
        if is_a(ancestor, (cst.Return, cst.Yield)):
            return True
        if is_a(ancestor, cst.Call):
            if method_name(ancestor) in COLLECT_METHODS:
                return True
            # An argument (`Output(router_logits=logits)`) keeps the whole value; a method of it other than a
            # reshape or retype (`probs.max(-1).values`, `probs.gather(...)`) lets only a part leave.
            if ancestor.func is child and method_name(ancestor) not in WHOLE_VALUE_METHODS:
                return False
        if is_a(ancestor, (cst.Assign, cst.AugAssign)):
            targets = [t.target for t in ancestor.targets] if is_a(ancestor, cst.Assign) else [ancestor.target]
            return any(_is_object_store(t) for t in targets)
        if is_a(ancestor, (cst.BaseSmallStatement, cst.BaseCompoundStatement)):
            return False
        child = ancestor
    return False


def _is_object_store(target: cst.BaseExpression) -> bool:
    """`self.logits = ...`, `outputs.router_logits = ...`, `self.cache[i] = ...`: kept on an object that
    outlives the call (a subscript of a local tensor is not)."""
    while is_a(target, cst.Subscript):
        target = target.value
    return is_a(target, cst.Attribute)


def router_outputs_recorded(ctx: FileContext) -> bool:
    """HF-style `_can_record_outputs = {"router_logits": OutputRecorder(Router, ...)}`: the framework
    hands the router logits to the caller from a hook."""

    def compute() -> bool:
        for element in ctx.index.nodes(cst.DictElement):
            key = element.key
            if (
                is_a(key, cst.SimpleString)
                and ROUTER_RECORD_KEY.search(key.value)
                and is_a(element.value, (cst.Call, cst.Name, cst.Attribute))
            ):
                return True
        return False

    return ctx.memo("moe.router_outputs_recorded", compute)


# -- balancing losses ----------------------------------------------------------------------
def is_balancing_loss_call(ctx: FileContext, call: cst.Call) -> bool:
    """A call of a loss function that is not a task loss: `load_balancing_loss_func(...)`,
    `self.compute_aux_loss(...)`, `router_z_loss(...)`."""
    text = dotted(call.func)
    if text is None:
        return False
    last = text.rsplit(".", 1)[-1]
    qualified = ctx.callee(call) or ""
    if qualified.startswith("torch.") or TASK_LOSSES.search(last):
        return False
    return BALANCING_LOCAL.search(last) is not None


def is_balancing_apply(ctx: FileContext, call: cst.Call) -> bool:
    """`MoEAuxLossAutoScaler.apply(output, aux_loss)`: an autograd Function that attaches a balancing
    loss to the graph; its result is the only thing that carries the loss's gradient."""
    if method_name(call) != "apply":
        return False
    target = receiver(call)
    owner = dotted(target) if target is not None else None
    if owner is not None and BALANCING_NAME.search(owner.rsplit(".", 1)[-1]) and "aux" in owner.lower():
        return True
    return any(is_a(arg.value, cst.Name) and BALANCING_NAME.search(arg.value.value) for arg in call.args)


def balancing_definitions(ctx: FileContext, function: cst.FunctionDef) -> list[Definition]:
    """Local definitions in `function` that hold a balancing loss, by what computes it (never by its name
    alone): balancing arithmetic, a call whose callee returns a balancing loss (a function of this file
    whose body computes one, or an unknown loss function named as one), an item unpacked from a tuple whose
    element at that place is one (`idx, w, aux_loss = self.gate(x)`), or a sum of losses kept elsewhere
    (`balance_loss + layer_loss`, `sum(b.aux_loss for b in blocks)`)."""
    facts = ctx.function_facts(function)
    found = []
    for definitions in facts.definitions.values():
        for definition in definitions:
            if definition.kind in ("assign", "augassign") and _computed(definition.value):
                if is_balancing_value(ctx, definition.value) or _accumulates_losses(ctx, definition):
                    found.append(definition)
            elif definition.kind == "unpack" and _unpacks_balancing_loss(ctx, definition):
                found.append(definition)
    return found


# What balancing arithmetic is made of.
PROBABILITY_FUNCTIONS = {
    "torch.softmax",
    "torch.sigmoid",
    "torch.log_softmax",
    "torch.nn.functional.softmax",
    "torch.nn.functional.sigmoid",
    "torch.nn.functional.log_softmax",
}
LOAD_FUNCTIONS = {"torch.nn.functional.one_hot", "torch.bincount", "torch.histc", "torch.scatter_add"}
LOAD_METHODS = {"bincount", "histc", "scatter_add", "scatter_add_", "index_add", "index_add_"}
DISPERSION_FUNCTIONS = {"torch.var", "torch.std", "torch.var_mean", "torch.std_mean"}
DISPERSION_METHODS = {"var", "std"}
REDUCTIONS = {"sum", "mean"}
MAX_INGREDIENT_DEPTH = 24
VALUE_PARTS = (
    cst.BaseExpression,
    cst.Arg,
    cst.BaseElement,
    cst.BaseDictElement,
    cst.CompFor,
    cst.CompIf,
    cst.BaseSlice,
    cst.SubscriptElement,
)


def is_balancing_value(ctx: FileContext, value: cst.BaseExpression) -> bool:
    """Whether `value` is computed by balancing arithmetic, following local definitions and the bodies of this
    file's functions it calls: a reduction over expert fractions times router probabilities (Switch/GShard),
    a mean times a mean per expert, a squared logsumexp (z-loss), the variance of expert load or router
    probabilities (CV), or the entropy of router probabilities; or a call that returns a balancing loss."""
    found = _made_of(ctx, value, 0)
    return (
        bool(found & BALANCING_SHAPES)
        or ("dispersion" in found and bool(found & {"probability", "load"}))
        or _calls_balancing_loss(ctx, value)
    )


BALANCING_SHAPES = frozenset({"z_loss", "fraction_times_probability", "entropy", "product_of_means"})


def _made_of(ctx: FileContext, expr: cst.CSTNode, depth: int, env: dict | None = None) -> frozenset[str]:
    """What an expression is computed from, through local definitions and the bodies of this file's functions:
    tags for router probabilities, expert load, products, reductions, logsumexp, logs and dispersion, and the
    balancing shapes they form (a shape ending in `?` is a product still waiting for its reduction). `env`
    binds the parameters of a called function of this file to the caller's arguments."""
    key = ("moe.made_of", id(expr))
    if not env and key in ctx.shared:
        return ctx.shared[key]
    if depth > MAX_INGREDIENT_DEPTH or is_a(expr, (cst.Lambda, cst.FunctionDef, cst.ClassDef)):
        return frozenset()
    if not env:
        ctx.shared[key] = frozenset()  # while it is computed, a cycle through a loop sees nothing
    found: set[str] = set()
    for child in children(expr):
        if is_a(child, VALUE_PARTS):  # not whitespace, brackets or operators
            found |= _made_of(ctx, child, depth + 1, env)
    if is_a(expr, cst.BinaryOperation):
        if is_a(expr.operator, cst.Multiply):
            found.add("product")
            found |= _product_shapes(ctx, expr.left, expr.right, depth, env)
        elif is_a(expr.operator, cst.Power) and literal_int(expr.right) == 2:
            found.add("square")
    elif is_a(expr, cst.Call):
        found |= _call_tags(ctx, expr, found, depth, env)
    elif is_a(expr, cst.Name) and _is_read(expr, ctx.index.parents.get(expr)):
        for source, source_env in _sources(ctx, expr, env):
            found |= _made_of(ctx, source, depth + 1, source_env)
    if "z" in found and "square" in found and "reduction" in found:
        found.add("z_loss")
    result = frozenset(found)
    if not env:
        ctx.shared[key] = result
    return result


def _sources(ctx: FileContext, name: cst.Name, env: dict | None):
    """The values a read name may hold: its reaching local definitions, and for a parameter the argument
    bound to it in `env` (evaluated in the caller, with no bindings of its own)."""
    function = ctx.function_of(name)
    if function is None:
        return
    for definition in ctx.function_facts(function).reaching(name.value, ctx.order(name)):
        if definition.kind == "param":
            if env and definition.node in env:
                yield env[definition.node], None
        elif definition.kind == "unpack":
            yield getattr(definition.node, "value", None), env
        elif definition.value is not None:
            yield definition.value, env


def _bind(callee: cst.FunctionDef, call: cst.Call) -> dict:
    """The callee's parameters mapped to the call's arguments (`self` skipped for a method call)."""
    params = list(callee.params.params)
    if params and params[0].name.value in ("self", "cls") and is_a(call.func, cst.Attribute):
        params = params[1:]
    env = {}
    for index, param in enumerate(params):
        value = argument(call, param.name.value, index)
        if value is not None:
            env[param] = value
    return env


def _product_shapes(
    ctx: FileContext, left: cst.BaseExpression, right: cst.BaseExpression, depth: int, env: dict | None = None
) -> set[str]:
    """Balancing products, pending a reduction: expert fractions times router probabilities, probabilities
    times their log (entropy), a mean times a mean per expert."""
    a, b = _made_of(ctx, left, depth + 1, env), _made_of(ctx, right, depth + 1, env)
    shapes = set()
    if ("probability" in a and "load" in b) or ("load" in a and "probability" in b):
        shapes.add("fraction_times_probability?")
    if ("probability" in a and "log" in b) or ("log" in a and "probability" in b):
        shapes.add("entropy?")
    if _is_reduction(ctx, left, env) and _is_reduction(ctx, right, env):
        shapes.add("product_of_means?")
    return shapes


def _is_reduction(ctx: FileContext, expr: cst.BaseExpression, env: dict | None, depth: int = 0) -> bool:
    """`x.mean(0)`, `torch.mean(x, dim=0)`, `ce * num_experts`, or a local (or bound parameter) holding one."""
    if depth > 4:
        return False
    if is_a(expr, cst.Name):
        sources = list(_sources(ctx, expr, env))
        return bool(sources) and all(
            _is_reduction(ctx, source, source_env, depth + 1) for source, source_env in sources
        )
    while is_a(expr, cst.BinaryOperation) and is_a(expr.operator, (cst.Multiply, cst.Divide)):
        expr = expr.left if is_a(expr.left, (cst.Call, cst.Name)) else expr.right  # ce * num_experts
        if is_a(expr, cst.Name):
            return _is_reduction(ctx, expr, env, depth + 1)
    return is_a(expr, cst.Call) and (method_name(expr) in REDUCTIONS or ctx.callee(expr) in ("torch.mean", "torch.sum"))


def _is_read(name: cst.Name, parent: cst.CSTNode | None) -> bool:
    """A name read as a value: not an attribute's name (`x.dim`), a keyword (`dim=`) or a parameter."""
    if is_a(parent, cst.Attribute):
        return parent.value is name
    if is_a(parent, cst.Arg):
        return parent.value is name
    return not is_a(parent, (cst.Param, cst.AssignTarget, cst.FunctionDef, cst.ClassDef))


def _call_tags(ctx: FileContext, call: cst.Call, inside: set[str], depth: int, env: dict | None) -> set[str]:
    """What a call adds: its own kind of value, a reduction completing a product under it, and what the
    function of this file it runs returns."""
    qualified = ctx.callee(call) or ""
    name = method_name(call) if not is_library_namespace(ctx, receiver(call)) else None
    last = qualified.rsplit(".", 1)[-1]
    found: set[str] = set()
    if qualified in PROBABILITY_FUNCTIONS or name in ("softmax", "sigmoid", "log_softmax"):
        found.add("probability")
    if qualified in LOAD_FUNCTIONS or name in LOAD_METHODS or last == "one_hot":
        found.add("load")
    if qualified in DISPERSION_FUNCTIONS or name in DISPERSION_METHODS:
        found.add("dispersion")
    if last == "logsumexp" or name == "logsumexp":
        found.add("z")
    if qualified in ("torch.log", "torch.log2") or name in ("log", "log_softmax") or last == "log_softmax":
        found.add("log")
    if qualified in ("torch.mul", "torch.dot", "torch.einsum") or name in ("mul", "dot"):
        found.add("product")
        operands = [arg.value for arg in call.args if arg.keyword is None][-2:]
        if name in ("mul", "dot") and (target := receiver(call)) is not None and call.args:
            operands = [target, call.args[0].value]
        if len(operands) == 2:
            found |= _product_shapes(ctx, operands[0], operands[1], depth, env)
    if qualified in ("torch.sum", "torch.mean", "sum") or name in REDUCTIONS:
        found.add("reduction")
        found |= {tag.rstrip("?") for tag in inside | found if tag.endswith("?")}
    if qualified == "torch.square" or name == "square" or (name == "pow" and literal_int(argument(call, None, 0)) == 2):
        found.add("square")
    callee = _local_callee(ctx, call)
    if callee is not None and depth < MAX_INGREDIENT_DEPTH // 2:
        bound = _bind(callee, call) if not env else None  # arguments bound one call deep
        for returned in _returned_values(ctx, callee):
            found |= _made_of(ctx, returned, depth + 1, bound)
    return found


def _local_callee(ctx: FileContext, call: cst.Call) -> cst.FunctionDef | None:
    """The function of this file a call runs: `helper(...)`, `self.method(...)`, `self.gate(...)` (the
    forward of the class `self.gate` is built from), `Cls.method(...)`."""
    func = call.func
    functions = _functions_by_name(ctx)
    if is_a(func, cst.Name):
        found = functions.get(("", func.value))
        if found is not None:
            return found
        return functions.get((func.value, "forward"))  # a module of this file called directly: its forward
    attr = self_attribute(func)
    cls = ctx.class_of(call)
    if attr is not None and cls is not None:
        method = ctx.class_facts(cls).methods.get(attr)
        if method is not None:
            return method
        built = ctx.class_facts(cls).constructed_type(attr)
        return functions.get((built, "forward")) if built else None
    if is_a(func, cst.Attribute) and is_a(func.value, cst.Name):
        return functions.get((func.value.value, func.attr.value))
    return None


def _functions_by_name(ctx: FileContext) -> dict[tuple[str, str], cst.FunctionDef]:
    """("", name) for module-level functions, (class, method) for methods of top-level classes."""

    def compute():
        table: dict[tuple[str, str], cst.FunctionDef] = {}
        for statement in ctx.module.body:
            if is_a(statement, cst.FunctionDef):
                table[("", statement.name.value)] = statement
            elif is_a(statement, cst.ClassDef):
                for name, method in ctx.class_facts(statement).methods.items():
                    table[(statement.name.value, name)] = method
        return table

    return ctx.memo("moe.functions_by_name", compute)


def _returned_values(ctx: FileContext, function: cst.FunctionDef) -> list[cst.BaseExpression]:
    return [
        node.value
        for node in ctx.index.descendants(function, cst.Return, prune=(cst.FunctionDef, cst.ClassDef, cst.Lambda))
        if node.value is not None
    ]


def returned_balancing(ctx: FileContext, function: cst.FunctionDef) -> set[int | None]:
    """Where a function returns a balancing loss: None for the whole value, an index for an item of a
    returned tuple."""

    def compute() -> set[int | None]:
        places: set[int | None] = set()
        for value in _returned_values(ctx, function):
            if is_a(value, cst.Tuple):
                for index, element in enumerate(value.elements):
                    if not is_a(element, cst.StarredElement) and is_balancing_value(ctx, element.value):
                        places.add(index)
            elif is_balancing_value(ctx, value):
                places.add(None)
        return places

    key = ("moe.returned_balancing", id(function))
    if key not in ctx.shared:
        ctx.shared[key] = set()  # while it is computed, a recursive call sees no loss
        ctx.shared[key] = compute()
    return ctx.shared[key]


def returns_balancing_loss(ctx: FileContext, call: cst.Call) -> bool:
    """A call whose value is (or holds) a balancing loss: a function of this file that returns one, or an
    unknown function named as a loss function (`load_balancing_loss_func`, `router_z_loss`); a call named
    for an effect (`reset_aux_loss()`, `set_aux_loss_group(g)`, `register_..._hook`) returns nothing."""
    callee = _local_callee(ctx, call)
    if callee is not None:
        return bool(returned_balancing(ctx, callee))
    text = dotted(call.func)
    if text is None:
        return False
    last = text.rsplit(".", 1)[-1]
    if (ctx.callee(call) or "").startswith("torch.") or TASK_LOSSES.search(last) or returns_nothing(last):
        return False
    return "loss" in last.lower() and BALANCING_LOCAL.search(last) is not None


def _calls_balancing_loss(ctx: FileContext, value: cst.BaseExpression) -> bool:
    """`load_balancing_loss_func(...)`, `self.aux_loss_fn(x) * coef`: the value is such a call, or scales one."""
    while is_a(value, cst.BinaryOperation):
        if is_a(value.left, cst.Call) and returns_balancing_loss(ctx, value.left):
            return True
        value = value.right
    if is_a(value, cst.Call):
        candidate = value
        while method_name(candidate) in WHOLE_VALUE_METHODS and is_a(inner := receiver(candidate), cst.Call):
            candidate = inner  # load_balancing_loss_func(...).to(device)
        callee = _local_callee(ctx, candidate)
        if callee is not None:
            return None in returned_balancing(ctx, callee)
        return returns_balancing_loss(ctx, candidate)
    return False


def _unpacks_balancing_loss(ctx: FileContext, definition: Definition) -> bool:
    """`idx, w, aux_loss = self.gate(x)` where the gate's forward returns its loss third."""
    node = definition.node
    if not is_a(node, cst.Assign) or not is_a(node.value, cst.Call):
        return False
    callee = _local_callee(ctx, node.value)
    if callee is None:
        return False
    places = returned_balancing(ctx, callee)
    for target in node.targets:
        if is_a(target.target, (cst.Tuple, cst.List)):
            for index, element in enumerate(target.target.elements):
                if is_a(element.value, cst.Name) and element.value.value == definition.name:
                    return index in places
    return False


def _accumulates_losses(ctx: FileContext, definition: Definition) -> bool:
    """`balance_loss = balance_loss + layer_loss`, `aux = sum(b.moe.aux_loss for b in blocks)`: a local named
    as a balancing loss that adds up terms named as losses (computed where this function cannot see);
    a counter (`+ 1`) or a padding size adds numbers, not losses."""
    if not BALANCING_LOCAL.search(definition.name) or _calls_task_loss(ctx, definition.value):
        return False
    value = definition.value
    terms: list[cst.BaseExpression] = []
    if is_a(value, cst.BinaryOperation) and is_a(value.operator, cst.Add):
        terms = [value.left, value.right]
    elif definition.kind == "augassign" and is_a(definition.operator, cst.AddAssign) and value is not None:
        terms = [value]
    elif is_a(value, cst.Call) and dotted(value.func) == "sum" and value.args:
        generator = value.args[0].value
        terms = [generator.elt] if is_a(generator, (cst.GeneratorExp, cst.ListComp)) else [generator]
    named = [term for term in terms if _names_a_loss(term) and term is not None]
    return bool(named) and all(_names_a_loss(t) or (is_a(t, cst.Name) and t.value == definition.name) for t in terms)


def _names_a_loss(term: cst.BaseExpression) -> bool:
    text = dotted(term) if term is not None else None
    if text is None:
        return False
    last = text.rsplit(".", 1)[-1]
    return "loss" in last.lower() or BALANCING_LOCAL.search(last) is not None


def _calls_task_loss(ctx: FileContext, value: cst.BaseExpression | None) -> bool:
    if value is None:
        return False
    for call in (value, *ctx.index.descendants(value, cst.Call)):
        if is_a(call, cst.Call):
            text = dotted(call.func) or ""
            if TASK_LOSSES.search(text.rsplit(".", 1)[-1]):
                return True
    return False


def _computed(value: cst.BaseExpression | None) -> TypeIs[cst.Call | cst.BinaryOperation | cst.UnaryOperation]:
    return is_a(value, (cst.Call, cst.BinaryOperation, cst.UnaryOperation))


def computes_balancing_loss(ctx: FileContext, scope: cst.CSTNode) -> bool:
    """Whether a layer computes a balancing loss anywhere: a balancing-loss call, a balancing-named local,
    or a balancing-named attribute (`self.l_aux = ...`)."""
    for call in ctx.index.descendants(scope, cst.Call):
        if is_balancing_loss_call(ctx, call) or is_balancing_apply(ctx, call):
            return True
    for node in ctx.index.descendants(scope, (cst.Assign, cst.AugAssign, cst.AnnAssign)):
        if not _computed(node.value):
            continue
        targets = [t.target for t in node.targets] if is_a(node, cst.Assign) else [node.target]
        for target in targets:
            text = dotted(target)
            if text is not None and BALANCING_NAME.search(text.rsplit(".", 1)[-1]):
                return True
    return False


def is_dead(ctx: FileContext, facts: FunctionFacts, definition: Definition, seen: set | None = None) -> bool:
    """Whether the value of `definition` is never read, or only read to compute other dead locals."""
    seen = set() if seen is None else seen
    if definition in seen:
        return True
    seen.add(definition)
    for use in facts.later_uses(definition.name, definition.order - 1):
        if definition not in facts.reaching(definition.name, ctx.order(use)):
            continue
        statement = _assignment_around(ctx, use)
        if statement is None:
            return False  # returned, passed on, stored, compared ...
        for target_definition in _definitions_by(facts, statement):
            if not is_dead(ctx, facts, target_definition, seen):
                return False
        if not _definitions_by(facts, statement):
            return False  # assigned to an attribute or a subscript: stored
    return True


def _assignment_around(ctx: FileContext, use: cst.CSTNode) -> cst.CSTNode | None:
    """The Assign / AugAssign whose value (or augmented target) holds `use`, if that is where it goes."""
    for ancestor in ctx.index.ancestors(use):
        if is_a(ancestor, (cst.Assign, cst.AugAssign, cst.AnnAssign)):
            return ancestor
        if is_a(ancestor, (cst.BaseSmallStatement, cst.BaseCompoundStatement, cst.Lambda, cst.FunctionDef)):
            return None
        if is_a(ancestor, cst.Call) and not _pure_arithmetic(ancestor):
            return None
    return None


def _pure_arithmetic(call: cst.Call) -> bool:
    """Calls that only compute a new value from their arguments (no side effect worth keeping)."""
    return method_name(call) in ("mean", "sum", "float", "to", "detach", "item", "clone", "view", "reshape")


def _definitions_by(facts: FunctionFacts, statement: cst.CSTNode) -> list[Definition]:
    return [d for defs in facts.definitions.values() for d in defs if d.node is statement]


# -- the balancing question ----------------------------------------------------------------
def balancing(ctx: FileContext, site: RoutingSite) -> str | None:
    """What balances the load of a routing site's layer, or None when nothing does (or the scores come
    from a caller this file cannot see)."""
    trace = site.trace
    if trace.biased:
        return "a stored per-expert bias shifts the selection (aux-loss-free balancing)"
    if trace.thresholded:
        return "a per-expert quantile threshold shifts the selection"
    if site.expert_choice:
        return "expert-choice routing"
    if computes_balancing_loss(ctx, layer_of(site)):
        return "a balancing loss"
    if router_outputs_recorded(ctx):
        return "router logits recorded for the caller"
    facts = ctx.function_facts(site.function)
    if escapes(ctx, facts, trace.definitions) and not _returned_only_to_be_dropped(ctx, facts, trace.definitions):
        return "router scores leave the layer"
    if trace.parameters and not trace.projections:
        return _balanced_by_callers(ctx, site)
    return None


def _returned_only_to_be_dropped(ctx: FileContext, facts: FunctionFacts, definitions: set[Definition]) -> bool:
    """The scores leave the function only as elements of the tuples it returns, and every caller in this
    file unpacks those tuples and never reads those elements: `weights, idx, router_logits =
    self.router(x)` with `router_logits` dropped balances nothing."""
    positions = set()
    for definition in definitions:
        for use in facts.later_uses(definition.name, definition.order - 1):
            if definition not in facts.reaching(definition.name, ctx.order(use)) or not _leaves_function(ctx, use):
                continue
            element = ctx.index.parents.get(use)
            returned = ctx.index.parents.get(element) if is_a(element, cst.Element) else None
            statement = ctx.index.parents.get(returned) if is_a(returned, cst.Tuple) else None
            if not is_a(statement, cst.Return) or not is_a(element, cst.Element) or not is_a(returned, cst.Tuple):
                return False  # returned whole, stored or collected: it may reach a loss
            positions.add(next(i for i, item in enumerate(returned.elements) if item is element))
    return bool(positions) and all(result_element_read(ctx, facts.function, i) is False for i in positions)


def _balanced_by_callers(ctx: FileContext, site: RoutingSite) -> str | None:
    """Scores handed in as a parameter: the methods of the class that call this one decide. With no
    caller in sight, the layer is not this file's to judge."""
    if site.cls is None:
        return "scores come from the caller"
    traces = caller_traces(ctx, site)
    if traces is None:
        return "scores come from the caller"
    for method, trace in traces:
        if trace.biased or trace.parameters or escapes(ctx, ctx.function_facts(method), trace.definitions):
            return "router scores leave the layer"
    return None


def caller_traces(ctx: FileContext, site: RoutingSite) -> list[tuple[cst.FunctionDef, ScoreTrace]] | None:
    """For scores handed in as a parameter: the trace, in each calling function of this file, of what every
    call passes for it. None when the function has no caller here, or a call leaves a parameter unbound.

    Ex) `logits = self.wg(input); return top2gating(logits)` for `def top2gating(logits)`
    """
    sites = call_sites(ctx, site.function, forwarded=False)
    if not sites:
        return None
    traces = []
    for call, positional in sites:
        caller = ctx.function_of(call)
        bound = bind_arguments(call, positional)
        if caller is None or any(param not in bound for param in site.trace.parameters):
            return None
        tracer = ScoreTracer(ctx, caller)
        traces += [(caller, tracer.trace(bound[param])) for param in sorted(site.trace.parameters)]
    return traces
