"""Behaviour of the RoPE and dropout rules (SHP601 rope-not-fp32, SHP602 gqa-repeat-not-interleave,
SHP603 rope-layout-mismatch, SHP701 dropout-not-gated) beyond their spec examples: a correct module
and the same module with one defect, where only the mutant fires; message variants and fixes."""

from __future__ import annotations

import textwrap

import pytest

from sharpedges.fixes import apply_edits
from tests.helpers import findings, mutate


def line_of(source: str, text: str) -> int:
    lines = textwrap.dedent(source).splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line)


# -- SHP601 rope-not-fp32 -----------------------------------------------------------------------------
NEOX_ROTARY = """
    import torch
    from torch import nn

    class RotaryEmbedding(nn.Module):
        def __init__(self, dim, max_seq_len=2048, base=10000):
            super().__init__()
            inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim))
            self.register_buffer("inv_freq", inv_freq, persistent=False)
            self.max_seq_len_cached = 0

        def _build_cache(self, seq_len, device):
            t = torch.arange(seq_len, device=device, dtype=torch.float32)
            freqs = torch.outer(t, self.inv_freq.float())
            emb = torch.cat((freqs, freqs), dim=-1)
            self.cos_cached, self.sin_cached = emb.cos(), emb.sin()
            self.max_seq_len_cached = seq_len

        def forward(self, x, seq_len):
            if seq_len > self.max_seq_len_cached:
                self._build_cache(seq_len, x.device)
            return self.cos_cached[:seq_len].to(x.dtype), self.sin_cached[:seq_len].to(x.dtype)
"""


def test_shp601_correct_rotary_is_quiet():
    assert findings("SHP601", NEOX_ROTARY) == []


def test_shp601_positions_following_the_buffer_dtype_fire():
    mutant = mutate(NEOX_ROTARY, "dtype=torch.float32", "dtype=self.inv_freq.dtype")
    mutant = mutate(mutant, "self.inv_freq.float()", "self.inv_freq")
    found = findings("SHP601", mutant)
    assert [d.line for d in found] == [line_of(mutant, "freqs = torch.outer")]
    assert "model.half()" in found[0].message


def test_shp601_uncast_buffer_fires_only_when_forward_reads_it():
    mutant = mutate(NEOX_ROTARY, "self.inv_freq.float()", "self.inv_freq")
    assert [d.line for d in findings("SHP601", mutant)] == [line_of(mutant, "freqs = torch.outer")]
    # the same read in a method only __init__ runs sees the freshly computed float32 table
    init_only = mutate(mutant, "                self._build_cache(seq_len, x.device)\n", "                pass\n")
    assert findings("SHP601", init_only) == []


def test_shp601_activation_dtype_positions_fire():
    mutant = mutate(
        NEOX_ROTARY, "def _build_cache(self, seq_len, device):", "def _build_cache(self, seq_len, device, x):"
    )
    mutant = mutate(mutant, "dtype=torch.float32", "dtype=x.dtype")
    mutant = mutate(mutant, "self._build_cache(seq_len, x.device)", "self._build_cache(seq_len, x.device, x)")
    found = findings("SHP601", mutant)
    assert len(found) == 1 and "activations' dtype" in found[0].message


BORROWED_HERE = """
import torch

def rope_angles(x, inv_freq):
    t = torch.arange(x.shape[1], device=x.device, dtype=x.dtype)
    return torch.outer(t, inv_freq)
"""
BORROWED_BY_THE_CALLER = """
import torch

def rope_angles(n, inv_freq, dtype):
    t = torch.arange(n, dtype=dtype)
    return torch.outer(t, inv_freq)

def forward(x, inv_freq):
    return rope_angles(x.shape[1], inv_freq, x.dtype)
"""


def test_shp601_activation_dtype_is_reported_where_the_method_borrows_it():
    """The line to change is where the angles' method takes the activations' dtype, and the angles are a
    related location; a dtype the caller passes in is reported at the angles (funnel's get_position_embeds)."""
    [here] = findings("SHP601", BORROWED_HERE)
    assert (here.line, here.column) == (5, 57)
    assert [(r["line"], r["message"]) for r in here.related] == [(6, "the rotary angles are computed from it here")]
    [passed] = findings("SHP601", BORROWED_BY_THE_CALLER)
    assert (passed.line, passed.related) == (6, [])


