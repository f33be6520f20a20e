"""Behaviour of the attention-arithmetic rules (SHP101-SHP105, SHP205) beyond their spec examples:
mutations of correct modules, the tracer's reach into helpers, message variants and fixes."""

from __future__ import annotations

import textwrap

import libcst as cst
import pytest

from sharpedges.analysis.attention import attention_softmaxes, key_axis
from sharpedges.analysis.context import FileContext
from sharpedges.fixes import apply_edits
from tests.detectors.modules import NANOGPT_ATTENTION as NANOGPT
from tests.helpers import findings, mutate

NANOGPT_SCALE = " * (1.0 / math.sqrt(k.size(-1)))"


# -- SHP101 ---------------------------------------------------------------------------------------
def test_shp101_nanogpt_mutation_fires_only_without_the_scale():
    assert NANOGPT_SCALE in NANOGPT
    assert findings("SHP101", NANOGPT) == []
    mutant = NANOGPT.replace(NANOGPT_SCALE, "")
    softmax_line = textwrap.dedent(mutant).splitlines().index("        att = F.softmax(att, dim=-1)") + 1
    [diagnostic] = findings("SHP101", mutant)
    assert diagnostic.line == softmax_line
    # the finding points back at the product whose scale was lost
    product_line = textwrap.dedent(mutant).splitlines().index("        att = (q @ k.transpose(-2, -1))") + 1
    assert [(r["line"], r["message"]) for r in diagnostic.related] == [
        (product_line, "the unscaled QK^T product that reaches this softmax")
    ]


BART_STYLE = """
    import torch
    from torch import nn

    class Attention(nn.Module):
        def _shape(self, tensor, seq_len, bsz):
            return tensor.view(bsz, seq_len, self.num_heads, self.head_dim).transpose(1, 2).contiguous()

        def forward(self, hidden_states):
            bsz, tgt_len, _ = hidden_states.size()
            query_states = self.q_proj(hidden_states){scale}
            key_states = self._shape(self.k_proj(hidden_states), -1, bsz)
            proj_shape = (bsz * self.num_heads, -1, self.head_dim)
            query_states = self._shape(query_states, tgt_len, bsz).view(*proj_shape)
            key_states = key_states.view(*proj_shape)
            attn_weights = torch.bmm(query_states, key_states.transpose(1, 2))
            return nn.functional.softmax(attn_weights, dim=-1)
"""


def test_shp101_scale_survives_a_reshaping_helper_method():
    assert findings("SHP101", BART_STYLE.format(scale=" * self.scaling")) == []
    assert len(findings("SHP101", BART_STYLE.format(scale=""))) == 1


PARAMETER_STYLE = """
    import torch

    class BlockAttention(torch.nn.Module):
        def forward(self, x):
            global_q = self._shape(self.q_proj(x){scale}, seq_len=x.size(1), bsz=x.size(0))
            global_k = self._shape(self.k_proj(x), seq_len=x.size(1), bsz=x.size(0))
            return self.global_attention(global_q=global_q, global_k=global_k)

        def _shape(self, tensor, seq_len, bsz):
            return tensor.view(bsz, seq_len, self.num_heads, self.head_dim).transpose(1, 2)

        def global_attention(self, global_q, global_k):
            attn_weights = torch.einsum("BHGF,BHXF->BHGX", global_q, global_k)
            return torch.softmax(attn_weights, dim=-1)
"""


def test_shp101_method_parameter_is_scaled_where_every_caller_scales_it():
    assert findings("SHP101", PARAMETER_STYLE.format(scale=" * self.scaling")) == []
    assert len(findings("SHP101", PARAMETER_STYLE.format(scale=""))) == 1


NESTED_HELPER = """
    import torch

    def attention(self, hidden_states):
        def shape(states):
            return states.view(hidden_states.size(0), -1, self.n_heads, self.d_head).transpose(1, 2)

        q = shape(self.q(hidden_states){scale})
        k = shape(self.k(hidden_states))
        scores = torch.matmul(q, k.transpose(3, 2))
        return torch.softmax(scores.float(), dim=-1)
"""


def test_shp101_scale_survives_a_nested_helper_function():
    assert findings("SHP101", NESTED_HELPER.format(scale=" / 8.0")) == []
    assert len(findings("SHP101", NESTED_HELPER.format(scale=""))) == 1


