"""Keyword arguments that travel in dicts (`f(**attn_kwargs)`, values.passed_argument): a rule reads an
argument the dict holds as if the call spelled it, and one the dict may hold without the model knowing
as unknown, never as absent (a rule that acts on an absent flag stays quiet)."""

from __future__ import annotations

import textwrap

import pytest

from tests.detectors.modules import UNMASKED_SDPA_ATTENTION
from tests.helpers import findings, mutate

# -- SHP701: dropout_p through **attn_kwargs -------------------------------------------------------------
DROPOUT = textwrap.dedent("""
    import torch.nn.functional as F
    from torch import nn

    class Attention(nn.Module):
        def __init__(self, dim, heads, dropout=0.1):
            super().__init__()
            self.heads = heads
            self.dropout = dropout
            self.qkv = nn.Linear(dim, dim * 3)

        def forward(self, x, extra):
            b, n, d = x.shape
            q, k, v = self.qkv(x).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
            {build}
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, **attn_kwargs)
            return out.transpose(1, 2).reshape(b, n, d)
""")


@pytest.mark.parametrize(
    "build",
    [
        "attn_kwargs = dict(dropout_p=self.dropout)",
        "attn_kwargs = {'dropout_p': self.dropout, 'scale': None}",
        "attn_kwargs = {}; attn_kwargs['dropout_p'] = self.dropout",
        "attn_kwargs = dict(scale=None); attn_kwargs.update(dropout_p=self.dropout)",
        "attn_kwargs = {**dict(scale=None), 'dropout_p': self.dropout}",
        "attn_kwargs = dict(scale=None); attn_kwargs.setdefault('dropout_p', self.dropout)",
    ],
)
def test_a_dropout_probability_in_the_kwargs_dict_stays_on_in_eval(build):
    [finding] = findings("SHP701", DROPOUT.format(build=build))
    assert finding.line == 16
    assert finding.message.startswith("dropout_p reaches the attention kernel in eval too")


@pytest.mark.parametrize(
    "build",
    [
        "attn_kwargs = dict(dropout_p=self.dropout if self.training else 0.0)",  # gated inside the dict
        "attn_kwargs = dict(dropout_p=self.dropout); attn_kwargs.pop('dropout_p')",  # removed again
        "attn_kwargs = dict(dropout_p=self.dropout); attn_kwargs['dropout_p'] = 0.0",  # overwritten
        "attn_kwargs = extra",  # a parameter: the caller decides
        "attn_kwargs = dict(extra)",
        "attn_kwargs = dict(scale=None); attn_kwargs.update(extra)",
    ],
)
def test_a_dict_that_gates_drops_or_may_not_hold_the_probability_is_quiet(build):
    assert findings("SHP701", DROPOUT.format(build=build)) == []


ATTRIBUTE = mutate(
    mutate(DROPOUT, "        self.dropout = dropout\n", "        self.attn_kwargs = dict(dropout_p=dropout)\n"),
    "    def forward(self, x, extra):",
    "    def kwargs(self):\n        return {{'dropout_p': 0.1}}\n\n    def forward(self, x, extra):",
)


@pytest.mark.parametrize(
    ("build", "line"), [("attn_kwargs = self.attn_kwargs", 19), ("attn_kwargs = self.kwargs()", 19)]
)
def test_a_dict_held_in_an_attribute_or_returned_by_a_method(build, line):
    [finding] = findings("SHP701", ATTRIBUTE.format(build=build))
    assert finding.line == line


def test_an_attribute_dict_a_method_changes_is_unknown():
    source = mutate(
        ATTRIBUTE.format(build="attn_kwargs = self.attn_kwargs"),
        "    def kwargs(self):",
        "    def eval_mode(self):\n        self.attn_kwargs['dropout_p'] = 0.0\n\n    def kwargs(self):",
    )
    assert findings("SHP701", source) == []


# -- SHP201: is_causal through **attn_kwargs in a causal model -------------------------------------------
CAUSAL = mutate(
    UNMASKED_SDPA_ATTENTION.replace("class SelfAttention", "class CausalSelfAttention"),
    "    def forward(self, x):\n",
    "    def forward(self, x, extra=None, **kwargs):\n",
).replace("        out = F.scaled_dot_product_attention(q, k, v)", "        {build}\n        out = {kernel}")
SDPA_WITH_KWARGS = "F.scaled_dot_product_attention(q, k, v, **attn_kwargs)"