def test_shp601_autocast_matmul_needs_autocast_disabled():
    hf = """
        import torch
        from torch import nn

        class RotaryEmbedding(nn.Module):
            def __init__(self, inv_freq):
                super().__init__()
                self.register_buffer("inv_freq", inv_freq, persistent=False)

            def forward(self, x, position_ids):
                inv_freq_expanded = self.inv_freq[None, :, None].float().expand(position_ids.shape[0], -1, 1)
                position_ids_expanded = position_ids[:, None, :].float()
                with torch.autocast(device_type=x.device.type, enabled=False):
                    freqs = (inv_freq_expanded.float() @ position_ids_expanded.float()).transpose(1, 2)
                return freqs.cos(), freqs.sin()
    """
    assert findings("SHP601", hf) == []
    mutant = mutate(hf, "with torch.autocast(device_type=x.device.type, enabled=False):", "if x is not None:")
    found = findings("SHP601", mutant)
    assert len(found) == 1 and "autocast" in found[0].message


def test_shp601_half_cached_table_is_reported_once_per_method():
    mutant = mutate(
        NEOX_ROTARY,
        "self.cos_cached, self.sin_cached = emb.cos(), emb.sin()",
        "self.cos_cached = emb.cos().bfloat16()\n            self.sin_cached = emb.sin().bfloat16()",
    )
    found = findings("SHP601", mutant)
    assert [d.line for d in found] == [line_of(mutant, "self.cos_cached = emb.cos()")]
    assert "stored in bfloat16" in found[0].message


# -- SHP701 dropout-not-gated -------------------------------------------------------------------------
PREALLOCATED_TABLES = """
    import torch
    from torch import nn

    class RotaryEncoder(nn.Module):
        def __init__(self, dim, max_seq_len, device=None, dtype=None):
            super().__init__()
            self.dim, self.max_seq_len = dim, max_seq_len
            cos = torch.empty((max_seq_len, dim), device=device, dtype=dtype)
            sin = torch.empty((max_seq_len, dim), device=device, dtype=dtype)
            self.register_buffer("cos_weight", cos, persistent=False)
            self.register_buffer("sin_weight", sin, persistent=False)
            self.reset_buffers()

        def reset_buffers(self):
            indices = torch.arange(self.dim // 2, dtype=torch.float32)
            steps = torch.arange(self.max_seq_len, dtype=torch.float32).unsqueeze(1)
            table = torch.matmul(steps, 10000 ** (-2.0 * indices.unsqueeze(0) / self.dim))
            self.cos_weight[:] = torch.repeat_interleave(torch.cos(table), 2, dim=-1)
            self.sin_weight[:] = torch.repeat_interleave(torch.sin(table), 2, dim=-1)
"""


def test_shp601_tables_written_into_buffers_allocated_in_the_modules_dtype():
    [finding] = findings("SHP601", PREALLOCATED_TABLES)
    assert finding.line == line_of(PREALLOCATED_TABLES, "cos = torch.empty(")
    assert "stored in the dtype the module is built in" in finding.message
    assert [(r["line"], r["message"]) for r in finding.related] == [
        (line_of(PREALLOCATED_TABLES, "self.cos_weight[:] ="), "the float32 table is written into that buffer here")
    ]
    float32 = PREALLOCATED_TABLES.replace("dtype=dtype)", "dtype=torch.float32)")
    assert findings("SHP601", float32) == []


NANOGPT_ATTENTION = """
    import torch.nn as nn
    import torch.nn.functional as F

    class CausalSelfAttention(nn.Module):
        def __init__(self, config):
            super().__init__()
            self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
            self.resid_dropout = nn.Dropout(config.dropout)
            self.dropout = config.dropout

        def forward(self, x):
            q, k, v = self.c_attn(x).chunk(3, dim=-1)
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0, is_causal=True)
            y = F.dropout(y, p=self.dropout, training=self.training)
            return self.resid_dropout(y)
"""


def test_shp701_gated_attention_is_quiet():
    assert findings("SHP701", NANOGPT_ATTENTION) == []


def test_shp701_ungated_sdpa_fires_on_the_mutant():
    mutant = mutate(NANOGPT_ATTENTION, "dropout_p=self.dropout if self.training else 0", "dropout_p=self.dropout")
    found = findings("SHP701", mutant)
    assert [d.line for d in found] == [line_of(mutant, "scaled_dot_product_attention")]
    assert "cannot see self.training" in found[0].message and found[0].fix is None


