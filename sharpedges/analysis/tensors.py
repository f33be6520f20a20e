"""Which expressions evidently hold a tensor, and which tensor methods return a new tensor instead of
changing their receiver.

"Evidently" is deliberately narrow: a local name whose every reaching definition is a torch function
(not an `nn` module constructor), a tensor method, a matrix product or an index into such a value, or
a parameter annotated `Tensor`. A module, a list, a set or anything unknown is not a tensor here, so
`model.to(device)` (in place for modules) and `seen.add(x)` never look like lost tensor results.
"""

from __future__ import annotations

import libcst as cst

from sharpedges.analysis.calls import method_name, receiver
from sharpedges.analysis.context import FileContext
from sharpedges.analysis.dataflow import FunctionFacts
from sharpedges.analysis.walk import is_a

MAX_DEPTH = 8
# Methods only tensors have, each returning a new tensor: called on anything, the result is the point.
TENSOR_ONLY_METHODS = frozenset({
    "masked_fill", "masked_scatter", "masked_select", "index_fill", "index_add", "index_copy", "index_put",
    "scatter", "scatter_add", "scatter_reduce", "clamp", "clamp_min", "clamp_max", "type_as", "softmax",
    "log_softmax", "repeat_interleave", "unsqueeze", "new_zeros", "new_ones", "new_full", "new_empty",
    "nan_to_num", "addcmul", "addcdiv", "lerp", "tril", "triu", "bfloat16", "contiguous", "expand_as",
})
# Out-of-place methods that other types also have with other meanings (`Module.to` and `Module.float`
# work in place, `set.add` mutates): flagged only on an evident tensor.
SHARED_OUT_OF_PLACE_METHODS = frozenset({
    "to", "float", "half", "double", "int", "long", "bool", "cuda", "cpu", "type", "add", "sub", "mul", "div",
    "pow", "exp", "log", "sqrt", "rsqrt", "abs", "neg", "sigmoid", "tanh", "relu", "clip", "where", "detach",
    "clone", "view", "reshape", "transpose", "permute", "squeeze", "flatten", "expand", "repeat", "t",
    "sum", "mean", "max", "min", "round", "sign", "roll", "flip",
})
# Pure torch functions whose only effect is the tensor they return.
PURE_FUNCTIONS = frozenset({
    "torch.clamp", "torch.clip", "torch.where", "torch.masked_fill", "torch.softmax", "torch.log_softmax",
    "torch.cat", "torch.stack", "torch.transpose", "torch.reshape", "torch.nan_to_num", "torch.tril",
    "torch.triu", "torch.nn.functional.pad", "torch.nn.functional.normalize", "torch.add", "torch.mul",
    "torch.div", "torch.sub",
})
TENSOR_ANNOTATIONS = frozenset({"torch.Tensor", "Tensor", "torch.FloatTensor", "torch.LongTensor",
                                "torch.BoolTensor"})


class TensorFacts:
    """Answers "is this expression a tensor?" for one function, following local definitions."""

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
        if is_a(expr, cst.BinaryOperation):
            # arithmetic with a tensor on either side gives a tensor
            return is_a(expr.operator, cst.MatrixMultiply) or self.is_tensor(expr.left, at, depth + 1) \
                or self.is_tensor(expr.right, at, depth + 1)
        if is_a(expr, cst.Call):
            qualified = self.ctx.callee(expr) or ""
            if qualified.startswith("torch.") and not qualified.startswith("torch.nn.") \
                    or qualified.startswith("torch.nn.functional."):
                return not _is_namespace_method(qualified)
            name = method_name(expr)
            if name in TENSOR_ONLY_METHODS:
                return True
            if name in SHARED_OUT_OF_PLACE_METHODS:
                return self.is_tensor(receiver(expr), at, depth + 1)
        return False

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


def _is_namespace_method(qualified: str) -> bool:
    """`torch.cuda.synchronize`, `torch.distributed.all_reduce`, `torch.manual_seed`: not tensor values."""
    return qualified.split(".")[1] in ("cuda", "distributed", "backends", "manual_seed", "set_default_dtype",
                                       "save", "load", "compile", "jit", "library", "utils", "autograd",
                                       "testing", "_dynamo", "compiler", "set_grad_enabled", "no_grad")


def _annotated_tensor(ctx: FileContext, param: cst.CSTNode) -> bool:
    annotation = getattr(param, "annotation", None)
    if annotation is None:
        return False
    return ctx.qualify(annotation.annotation) in TENSOR_ANNOTATIONS
