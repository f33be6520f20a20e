"""Module instances held in containers: the blocks of a transformer live in an `nn.ModuleList` (built by a
comprehension or by appends in an `__init__` loop), an `nn.Sequential(*[...])` or an `nn.ModuleDict`, and
the parent iterates over them. A call of a loop variable or of an index into such a container is a call
of the block's `forward`, so what a `forward` parameter holds (a scale, a mask) is what those calls pass."""

from __future__ import annotations

import textwrap

import libcst as cst

from sharpedges.analysis.context import FileContext
from sharpedges.analysis.objects import instance_classes
from sharpedges.analysis.summaries import bind_arguments, call_sites, held_modules
from tests.helpers import findings

BLOCKS = """
    import torch
    from torch import nn

    class Attention(nn.Module):
        def forward(self, x, mask=None):
            return x

    class FeedForward(nn.Module):
        def forward(self, x):
            return x

    class Block(nn.Module):
        def forward(self, x, mask=None):
            return x

    class Residual(nn.Module):
        def __init__(self, fn):
            super().__init__()
            self.fn = fn

        def forward(self, x, **kwargs):
            return self.fn(x, **kwargs) + x

    class Transformer(nn.Module):
        def __init__(self, depth):
            super().__init__()
            self.layers = nn.ModuleList([])
            for _ in range(depth):
                self.layers.append(nn.ModuleList([Attention(), FeedForward()]))
            self.blocks = nn.Sequential(*[Block() for _ in range(depth)])
            self.heads = nn.ModuleDict({"text": Attention()})
            wrapped = []
            for _ in range(depth):
                block = Residual(Block())
                wrapped.append(block)
            self.wrapped = nn.ModuleList(wrapped)

        def forward(self, x, mask):
            for attn, ff in self.layers:
                x = attn(x, mask=mask) + x
                x = ff(x) + x
            for i, block in enumerate(self.blocks):
                x = block(x, mask)
            x = self.blocks[0](x, mask)
            x = self.heads["text"](x, mask=mask)
            for layer, _ in zip(self.wrapped, range(3)):
                x = layer(x, mask=mask)
            return x
"""


def context() -> tuple[FileContext, dict[str, cst.ClassDef]]:
    ctx = FileContext("model.py", cst.parse_module(textwrap.dedent(BLOCKS)))
    return ctx, {cls.name.value: cls for cls in ctx.index.nodes(cst.ClassDef)}


def calls_of(class_name: str) -> list[tuple[str, str | None]]:
    """Each call that runs the class's `forward`, with the expression it passes as `mask`."""
    ctx, classes = context()
    forward = ctx.class_facts(classes[class_name]).methods["forward"]
    return [
        (ctx.code(call), ctx.code(passed) if (passed := bind_arguments(call, names).get("mask")) else None)
        for call, names in call_sites(ctx, forward)
    ]


def test_what_each_container_attribute_holds():
    ctx, classes = context()
    transformer = classes["Transformer"]
    assigned = {
        attr: held_modules(ctx, assignments[0].node.targets[0].target)
        for attr, assignments in ctx.class_facts(transformer).assignments.items()
    }
    # appended in a loop: each element is a ModuleList whose two positions are known
    (pair,) = assigned["layers"].elements
    assert pair.positional and [e.classes for e in pair.elements] == [{"Attention"}, {"FeedForward"}]
    assert assigned["blocks"].element().classes == {"Block"}  # Sequential(*[... for ...])
    assert assigned["heads"].element().classes == {"Attention"}  # ModuleDict({...})
    assert assigned["wrapped"].element().classes == {"Residual"}  # a local list filled by appends


def test_loop_variables_and_indexes_resolve_to_the_element_classes():
    ctx, classes = context()
    forward = ctx.class_facts(classes["Transformer"]).methods["forward"]
    called = {ctx.code(call.func): call.func for call in ctx.index.descendants(forward, cst.Call)}
    assert instance_classes(ctx, called["attn"]) == {"Attention"}  # for attn, ff in self.layers
    assert instance_classes(ctx, called["ff"]) == {"FeedForward"}
    assert instance_classes(ctx, called["block"]) == {"Block"}  # for i, block in enumerate(...)
    assert instance_classes(ctx, called["self.blocks[0]"]) == {"Block"}
    assert instance_classes(ctx, called['self.heads["text"]']) == {"Attention"}
    assert instance_classes(ctx, called["layer"]) == {"Residual"}  # zip(self.wrapped, ...)
    assert instance_classes(ctx, called["zip"]) == frozenset()


def test_calls_over_a_container_are_call_sites_of_the_blocks_forward():
    assert calls_of("Attention") == [("attn(x, mask=mask)", "mask"), ('self.heads["text"](x, mask=mask)', "mask")]
    assert calls_of("FeedForward") == [("ff(x)", None)]
    # a wrapper built around the block hands its keywords on: the wrapper's callers pass the mask
    assert calls_of("Block") == [
        ("self.fn(x, **kwargs)", None),
        ("block(x, mask)", "mask"),
        ("self.blocks[0](x, mask)", "mask"),
        ("layer(x, mask=mask)", "mask"),
    ]
    # what a wrapper's caller gets back is the wrapper's result, not the block's
    ctx, classes = context()
    block_forward = ctx.class_facts(classes["Block"]).methods["forward"]
    assert [ctx.code(call) for call, _ in call_sites(ctx, block_forward, forwarded=False)] == [
        "self.fn(x, **kwargs)",
        "block(x, mask)",
        "self.blocks[0](x, mask)",
    ]
    assert calls_of("Residual") == [("layer(x, mask=mask)", "mask")]


