"""Operators on causal masks: drop the mask of a causal attention (SHP201), invert its polarity
(SHP202)."""

from __future__ import annotations

import re

import libcst as cst

from .attention import MASK_FILLS, attention_of
from .sites import Plant, Sites, call_name, keyword, last_name, positional

CAUSAL_KERNEL_FLAGS = ("is_causal", "causal")
TRIANGLE = re.compile(r"\b(tril|triu)\b")


def causal_buffers(sites: Sites) -> set[str]:
    """Attributes and names the file binds to a triangle: `register_buffer("bias", torch.tril(...))`,
    `self.mask = torch.triu(...)`, `causal = torch.ones(...).tril()`."""
    names: set[str] = set()
    for node in sites.nodes(cst.Call):
        if last_name(node) == "register_buffer" and len(node.args) >= 2:
            name = node.args[0].value
            if isinstance(name, cst.SimpleString) and TRIANGLE.search(sites.text(node.args[1].value)):
                names.add(str(name.evaluated_value))
    for node in sites.nodes(cst.Assign):
        if TRIANGLE.search(sites.text(node.value)):
            for target in node.targets:
                spelled = sites.text(target.target)
                names.add(spelled.removeprefix("self."))
    return names


def is_causal_mask(sites: Sites, node: cst.CSTNode, buffers: set[str]) -> bool:
    text = sites.text(node)
    if "causal" in text.lower() or TRIANGLE.search(text):
        return True
    words = set(re.findall(r"(?:self\.)?(\w+)", text))
    return bool(words & buffers)


def is_kernel_call(node: cst.Call) -> bool:
    """An attention kernel (`F.scaled_dot_product_attention`, `flash_attn_func`), not a module built or
    called with a causal flag: there the flag is all that says the model is causal, and flipping it
    leaves nothing a reader (or a rule) could tell the bug from."""
    name = last_name(node)
    return (
        ("attention" in name or "attn" in name) and not name[:1].isupper() and not call_name(node).startswith("self.")
    )


def drop_causal_mask(sites: Sites) -> list[Plant]:
    """SHP201: a causal kernel flag set to False, or the causal fill of the scores taken out."""
    plants = []
    memo: dict = {}
    buffers = causal_buffers(sites)
    for node in sites.nodes(cst.Call):
        for flag in CAUSAL_KERNEL_FLAGS if is_kernel_call(node) else ():
            arg = keyword(node, flag)
            if arg is not None and isinstance(arg.value, cst.Name) and arg.value.value == "True":
                plants.append(sites.plant("SHP201", arg.value, "False"))
        attention = attention_of(sites, node, memo)
        if last_name(node) in MASK_FILLS and isinstance(node.func, cst.Attribute) and attention is not None:
            mask = keyword(node, "mask") or positional(node, 0)
            scores = node.func.value
            if not (isinstance(scores, cst.Name) and scores.value in attention.scores | attention.operands):
                continue  # a fill that builds the mask, not one that applies it to the scores
            if mask is not None and is_causal_mask(sites, mask.value, buffers):
                plants.append(sites.plant("SHP201", node, sites.text(scores)))
    return [plant for plant in plants if plant is not None]


def invert_causal_mask(sites: Sites) -> list[Plant]:
    """SHP202: the causal mask a fill or a `torch.where` reads is negated (or its negation undone)."""
    plants = []
    memo: dict = {}
    buffers = causal_buffers(sites)
    for node in sites.nodes(cst.Call):
        if last_name(node) in MASK_FILLS:
            mask = keyword(node, "mask") or positional(node, 0)
        elif call_name(node) in ("torch.where", "where"):
            mask = positional(node, 0)
        else:
            continue
        if mask is None or attention_of(sites, node, memo) is None or not is_causal_mask(sites, mask.value, buffers):
            continue
        plants.append(sites.plant("SHP202", mask.value, inverted(sites, mask.value)))
    return [plant for plant in plants if plant is not None]


def inverted(sites: Sites, mask: cst.BaseExpression) -> str:
    if isinstance(mask, cst.UnaryOperation) and isinstance(mask.operator, cst.BitInvert | cst.Not):
        return sites.text(mask.expression)
    if isinstance(mask, cst.Comparison) and len(mask.comparisons) == 1:
        target = mask.comparisons[0]
        flipped = {cst.Equal: "!=", cst.NotEqual: "=="}.get(type(target.operator))
        if flipped is not None:
            return f"{sites.text(mask.left)} {flipped} {sites.text(target.comparator)}"
    if isinstance(mask, cst.Call) and last_name(mask) == "logical_not" and isinstance(mask.func, cst.Attribute):
        return sites.text(mask.func.value)
    return (
        f"~{sites.text(mask)}"
        if isinstance(mask, cst.Name | cst.Attribute | cst.Subscript)
        else f"~({sites.text(mask)})"
    )
