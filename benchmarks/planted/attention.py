"""Operators on eager attention: drop the 1/sqrt(d) scale (SHP101), normalise over another axis
(SHP104), fill masked scores with a constant beyond fp16 (SHP103)."""

from __future__ import annotations

import re

import libcst as cst

from .sites import Plant, Sites, call_name, keyword, last_name, positional

PRODUCT_CALLS = {"matmul", "bmm", "einsum", "baddbmm"}
SCALE_TEXT = re.compile(r"scal|sqrt|\*\*\s*-?\s*0?\.5\b|\*\*\s*\(\s*-?\s*0?\.5\s*\)")
NOT_A_SCALE = re.compile(r"logit_scale|temperature|tau\b")


def is_product(node: cst.CSTNode) -> bool:
    """A QK^T-style product: `a @ b`, `torch.matmul`, `bmm`, `einsum`, `baddbmm`."""
    if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.MatrixMultiply):
        return True
    return isinstance(node, cst.Call) and last_name(node) in PRODUCT_CALLS


def contains_product(node: cst.CSTNode) -> bool:
    found = False

    class Finder(cst.CSTVisitor):
        def on_visit(self, child: cst.CSTNode) -> bool:
            nonlocal found
            found = found or is_product(child)
            return not found

    node.visit(Finder())
    return found


def is_softmax(node: cst.CSTNode) -> bool:
    return isinstance(node, cst.Call) and last_name(node) == "softmax"


def _names_in(node: cst.CSTNode) -> set[str]:
    names: set[str] = set()

    class Collector(cst.CSTVisitor):
        def visit_Name(self, child: cst.Name) -> None:
            names.add(child.value)

    node.visit(Collector())
    return names


class AttentionFunction:
    """A function that computes a product and a softmax: the names that hold the product or feed it."""

    def __init__(self, sites: Sites, function: cst.FunctionDef) -> None:
        self.function = function
        members = sites.members[function]
        products = [n for n in members if is_product(n)]
        self.has_softmax = any(is_softmax(n) for n in members)
        self.operands: set[str] = set().union(*(_names_in(p) for p in products)) if products else set()
        self.scores: set[str] = set()  # names bound to an expression with a product in it
        for assign in members:
            if isinstance(assign, cst.Assign) and contains_product(assign.value):
                for target in assign.targets:
                    if isinstance(target.target, cst.Name):
                        self.scores.add(target.target.value)

    @property
    def is_attention(self) -> bool:
        return self.has_softmax and bool(self.operands)


def attention_of(sites: Sites, node: cst.CSTNode, memo: dict) -> AttentionFunction | None:
    function = sites.function(node)
    if function is None:
        return None
    if function not in memo:
        memo[function] = AttentionFunction(sites, function)
    found = memo[function]
    return found if found.is_attention else None


def is_scale(sites: Sites, node: cst.CSTNode) -> bool:
    text = sites.text(node)
    return bool(SCALE_TEXT.search(text)) and not NOT_A_SCALE.search(text)


def drop_scale(sites: Sites) -> list[Plant]:
    """SHP101: the logits (or the query or key that make them) lose their 1/sqrt(d) factor."""
    memo: dict = {}
    plants = []
    for node in sites.nodes(cst.BinaryOperation):
        if not isinstance(node.operator, cst.Multiply | cst.Divide):
            continue
        attention = attention_of(sites, node, memo)
        if attention is None:
            continue
        pairs = [(node.left, node.right)]
        if isinstance(node.operator, cst.Multiply):
            pairs.append((node.right, node.left))
        for kept, scale in pairs:
            if not is_scale(sites, scale) or contains_product(scale):
                continue
            if contains_product(kept) or _is_logit_name(kept, attention):
                plants.append(sites.plant("SHP101", node, sites.text(kept)))
                break
    for node in sites.nodes(cst.AugAssign):
        if isinstance(node.operator, cst.MultiplyAssign | cst.DivideAssign) and is_scale(sites, node.value):
            attention = attention_of(sites, node, memo)
            if attention is not None and _is_logit_name(node.target, attention):
                plants.append(sites.plant("SHP101", node, "pass"))
    return [plant for plant in plants if plant is not None]