FUSED_TWIN = """
    import torch.nn.functional as F

    def forward(self, q, k, v):
        if self.fused_attn:
            return F.scaled_dot_product_attention(q, k, v, scale={scale})
        attn = q @ k.transpose(-2, -1)
        return attn.softmax(dim=-1) @ v
"""


def test_shp101_unit_scale_declared_on_the_fused_twin_is_a_design():
    assert findings("SHP101", FUSED_TWIN.format(scale="1.0")) == []
    # a twin with a real scale makes the unscaled eager path a mismatch
    assert len(findings("SHP101", FUSED_TWIN.format(scale="self.scale"))) == 1


# -- SHP102 ---------------------------------------------------------------------------------------
TIMM = """
    import torch.nn as nn

    class Attention(nn.Module):
        def __init__(self, dim, num_heads=8):
            super().__init__()
            self.num_heads = num_heads
            head_dim = dim // num_heads
            self.scale = {scale} ** -0.5
            self.qkv = nn.Linear(dim, dim * 3)

        def forward(self, x):
            B, N, C = x.shape
            q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
            attn = (q @ k.transpose(-2, -1)) * self.scale
            attn = attn.softmax(dim=-1)
            return (attn @ v).transpose(1, 2).reshape(B, N, C)
"""


@pytest.mark.parametrize(("scale", "what"), [("dim", "model width"), ("num_heads", "head count")])
def test_shp102_timm_mutation(scale, what):
    assert findings("SHP102", TIMM.format(scale="head_dim")) == []
    found = findings("SHP102", TIMM.format(scale=scale))
    assert len(found) == 1 and what in found[0].message and "dim // num_heads" in found[0].message


PROJECTED_HEADS = """
    import torch
    from torch import nn
    from einops import rearrange

    class Attention(nn.Module):
        def __init__(self, dim, heads=8, dim_head=64):
            super().__init__()
            inner_dim = dim_head * heads
            self.heads = heads
            self.scale = {scale} ** -0.5
            self.to_qkv = nn.Linear(dim, inner_dim * 3, bias=False)

        def forward(self, x):
            q, k, v = self.to_qkv(x).chunk(3, dim=-1)
            q, k, v = map(lambda t: rearrange(t, "b n (h d) -> b h n d", h=self.heads), (q, k, v))
            dots = torch.einsum("b h i d, b h j d -> b h i j", q, k) * self.scale
            return dots.softmax(dim=-1)
"""


def test_shp102_a_scale_from_the_input_width_of_a_projection_into_heads_is_flagged_where_it_is_set():
    assert findings("SHP102", PROJECTED_HEADS.format(scale="dim_head")) == []
    [found] = findings("SHP102", PROJECTED_HEADS.format(scale="dim"))
    lines = textwrap.dedent(PROJECTED_HEADS.format(scale="dim")).splitlines()
    assert found.line == lines.index("        self.scale = dim ** -0.5") + 1
    assert "built from `dim`, the model width projected into heads" in found.message
    [applied] = found.related
    assert applied["line"] == next(i for i, line in enumerate(lines, 1) if "* self.scale" in line)


def test_shp102_nanogpt_mutation_scaled_by_c():
    mutant = NANOGPT.replace("math.sqrt(k.size(-1))", "math.sqrt(C)")
    assert findings("SHP102", NANOGPT) == []
    assert len(findings("SHP102", mutant)) == 1


# -- SHP103 ---------------------------------------------------------------------------------------
def test_shp103_fix_uses_the_scores_dtype_and_is_clean_afterwards():
    source = textwrap.dedent(NANOGPT.replace("float('-inf')", "-1e9"))
    found = findings("SHP103", source)
    assert len(found) == 1 and found[0].fix.applicability == "safe"
    outcome = apply_edits(source, [found[0].fix])
    fixed, applied = outcome.text, outcome.applied
    assert applied == 1 and "att.masked_fill(self.bias[:, :, :T, :T] == 0, torch.finfo(att.dtype).min)" in fixed
    assert findings("SHP103", fixed) == []
    assert findings("SHP103", NANOGPT) == []


