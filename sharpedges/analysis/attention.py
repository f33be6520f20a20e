"""Where attention logits come from: softmax calls, query-key products, and scaling on the way.

The question every attention rule asks is "which softmax consumes a product of queries and
transposed keys, and what happened to that product (or to q and k) on the way?". Local names are
followed through their reaching definitions inside the function, so

    scores = torch.matmul(q, k.transpose(-2, -1))
    scores = scores.masked_fill(mask == 0, float("-inf"))
    probs = scores.softmax(dim=-1)

is seen as one path from a QK^T product to a softmax, with no scaling on it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import libcst as cst

from sharpedges.analysis.calls import argument, literal_string, method_name, receiver
from sharpedges.analysis.classes import self_attribute
from sharpedges.analysis.context import FileContext
from sharpedges.analysis.names import dotted

MAX_DEPTH = 12
SOFTMAX_FUNCTIONS = {"torch.softmax"}
SOFTMAX_MODULES = {"torch.nn.Softmax"}
MATMUL_FUNCTIONS = {"torch.matmul", "torch.bmm", "torch.Tensor.matmul", "torch.mm"}
# Calls and methods whose result is "the same scores, reshaped or retyped or masked".
PASS_THROUGH_METHODS = {"masked_fill", "masked_fill_", "float", "to", "type", "type_as", "half", "bfloat16",
                        "double", "contiguous", "view", "reshape", "squeeze", "unsqueeze", "clamp", "clamp_",
                        "clip", "nan_to_num", "view_as", "reshape_as", "flatten", "unflatten", "add", "add_",
                        "sub", "sub_", "masked_scatter", "clone", "detach", "permute", "transpose"}
PASS_THROUGH_FUNCTIONS = {"torch.masked_fill", "torch.clamp", "torch.clip", "torch.nan_to_num", "torch.add",
                          "torch.sub", "torch.nn.functional.pad"}
SCALING_METHODS = {"mul", "mul_", "div", "div_", "multiply", "divide", "true_divide"}
SCALING_FUNCTIONS = {"torch.mul", "torch.div", "torch.multiply", "torch.divide", "torch.true_divide"}
TRANSPOSE_METHODS = {"transpose", "permute", "t", "swapaxes", "swapdims", "movedim"}
WEIGHT_NAME = re.compile(r"(weight|^w$|^W\w*$|emb|embed|wte|lm_head|classifier|proj_matrix)", re.IGNORECASE)


@dataclass(frozen=True)
class LogitSource:
    """A QK^T product reaching a softmax, and whether anything scaled it on the way."""

    product: cst.CSTNode = field(repr=False)
    scaled: bool


@dataclass(frozen=True)
class SoftmaxCall:
    call: cst.Call
    input: cst.BaseExpression
    dim: cst.BaseExpression | None
    function: cst.FunctionDef | None


def softmax_calls(ctx: FileContext) -> list[SoftmaxCall]:
    """Every softmax in the file: `torch.softmax`, `F.softmax`, `x.softmax(...)`, and calls of
    `nn.Softmax` modules, inline or assigned to `self.x` in the class."""
    def compute() -> list[SoftmaxCall]:
        found = []
        for call in ctx.calls():
            qualified = ctx.callee(call)
            if qualified in SOFTMAX_FUNCTIONS:
                value = argument(call, "input", 0)
                dim = argument(call, "dim", 1)
            elif _is_softmax_module(ctx, call):
                value = argument(call, "input", 0)
                dim = _softmax_module_dim(ctx, call)
            elif method_name(call) == "softmax" and not _is_module_namespace(ctx, receiver(call)) \
                    and self_attribute(call.func) is None:
                value = receiver(call)
                dim = argument(call, "dim", 0)
            else:
                continue
            if value is not None:
                found.append(SoftmaxCall(call, value, dim, ctx.function_of(call)))
        return found
    return ctx.memo("softmax_calls", compute)


def _is_module_namespace(ctx: FileContext, expr: cst.BaseExpression | None) -> bool:
    qualified = ctx.qualify(expr) if expr is not None else None
    return qualified is not None and qualified.split(".")[0] in ("torch", "numpy", "scipy", "jax", "tf", "tensorflow")


def _softmax_module_constructor(ctx: FileContext, call: cst.Call) -> cst.Call | None:
    func = call.func
    if isinstance(func, cst.Call) and ctx.callee(func) in SOFTMAX_MODULES:
        return func  # nn.Softmax(dim=-1)(x)
    attr = self_attribute(func)
    cls = ctx.class_of(call)
    if attr is None or cls is None:
        return None
    for assignment in ctx.class_facts(cls).assignments.get(attr, ()):
        if isinstance(assignment.value, cst.Call) and ctx.callee(assignment.value) in SOFTMAX_MODULES:
            return assignment.value
    return None


def _is_softmax_module(ctx: FileContext, call: cst.Call) -> bool:
    return _softmax_module_constructor(ctx, call) is not None


def _softmax_module_dim(ctx: FileContext, call: cst.Call) -> cst.BaseExpression | None:
    constructor = _softmax_module_constructor(ctx, call)
    return argument(constructor, "dim", 0) if constructor is not None else None


class LogitTracer:
    """Follows an expression back to the QK^T products it is made of, within one function."""

    def __init__(self, ctx: FileContext, function: cst.FunctionDef | None) -> None:
        self.ctx = ctx
        self.function = function
        self.facts = ctx.function_facts(function) if function is not None else None
        self.cls = ctx.class_of(function) if function is not None else None

    # -- products -------------------------------------------------------------------------
    def sources(self, expr: cst.BaseExpression, at: int, depth: int = 0) -> list[LogitSource]:
        if depth > MAX_DEPTH:
            return []
        if isinstance(expr, cst.Name):
            return self._through_definitions(expr.value, at, depth)
        if isinstance(expr, cst.BinaryOperation):
            operator = expr.operator
            if isinstance(operator, cst.MatrixMultiply):
                product = self.qk_product(expr, expr.left, expr.right, at)
                return [product] if product else []
            if isinstance(operator, (cst.Multiply, cst.Divide)):
                sides = [expr.left] if isinstance(operator, cst.Divide) else [expr.left, expr.right]
                return [LogitSource(s.product, True) for side in sides for s in self.sources(side, at, depth + 1)]
            if isinstance(operator, (cst.Add, cst.Subtract)):
                return self.sources(expr.left, at, depth + 1) + self.sources(expr.right, at, depth + 1)
            return []
        if isinstance(expr, cst.Call):
            return self._call_sources(expr, at, depth)
        if isinstance(expr, cst.Subscript):
            return self.sources(expr.value, at, depth + 1)
        if isinstance(expr, cst.IfExp):
            return self.sources(expr.body, at, depth + 1) + self.sources(expr.orelse, at, depth + 1)
        return []

    def _through_definitions(self, name: str, at: int, depth: int) -> list[LogitSource]:
        if self.facts is None:
            return []
        found: list[LogitSource] = []
        for definition in self.facts.reaching(name, at):
            if definition.value is None:
                continue
            if definition.kind == "augassign":
                previous = self._through_definitions(name, definition.order, depth + 1)
                if isinstance(definition.operator, (cst.MultiplyAssign, cst.DivideAssign)):
                    found += [LogitSource(s.product, True) for s in previous]
                else:
                    found += previous + self.sources(definition.value, definition.order, depth + 1)
            elif definition.kind == "inplace":
                previous = self._through_definitions(name, definition.order, depth + 1)
                scaled = definition.method in SCALING_METHODS
                found += [LogitSource(s.product, s.scaled or scaled) for s in previous]
            elif definition.kind in ("assign",):
                found += self.sources(definition.value, definition.order, depth + 1)
        return found

    def _call_sources(self, call: cst.Call, at: int, depth: int) -> list[LogitSource]:
        ctx = self.ctx
        qualified = ctx.callee(call)
        method = method_name(call)
        if qualified in MATMUL_FUNCTIONS or (method in ("matmul", "bmm") and not _is_module_namespace(ctx, receiver(call))):
            left, right = (argument(call, "input", 0), argument(call, "other", 1)) if qualified in MATMUL_FUNCTIONS \
                else (receiver(call), argument(call, None, 0))
            if qualified == "torch.bmm":
                left, right = argument(call, "input", 0), argument(call, "mat2", 1)
            product = self.qk_product(call, left, right, at) if left is not None and right is not None else None
            return [product] if product else []
        if qualified == "torch.baddbmm":
            left, right = argument(call, "batch1", 1), argument(call, "batch2", 2)
            product = self.qk_product(call, left, right, at) if left is not None and right is not None else None
            if product is None:
                return []
            alpha = argument(call, "alpha")
            return [LogitSource(product.product, product.scaled or alpha is not None)]
        if qualified == "torch.einsum":
            product = self.einsum_product(call, at)
            return [product] if product else []
        if qualified in SCALING_FUNCTIONS or (method in SCALING_METHODS and not _is_module_namespace(ctx, receiver(call))):
            inner = argument(call, "input", 0) if qualified in SCALING_FUNCTIONS else receiver(call)
            return [LogitSource(s.product, True) for s in self.sources(inner, at, depth + 1)] if inner is not None else []
        if qualified == "torch.where":
            found = []
            for position, keyword in ((1, "input"), (2, "other")):
                branch = argument(call, keyword, position)
                if branch is not None:
                    found += self.sources(branch, at, depth + 1)
            return found
        if qualified in PASS_THROUGH_FUNCTIONS:
            inner = argument(call, "input", 0)
            return self.sources(inner, at, depth + 1) if inner is not None else []
        if method in PASS_THROUGH_METHODS and not _is_module_namespace(ctx, receiver(call)):
            return self.sources(receiver(call), at, depth + 1)
        return []

    # -- what counts as a query-key product -------------------------------------------------
    def qk_product(self, node, left, right, at: int) -> LogitSource | None:
        if self.is_weight(left) or self.is_weight(right):
            return None
        if not self.is_transposed(right, at, 0):
            return None
        return LogitSource(node, self.is_scaled(left, at, 0) or self.is_scaled(right, at, 0))

    def einsum_product(self, call: cst.Call, at: int) -> LogitSource | None:
        spec = literal_string(argument(call, "equation", 0))
        operands = [arg.value for arg in call.args[1:] if arg.keyword is None and not arg.star]
        if spec is None or len(operands) != 2:
            return None
        terms = parse_einsum(spec)
        if terms is None or len(terms[0]) != 2:
            return None
        (a, b), output = terms
        if not a or not b or not output:
            return None
        contracted = (set(a) & set(b)) - set(output)
        # QK^T contracts the last (feature) index of both operands and keeps one free index of each.
        if a[-1] != b[-1] or a[-1] not in contracted:
            return None
        if not (set(a) - set(b)) & set(output) or not (set(b) - set(a)) & set(output):
            return None
        if any(self.is_weight(op) for op in operands):
            return None
        scaled = any(self.is_scaled(op, at, 0) for op in operands)
        return LogitSource(call, scaled)

    def is_weight(self, expr: cst.BaseExpression) -> bool:
        """Parameters and embedding tables: `x @ self.W`, `h @ emb.weight.t()` are not attention."""
        base = expr
        while True:
            if isinstance(base, cst.Call) and method_name(base) in TRANSPOSE_METHODS | {"to", "float", "type_as"}:
                base = receiver(base)
            elif isinstance(base, cst.Attribute) and base.attr.value in ("T", "mT"):
                base = base.value
            else:
                break
        text = dotted(base)
        if text is None:
            return False
        last = text.split(".")[-1]
        if WEIGHT_NAME.search(last):
            return True
        attr = self_attribute(base) if isinstance(base, cst.Attribute) else None
        if attr is not None and self.cls is not None and self.ctx.class_facts(self.cls).is_parameter(attr):
            return True
        return False

    def is_transposed(self, expr: cst.BaseExpression, at: int, depth: int) -> bool:
        if depth > MAX_DEPTH:
            return False
        if isinstance(expr, cst.Attribute) and expr.attr.value in ("T", "mT", "mH"):
            return True
        if isinstance(expr, cst.Call):
            method = method_name(expr)
            if method in ("transpose", "t", "swapaxes", "swapdims"):
                return True
            if method == "permute":
                dims = [a.value for a in expr.args]
                ints = [int(d.value) for d in dims if isinstance(d, cst.Integer)]
                return len(ints) == len(dims) and len(ints) >= 2 and ints[-1] != len(ints) - 1
            if self.ctx.callee(expr) in ("torch.transpose", "torch.swapaxes"):
                return True
            if method in PASS_THROUGH_METHODS | SCALING_METHODS:
                return self.is_transposed(receiver(expr), at, depth + 1)
        if isinstance(expr, cst.BinaryOperation) and isinstance(expr.operator, (cst.Multiply, cst.Divide)):
            return self.is_transposed(expr.left, at, depth + 1) or self.is_transposed(expr.right, at, depth + 1)
        if isinstance(expr, cst.Name) and self.facts is not None:
            return any(d.value is not None and d.kind == "assign" and self.is_transposed(d.value, d.order, depth + 1)
                       for d in self.facts.reaching(expr.value, at))
        return False

    def is_scaled(self, expr: cst.BaseExpression, at: int, depth: int) -> bool:
        """Was this operand (q, k or k^T) multiplied or divided on its way here?"""
        if depth > MAX_DEPTH:
            return False
        if isinstance(expr, cst.BinaryOperation):
            if isinstance(expr.operator, (cst.Multiply, cst.Divide)):
                return True
            return False
        if isinstance(expr, cst.Call):
            method = method_name(expr)
            if method in SCALING_METHODS or self.ctx.callee(expr) in SCALING_FUNCTIONS:
                return True
            if method in PASS_THROUGH_METHODS | TRANSPOSE_METHODS:
                return self.is_scaled(receiver(expr), at, depth + 1)
            return False
        if isinstance(expr, cst.Name) and self.facts is not None:
            for definition in self.facts.reaching(expr.value, at):
                if definition.kind == "augassign" and isinstance(definition.operator, (cst.MultiplyAssign, cst.DivideAssign)):
                    return True
                if definition.kind == "inplace" and definition.method in SCALING_METHODS:
                    return True
                if definition.kind in ("augassign", "inplace"):
                    if self.is_scaled(expr, definition.order, depth + 1):
                        return True
                    continue
                if definition.kind == "assign" and definition.value is not None and \
                        self.is_scaled(definition.value, definition.order, depth + 1):
                    return True
        return False


def parse_einsum(spec: str) -> tuple[list[list[str]], list[str]] | None:
    """'bhid,bhjd->bhij' or einops-style 'b h i d, b h j d -> b h i j' into index lists."""
    if "->" not in spec:
        return None
    inputs, output = spec.split("->", 1)

    def indices(term: str) -> list[str]:
        term = term.strip().replace("...", " … " if " " in term.strip() else "…")
        return term.split() if " " in term else list(term)

    return [indices(term) for term in inputs.split(",")], indices(output)


def logit_sources(ctx: FileContext, softmax: SoftmaxCall) -> list[LogitSource]:
    tracer = LogitTracer(ctx, softmax.function)
    return tracer.sources(softmax.input, ctx.order(softmax.call))