def _is_logit_name(node: cst.CSTNode, attention: AttentionFunction) -> bool:
    """A name that is an operand of the product (q, k) or holds the product (scores)."""
    return isinstance(node, cst.Name) and (node.value in attention.operands or node.value in attention.scores)


def softmax_other_axis(sites: Sites) -> list[Plant]:
    """SHP104: softmax over attention scores on dim -2 instead of -1 (the keys)."""
    memo: dict = {}
    plants = []
    for node in sites.nodes(cst.Call):
        if not is_softmax(node):
            continue
        attention = attention_of(sites, node, memo)
        if attention is None:
            continue
        dim = keyword(node, "dim")
        method = isinstance(node.func, cst.Attribute) and call_name(node).split(".")[0] not in ("F", "torch", "nn")
        if dim is None:
            dim = positional(node, 0 if method else 1)
        scores = node.func.value if method and isinstance(node.func, cst.Attribute) else positional(node, 0)
        if dim is None or scores is None or sites.text(dim.value) != "-1":
            continue
        scores_node = scores.value if isinstance(scores, cst.Arg) else scores
        if contains_product(scores_node) or _feeds_on_scores(scores_node, attention):
            plants.append(sites.plant("SHP104", dim.value, "-2"))
    return [plant for plant in plants if plant is not None]


def _feeds_on_scores(node: cst.CSTNode, attention: AttentionFunction) -> bool:
    return bool(_names_in(node) & attention.scores)


MASK_FILLS = {"masked_fill", "masked_fill_"}
FINFO_MIN = re.compile(r"^-?\s*(torch\.)?finfo\(.*\)\.(min|max)$", re.S)


def fill_beyond_half(sites: Sites) -> list[Plant]:
    """SHP103: a `torch.finfo(dtype).min` fill of attention scores becomes `-1e9`."""
    memo: dict = {}
    plants = []
    for node in sites.nodes(cst.Call):
        name = last_name(node)
        if name in MASK_FILLS:
            value = keyword(node, "value") or positional(node, 1)
        elif call_name(node) in ("torch.where", "where"):
            value = positional(node, 2)
        else:
            continue
        attention = attention_of(sites, node, memo)
        if value is None or attention is None:
            continue
        filled = node.func.value if isinstance(node.func, cst.Attribute) and name in MASK_FILLS else positional(node, 1)
        if filled is None:
            continue
        filled_node = filled.value if isinstance(filled, cst.Arg) else filled
        # the rule's own condition: a fill of a tensor cast to float32 first is no fp16 overflow
        if FULL_PRECISION.search(sites.text(filled_node)) or not _reaches_softmax(sites, filled_node, attention):
            continue
        text = sites.text(value.value)
        if FINFO_MIN.match(text) and (text.startswith("-") == text.endswith("max")):
            plants.append(sites.plant("SHP103", value.value, "-1e9"))
    return [plant for plant in plants if plant is not None]


FULL_PRECISION = re.compile(r"\.float\(\)|float32|\.double\(\)")


def _reaches_softmax(sites: Sites, filled: cst.CSTNode, attention: AttentionFunction) -> bool:
    """The filled tensor holds the scores, feeds a softmax, or is added to what does (an additive mask)."""
    names = _names_in(filled)
    members = sites.members[attention.function]
    fed = attention.scores | set().union(*(_names_in(n) for n in members if is_softmax(n)))
    if names & fed:
        return True
    for node in members:  # Ex) mask.masked_fill_(...); scores = scores + mask
        if isinstance(node, cst.Assign | cst.AugAssign) and names & _names_in(node.value):
            targets = [t.target for t in node.targets] if isinstance(node, cst.Assign) else [node.target]
            if any(isinstance(target, cst.Name) and target.value in fed for target in targets):
                return True
    return False
