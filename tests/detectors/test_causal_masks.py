"""SHP201-SHP204 (causal mask missing, inverted, padding-mask polarity, causal with a KV cache) on
realistic modules and their mutants: a correct module is clean, the same module with the mask dropped,
its polarity flipped or its alignment broken is not."""

from __future__ import annotations

import pytest

from sharpedges.fixes import apply_edits
from tests.detectors.modules import NANOGPT_ATTENTION as NANOGPT
from tests.helpers import findings

MASK_LINE = "        att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float('-inf'))\n"

SDPA_BLOCK = """
import torch
import torch.nn as nn
import torch.nn.functional as F

class Block(nn.Module):
    def __init__(self, dim, n_heads):
        super().__init__()
        self.wqkv = nn.Linear(dim, 3 * dim, bias=False)
        self.n_heads = n_heads

    def forward(self, x):
        bsz, seqlen, dim = x.shape
        q, k, v = self.wqkv(x).split([dim, dim, dim], dim=-1)
        q, k, v = (t.view(bsz, seqlen, self.n_heads, -1).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return y.transpose(1, 2).reshape(bsz, seqlen, dim)

class Transformer(nn.Module):
    def __init__(self, vocab, dim, depth):
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.layers = nn.ModuleList(Block(dim, 8) for _ in range(depth))
        self.output = nn.Linear(dim, vocab)

    def forward(self, idx, targets):
        x = self.tok(idx)
        for layer in self.layers:
            x = layer(x)
        logits = self.output(x)
        return F.cross_entropy(logits[:, :-1].flatten(0, 1), targets[:, 1:].flatten())
"""


def test_correct_nanogpt_is_clean_for_both_rules():
    assert findings("SHP201", NANOGPT) == []
    assert findings("SHP202", NANOGPT) == []


def test_dropping_the_mask_fires_missing_on_the_mutant_only():
    mutant = NANOGPT.replace(MASK_LINE, "")
    assert [d.rule for d in findings("SHP201", mutant)] == ["SHP201"]
    assert findings("SHP202", mutant) == []


def test_flipping_tril_to_triu_fires_inverted_on_the_mutant_only():
    mutant = NANOGPT.replace("torch.tril(", "torch.triu(")
    [diagnostic] = findings("SHP202", mutant)
    assert diagnostic.line == 24
    # the finding points back at the buffer whose triangle is wrong, in __init__
    assert [(r["line"], r["column"], r["message"]) for r in diagnostic.related] == [
        (14, 38, "the mask's triangle is built here")
    ]
    assert findings("SHP201", mutant) == []


HELPER_MASK = """
import torch
import torch.nn.functional as F

def future_mask(T, device):
    return torch.{triangle}(torch.ones(T, T, device=device, dtype=torch.bool){diagonal})

class Decoder(torch.nn.Module):
    @staticmethod
    def _hidden(T, device):
        return future_mask(T, device)

    def forward(self, q, k, v):
        T = q.size(-2)
        att = q @ k.transpose(-2, -1)
        att = att.masked_fill(self._hidden(T, q.device), float("-inf"))
        return F.softmax(att, dim=-1) @ v
"""


def test_a_mask_built_in_a_helper_is_judged_where_it_is_consumed():
    """Issue 12, "built in a helper, consumed elsewhere": the mask comes from a static method that
    calls a module-level function; the finding is on the masked_fill and points at the triangle."""
    assert findings("SHP202", HELPER_MASK.format(triangle="triu", diagonal=", diagonal=1")) == []
    [diagnostic] = findings("SHP202", HELPER_MASK.format(triangle="tril", diagonal=""))
    assert diagnostic.line == 16 and "inverted" in diagnostic.message
    assert [(r["line"], r["message"]) for r in diagnostic.related] == [(6, "the mask's triangle is built here")]


def test_flipped_comparison_is_fixed_back_to_the_original():
    mutant = NANOGPT.replace("== 0, float('-inf')", "== 1, float('-inf')")
    diagnostics = findings("SHP202", mutant)
    assert len(diagnostics) == 1 and diagnostics[0].fix.applicability == "unsafe"
    fixed = apply_edits(mutant, [diagnostics[0].fix]).text
    assert fixed == NANOGPT


