"""Operator on grouped-query attention: KV heads tiled ([k0, k1, k0, k1]) where they were repeated
in groups ([k0, k0, k1, k1]) (SHP602)."""

from __future__ import annotations

import re

import libcst as cst

from .sites import Plant, Sites, call_name, keyword, last_name, positional

GROUPED = re.compile(r"kv|key_value|n_rep|group|num_queries_per", re.I)
KEYS_OR_VALUES = re.compile(r"(^|_)(k|v|kv|key|keys|value|values)(_|$)|key|value|hidden_states", re.I)
EINOPS_GROUP = re.compile(r"\((\w+) (\w+)\)")


def tile_kv_heads(sites: Sites) -> list[Plant]:
    """SHP602, three spellings of the grouped repeat, each turned into its tiled twin:
    `x.repeat_interleave(n, dim=1)` -> `x.repeat(1, n, 1, 1)`;
    `x[:, :, None].expand(b, h, n, t, d)` -> `x[:, None].expand(b, n, h, t, d)`;
    einops `repeat(x, "b h n d -> b (h r) n d", r=n)` -> `"... (r h) ..."`."""
    plants = []
    for node in sites.nodes(cst.Call):
        function = sites.function(node)
        if function is None or not GROUPED.search(sites.text(function)):
            continue
        name = last_name(node)
        receiver = node.func.value if isinstance(node.func, cst.Attribute) and name != "repeat" else positional(node, 0)
        if receiver is None:
            continue
        spelled = sites.text(receiver.value if isinstance(receiver, cst.Arg) else receiver)
        if not any(KEYS_OR_VALUES.search(word) for word in re.findall(r"\w+", spelled)):
            continue
        if name == "repeat_interleave" and isinstance(node.func, cst.Attribute):
            plants.append(_repeat_interleave(sites, node))
        elif name == "expand" and isinstance(node.func, cst.Attribute):
            plants.append(_expand(sites, node))
        elif name == "repeat" and call_name(node) in ("repeat", "einops.repeat"):
            plants.append(_einops(sites, node))
    return [plant for plant in plants if plant is not None]


def _repeat_interleave(sites: Sites, node: cst.Call) -> Plant | None:
    times = keyword(node, "repeats") or positional(node, 0)
    dim = keyword(node, "dim") or positional(node, 1)
    if times is None or dim is None:
        return None
    axis = {"1": 1, "-3": 1, "2": 2}.get(sites.text(dim.value))
    if axis is None:
        return None
    counts = ["1", "1", "1", "1"]
    counts[axis] = sites.text(times.value)
    assert isinstance(node.func, cst.Attribute)
    return sites.plant("SHP602", node, f"{sites.text(node.func.value)}.repeat({', '.join(counts)})")


def _expand(sites: Sites, node: cst.Call) -> Plant | None:
    receiver = node.func.value if isinstance(node.func, cst.Attribute) else None
    if not isinstance(receiver, cst.Subscript) or len(receiver.slice) != 5 or len(node.args) != 5:
        return None
    slots = [sites.text(element.slice) for element in receiver.slice]
    if slots != [":", ":", "None", ":", ":"]:
        return None
    sizes = [sites.text(arg.value) for arg in node.args]
    sizes[1], sizes[2] = sizes[2], sizes[1]
    tiled = f"{sites.text(receiver.value)}[:, None, :, :, :].expand({', '.join(sizes)})"
    return sites.plant("SHP602", node, tiled)


def _einops(sites: Sites, node: cst.Call) -> Plant | None:
    pattern = positional(node, 1)
    if pattern is None or not isinstance(pattern.value, cst.SimpleString):
        return None
    new_axes = {arg.keyword.value for arg in node.args if arg.keyword is not None}
    text = pattern.value.value
    source, arrow, target = text.partition("->")
    if not arrow:
        return None
    match = next((m for m in EINOPS_GROUP.finditer(target) if m.group(2) in new_axes), None)
    if match is None:
        return None
    swapped = target[: match.start()] + f"({match.group(2)} {match.group(1)})" + target[match.end() :]
    return sites.plant("SHP602", pattern.value, source + arrow + swapped)
