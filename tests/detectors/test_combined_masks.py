"""Two position masks joined with `&` or `|`: the marked cells are the intersection or the union of both,
so a causal mask AND-ed with a disjoint "too far back" mask marks nothing and leaves the future open
(local-attention 1.2.1's exact window). Also: a `del` ends a name's value, and positions keep their
meaning through a helper that windows them."""

from __future__ import annotations

import textwrap

import libcst as cst

from sharpedges.analysis.context import FileContext
from sharpedges.analysis.masks import SYMBOLIC, Region, verdict
from tests.helpers import findings, mutate

WINDOWED = textwrap.dedent("""
    import torch
    import torch.nn.functional as F

    def look_around(x, backward=1, pad_value=-1):
        t = x.shape[1]
        padded = F.pad(x, (backward, 0), value=pad_value)
        windows = [padded[:, i:(i + t)] for i in range(backward + 1)]
        return torch.cat(windows, dim=-1)

    class LocalAttention(torch.nn.Module):
        def __init__(self, window_size, look_backward=1, shared_qk=False):
            super().__init__()
            self.window_size = window_size
            self.look_backward = look_backward
            self.shared_qk = shared_qk

        def forward(self, q, k, v):
            b, t, e = q.shape
            windows = t // self.window_size
            ticker = torch.arange(t, device=q.device)[None, :]
            b_t = ticker.reshape(1, windows, self.window_size)
            bq_t = b_t
            bq_k = look_around(b_t, backward=self.look_backward)
            bq = q.reshape(b, windows, self.window_size, -1)
            bk = look_around(k.reshape(b, windows, self.window_size, -1), backward=self.look_backward)
            dots = torch.einsum("bhie,bhje->bhij", bq, bk) * (e ** -0.5)
            if self.shared_qk:
                mask = bq_t[:, :, :, None] == bq_k[:, :, None, :]
                dots.masked_fill_(mask, -5e4)
                del mask
            mask = bq_t[:, :, :, None] < bq_k[:, :, None, :]
            max_window = self.window_size * self.look_backward
            mask = mask | (bq_t[:, :, :, None] > (bq_k[:, :, None, :] + max_window))
            dots.masked_fill_(mask, float("-inf"))
            return torch.einsum("bhij,bhje->bhie", dots.softmax(dim=-1), bk)
""")
AND_INSTEAD_OF_OR = ("mask = mask | (bq_t", "mask = mask & (bq_t")


def test_a_causal_mask_or_a_too_far_back_mask_is_causal_and_quiet():
    assert findings("SHP202", WINDOWED) == []


def test_and_of_two_disjoint_position_masks_leaves_the_future_open():
    buggy = mutate(WINDOWED, *AND_INSTEAD_OF_OR)
    [finding] = findings("SHP202", buggy)
    assert finding.line == buggy.splitlines().index('        dots.masked_fill_(mask, float("-inf"))') + 1
    assert finding.message.startswith("the causal mask blocks only a band of future keys for masked_fill")
    assert finding.fix is None


def test_regions_intersect_and_unite():
    future = Region(1, None)
    far_back = Region(None, SYMBOLIC)
    assert future.intersected(far_back) == Region(1, SYMBOLIC)
    assert future.united(far_back) == Region(SYMBOLIC, 0, negated=True)
    assert Region(None, 0).intersected(Region(-4, None)) == Region(-4, 0)
    assert Region(None, 0).united(Region(-3, None)) == Region(None, None)
    assert Region(None, -1).united(Region(None, 2)) == Region(None, 2)


def test_allowing_all_but_a_band_leaves_the_far_future_open():
    # what a mask that blocks only `1 <= j - i <= w` allows
    assert verdict(Region(1, SYMBOLIC).complement()) == "open"
    # and the window `-w <= j - i <= 0` it should have allowed
    assert verdict(Region(SYMBOLIC, 0, negated=True).complement()) == "causal"


def test_a_deleted_name_no_longer_reaches():
    source = textwrap.dedent("""
        def f(flag):
            if flag:
                mask = 1
                del mask
            mask2 = 2
            return mask
    """)
    module = cst.parse_module(source)
    ctx = FileContext("m.py", module, source.lower().encode())
    [function] = ctx.index.nodes(cst.FunctionDef)
    facts = ctx.function_facts(function)
    [returned] = [
        n for n in ctx.index.nodes(cst.Name) if n.value == "mask" and ctx.order(n) > ctx.order(function.body.body[1])
    ]
    assert facts.reaching("mask", ctx.order(returned)) == []


FOCUS = textwrap.dedent("""
    import torch
    from einops import rearrange

    def temporal_attention(q, k, focus_present_mask):
        sim = torch.einsum("... h i d, ... h j d -> ... h i j", q, k)
        n = sim.shape[-1]
        attend_all_mask = torch.ones((n, n), device=sim.device, dtype=torch.bool)
        attend_self_mask = torch.eye(n, device=sim.device, dtype=torch.bool)
        mask = torch.where(
            rearrange(focus_present_mask, "b -> b 1 1 1 1"),
            rearrange(attend_self_mask, "i j -> 1 1 1 i j"),
            rearrange(attend_all_mask, "i j -> 1 1 1 i j"),
        )
        sim = sim.masked_fill(mask, -torch.finfo(sim.dtype).max)
        return sim.softmax(dim=-1)
""")


def test_a_keep_mask_that_is_true_everywhere_on_one_choice_blocks_every_key_there():
    [finding] = findings("SHP203", FOCUS)
    assert finding.line == FOCUS.splitlines().index("    sim = sim.masked_fill(mask, -torch.finfo(sim.dtype).max)") + 1
    assert finding.message.startswith("on one path this mask lets no key through masked_fill")


def test_the_complement_of_the_keep_mask_is_quiet():
    assert findings(["SHP202", "SHP203"], mutate(FOCUS, "masked_fill(mask,", "masked_fill(~mask,")) == []


def test_a_mask_written_into_in_place_is_not_known_to_be_true_everywhere():
    written = mutate(FOCUS, "    sim = sim.masked_fill(", "    mask[..., 0] = False\n    sim = sim.masked_fill(")
    assert findings("SHP203", written) == []