def test_shp701_functional_dropout_gets_the_training_fix():
    mutant = mutate(NANOGPT_ATTENTION, "p=self.dropout, training=self.training)", "p=self.dropout)")
    found = findings("SHP701", mutant)
    assert [d.line for d in found] == [line_of(mutant, "y = F.dropout")]
    fixed = apply_edits(textwrap.dedent(mutant), [found[0].fix]).text
    assert "F.dropout(y, p=self.dropout, training=self.training)" in fixed
    assert findings("SHP701", fixed) == []


def test_shp701_no_fix_outside_a_module_method():
    found = findings(
        "SHP701",
        """
        import torch.nn.functional as F

        def regularise(x, p):
            return F.dropout(x, p)
    """,
    )
    assert len(found) == 1 and found[0].fix is None


def test_shp701_dropout_module_in_forward_fires_and_in_init_does_not():
    mutant = mutate(NANOGPT_ATTENTION, "return self.resid_dropout(y)", "return nn.Dropout(0.1)(y)")
    assert [d.line for d in findings("SHP701", mutant)] == [line_of(mutant, "nn.Dropout(0.1)(y)")]


def test_shp701_training_gate_in_init_only_for_nn_modules():
    gate = """
        import torch.nn as nn

        class Attention(nn.Module):
            def __init__(self, p):
                super().__init__()
                self.p = p if self.training else 0.0
    """
    assert len(findings("SHP701", gate)) == 1
    own_flag = gate.replace("class Attention(nn.Module):", "class Attention:").replace(
        "super().__init__()", "self.training = True"
    )
    assert findings("SHP701", own_flag) == []


def test_shp701_gate_written_as_an_if_statement():
    source = """
        import torch.nn as nn
        import torch.nn.functional as F

        class Attention(nn.Module):
            def __init__(self, p):
                super().__init__()
                self.p = p

            def forward(self, q, k, v):
                if not self.training:
                    p = 0.0
                else:
                    p = self.p
                x = F.dropout(q, p)
                return F.scaled_dot_product_attention(x, k, v, dropout_p=p)
    """
    assert findings("SHP701", source) == []
    ungated = mutate(source, "if not self.training:", "if self.p < 0:")
    assert [d.line for d in findings("SHP701", ungated)] == [
        line_of(ungated, "F.dropout(q, p)"),
        line_of(ungated, "dropout_p=p"),
    ]


def test_shp701_the_only_caller_zeroes_dropout_in_eval():
    source = """
        import torch.nn as nn
        import torch.nn.functional as F

        def attend(q, k, v, dropout_p):
            weights = F.dropout((q @ k.transpose(-2, -1)).softmax(-1), dropout_p)
            return weights @ v

        class Attention(nn.Module):
            def _core(self, q, k, v):
                return F.scaled_dot_product_attention(q, k, v, dropout_p=self.p)

            def forward(self, q, k, v):
                if self.training:
                    q = self._core(q, k, v)
                return attend(q, k, v, self.p if self.training else 0.0)
    """
    assert findings("SHP701", source) == []
    ungated = mutate(source, "self.p if self.training else 0.0", "self.p")
    assert [d.line for d in findings("SHP701", ungated)] == [line_of(ungated, "F.dropout(")]
    also_in_eval = mutate(source, "if self.training:", "if q is not None:")
    assert [d.line for d in findings("SHP701", also_in_eval)] == [line_of(also_in_eval, "dropout_p=self.p")]


def test_shp701_sdpa_in_an_autograd_functions_backward_is_not_a_module_call():
    source = """
        import torch
        import torch.nn.functional as F

        class RecomputedAttention(torch.autograd.Function):
            @staticmethod
            def forward(ctx, q, k, v, p):
                ctx.p = p
                ctx.save_for_backward(q, k, v)
                return F.scaled_dot_product_attention(q, k, v, dropout_p=p)

            @staticmethod
            def backward(ctx, grad):
                q, k, v = ctx.saved_tensors
                with torch.enable_grad():
                    out = F.scaled_dot_product_attention(q, k, v, dropout_p=ctx.p)
                return torch.autograd.grad(out, (q, k, v), grad) + (None,)
    """
    assert findings("SHP701", source) == []


def test_shp701_a_backward_op_repeats_the_probability_its_forward_saved():
    source = """
        import torch

        def _native_attention_backward_op(ctx, grad_out):
            query, key, value = ctx.saved_tensors
            with torch.enable_grad():
                out = torch.nn.functional.scaled_dot_product_attention(query, key, value, dropout_p=ctx.dropout_p)
            return torch.autograd.grad(out, (query, key, value), grad_out)
    """
    assert findings("SHP701", source) == []