def test_next_token_training_makes_the_blocks_causal():
    assert findings("SHP201", SDPA_BLOCK) == []
    mutant = SDPA_BLOCK.replace(
        "y = F.scaled_dot_product_attention(q, k, v, is_causal=True)", "y = F.scaled_dot_product_attention(q, k, v)"
    )
    assert [d.line for d in findings("SHP201", mutant)] == [16]
    # the same blocks without the shifted-target loss are not declared causal
    encoder = mutant.replace("targets[:, 1:]", "targets")
    assert findings("SHP201", encoder) == []


SDPA_CALL = "y = F.scaled_dot_product_attention(q, k, v, is_causal=True)"


@pytest.mark.parametrize(
    "good, bad, message",
    [
        (
            "flash_attn_func(q, k, v, causal=True)",
            "flash_attn_func(q, k, v)",
            "flash_attn_func in a causal model gets no causal mask (no `causal=True`)",
        ),
        (
            "flash_attn_func(q, k, v, 0.0, None, True)",
            "flash_attn_func(q, k, v, 0.0, None, False)",
            "flash_attn_func in a causal model gets no causal mask (no `causal=True`)",
        ),
        (
            "memory_efficient_attention(q, k, v, attn_bias=LowerTriangularMask())",
            "memory_efficient_attention(q, k, v)",
            "memory_efficient_attention in a causal model gets no causal mask (no `attn_bias`)",
        ),
        (
            "flex_attention(q, k, v, block_mask=self.block_mask)",
            "flex_attention(q, k, v)",
            "flex_attention in a causal model gets no causal mask (no `block_mask`)",
        ),
        (
            "flex_attention(q, k, v, score_mod=causal)",
            "flex_attention(q, k, v, score_mod=None)",
            "flex_attention in a causal model gets no causal mask (no `block_mask`)",
        ),
    ],
)
def test_attention_kernels_other_than_sdpa_need_their_causal_argument(good, bad, message):
    imports = (
        "from flash_attn import flash_attn_func\nfrom xformers.ops import memory_efficient_attention, "
        "LowerTriangularMask\nfrom torch.nn.attention.flex_attention import flex_attention\n"
    )
    assert findings("SHP201", imports + SDPA_BLOCK.replace(SDPA_CALL, f"y = {good}")) == []
    diagnostics = findings("SHP201", imports + SDPA_BLOCK.replace(SDPA_CALL, f"y = {bad}"))
    assert [(d.line, d.message.split(":")[0]) for d in diagnostics] == [(19, message)]


WRAPPERS = """
def attend(q, k, v, causal=False, mask=None):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
"""


@pytest.mark.parametrize(
    "good, bad",
    [
        ("attend(q, k, v, causal=True)", "attend(q, k, v)"),
        ("attend(q, k, v, True)", "attend(q, k, v, False, None)"),
        ("attend(q, k, v, mask=self.causal_mask)", "attend(q, k, v, mask=None)"),
    ],
)
def test_parameters_forwarded_through_a_wrapper_reach_the_kernel(good, bad):
    """Issue 12, "parameters forwarded through a wrapper": the call that leaves the flag off is flagged,
    and the finding points at the kernel call it reaches."""
    module = SDPA_BLOCK.replace("class Block(", WRAPPERS + "\nclass Block(", 1)
    assert findings("SHP201", module.replace(SDPA_CALL, f"y = {good}")) == []
    [diagnostic] = findings("SHP201", module.replace(SDPA_CALL, f"y = {bad}"))
    assert diagnostic.line == 20
    assert diagnostic.message.startswith("`attend")
    assert [(r["line"], r["message"]) for r in diagnostic.related] == [
        (8, "the scaled_dot_product_attention call it reaches")
    ]


