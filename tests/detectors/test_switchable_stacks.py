"""SHP302 on a stack whose blocks are pre- or post-norm by a flag (NeMo's `pre_ln`): in pre-norm mode the
stream it returns is raw, in post-norm mode it is normed, so no caller can know to norm it."""

from __future__ import annotations

import textwrap

import libcst as cst

from sharpedges.analysis.blocks import POST, PRE, block_styles, local_classes, stacks
from sharpedges.analysis.context import FileContext
from tests.helpers import findings, mutate

SWITCHABLE = textwrap.dedent("""
    import copy
    import torch.nn as nn

    class Block(nn.Module):
        def __init__(self, d, pre_ln=False):
            super().__init__()
            self.pre_ln = pre_ln
            self.norm_1 = nn.LayerNorm(d)
            self.attn = Attention(d)
            self.norm_2 = nn.LayerNorm(d)
            self.ff = FeedForward(d)

        def forward_preln(self, x, mask):
            residual = x
            x = self.norm_1(x)
            out = self.attn(x, mask)
            out += residual
            residual = out
            out = self.norm_2(out)
            states = self.ff(out)
            states += residual
            return states

        def forward_postln(self, x, mask):
            out = self.attn(x, mask)
            out += x
            out = self.norm_1(out)
            states = self.ff(out)
            states += out
            return self.norm_2(states)

        def forward(self, x, mask):
            if self.pre_ln:
                return self.forward_preln(x, mask)
            return self.forward_postln(x, mask)

    class Encoder(nn.Module):
        def __init__(self, n_layers, d, pre_ln=False):
            super().__init__()
            layer = Block(d, pre_ln)
            self.layers = nn.ModuleList([copy.deepcopy(layer) for _ in range(n_layers)])

        def forward(self, x, mask):
            for layer in self.layers:
                x = layer(x, mask)
            return x
""")

FINAL_NORM = """        return x
"""
WITH_FINAL_NORM = """        if self.final_norm is not None:
            x = self.final_norm(x)
        return x
"""


def _context(source: str) -> FileContext:
    return FileContext("m.py", cst.parse_module(source), source.lower().encode())


def test_a_block_with_a_pre_norm_method_and_a_post_norm_method_has_both_styles():
    ctx = _context(SWITCHABLE)
    assert block_styles(ctx, local_classes(ctx)["Block"]) == {PRE, POST}


def test_a_stack_of_deep_copies_repeats_the_copied_construction():
    ctx = _context(SWITCHABLE)
    [stack] = stacks(ctx)
    assert ctx.code(stack.block) == "Block(d, pre_ln)"


def test_a_switchable_stack_returned_without_a_final_norm_fires_at_the_return():
    [finding] = findings("SHP302", SWITCHABLE)
    assert finding.line == SWITCHABLE.splitlines().index("        return x") + 1
    assert finding.message.startswith("the pre-norm stack `self.layers` is returned with no final norm")


def test_the_fixed_stack_with_a_final_norm_is_quiet():
    fixed = mutate(SWITCHABLE, FINAL_NORM, WITH_FINAL_NORM)
    assert findings("SHP302", fixed) == []


def test_a_pure_pre_norm_stack_may_leave_the_final_norm_to_its_caller():
    post_method = SWITCHABLE[SWITCHABLE.index("    def forward_postln") : SWITCHABLE.index("    def forward(")]
    pre_only = mutate(mutate(SWITCHABLE, post_method, ""), "return self.forward_postln(", "return self.forward_preln(")
    ctx = _context(pre_only)
    assert block_styles(ctx, local_classes(ctx)["Block"]) == {PRE}
    assert findings("SHP302", pre_only) == []


def test_a_stack_built_by_another_module_of_the_file_is_left_to_it():
    held = SWITCHABLE + textwrap.dedent("""
        class Model(nn.Module):
            def __init__(self):
                super().__init__()
                self.encoder = Encoder(6, 512, pre_ln=True)
    """)
    assert findings("SHP302", held) == []