def test_shp701_training_on_a_class_that_is_not_a_module_through_a_local_base():
    source = """
        class Options:
            def __init__(self):
                self.training = True

        class Stage(Options):
            def __init__(self, p):
                super().__init__()
                self.p = p if self.training else 0.0

        class Plain:
            pass

        class Step(Plain):
            def __init__(self, p):
                self.p = p if self.training else 0.0
    """
    assert findings("SHP701", source) == []
    module = "import torch.nn as nn\n\nclass Plain(nn.Module):"
    assert len(findings("SHP701", textwrap.dedent(source).replace("class Plain:", module))) == 1


# -- SHP602 gqa-repeat-not-interleave -----------------------------------------------------------------
GQA_ATTENTION = """
    import torch.nn.functional as F
    from torch import nn

    class Attention(nn.Module):
        def __init__(self, dim, n_heads, n_kv_heads):
            super().__init__()
            assert n_heads % n_kv_heads == 0
            self.n_rep = n_heads // n_kv_heads

        def forward(self, q, k, v):
            k = k.repeat_interleave(self.n_rep, dim=1)
            v = v.repeat_interleave(self.n_rep, dim=1)
            return F.scaled_dot_product_attention(q, k, v)
"""


def test_shp602_grouped_expansion_is_quiet():
    assert findings("SHP602", GQA_ATTENTION) == []
    assert findings("SHP602", GQA_ATTENTION, {"check-divisibility": True}) == []


def test_shp602_tile_order_mutant_fires_with_a_repeat_interleave_fix():
    mutant = mutate(GQA_ATTENTION, "k = k.repeat_interleave(self.n_rep, dim=1)", "k = k.repeat(1, self.n_rep, 1, 1)")
    found = findings("SHP602", mutant)
    assert [d.line for d in found] == [line_of(mutant, "k = k.repeat(")]
    fixed = apply_edits(textwrap.dedent(mutant), [found[0].fix]).text
    assert "k = k.repeat_interleave(self.n_rep, dim=1)" in fixed
    assert findings("SHP602", fixed) == []


@pytest.mark.parametrize(
    ("grouped", "tiled"),
    [
        ("torch.cat([k] * self.n_rep, dim=1)", True),
        ("torch.cat([k for _ in range(self.n_rep)], dim=1)", True),
        ("torch.cat([k[:, i] for i in range(self.n_rep)], dim=1)", False),  # slices, not copies
        ("k.unsqueeze(1).expand(b, self.n_rep, self.n_kv_heads, t, d).flatten(1, 2)", True),
        ("k.unsqueeze(2).expand(b, self.n_kv_heads, self.n_rep, t, d).flatten(1, 2)", False),
    ],
)
def test_shp602_copies_concatenated_or_expanded_in_front_of_the_heads(grouped, tiled):
    """The other spellings of the two orders: whole copies one after another, or a fresh axis in front."""
    source = GQA_ATTENTION.replace(
        "import torch.nn.functional as F", "import torch\n    import torch.nn.functional as F"
    ).replace(
        "self.n_rep = n_heads // n_kv_heads",
        "self.n_rep = n_heads // n_kv_heads\n            self.n_kv_heads = n_kv_heads",
    )
    source = source.replace(
        "k = k.repeat_interleave(self.n_rep, dim=1)", f"b, _, t, d = k.shape\n            k = {grouped}"
    )
    assert [d.line for d in findings("SHP602", source)] == ([line_of(source, "k = ")] if tiled else [])


@pytest.mark.parametrize("tiled", ["k = k.repeat(reps)", "k = torch.tile(k, reps)", "k = np.tile(k, reps)"])
def test_shp602_repeat_counts_held_in_a_variable(tiled):
    """Issue 12, "ops in other forms": the counts sit in a list variable, and numpy's tile is a tile too."""
    source = GQA_ATTENTION.replace(
        "import torch.nn.functional as F", "import numpy as np\n    import torch\n    import torch.nn.functional as F"
    )
    grouped = mutate(
        source,
        "k = k.repeat_interleave(self.n_rep, dim=1)",
        "reps = [1, 1, self.n_rep, 1]\n            k = k[:, :, None].expand(-1, -1, self.n_rep, -1)",
    )
    assert findings("SHP602", grouped) == []
    mutant = mutate(
        source, "k = k.repeat_interleave(self.n_rep, dim=1)", f"reps = [1, self.n_rep, 1, 1]\n            {tiled}"
    )
    found = findings("SHP602", mutant)
    assert [(d.line, d.fix) for d in found] == [(line_of(mutant, tiled), None)]