def test_a_method_or_static_method_that_wraps_the_kernel_is_followed():
    for decorator, signature in (("", "self, q, k, v, causal=False"), ("@staticmethod\n    ", "q, k, v, causal=False")):
        method = (
            f"    {decorator}def _attend({signature}):\n"
            "        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)\n\n"
            "    def forward(self, x):\n"
        )
        module = SDPA_BLOCK.replace("    def forward(self, x):\n", method, 1)
        assert findings("SHP201", module.replace(SDPA_CALL, "y = self._attend(q, k, v, causal=True)")) == []
        bad = findings("SHP201", module.replace(SDPA_CALL, "y = self._attend(q, k, v)"))
        assert [(d.line, d.message.split(" forwards")[0]) for d in bad] == [
            (16 + decorator.count("\n") + 3, "`_attend`")
        ]


@pytest.mark.parametrize(
    "setup, flag, fires",
    [
        ("        self.is_causal = False\n", "self.is_causal", True),  # an attribute set anywhere in the class
        ("        self.is_causal = True\n", "self.is_causal", False),
        ("        self.is_causal = config_causal\n", "self.is_causal", False),  # unknown: trusted
        ("", "CAUSAL", True),  # a module-level constant
        ("", "True if self.training else CAUSAL", False),  # one branch is causal
        ("", "False if self.training else CAUSAL", True),  # both branches of the expression
    ],
)
def test_the_causal_flag_is_resolved_through_attributes_constants_and_branches(setup, flag, fires):
    module = (
        SDPA_BLOCK.replace("import torch\n", "import torch\nCAUSAL = False\n", 1)
        .replace("        self.n_heads = n_heads\n", "        self.n_heads = n_heads\n" + setup, 1)
        .replace("def __init__(self, dim, n_heads):", "def __init__(self, dim, n_heads, config_causal=True):", 1)
    )
    found = findings(
        "SHP201", module.replace(SDPA_CALL, f"y = F.scaled_dot_product_attention(q, k, v, is_causal={flag})")
    )
    assert [d.rule for d in found] == (["SHP201"] if fires else [])


@pytest.mark.parametrize("where", ["module", "attribute"])
def test_a_kernel_wrapped_in_functools_partial_keeps_the_arguments_the_partial_fixes(where):
    def module(keywords: str) -> str:
        partial = f"partial(F.scaled_dot_product_attention, {keywords})"
        source = SDPA_BLOCK.replace("import torch\n", "import torch\nfrom functools import partial\n", 1)
        if where == "module":
            source = source.replace("\nclass Block(", f"\nattend = {partial}\n\nclass Block(", 1)
            return source.replace(SDPA_CALL, "y = attend(q, k, v)")
        source = source.replace(
            "        self.n_heads = n_heads\n", f"        self.n_heads = n_heads\n        self.attend = {partial}\n", 1
        )
        return source.replace(SDPA_CALL, "y = self.attend(q, k, v)")

    assert findings("SHP201", module("is_causal=True")) == []
    [diagnostic] = findings("SHP201", module("dropout_p=0.1"))
    assert diagnostic.message.startswith(
        "scaled_dot_product_attention in a causal model gets no causal mask (no `is_causal=True`, `attn_mask`)"
    )
    assert [r["message"] for r in diagnostic.related] == ["the functools.partial that fixes its other arguments"]


def test_cross_attention_and_caller_masks_are_not_flagged():
    cross = (
        NANOGPT.replace(MASK_LINE, "")
        .replace("def forward(self, x):", "def forward(self, x, memory):")
        .replace("k = k.view(B, T,", "k = self.c_attn(memory).split(self.n_embd, dim=2)[1].view(B, -1,")
    )
    assert findings("SHP201", cross) == []
    from_caller = NANOGPT.replace("def forward(self, x):", "def forward(self, x, attn_mask):").replace(
        "self.bias[:, :, :T, :T] == 0", "attn_mask"
    )
    assert findings("SHP201", from_caller) == []


