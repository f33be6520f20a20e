"""Operator on attention dropout: the gate on `self.training` taken off (SHP701)."""

from __future__ import annotations

import libcst as cst

from .sites import Plant, Sites, keyword, last_name

DROPOUT_KEYWORDS = ("dropout_p", "dropout", "attn_drop", "dropout_rate")


def ungate_dropout(sites: Sites) -> list[Plant]:
    """SHP701: `dropout_p=p if self.training else 0.0` -> `dropout_p=p`, and `F.dropout(x, p,
    training=self.training)` -> `F.dropout(x, p)`."""
    plants = []
    for node in sites.nodes(cst.Call):
        for name in DROPOUT_KEYWORDS:
            arg = keyword(node, name)
            if arg is not None and isinstance(arg.value, cst.IfExp) and "training" in sites.text(arg.value.test):
                gated = arg.value
                negated = isinstance(gated.test, cst.UnaryOperation) and isinstance(gated.test.operator, cst.Not)
                rate = gated.orelse if negated else gated.body
                plants.append(sites.plant("SHP701", gated, sites.text(rate)))
        training = keyword(node, "training")
        if last_name(node) == "dropout" and training is not None and "training" in sites.text(training.value):
            kept = [sites.text(arg).rstrip(", ") for arg in node.args if arg is not training]
            plants.append(sites.plant("SHP701", node, f"{sites.text(node.func)}({', '.join(kept)})"))
    return [plant for plant in plants if plant is not None]