def test_shp602_no_fix_when_other_factors_are_not_one():
    mutant = mutate(GQA_ATTENTION, "k = k.repeat_interleave(self.n_rep, dim=1)", "k = k.repeat(2, self.n_rep, 1, 1)")
    found = findings("SHP602", mutant)
    assert len(found) == 1 and found[0].fix is None


def test_shp602_divisibility_check_is_an_option():
    mutant = mutate(GQA_ATTENTION, "            assert n_heads % n_kv_heads == 0\n", "")
    assert findings("SHP602", mutant) == []
    found = findings("SHP602", mutant, {"check-divisibility": True})
    assert [d.line for d in found] == [line_of(mutant, "self.n_rep = n_heads // n_kv_heads")]
    # the check may read the counts through another object (a config, self)
    elsewhere = mutate(
        mutant,
        "self.n_rep = n_heads // n_kv_heads",
        "self.n_rep = n_heads // n_kv_heads\n            assert self.n_heads % config.n_kv_heads == 0",
    )
    assert findings("SHP602", elsewhere, {"check-divisibility": True}) == []


REPEAT_KV_HELPER = """
    import torch.nn.functional as F
    from torch import nn

    def repeat_kv(x, n_rep):
        if n_rep == 1:
            return x
        return x.repeat_interleave(n_rep, dim=1)

    class Attention(nn.Module):
        def __init__(self, dim, n_heads, n_kv_heads):
            super().__init__()
            assert n_heads % n_kv_heads == 0
            self.n_rep = n_heads // n_kv_heads

        def forward(self, q, k, v):
            k, v = repeat_kv(k, self.n_rep), repeat_kv(v, self.n_rep)
            return F.scaled_dot_product_attention(q, k, v)
"""


def test_shp602_tile_order_inside_a_helper_given_the_ratio_by_its_callers():
    assert findings("SHP602", REPEAT_KV_HELPER) == []
    mutant = mutate(REPEAT_KV_HELPER, "x.repeat_interleave(n_rep, dim=1)", "x.repeat(1, n_rep, 1, 1)")
    found = findings("SHP602", mutant)
    assert [d.line for d in found] == [line_of(mutant, "x.repeat(1, n_rep, 1, 1)")]
    # the same helper called with a count that is not a head ratio says nothing about heads
    other = mutate(mutant, "repeat_kv(k, self.n_rep), repeat_kv(v, self.n_rep)", "repeat_kv(k, 2), repeat_kv(v, 2)")
    assert findings("SHP602", other) == []


# -- SHP603 rope-layout-mismatch ----------------------------------------------------------------------
HF_ROPE = """
    import torch
    import torch.nn.functional as F

    def rotate_half(x):
        x1 = x[..., : x.shape[-1] // 2]
        x2 = x[..., x.shape[-1] // 2 :]
        return torch.cat((-x2, x1), dim=-1)

    def rope_cos_sin(inv_freq, position_ids):
        freqs = torch.outer(position_ids.float(), inv_freq.float())
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos(), emb.sin()

    def apply_rotary_pos_emb(q, k, cos, sin):
        return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin

    def attention(q, k, v, inv_freq, position_ids):
        cos, sin = rope_cos_sin(inv_freq, position_ids)
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
"""


def test_shp603_consistent_rope_is_quiet():
    assert findings("SHP603", HF_ROPE) == []


def test_shp603_interleaved_table_with_rotate_half_fires_at_the_rotation():
    mutant = mutate(HF_ROPE, "emb = torch.cat((freqs, freqs), dim=-1)", "emb = freqs.repeat_interleave(2, dim=-1)")
    found = findings("SHP603", mutant)
    assert [d.line for d in found] == [line_of(mutant, "return torch.cat((-x2, x1), dim=-1)")]
    assert "i with i + d/2" in found[0].message and "repeat_interleave" in found[0].message
    # the finding rests on the table that pairs the channels the other way
    table = line_of(mutant, "emb = freqs.repeat_interleave(2, dim=-1)")
    assert [(r["line"], r["message"]) for r in found[0].related] == [
        (table, "the cos/sin table pairs the channels the other way here")
    ]


CODEC_ROTATION = """
    def rotate_half_codec(x):
        x = x.reshape(*x.shape[:-1], -1, 2)
        x1, x2 = x.unbind(dim=-1)
        x = torch.stack((-x2, x1), dim=-1)
        return x.reshape(*x.shape[:-2], -1)

    def apply_codec_rotary(q, cos, sin):
        return q * cos + rotate_half_codec(q) * sin
"""