SCALED_BY_THE_PARENT = """
    import torch
    from torch import nn

    class Attend(nn.Module):
        def forward(self, q, k, v):
            sim = q @ k.transpose(-2, -1)
            attn = sim.softmax(dim=-1)
            return attn @ v

    class Transformer(nn.Module):
        def __init__(self, dim, depth):
            super().__init__()
            self.scale = dim**-0.5
            self.layers = nn.ModuleList([Attend() for _ in range(depth)])

        def forward(self, q, k, v):
            for attend in self.layers:
                q = attend(q * self.scale, k, v)
            return q
"""


def test_queries_scaled_by_the_parent_loop_count_for_the_blocks_softmax():
    assert [d.line for d in findings("SHP101", SCALED_BY_THE_PARENT)] == []
    unscaled = SCALED_BY_THE_PARENT.replace("attend(q * self.scale, k, v)", "attend(q, k, v)")
    assert [d.line for d in findings("SHP101", unscaled)] == [8]


def test_keywords_bind_by_name_through_an_unpacked_nested_module_list():
    nested = SCALED_BY_THE_PARENT.replace(
        "nn.ModuleList([Attend() for _ in range(depth)])",
        "nn.ModuleList([nn.ModuleList([Attend(), nn.Linear(dim, dim)]) for _ in range(depth)])",
    ).replace(
        "for attend in self.layers:\n                q = attend(q * self.scale, k, v)",
        "for attend, proj in self.layers:\n                q = proj(attend(v=v, k=k, q=q * self.scale))",
    )
    assert "for attend, proj in self.layers" in nested
    assert [d.line for d in findings("SHP101", nested)] == []
    unscaled = nested.replace("q=q * self.scale", "q=q")
    assert [d.line for d in findings("SHP101", unscaled)] == [8]


PADDING_BY_NEGATIVE_IDS = """
    import torch
    from torch import nn
    from einops import rearrange

    class Attention(nn.Module):
        def forward(self, x, mask=None):
            sim = x @ x.transpose(-2, -1) * self.scale
            if mask is not None:
                mask = rearrange(mask, "b j -> b 1 1 j")
                sim = sim.masked_fill(~mask, -torch.finfo(sim.dtype).max)
            attn = sim.softmax(dim=-1)
            return attn @ x

    class Encoder(nn.Module):
        def __init__(self, num_tokens, dim, depth, causal=False):
            super().__init__()
            self.causal = causal
            self.token_emb = nn.Embedding(num_tokens, dim)
            self.layers = nn.ModuleList([Attention() for _ in range(depth)])

        def forward(self, x):
            mask = (x < 0) if not self.causal else None
            x = self.token_emb(x)
            for attn in self.layers:
                x = attn(x, mask=mask) + x
            return x
"""


def test_a_padding_mask_built_by_the_parent_reaches_the_blocks_masked_fill():
    """PaLM-rlhf 0.0.47: negative token ids are the padding, so `x < 0` is True there; every block in the
    ModuleList keeps the scores where the mask is True (`masked_fill(~mask, ...)`): it attends to padding."""
    found = findings("SHP203", PADDING_BY_NEGATIVE_IDS)
    assert [d.line for d in found] == [11]
    assert "real tokens" in found[0].message
    fixed = PADDING_BY_NEGATIVE_IDS.replace("(x < 0) if not self.causal", "(x >= 0) if not self.causal")
    assert findings("SHP203", fixed) == []
    # ids that never reach an embedding are not known to be token ids: nothing is claimed
    unknown = PADDING_BY_NEGATIVE_IDS.replace("x = self.token_emb(x)", "x = self.proj(x)")
    assert findings("SHP203", unknown) == []


CHOSEN_BY_A_CONDITION = SCALED_BY_THE_PARENT.replace(
    "self.layers = nn.ModuleList([Attend() for _ in range(depth)])",
    "self.layers = nn.ModuleList([Attend() if depth else nn.Identity() for _ in range(depth)])\n"
    "            self.extra = extra or Attend()",
).replace("def __init__(self, dim, depth):", "def __init__(self, dim, depth, extra=None):")


def test_a_module_chosen_by_a_conditional_or_an_or_is_either_branch():
    ctx = FileContext("model.py", cst.parse_module(textwrap.dedent(CHOSEN_BY_A_CONDITION)))
    (transformer,) = [c for c in ctx.index.nodes(cst.ClassDef) if c.name.value == "Transformer"]
    assignments = ctx.class_facts(transformer).assignments
    held = {attr: held_modules(ctx, assignments[attr][0].node.targets[0].target) for attr in ("layers", "extra")}
    assert held["layers"].element().classes == {"Attend", "torch.nn.Identity"}
    assert "Attend" in held["extra"].classes
    # the loop's calls are call sites of Attend.forward: the parent's scale counts
    assert [d.line for d in findings("SHP101", CHOSEN_BY_A_CONDITION)] == []
    unscaled = CHOSEN_BY_A_CONDITION.replace("attend(q * self.scale, k, v)", "attend(q, k, v)")
    assert [d.line for d in findings("SHP101", unscaled)] == [8]