def test_shp103_offers_no_fix_where_torch_is_not_imported_by_that_name():
    source = """
        import torch as th

        def attention(q, k, v, mask):
            scores = th.matmul(q, k.transpose(-2, -1)) * q.size(-1) ** -0.5
            scores = scores.masked_fill(mask == 0, -1e9)
            return th.softmax(scores, dim=-1) @ v
    """
    found = findings("SHP103", source)
    assert len(found) == 1 and found[0].fix is None


# -- SHP104 ---------------------------------------------------------------------------------------
def test_shp104_messages_say_what_is_wrong():
    missing = findings("SHP104", NANOGPT.replace("F.softmax(att, dim=-1)", "F.softmax(att)"))
    assert len(missing) == 1 and "without `dim`" in missing[0].message
    wrong = findings("SHP104", NANOGPT.replace("F.softmax(att, dim=-1)", "F.softmax(att, dim=-2)"))
    assert len(wrong) == 1 and "dim=-2" in wrong[0].message and "dim=-1" in wrong[0].message
    assert findings("SHP104", NANOGPT) == []


@pytest.mark.parametrize(
    ("product", "expected"),
    [
        ("torch.bmm(q, k.transpose(1, 2))", (2, -1)),
        ("torch.matmul(q, k.transpose(2, 3))", (3, -1)),
        ("q @ k.transpose(-2, -1)", (None, -1)),
        ("q @ k.permute(0, 1, 3, 2)", (3, -1)),
        ("torch.einsum('bhid,bhjd->bhij', q, k)", (3, -1)),
        ("torch.einsum('...id,...jd->...ij', q, k)", (None, -1)),
        ("torch.einsum('bid,bjd->bji', q, k)", (1, -2)),
    ],
)
def test_key_axis_of_each_product(product, expected):
    source = f"import torch\n\ndef f(q, k):\n    return torch.softmax({product}, dim=-1)\n"
    ctx = FileContext("x.py", cst.parse_module(source))
    [(_, [source_])] = attention_softmaxes(ctx)
    assert key_axis(source_, ctx) == expected


# -- SHP105 ---------------------------------------------------------------------------------------
EAGER_FUNCTION_IN_A_REGISTRY = """
import torch
from torch import nn


def eager_attention_forward(module, query, key, value, attention_mask):
    scores = torch.matmul(query, key.transpose(-1, -2)) / query.size(-1) ** 0.5
    weights = nn.functional.softmax(scores + attention_mask, dim=-1)
    return torch.matmul(weights, value)


ATTENTION_FUNCTIONS = {"eager": eager_attention_forward}


class Attention(nn.Module):
    def forward(self, q, k, v, mask):
        interface = ATTENTION_FUNCTIONS[self.config.impl]
        return interface(self, q, k, v, mask)


ATTENTION_CLASSES = {"eager": Attention}


class Layer(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.attention = ATTENTION_CLASSES[config._attn_implementation](config)


model = Layer(config)
"""


def test_a_module_level_eager_function_runs_in_the_precision_of_the_classes_that_pick_it():
    """transformers 4.48 GPT-NeoX: the softmax is in a module-level function that the attention class picks
    from a registry of functions, and the layer builds the attention class from a registry of classes: a
    cast of the layer to half reaches the function's softmax through both."""
    assert findings("SHP105", EAGER_FUNCTION_IN_A_REGISTRY) == []
    half = findings("SHP105", EAGER_FUNCTION_IN_A_REGISTRY.replace("Layer(config)", "Layer(config).half()"))
    assert [d.line for d in half] == [8]


def test_shp105_only_where_the_code_shows_half():
    assert findings("SHP105", NANOGPT) == []
    half = NANOGPT.replace("F.softmax(att, dim=-1)", "F.softmax(att.half(), dim=-1)")
    assert len(findings("SHP105", half)) == 1
    upcast = NANOGPT.replace("F.softmax(att, dim=-1)", "F.softmax(att.half(), dim=-1, dtype=torch.float32)")
    assert findings("SHP105", upcast) == []


# -- SHP205 ---------------------------------------------------------------------------------------
SUMMED = """
    import torch

    def combine(causal, padding, dtype):
        a = torch.where(causal, 0.0, torch.finfo(dtype).min)
        b = torch.where(padding, torch.finfo(dtype).min, 0.0)
        return {expression}
"""