def test_shp603_a_second_rotation_that_pairs_channels_against_every_table_of_the_file():
    source = HF_ROPE + CODEC_ROTATION
    found = findings("SHP603", source)
    assert [d.line for d in found] == [line_of(source, "x = torch.stack((-x2, x1), dim=-1)")]
    assert "2i with 2i+1" in found[0].message
    # the torch spelling of a split into (i, i + d/2) pairs agrees with the half-split table
    halves = mutate(source, "x.reshape(*x.shape[:-1], -1, 2)", "x.reshape(*x.shape[:-1], 2, -1)")
    assert findings("SHP603", mutate(halves, "x.unbind(dim=-1)", "x.unbind(dim=-2)")) == []


def test_shp603_one_function_that_rotates_both_ways_chooses_by_a_flag():
    source = (
        HF_ROPE
        + """
    def rotate(x, interleaved=False):
        if not interleaved:
            x1, x2 = x.chunk(2, dim=-1)
            return torch.cat((-x2, x1), dim=-1)
        x = x.reshape(*x.shape[:-1], -1, 2)
        x1, x2 = x.unbind(dim=-1)
        return torch.stack((-x2, x1), dim=-1).flatten(-2)
    """
    )
    assert findings("SHP603", source) == []


def test_shp603_rotated_values_fire():
    mutant = mutate(
        HF_ROPE, "q, k = apply_rotary_pos_emb(q, k, cos, sin)", "q, v = apply_rotary_pos_emb(q, v, cos, sin)"
    )
    found = findings("SHP603", mutant)
    assert len(found) == 1 and "values" in found[0].message


@pytest.mark.parametrize(
    "rotation",
    [
        "q, k, v = (apply_rotary_emb(freqs, t) for t in (q, k, v))",
        "q, k, v = [apply_rotary_emb(freqs, t) for t in (q, k, v)]",
        "q, k, v = map(lambda t: apply_rotary_emb(freqs, t), (q, k, v))",
    ],
)
def test_shp603_values_rotated_by_a_helper_that_takes_the_table_first(rotation):
    source = f"""
        import torch.nn.functional as F
        from rotary_embedding_torch import apply_rotary_emb

        def attention(q, k, v, freqs):
            {rotation}
            return F.scaled_dot_product_attention(q, k, v)
    """
    found = findings("SHP603", source)
    assert [d.line for d in found] == [line_of(source, rotation)] and "values" in found[0].message
    keys_only = mutate(source, rotation, rotation.replace("q, k, v", "q, k", 1).replace("(q, k, v)", "(q, k)"))
    assert findings("SHP603", keys_only) == []


def test_shp603_double_rotation_fires_but_exclusive_branches_do_not():
    rotation = "        q, k = apply_rotary_pos_emb(q, k, cos, sin)\n"
    twice = mutate(HF_ROPE, rotation, rotation * 2)
    found = findings("SHP603", twice)
    assert len(found) == 1 and "rotated again" in found[0].message
    branches = mutate(
        HF_ROPE,
        rotation,
        "        if position_ids is None:\n    "
        + rotation
        + "        else:\n    "
        + rotation.replace("cos, sin)", "sin, cos)"),
    )
    assert findings("SHP603", branches) == []


EINOPS_GQA = """
    from einops import repeat
    from torch import nn
    import torch.nn.functional as F

    class Attention(nn.Module):
        def __init__(self, heads, kv_heads):
            super().__init__()
            assert heads % kv_heads == 0
            self.groups = heads // kv_heads

        def forward(self, q, k, v):
            other = F.scaled_dot_product_attention(q, k, v, enable_gqa={gqa})
            k, v = (repeat(t, "b h n d -> b {order} n d", g=self.groups) for t in (k, v))
            return other, F.scaled_dot_product_attention(q, k, v)
"""


@pytest.mark.parametrize(
    ("gqa", "order", "flagged"), [("True", "(g h)", True), ("False", "(g h)", False), ("True", "(h g)", False)]
)
def test_shp602_einops_tile_order_only_against_a_grouped_path(gqa, order, flagged):
    """A tile order used everywhere is a permutation of the query heads; next to enable_gqa=True it is a bug."""
    source = EINOPS_GQA.replace("{gqa}", gqa).replace("{order}", order)
    assert [d.line for d in findings("SHP602", source)] == ([line_of(source, "repeat(t,")] if flagged else [])