@pytest.mark.parametrize(
    "build",
    [
        "attn_kwargs = dict(dropout_p=0.0)",
        "attn_kwargs = {'is_causal': True}; del attn_kwargs['is_causal']",
        "attn_kwargs = dict(is_causal=True); attn_kwargs.pop('is_causal')",
        "attn_kwargs = dict(is_causal=False)",
    ],
)
def test_a_dict_known_to_hold_no_causal_flag_leaves_the_attention_unmasked(build):
    [finding] = findings("SHP201", CAUSAL.format(build=build, kernel=SDPA_WITH_KWARGS))
    assert finding.line == 16
    assert finding.message.startswith("scaled_dot_product_attention in a causal model gets no causal mask")


@pytest.mark.parametrize(
    "build",
    [
        "attn_kwargs = dict(is_causal=True)",
        "attn_kwargs = {}\n        if extra is None:\n            attn_kwargs['is_causal'] = True\n"
        "        else:\n            attn_kwargs.update(is_causal=True)",
        # the model cannot tell: never a wrong "absent"
        "attn_kwargs = {}\n        if extra is None:\n            attn_kwargs['is_causal'] = True",
        "attn_kwargs = extra",
        "attn_kwargs = kwargs",  # **kwargs of forward, and no caller in the file
        "attn_kwargs = {**kwargs, 'dropout_p': 0.0}",
        "attn_kwargs = dict(dropout_p=0.0); print(attn_kwargs)",  # handed to a call, which may add to it
        "attn_kwargs = dict(dropout_p=0.0); attn_kwargs[extra] = True",
    ],
)
def test_a_dict_that_holds_or_may_hold_the_causal_flag_is_quiet(build):
    assert findings("SHP201", CAUSAL.format(build=build, kernel=SDPA_WITH_KWARGS)) == []


def test_positional_arguments_after_a_star_are_unknown():
    source = CAUSAL.format(build="qkv = (q, k, v)", kernel="F.scaled_dot_product_attention(*qkv)")
    assert findings("SHP201", source) == []


# -- SHP201: a constructor's causal flag through **kwargs ---------------------------------------------
FLAGGED = textwrap.dedent("""
    import torch.nn.functional as F
    from torch import nn

    class Attention(nn.Module):
        def __init__(self, dim, heads, causal=False):
            super().__init__()
            self.heads = heads
            self.causal = causal
            self.qkv = nn.Linear(dim, dim * 3)

        def forward(self, x):
            b, n, d = x.shape
            q, k, v = self.qkv(x).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
            out = F.scaled_dot_product_attention(q, k, v)
            return out.transpose(1, 2).reshape(b, n, d)

    def build(dim, heads, **attn_kwargs):
        return Attention(dim, heads, **attn_kwargs)

    def split_by_prefix(prefix, config):
        picked = {{key[len(prefix):]: value for key, value in config.items() if key.startswith(prefix)}}
        return picked, {{key: value for key, value in config.items() if not key.startswith(prefix)}}

    class Block(nn.Module):
        def __init__(self, dim, heads, config):
            super().__init__()
            {build}
""")


@pytest.mark.parametrize(
    "build",
    [
        "self.attn = Attention(dim, heads, **dict(causal=True))",
        "kw = {'causal': True}\n        self.attn = Attention(dim, heads, **kw)",
        "kw = dict(config)\n        kw['causal'] = True\n        self.attn = Attention(dim, heads, **kw)",
        "self.attn = build(dim, heads, causal=True)",  # every caller of the wrapper passes it
        "kw, _ = split_by_prefix('attn_', config)\n        kw['causal'] = True\n"
        "        self.attn = Attention(dim, heads, **kw)",
    ],
)
def test_a_causal_flag_switched_on_through_a_dict_that_nothing_reads(build):
    [finding] = findings("SHP201", FLAGGED.format(build=build))
    assert finding.line == 15
    assert [(r["line"], r["message"]) for r in finding.related] == [
        (6, "this flag asks for causal attention, and nothing reads it")
    ]


@pytest.mark.parametrize(
    "build",
    [
        "self.attn = Attention(dim, heads, **dict(causal=False))",
        "self.attn = Attention(dim, heads, **config)",  # a dict from a parameter
        "kw = dict(config)\n        kw.setdefault('causal', True)\n        self.attn = Attention(dim, heads, **kw)",
        "self.attn = build(dim, heads, dropout=0.0)",  # the wrapper's **kwargs: callers elsewhere may pass it
        # keys split off by a helper: `attn_causal=True` in the config would reach it
        "kw, _ = split_by_prefix('attn_', config)\n        self.attn = Attention(dim, heads, **kw)",
    ],
)
def test_a_flag_the_dict_turns_off_or_may_not_turn_on_is_no_evidence(build):
    assert findings("SHP201", FLAGGED.format(build=build)) == []


