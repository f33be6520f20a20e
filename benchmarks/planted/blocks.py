"""Operators on residual stacks: the final norm of a pre-norm stack dropped (SHP302), the residual
taken from the normed input (SHP303)."""

from __future__ import annotations

import itertools
import re
from typing import TypeGuard

import libcst as cst

from .sites import Plant, Sites, call_name

NORM = re.compile(r"norm|(^|_)ln(_|f|\d|$)", re.I)
LAYERS = re.compile(r"layers|blocks|\bh\b|resblocks|stages|transformer", re.I)


def is_norm_call(node: cst.CSTNode) -> TypeGuard[cst.Call]:
    """`self.norm(x)`, `self.ln_f(x)`, `self.final_layernorm(x)`: a module attribute named as a norm."""
    if not isinstance(node, cst.Call) or len(node.args) != 1 or node.args[0].keyword is not None:
        return False
    name = call_name(node)
    return name.startswith("self.") and bool(NORM.search(name.rsplit(".", 1)[-1]))


def drop_final_norm(sites: Sites) -> list[Plant]:
    """SHP302: `x = self.norm(x)` right after the loop over a stack's layers becomes `x = x`."""
    plants = []
    for function in sites.members:
        if function is None:
            continue
        body = function.body.body if isinstance(function.body, cst.IndentedBlock) else ()
        for index, statement in enumerate(body):
            if not isinstance(statement, cst.For) or not LAYERS.search(sites.text(statement.iter)):
                continue
            for after in body[index + 1 : index + 4]:
                assign = _single_assign(after)
                if assign is not None and is_norm_call(assign.value):
                    plants.append(sites.plant("SHP302", assign.value, sites.text(assign.value.args[0].value)))
                    break
    return [plant for plant in plants if plant is not None]


def _single_assign(statement: cst.CSTNode) -> cst.Assign | None:
    if isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1:
        small = statement.body[0]
        if isinstance(small, cst.Assign) and len(small.targets) == 1:
            return small
    return None


def residual_from_norm(sites: Sites) -> list[Plant]:
    """SHP303: `residual = x` followed by `x = self.norm(x)` becomes `residual = self.norm(x)`; and
    `x = x + f(self.norm(x))` becomes `x = self.norm(x) + f(self.norm(x))`."""
    plants = []
    for function, members in sites.members.items():
        if function is None or not isinstance(function.body, cst.IndentedBlock):
            continue
        body = function.body.body
        for first, second in itertools.pairwise(body):
            saved, normed = _single_assign(first), _single_assign(second)
            if saved is None or normed is None or not isinstance(saved.value, cst.Name):
                continue
            stream = saved.value.value
            if (
                is_norm_call(normed.value)
                and sites.text(normed.targets[0].target) == stream
                and sites.text(normed.value.args[0].value) == stream
            ):
                plants.append(sites.plant("SHP303", saved.value, sites.text(normed.value)))
        for node in members:
            if isinstance(node, cst.Assign) and isinstance(node.value, cst.BinaryOperation):
                total = node.value
                if not isinstance(total.operator, cst.Add) or not isinstance(total.left, cst.Name):
                    continue
                stream = total.left.value
                if len(node.targets) != 1 or sites.text(node.targets[0].target) != stream:
                    continue
                norm = next(
                    (c for c in _calls(total.right) if is_norm_call(c) and sites.text(c.args[0].value) == stream), None
                )
                if norm is not None:
                    plants.append(sites.plant("SHP303", total.left, sites.text(norm)))
    return [plant for plant in plants if plant is not None]


def _calls(node: cst.CSTNode) -> list[cst.Call]:
    calls: list[cst.Call] = []

    class Collector(cst.CSTVisitor):
        def visit_Call(self, call: cst.Call) -> None:
            calls.append(call)

    node.visit(Collector())
    return calls