@pytest.mark.parametrize(
    ("expression", "count"),
    [
        ("a + b", 1),
        ("(a + b).clamp(min=torch.finfo(dtype).min)", 0),
        ("torch.clamp(a + b, min=torch.finfo(dtype).min)", 0),
        ("a.masked_fill(b < 0, torch.finfo(dtype).min)", 0),
        ("a + 1.0", 0),
    ],
)
def test_shp205_sums_and_their_guards(expression, count):
    assert len(findings("SHP205", SUMMED.format(expression=expression))) == count


T5_STYLE = """
import torch
from torch import nn
from torch.nn import init


class T5Attention(nn.Module):
    def __init__(self, d_model, d_kv, n_heads):
        super().__init__()
        self.q = nn.Linear(d_model, n_heads * d_kv, bias=False)
        self.k = nn.Linear(d_model, n_heads * d_kv, bias=False)

    def forward(self, x, position_bias):
        scores = torch.matmul(self.q(x), self.k(x).transpose(3, 2))
        scores += position_bias
        return nn.functional.softmax(scores.float(), dim=-1)


class T5PreTrainedModel(nn.Module):
    def _init_weights(self, module):
        factor = 1.0
        if isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
        elif isinstance(module, (T5Attention,)):
            d_model, key_value_proj_dim = 512, 64
            init.normal_(module.q.weight, mean=0.0, std=factor * ((d_model * key_value_proj_dim) ** -0.5))
            init.normal_(module.k.weight, mean=0.0, std=factor * (d_model**-0.5))
"""


def test_a_scale_folded_into_the_query_init_is_t5s_design_not_a_missing_scale():
    assert findings("SHP101", T5_STYLE) == []
    # the same attention without that init, or with the query initialised like the key: reported
    no_init = T5_STYLE.split("class T5PreTrainedModel")[0]
    assert [d.line for d in findings("SHP101", no_init)] == [16]
    same_init = mutate(T5_STYLE, "((d_model * key_value_proj_dim) ** -0.5)", "(d_model**-0.5)")
    assert [d.line for d in findings("SHP101", same_init)] == [16]
    other_class = mutate(T5_STYLE, "isinstance(module, (T5Attention,))", "isinstance(module, (T5DenseAct,))")
    assert [d.line for d in findings("SHP101", other_class)] == [16]
    # the tensor's own init method reads the same
    method_form = mutate(
        mutate(T5_STYLE, "init.normal_(module.q.weight, mean=0.0, std=", "module.q.weight.data.normal_(mean=0.0, std="),
        "init.normal_(module.k.weight, mean=0.0, std=",
        "module.k.weight.data.normal_(mean=0.0, std=",
    )
    assert findings("SHP101", method_form) == []


SUMMED_PLANES = """
import torch

def causal(n, dtype):
    mask = torch.full((n, n), torch.finfo(dtype).min)
    return torch.triu(mask, diagonal=1)

def padding(pad, dtype):
    return (1.0 - pad[:, None, None, :].to(dtype)) * torch.finfo(dtype).min

def combine(n, pad, dtype):
    return causal(n, dtype) + padding(pad, dtype)
"""


def test_summed_min_planes_point_at_where_each_minimum_is_written():
    """SHP205 rests on the two planes: review keeps it when either construction changes."""
    [finding] = findings("SHP205", SUMMED_PLANES)
    assert finding.line == 12
    assert [(r["line"], r["message"]) for r in finding.related] == [
        (5, "one of the two finfo.min planes is written here"),
        (9, "one of the two finfo.min planes is written here"),
    ]
    inline = "import torch\n\ndef f(a, b, dtype):\n    return a * torch.finfo(dtype).min + b * torch.finfo(dtype).min\n"
    [finding] = findings("SHP205", inline)
    assert finding.related == []  # both minimums sit in the sum itself


def test_a_fill_value_named_elsewhere_is_where_the_fill_finding_rests():
    source = (
        "import torch\n\nNEG_INF = -1e20\n\n\ndef attend(q, k, mask):\n"
        "    scores = (q @ k.transpose(-2, -1)) * q.size(-1) ** -0.5\n"
        "    return scores.masked_fill(mask == 0, NEG_INF).softmax(dim=-1)\n"
    )
    [finding] = findings("SHP103", source)
    assert finding.line == 8
    assert [(r["line"], r["message"]) for r in finding.related] == [(3, "the fill value is set here")]