# -- SHP201: a torch decoder's target mask through **kwargs ------------------------------------------------
TORCH_DECODER = textwrap.dedent("""
    from torch import nn

    class CaptionLM(nn.Module):
        def __init__(self, dim, heads, depth, vocab):
            super().__init__()
            layer = nn.TransformerDecoderLayer(dim, heads, batch_first=True)
            self.decoder = nn.TransformerDecoder(layer, depth)
            self.embed = nn.Embedding(vocab, dim)

        def forward(self, tokens, memory, pad, extra):
            x = self.embed(tokens)
            {build}
            return self.decoder(x, memory, **masks)
""")


def test_a_torch_decoder_given_only_a_memory_mask_in_a_dict_sees_the_future():
    [finding] = findings("SHP201", TORCH_DECODER.format(build="masks = dict(memory_mask=pad)"))
    assert finding.line == 14


@pytest.mark.parametrize(
    "build",
    ["masks = dict(tgt_is_causal=True, tgt_mask=pad)", "masks = {'tgt_mask': pad}", "masks = extra"],
)
def test_a_torch_decoder_whose_dict_holds_or_may_hold_a_target_mask_is_quiet(build):
    assert findings("SHP201", TORCH_DECODER.format(build=build)) == []


# -- a mask a residual wrapper forwards in its **kwargs: read where the caller writes it -------------------
FORWARDED_MASK = """
import torch
from torch import nn


class Residual(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x, **kwargs):
        return self.fn(x, **kwargs) + x


class Attention(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.qkv = nn.Linear(dim, dim * 3)

    def forward(self, x, mask=None):
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        sim = q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5
        if mask is not None:
            sim = sim.masked_fill(~mask[:, None, :], -torch.finfo(sim.dtype).max)
        return sim.softmax(dim=-1) @ v


class Encoder(nn.Module):
    def __init__(self, dim, depth):
        super().__init__()
        self.token_emb = nn.Embedding(100, dim)
        self.layers = nn.ModuleList([Residual(Attention(dim)) for _ in range(depth)])

    def forward(self, tokens):
        mask = tokens < 0
        x = self.token_emb(tokens)
        for layer in self.layers:
            x = layer(x, mask=mask)
        return x
"""


def test_a_mask_forwarded_through_a_wrapper_kwargs_is_read_where_the_caller_builds_it():
    [finding] = findings("SHP203", FORWARDED_MASK)
    assert finding.line == 24
    assert finding.message.startswith("this mask is True at the real tokens, but masked_fill blocks where it is True")


def test_a_mask_in_a_kwargs_the_model_cannot_read_is_unknown():
    source = mutate(FORWARDED_MASK, "x = layer(x, mask=mask)", "x = layer(x, **options)")
    source = mutate(source, "def forward(self, tokens):", "def forward(self, tokens, options):")
    assert findings("SHP203", source) == []


# -- a wrapper function whose parameters reach the kernel, called with **kw ------------------------------
WRAPPER = """
import torch.nn.functional as F
from torch import nn


def attend(q, k, v, dropout_p=0.0, is_causal=False):
    return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=is_causal)


class CausalSelfAttention(nn.Module):
    def __init__(self, dim, heads, dropout=0.1):
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.qkv = nn.Linear(dim, dim * 3)

    def forward(self, x, extra):
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        {build}
        out = attend(q, k, v, **kw)
        return out.transpose(1, 2).reshape(b, n, d)
"""


def test_a_wrapper_called_with_a_kwargs_dict_forwards_what_the_dict_holds():
    found = findings(["SHP201", "SHP701"], WRAPPER.format(build="kw = dict(dropout_p=self.dropout)"))
    assert [(f.rule, f.line) for f in found] == [("SHP701", 20), ("SHP201", 21)]


@pytest.mark.parametrize("build", ["kw = dict(dropout_p=self.dropout, is_causal=True)", "kw = extra"])
def test_a_wrapper_whose_dict_sets_the_flag_or_may_is_not_unmasked(build):
    assert findings("SHP201", WRAPPER.format(build=build)) == []


# -- SHP701: functional dropout, dropout modules and partials given their arguments in a dict ---------------
DROPOUT_CALLS = textwrap.dedent("""
    import functools
    import torch.nn.functional as F
    from torch import nn

    class Block(nn.Module):
        def __init__(self, dim, p=0.1):
            super().__init__()
            self.p = p
            self.proj = nn.Linear(dim, dim)
            {init}

        def forward(self, x):
            {forward}
            return self.proj(x)
""")


