"""Operator on rotary embeddings: the cos/sin table laid out interleaved where the rotation splits
halves, or the other way round (SHP603)."""

from __future__ import annotations

import libcst as cst

from .sites import Plant, Sites, keyword, last_name, positional


def swap_table_layout(sites: Sites) -> list[Plant]:
    """SHP603: `torch.cat((freqs, freqs), dim=-1)` (half-split table) <-> `freqs.repeat_interleave(2, dim=-1)`
    (interleaved table), in a file that also rotates (a rotate_half, or a stack of -x2 and x1)."""
    if "rotate" not in sites.context and "rotary" not in sites.context.lower():
        return []
    plants = []
    for node in sites.nodes(cst.Call):
        name = last_name(node)
        if name == "cat":
            parts = positional(node, 0)
            dim = keyword(node, "dim") or positional(node, 1)
            if parts is None or dim is None or sites.text(dim.value) != "-1":
                continue
            if isinstance(parts.value, cst.Tuple | cst.List) and len(parts.value.elements) == 2:
                first, second = (sites.text(e.value) for e in parts.value.elements)
                if first == second and "freq" in first.lower():
                    plants.append(sites.plant("SHP603", node, f"{first}.repeat_interleave(2, dim=-1)"))
        elif name == "repeat_interleave" and isinstance(node.func, cst.Attribute):
            times = keyword(node, "repeats") or positional(node, 0)
            dim = keyword(node, "dim") or positional(node, 1)
            receiver = sites.text(node.func.value)
            layout = times and dim and sites.text(times.value) == "2" and sites.text(dim.value) == "-1"
            if layout and ("freq" in receiver.lower() or receiver.endswith(("cos()", "sin()"))):
                plants.append(sites.plant("SHP603", node, f"torch.cat(({receiver}, {receiver}), dim=-1)"))
    return [plant for plant in plants if plant is not None]