@pytest.mark.parametrize(
    ("mask", "consumer", "inverted"),
    [
        ("torch.ones(T, T, dtype=torch.bool).tril()", "sdpa", False),
        ("torch.ones(T, T, dtype=torch.bool).tril()", "mha", True),
        ("torch.triu(torch.ones(T, T), diagonal=1).bool()", "sdpa", True),
        ("torch.triu(torch.ones(T, T), diagonal=1).bool()", "mha", False),
        ("~torch.triu(torch.ones(T, T), diagonal=1).bool()", "sdpa", False),
        ("torch.triu(torch.full((T, T), float('-inf')), diagonal=1)", "sdpa", False),
        ("torch.triu(torch.full((T, T), float('-inf')), diagonal=1)", "mha", False),
        ("torch.triu(torch.full((T, T), float('-inf')))", "mha", True),
        ("torch.tril(torch.ones(T, T)).logical_not()", "mha", False),
        ("nn.Transformer.generate_square_subsequent_mask(T)", "mha", False),
        ("torch.arange(T)[None, :] > torch.arange(T)[:, None]", "mha", False),
        ("torch.arange(T)[None, :] > torch.arange(T)[:, None]", "sdpa", True),
    ],
)
def test_boolean_conventions_of_sdpa_and_multihead_attention(mask, consumer, inverted):
    call = (
        "F.scaled_dot_product_attention(x, x, x, attn_mask=mask)"
        if consumer == "sdpa"
        else "self.attn(x, x, x, attn_mask=mask)[0]"
    )
    source = f"""
import torch
import torch.nn as nn
import torch.nn.functional as F

class Block(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, 8, batch_first=True)

    def forward(self, x):
        T = x.size(1)
        mask = {mask}
        return {call}
"""
    assert bool(findings("SHP202", source)) is inverted


PADDED_ENCODER = """
import torch.nn as nn
import torch.nn.functional as F

class Encoder(nn.Module):
    def __init__(self, vocab, d, pad_token_id):
        super().__init__()
        self.pad_token_id = pad_token_id
        self.embed = nn.Embedding(vocab, d)
        self.attn = nn.MultiheadAttention(d, 8, batch_first=True)

    def forward(self, ids):
        x = self.embed(ids)
        padding = ids == self.pad_token_id
        x = self.attn(x, x, x, key_padding_mask=padding)[0]
        q = k = v = x.unsqueeze(1)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=~padding[:, None, None, :])
"""


def test_padding_mask_polarity_fires_on_each_inverted_consumer():
    assert findings("SHP203", PADDED_ENCODER) == []
    flipped = PADDED_ENCODER.replace("padding = ids == self.pad_token_id", "padding = ids != self.pad_token_id")
    assert len(findings("SHP203", flipped)) == 2
    unflipped_sdpa = PADDED_ENCODER.replace("attn_mask=~padding", "attn_mask=padding")
    assert [d.line for d in findings("SHP203", unflipped_sdpa)] == [17]


CACHED_ATTENTION = """
import torch
import torch.nn.functional as F

def attention(q, k, v, layer_past=None):
    if layer_past is not None:
        k = torch.cat([layer_past[0], k], dim=-2)
        v = torch.cat([layer_past[1], v], dim=-2)
    y = F.scaled_dot_product_attention(q, k, v, is_causal=q.size(-2) == k.size(-2))
    return y, (k, v)
"""


def test_is_causal_true_with_a_cache_fires_and_the_aligned_flag_does_not():
    assert findings("SHP204", CACHED_ATTENTION) == []
    mutant = CACHED_ATTENTION.replace("is_causal=q.size(-2) == k.size(-2)", "is_causal=True")
    assert [d.line for d in findings("SHP204", mutant)] == [9]
    uncached = mutant.replace("k = torch.cat([layer_past[0], k], dim=-2)", "pass")
    assert findings("SHP204", uncached) == []


def test_is_causal_from_a_module_constant_or_a_conditional_expression_with_a_cache_fires():
    constant = CACHED_ATTENTION.replace("import torch\n", "import torch\nCAUSAL = True\n", 1).replace(
        "is_causal=q.size(-2) == k.size(-2)", "is_causal=CAUSAL"
    )
    assert [d.line for d in findings("SHP204", constant)] == [10]
    both = CACHED_ATTENTION.replace("is_causal=q.size(-2) == k.size(-2)", "is_causal=True if q.is_cuda else True")
    assert [d.line for d in findings("SHP204", both)] == [9]
    either = CACHED_ATTENTION.replace("is_causal=q.size(-2) == k.size(-2)", "is_causal=True if q.is_cuda else False")
    assert findings("SHP204", either) == []