def test_a_padding_mask_finding_rests_on_the_comparison_that_decides_what_it_marks():
    source = (
        "import torch.nn.functional as F\n\n\ndef attend(q, k, v, input_ids, pad_token_id):\n"
        "    pad = input_ids == pad_token_id\n"
        "    return F.scaled_dot_product_attention(q, k, v, attn_mask=pad[:, None, None, :])\n"
    )
    [finding] = findings("SHP203", source)
    assert finding.line == 6
    assert [(r["line"], r["message"]) for r in finding.related] == [(5, "what the mask marks is decided here")]
    inline = source.replace("attn_mask=pad[", "attn_mask=(input_ids == pad_token_id)[")
    [finding] = findings("SHP203", inline)
    assert finding.related == []  # decided inside the call itself


EAGER_WITH_FUSED_TWIN = """
import torch
from torch import nn
from .flash_utils import _flash_attention_forward

class SelfAttention(nn.Module):
    def _attn(self, query, key, value):
        scores = torch.matmul(query, key.transpose(-1, -2))
        return torch.matmul(nn.functional.softmax(scores, dim=-1), value)

class FlashAttention2(SelfAttention):
    def forward(self, query, key, value, mask):
        return _flash_attention_forward(query, key, value, mask, query.shape[1], softmax_scale=1.0)
"""


def test_a_fused_twin_that_states_unit_scale_makes_the_eager_path_deliberate():
    """GPT-Neo: the flash subclass of the eager class passes softmax_scale=1.0, so unscaled is the design."""
    assert findings("SHP101", EAGER_WITH_FUSED_TWIN) == []
    # the twin scales as usual, or is gone: the eager path's missing scale is reported
    scaled_twin = mutate(EAGER_WITH_FUSED_TWIN, "softmax_scale=1.0", "softmax_scale=self.scale")
    assert [d.line for d in findings("SHP101", scaled_twin)] == [9]
    no_twin = EAGER_WITH_FUSED_TWIN.split("class FlashAttention2")[0]
    assert [d.line for d in findings("SHP101", no_twin)] == [9]
    # a scale keyword of 1 on a call that is not an attention call (no q, k, v) says nothing
    other_call = mutate(
        EAGER_WITH_FUSED_TWIN,
        "_flash_attention_forward(query, key, value, mask, query.shape[1], softmax_scale=1.0)",
        "self.rotary(query, scale=1.0)",
    )
    assert [d.line for d in findings("SHP101", other_call)] == [9]
    # an unrelated class of the file says nothing about this one
    unrelated = mutate(EAGER_WITH_FUSED_TWIN, "class FlashAttention2(SelfAttention):", "class Other(nn.Module):")
    assert [d.line for d in findings("SHP101", unrelated)] == [9]


DOCUMENTED_UNSCALED = '''
import torch
import torch.nn.functional as F
from torch import nn

class EncoderSelfAttention(nn.Module):
    """Self-attention for the encoder.

    Standard self-attention with two differences:
        - No scaling factor
        - A relative position bias is added to the scores.
    """

    def forward(self, q, k, v, rel_pos_bias):
        scores = torch.matmul(q, k.transpose(-2, -1))
        scores += rel_pos_bias
        return torch.matmul(F.softmax(scores.float(), dim=-1).to(scores.dtype), v)
'''


def test_an_attention_whose_docstring_says_it_is_unscaled_is_deliberate():
    """torchtune's T5 encoder documents the design in words; the author says so, as noqa would."""
    assert findings("SHP101", DOCUMENTED_UNSCALED) == []
    undocumented = mutate(DOCUMENTED_UNSCALED, "- No scaling factor", "- Fused projections")
    assert [d.line for d in findings("SHP101", undocumented)] == [17]
    in_a_comment = mutate(
        undocumented, "        scores += rel_pos_bias", "        scores += rel_pos_bias  # unscaled, as T5"
    )
    assert findings("SHP101", in_a_comment) == []
    # a comment about the scale that does not deny it keeps the finding
    other_comment = mutate(
        undocumented, "        scores += rel_pos_bias", "        scores += rel_pos_bias  # scale later"
    )
    assert [d.line for d in findings("SHP101", other_comment)] == [17]