@pytest.mark.parametrize(
    "init, forward, line, variant",
    [
        ("pass", "kw = dict(p=self.p); x = F.dropout(x, **kw)", 14, "keeps dropping in eval"),
        ("self.kw = {'p': self.p}", "x = F.dropout(x, **self.kw)", 14, "keeps dropping in eval"),
        ("pass", "cfg = dict(p=self.p); x = nn.Dropout(**cfg)(x)", 14, "nn.Dropout"),
        (
            "kw = dict(dropout_p=p); self.attend = functools.partial(F.scaled_dot_product_attention, **kw)",
            "x = self.attend(x, x, x)",
            11,
            "fixes dropout_p",
        ),
    ],
)
def test_dropout_given_its_arguments_in_a_dict_is_read_like_spelled_ones(init, forward, line, variant):
    [finding] = findings("SHP701", DROPOUT_CALLS.format(init=init, forward=forward))
    assert finding.line == line
    assert variant in finding.message


@pytest.mark.parametrize(
    "init, forward",
    [
        ("pass", "kw = dict(p=self.p, training=self.training); x = F.dropout(x, **kw)"),
        ("pass", "kw = dict(p=self.p); kw.update(self.extra()); x = F.dropout(x, **kw)"),  # may pass training
        ("pass", "cfg = dict(p=0.0); x = nn.Dropout(**cfg)(x)"),
        ("kw = dict(dropout_p=0.0); self.attend = functools.partial(F.scaled_dot_product_attention, **kw)", "pass"),
    ],
)
def test_a_dict_that_passes_training_a_zero_probability_or_may_pass_anything_is_quiet(init, forward):
    assert findings("SHP701", DROPOUT_CALLS.format(init=init, forward=forward)) == []


HELPER_DROPOUT = textwrap.dedent("""
    import torch.nn.functional as F
    from torch import nn

    class Block(nn.Module):
        def __init__(self, p=0.1):
            super().__init__()
            self.p = p

        def _drop(self, x, p=0.1):
            return F.dropout(x, p)

        def forward(self, x):
            kw = dict(p={probability})
            return self._drop(x, **kw)
""")


def test_a_helper_whose_callers_pass_a_gated_probability_in_a_dict_is_quiet():
    assert findings("SHP701", HELPER_DROPOUT.format(probability="self.p if self.training else 0.0")) == []
    [finding] = findings("SHP701", HELPER_DROPOUT.format(probability="self.p"))
    assert finding.line == 11


# -- a wrapper that spreads its **kwargs into the kernel: a caller's keywords reach the kernel ----------------
SPREADING_WRAPPER = textwrap.dedent("""
    import torch.nn.functional as F
    from torch import nn


    def attend(q, k, v, **kwargs):
        {body}
        return F.scaled_dot_product_attention(q, k, v, **kwargs)


    class CausalSelfAttention(nn.Module):
        def __init__(self, dim, p=0.1):
            super().__init__()
            self.qkv = nn.Linear(dim, dim * 3)
            self.p = p

        def forward(self, x):
            q, k, v = self.qkv(x).chunk(3, dim=-1)
            return attend(q, k, v, {keywords})
""")


def spreading(body: str = "pass", keywords: str = "") -> str:
    return SPREADING_WRAPPER.format(body=body, keywords=keywords)


def test_a_causal_flag_a_caller_passes_through_a_spreading_wrapper_reaches_the_kernel():
    assert findings("SHP201", spreading(keywords="is_causal=True")) == []
    [unmasked] = findings("SHP201", spreading(keywords="scale=None"))
    assert unmasked.line == 19 and "forwards this call to scaled_dot_product_attention" in unmasked.message


def test_a_dropout_a_caller_passes_through_a_spreading_wrapper_is_reported_where_it_is_passed():
    [finding] = findings("SHP701", spreading(keywords="is_causal=True, dropout_p=self.p"))
    assert (finding.line, finding.column) == (19, 58)  # at `self.p`
    gated = "is_causal=True, dropout_p=self.p if self.training else 0.0"
    assert findings("SHP701", spreading(keywords=gated)) == []


def test_a_wrapper_that_changes_its_kwargs_passes_on_none_of_them():
    # the wrapper drops the flag the caller passed: the kernel runs unmasked; a dropped probability drops nothing
    popped = spreading(body="kwargs.pop('is_causal', None)", keywords="is_causal=True")
    assert [d.line for d in findings("SHP201", popped)] == [19]
    assert findings("SHP701", spreading(body="kwargs.pop('dropout_p', None)", keywords="dropout_p=self.p")) == []
