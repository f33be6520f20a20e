"""Code shapes from bugs that shipped in real releases (benchmarks/shipped_bugs.yaml), each taught to the
shared analysis layer: a small snippet written for the shape, where the finding must land, and a near
miss that must stay quiet."""

from __future__ import annotations

import textwrap

import pytest

from sharpedges.engine import Engine
from sharpedges.registry import all_rules
from tests.helpers import write_package


def findings(code: str, source: str) -> list[int]:
    """The lines of `code`'s findings in `source`."""
    result = Engine([all_rules()[code]]).check("model.py", textwrap.dedent(source).encode())
    assert not result.errors, result.errors
    return [d.line for d in result.diagnostics if d.rule == code]


def line_of(source: str, text: str) -> int:
    lines = textwrap.dedent(source).splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line)


# -- SHP205: a finfo.min plane edited in place is still one --------------------------------------------
SUMMED_PLANES = """
    import torch

    class MaskBuilder:
        @staticmethod
        def causal_plane(n, dtype):
            plane = torch.full((n, n), torch.finfo(dtype).min)
            rows = torch.arange(n)
            plane.masked_fill_(rows[None, :] <= rows[:, None], 0)
            return plane[None, None]

        @staticmethod
        def padding_plane(keep, dtype):
            flipped = 1.0 - keep[:, None, None, :].to(dtype)
            return flipped.masked_fill(flipped.bool(), torch.finfo(dtype).min)

        def combined(self, keep, n, dtype):
            causal = self.causal_plane(n, dtype)
            padding = self.padding_plane(keep, dtype)
            return padding + causal
"""


def test_shp205_plane_filled_in_place_then_summed_is_found():
    assert findings("SHP205", SUMMED_PLANES) == [line_of(SUMMED_PLANES, "return padding + causal")]


def test_shp205_plane_cleared_in_place_is_quiet():
    cleared = SUMMED_PLANES.replace("plane.masked_fill_(rows[None, :] <= rows[:, None], 0)", "plane.zero_()")
    cleared = cleared.replace("plane = torch.full((n, n), torch.finfo(dtype).min)", "plane = torch.ones(n, n)")
    assert findings("SHP205", cleared) == []


# -- SHP602: the group size as int(a / b), the repeat counts in a list ----------------------------------
TILED_KV = """
    import numpy as np

    def grouped_attention(q, k, v, q_heads, k_heads):
        if q_heads != k_heads and q_heads % k_heads == 0:
            group = int(q_heads / k_heads)
            counts = [1, group, 1, 1]
            k = np.tile(k, counts)
            v = np.tile(v, counts)
        return q @ k.swapaxes(-1, -2) @ v
"""


def test_shp602_tile_by_true_division_of_head_counts_is_found():
    assert findings("SHP602", TILED_KV) == [line_of(TILED_KV, "k = np.tile"), line_of(TILED_KV, "v = np.tile")]


def test_shp602_batch_recovered_from_a_head_product_is_quiet():
    batch = """
        def merged(x, bias, merged_batch_and_heads, num_heads):
            batch_size = merged_batch_and_heads // num_heads
            return x + bias.repeat(batch_size, 1, 1)
    """
    assert findings("SHP602", batch) == []


def test_shp602_tile_by_a_ratio_of_other_sizes_is_quiet():
    other = TILED_KV.replace("group = int(q_heads / k_heads)", "group = int(q_len / k_len)")
    assert findings("SHP602", other) == []


# -- SHP603: a rotary module instance applied twice, once inline ----------------------------------------
VALUE_ROTATED = """
    import torch
    from torch import nn

    class RotaryTable(nn.Module):
        def __init__(self, d):
            super().__init__()
            self.register_buffer("angles", torch.zeros(d))

        def forward(self, x):
            return x * self.angles.cos()

    class SpinTable(nn.Module):
        def forward(self, x):
            return x.flip(-1)

    class RotaryValues(nn.Module):
        def __init__(self, d):
            super().__init__()
            self.spin = RotaryTable(d)

        def forward(self, attn, value):
            value = self.spin(value)
            return torch.einsum("bhij,bhjd->bhid", attn, self.spin(value))
"""


def test_shp603_rotary_instance_applied_again_inline_is_found():
    assert findings("SHP603", VALUE_ROTATED) == [line_of(VALUE_ROTATED, "attn, self.spin(value)")]


def test_shp603_rotary_instance_applied_once_is_quiet():
    once = VALUE_ROTATED.replace("attn, self.spin(value))", "attn, value)")
    assert findings("SHP603", once) == []


def test_shp603_module_of_another_kind_applied_twice_is_quiet():
    other = VALUE_ROTATED.replace("self.spin = RotaryTable(d)", "self.spin = SpinTable()")
    assert findings("SHP603", other) == []


# -- SHP603: rotation through map(lambda ...) ------------------------------------------------------------
MAPPED_ROTATION = """
    def attend(q, k, angles, shift_by):
        q, k = map(lambda pair: shift_by(pair[0], angles, pair[1]), ((q, 1.0), (k, 1.0)))
        q, k = map(lambda t: apply_rotary(t, angles), (q, k))
        return q @ k.transpose(-1, -2)
"""


def test_shp603_map_rotating_names_already_rotated_is_found():
    source = MAPPED_ROTATION.replace("shift_by(pair[0]", "apply_rotary(pair[0]")
    assert findings("SHP603", source) == [line_of(source, "lambda t: apply_rotary")]


def test_shp603_map_of_another_function_first_is_quiet():
    assert findings("SHP603", MAPPED_ROTATION) == []


# -- SHP603: einops pair layouts --------------------------------------------------------------------------
EINOPS_ROPE = """
    import torch
    from einops import rearrange, repeat

    def rotate_pairs(x):
        x = rearrange(x, '... (d r) -> ... d r', r=2)
        x1, x2 = x.unbind(dim=-1)
        return torch.cat((-x2, x1), dim=-1)

    def angles(positions, inv_freq):
        freqs = torch.einsum('i, f -> i f', positions.float(), inv_freq)
        return repeat(freqs, '... n -> ... (n r)', r=2)

    def rotate(t, freqs):
        return t * freqs.cos() + rotate_pairs(t) * freqs.sin()
"""


def test_shp603_even_odd_pairs_concatenated_against_interleaved_table_is_found():
    assert findings("SHP603", EINOPS_ROPE) == [line_of(EINOPS_ROPE, "return torch.cat((-x2, x1)")]


def test_shp603_even_odd_pairs_stacked_back_is_quiet():
    fixed = EINOPS_ROPE.replace(
        "return torch.cat((-x2, x1), dim=-1)",
        "x = torch.stack((-x2, x1), dim=-1)\n        return rearrange(x, '... d r -> ... (d r)')",
    )
    assert findings("SHP603", fixed) == []


# -- SHP303: the layer loop normalises the stream it adds back ---------------------------------------------
LAYER_LOOP = """
    from torch import nn

    class Stack(nn.Module):
        def __init__(self, dim, depth, pre_norm=True):
            super().__init__()
            self.pre_norm = pre_norm
            self.layers = nn.ModuleList([nn.ModuleList([nn.LayerNorm(dim), nn.Linear(dim, dim)]) for _ in range(depth)])

        def forward(self, x):
            for i, (norm, block) in enumerate(self.layers):
                if self.pre_norm:
                    x = norm(x)
                out = block(x)
                x = x + out
            return x
"""


def test_shp303_loop_norm_overwrites_the_stream_is_found():
    assert findings("SHP303", LAYER_LOOP) == [line_of(LAYER_LOOP, "x = x + out")]


def test_shp303_loop_norm_on_a_branch_is_quiet():
    fixed = LAYER_LOOP.replace("x = norm(x)", "h = norm(x)").replace(
        "out = block(x)", "out = block(h if self.pre_norm else x)"
    )
    assert findings("SHP303", fixed) == []


def test_shp303_loop_callable_not_named_as_a_norm_is_quiet():
    # what the layers hold decides: a LayerNorm the loop calls `first` is still a norm
    other = LAYER_LOOP.replace("nn.LayerNorm(dim)", "nn.Linear(dim, dim)").replace("norm", "first")
    assert findings("SHP303", other) == []
    assert findings("SHP303", LAYER_LOOP.replace("norm", "first")) == [line_of(LAYER_LOOP, "x = x + out")]


# -- SHP202: a windowed causal mask from key positions gathered by unfold -----------------------------------
WINDOWED_MASK = """
    import torch
    import torch.nn.functional as F
    from einops import rearrange, repeat
    from torch import einsum

    def most_negative(t):
        return -torch.finfo(t.dtype).max

    def windowed_attention(q, k_windows, v_windows, keep, side, kernel):
        dots = einsum('b i d, b i j d -> b i j', q, k_windows)
        positions = torch.arange(side * side)
        key_positions = rearrange(positions.float(), '(h w) -> () () h w', h=side)
        key_positions = F.pad(key_positions, (1, 1, 1, 1), value=side * side)
        key_positions = F.unfold(key_positions, kernel)
        key_positions = rearrange(key_positions, 'b j i -> b i j')
        query_positions = rearrange(positions, 'i -> () i ()')
        hidden = query_positions >= key_positions
        hidden = repeat(hidden, '() i j -> b i j', b=q.shape[0])
        mask = torch.cat((~keep, hidden), dim=-1)
        dots.masked_fill_(mask, most_negative(dots))
        attn = dots.softmax(dim=-1)
        return einsum('b i j, b i j d -> b i d', attn, v_windows)
"""


def test_shp202_windowed_mask_hiding_the_past_is_found():
    assert findings("SHP202", WINDOWED_MASK) == [line_of(WINDOWED_MASK, "dots.masked_fill_(mask")]


def test_shp202_windowed_mask_hiding_the_future_is_quiet():
    fixed = WINDOWED_MASK.replace("query_positions >= key_positions", "query_positions < key_positions")
    assert findings("SHP202", fixed) == []


def test_shp202_window_of_values_that_are_not_positions_is_quiet():
    other = WINDOWED_MASK.replace("positions.float(), '(h w)", "(positions // side).float(), '(h w)")
    assert findings("SHP202", other) == []


# -- SHP104: a softmax module whose dim fits 3-d scores, fed 4-d ones by the module that calls it ------------
HEADS_FROM_CALLER = """
    import math
    import torch
    from torch import nn

    class ScoreAttention(nn.Module):
        def __init__(self, width):
            super().__init__()
            self.scale = math.sqrt(width)
            self.normalise = nn.Softmax(dim=2)

        def forward(self, q, k, v):
            scores = torch.matmul(q, k.transpose(-1, -2)) / self.scale
            return torch.matmul(self.normalise(scores), v)

    class Heads(nn.Module):
        def __init__(self, width, heads):
            super().__init__()
            self.heads = heads
            self.project = nn.Linear(width, 3 * width)
            self.attend = ScoreAttention(width // heads)

        def forward(self, x):
            b, t, _ = x.shape
            q, k, v = self.project(x).chunk(3, dim=-1)
            q = q.view(b, t, self.heads, -1).transpose(1, 2)
            k = k.view(b, t, self.heads, -1).transpose(1, 2)
            v = v.view(b, t, self.heads, -1).transpose(1, 2)
            return self.attend(q, k, v)
"""


def test_shp104_softmax_dim_of_3d_scores_fed_4d_by_the_caller_is_found():
    assert findings("SHP104", HEADS_FROM_CALLER) == [line_of(HEADS_FROM_CALLER, "self.normalise(scores)")]


def test_shp104_softmax_dim_of_3d_scores_fed_3d_is_quiet():
    three = HEADS_FROM_CALLER.replace(".view(b, t, self.heads, -1).transpose(1, 2)", ".view(b * t, -1, 1)")
    assert findings("SHP104", three) == []


def test_shp104_softmax_module_without_callers_in_the_file_is_quiet():
    alone = HEADS_FROM_CALLER.split("class Heads")[0]
    assert findings("SHP104", alone) == []


# -- SHP102: the width a constructing class divides into heads, unpacked next to the head size ---------------
WIDTH_FROM_CONSTRUCTOR = """
    import torch
    from torch import nn

    class BucketAttention(nn.Module):
        def __init__(self, dim, dim_head, heads):
            super().__init__()
            self.dim = dim
            self.heads = heads

        def forward(self, q, k, v):
            b, h, t, d_h, d, heads = *q.shape, self.dim, self.heads
            dots = torch.einsum('bhid,bhjd->bhij', q, k) * (d ** -0.5)
            return torch.einsum('bhij,bhjd->bhid', dots.softmax(dim=-1), v)

    class SelfAttention(nn.Module):
        def __init__(self, dim, heads):
            super().__init__()
            dim_head = dim // heads
            self.to_qkv = nn.Linear(dim, dim * 3)
            self.attend = BucketAttention(dim, dim_head, heads)
"""


def test_shp102_scale_by_the_width_the_constructor_splits_is_found():
    assert findings("SHP102", WIDTH_FROM_CONSTRUCTOR) == [line_of(WIDTH_FROM_CONSTRUCTOR, "(d ** -0.5)")]


def test_shp102_scale_by_the_unpacked_head_size_is_quiet():
    fixed = WIDTH_FROM_CONSTRUCTOR.replace("(d ** -0.5)", "(d_h ** -0.5)")
    assert findings("SHP102", fixed) == []


def test_shp102_width_handed_over_without_a_per_head_size_is_quiet():
    whole = WIDTH_FROM_CONSTRUCTOR.replace("BucketAttention(dim, dim_head, heads)", "BucketAttention(dim, 64, 1)")
    assert findings("SHP102", whole) == []


# -- SHP202: on one path a keep-mask is OR-ed with a triu causal mask before SDPA --------------------------
OR_WITH_FUTURE = """
    import torch
    import torch.nn.functional as F

    def attend(q, k, v, keep=None, causal=False):
        n, m = q.shape[-2], k.shape[-2]
        if keep is not None:
            keep = keep.expand(-1, -1, n, m)
            if causal:
                future = torch.ones((n, m), dtype=torch.bool, device=q.device).triu(m - n + 1)
                keep = keep | future
                causal = False
        return F.scaled_dot_product_attention(q, k, v, attn_mask=keep, is_causal=causal)
"""


def test_shp202_keep_mask_or_future_on_one_path_to_sdpa_is_found():
    assert findings("SHP202", OR_WITH_FUTURE) == [line_of(OR_WITH_FUTURE, "keep = keep | future")]


def test_shp202_keep_mask_and_not_future_on_one_path_to_sdpa_is_quiet():
    assert findings("SHP202", OR_WITH_FUTURE.replace("keep | future", "keep & ~future")) == []


def test_shp202_blocked_mask_or_future_on_one_path_to_masked_fill_is_quiet():
    blocked = """
        import torch

        def scores_softmax(q, k, blocked=None, causal=False):
            n, m = q.shape[-2], k.shape[-2]
            scores = q @ k.transpose(-1, -2)
            if blocked is not None and causal:
                future = torch.ones((n, m), dtype=torch.bool, device=q.device).triu(m - n + 1)
                blocked = blocked | future
            scores = scores.masked_fill(blocked, float("-inf"))
            return scores.softmax(dim=-1)
    """
    assert findings("SHP202", blocked) == []


# -- SHP203: one boolean mask, consumed by SDPA (True = attend) and by masked_fill (True = blocked) -----------
TWO_CONVENTIONS = """
    import torch
    import torch.nn.functional as F

    def pooled_attention(q, k, v, keep=None, with_weights=False):
        mask = None
        if keep is not None:
            mask = keep == 0
            mask = mask[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        weights = None
        if with_weights:
            scores = q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5
            if mask is not None:
                scores = scores.masked_fill(mask, float("-inf"))
            weights = scores.softmax(dim=-1)
        return out, weights
"""


def test_shp203_one_mask_consumed_in_both_conventions_is_found():
    assert findings("SHP203", TWO_CONVENTIONS) == [line_of(TWO_CONVENTIONS, "mask = keep == 0")]


def test_shp203_one_mask_complemented_for_the_other_convention_is_quiet():
    fixed = TWO_CONVENTIONS.replace("keep == 0", "keep == 1").replace("masked_fill(mask,", "masked_fill(~mask,")
    assert findings("SHP203", fixed) == []


def test_shp203_one_mask_of_unknown_meaning_in_agreeing_conventions_is_quiet():
    # what `keep == 0` marks is unknown without reading names; both consumers agree on it, so nothing is claimed
    agreeing = TWO_CONVENTIONS.replace("masked_fill(mask,", "masked_fill(~mask,")
    assert findings("SHP203", agreeing) == []


# -- SHP603: values rotated with q and k, joined back, and handed to an attention module of another file -------
ATTEND = """
    import torch.nn.functional as F
    from einops import rearrange
    from torch import nn

    class Attend(nn.Module):
        def _kernel(self, q, k, v, mask=None):
            if v.ndim == 3:
                v = rearrange(v, "b ... -> b 1 ...").expand_as(q)
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

        def forward(self, q, k, v, mask=None):
            return self._kernel(q, k, v, mask=mask)
"""
ROTATING = """
    import torch
    from torch import nn

    from pkg.attend import Attend

    def rotate(t, freqs):
        return t * freqs.cos() + torch.flip(t, dims=(-1,)) * freqs.sin()

    class Attention(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.to_qkv = nn.Linear(dim, 3 * dim)
            self.attend = Attend()

        def forward(self, x, freqs=None):
            q, k, v = self.to_qkv(x).chunk(3, dim=-1)
            if freqs is not None:
                n = freqs.shape[-1]
                (ql, qr), (kl, kr), (vl, vr) = map(lambda t: (t[..., :n], t[..., n:]), (q, k, v))
                ql, kl, vl = map(lambda t: rotate(t, freqs), (ql, kl, vl))
                q, k, v = map(lambda t: torch.cat(t, dim=-1), ((ql, qr), (kl, kr), (vl, vr)))
            return self.attend(q, k, v)
"""


def rotary_project(tmp_path, rotating: str = ROTATING):
    return write_package(tmp_path, {"attend.py": ATTEND, "attention.py": rotating})


def shp603_in_project(run_cli, project) -> list[str]:
    result = run_cli("check", "pkg", "--preview", "--select", "SHP603", "--no-cache", "--exit-zero", cwd=project)
    return [line.split(" ", 1)[0] for line in result.stdout.splitlines() if " SHP603 " in line]


def test_shp603_values_rotated_then_handed_to_a_module_of_another_file_is_found(run_cli, tmp_path):
    line = line_of(ROTATING, "ql, kl, vl = map(")
    assert shp603_in_project(run_cli, rotary_project(tmp_path)) == [f"pkg/attention.py:{line}:26:"]


def test_shp603_only_queries_and_keys_rotated_is_quiet(run_cli, tmp_path):
    rotating = ROTATING.replace(
        "ql, kl, vl = map(lambda t: rotate(t, freqs), (ql, kl, vl))",
        "ql, kl = map(lambda t: rotate(t, freqs), (ql, kl))",
    )
    assert shp603_in_project(run_cli, rotary_project(tmp_path, rotating)) == []


def test_shp603_value_rotation_behind_an_option_of_its_own_is_quiet(run_cli, tmp_path):
    rotating = ROTATING.replace(
        "                ql, kl, vl = map(lambda t: rotate(t, freqs), (ql, kl, vl))\n",
        "                ql, kl = map(lambda t: rotate(t, freqs), (ql, kl))\n"
        "                if self.rotate_values:\n"
        "                    vl = rotate(vl, freqs)\n",
    )
    assert shp603_in_project(run_cli, rotary_project(tmp_path, rotating)) == []


def test_shp603_rotated_values_into_a_module_of_the_same_file_are_found():
    same_file = ATTEND + ROTATING.replace("from pkg.attend import Attend\n", "")
    assert findings("SHP603", same_file) == [line_of(same_file, "ql, kl, vl = map(")]


# -- SHP105: half precision set where the model is built or used --------------------------------------------
EAGER_ATTENTION = """
    import math
    import torch
    from torch import nn

    class Attention(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.qkv = nn.Linear(dim, 3 * dim)

        def forward(self, x):
            q, k, v = self.qkv(x).chunk(3, dim=-1)
            scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
            attn = torch.softmax(scores, dim=-1)
            return attn @ v

    class Block(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.attn = Attention(dim)

        def forward(self, x):
            return x + self.attn(x)
"""
HALF_CASTS = {
    "constructor": "model = Attention(64).half()",
    "to_dtype": "def main():\n        model = Attention(64)\n        model = model.to('cuda', torch.float16)",
    "builder": "def build(dim):\n        model = Attention(dim)\n        model.half()\n        return model",
    "built_then_cast": (
        "def build(dim):\n        return Attention(dim)\n\n    def main():\n        net = build(64)\n"
        "        net.to(dtype=torch.float16)"
    ),
    "parent": "model = nn.Sequential(Block(64)).cuda()\n    block = Block(64).half()",
}


@pytest.mark.parametrize("cast", sorted(HALF_CASTS))
def test_shp105_module_cast_to_half_where_it_is_built_is_found(cast):
    source = EAGER_ATTENTION + "\n    " + HALF_CASTS[cast] + "\n"
    assert findings("SHP105", source) == [line_of(source, "attn = torch.softmax(scores")]


def test_shp105_module_cast_to_half_with_a_float32_softmax_is_quiet():
    source = EAGER_ATTENTION.replace("dim=-1)", "dim=-1, dtype=torch.float32).to(v.dtype)")
    assert findings("SHP105", source + "\n    model = Attention(64).half()\n") == []


def test_shp105_module_cast_to_bfloat16_or_float32_is_quiet():
    for cast in ("model = Attention(64).bfloat16()", "model = Attention(64).to(torch.float32)"):
        assert findings("SHP105", EAGER_ATTENTION + "\n    " + cast + "\n") == []


def test_shp105_module_run_under_autocast_is_quiet():
    # autocast runs softmax in float32 by itself: the region casts no module
    source = EAGER_ATTENTION + (
        "\n    def run(x):\n        model = Attention(64).cuda()\n"
        "        with torch.autocast('cuda', dtype=torch.float16):\n            return model(x)\n"
    )
    assert findings("SHP105", source) == []


def test_shp105_tensor_cast_to_half_is_no_module_cast():
    source = EAGER_ATTENTION + "\n    x = torch.randn(1, 8, 64).half()\n"
    assert findings("SHP105", source) == []


# -- SHP701: attention kernels other than SDPA, their dropout by position or by its own keyword ---------------
KERNEL_DROPOUT = """
    from flash_attn import flash_attn_varlen_func
    import xformers.ops as xops
    from torch import nn

    class Attention(nn.Module):
        def __init__(self, p):
            super().__init__()
            self.p = p

        def varlen(self, q, k, v, cu, max_len):
            return flash_attn_varlen_func(q, k, v, cu, cu, max_len, max_len, self.p, causal=True)

        def memory_efficient(self, q, k, v):
            return xops.memory_efficient_attention(q, k, v, p=self.p)
"""


def test_shp701_varlen_and_xformers_dropout_in_eval_is_found():
    assert findings("SHP701", KERNEL_DROPOUT) == [
        line_of(KERNEL_DROPOUT, "flash_attn_varlen_func(q, k, v, cu"),
        line_of(KERNEL_DROPOUT, "xops.memory_efficient_attention(q, k, v"),
    ]


def test_shp701_varlen_and_xformers_dropout_gated_on_training_is_quiet():
    gated = KERNEL_DROPOUT.replace("max_len, self.p,", "max_len, self.p if self.training else 0.0,")
    gated = gated.replace("p=self.p)", "p=self.p if self.training else 0.0)")
    assert findings("SHP701", gated) == []


# -- SHP201: nn.TransformerDecoder called with no target mask in a decoder-only model ---------------------------
TORCH_DECODER = """
    from torch import nn

    class CaptionLM(nn.Module):
        def __init__(self, dim, heads, depth, vocab):
            super().__init__()
            layer = nn.TransformerDecoderLayer(dim, heads, batch_first=True)
            self.decoder = nn.TransformerDecoder(layer, depth)
            self.embed = nn.Embedding(vocab, dim)

        def forward(self, tokens, memory):
            x = self.embed(tokens)
            return self.decoder(x, memory)
"""


def test_shp201_torch_decoder_without_target_mask_is_found():
    assert findings("SHP201", TORCH_DECODER) == [line_of(TORCH_DECODER, "return self.decoder(x, memory)")]


def test_shp201_torch_decoder_with_target_mask_is_quiet():
    for call in (
        "self.decoder(x, memory, tgt_mask=nn.Transformer.generate_square_subsequent_mask(x.size(1)))",
        "self.decoder(x, memory, mask, tgt_is_causal=True)",
    ):
        masked = TORCH_DECODER.replace("self.decoder(x, memory)", call)
        assert findings("SHP201", masked) == []


def test_shp201_torch_decoder_named_only_as_a_decoder_is_quiet():
    # ML-Decoder, DETR: a decoder over learned queries needs no causal mask; "decoder" alone does not say
    queries = TORCH_DECODER.replace("class CaptionLM", "class QueryDecoder")
    assert findings("SHP201", queries) == []


def test_shp201_torch_decoder_with_only_a_memory_mask_is_found():
    memory_only = TORCH_DECODER.replace("self.decoder(x, memory)", "self.decoder(x, memory, memory_mask=pad)")
    assert findings("SHP201", memory_only) == [line_of(memory_only, "return self.decoder(x, memory")]


# -- SHP102: one head per module, scaled by the width of the input it projects ---------------------------------
ONE_HEAD_PER_MODULE = """
    import torch
    from torch import nn
    from torch.nn import functional as F

    n_embd = 384

    class Head(nn.Module):
        def __init__(self, head_size):
            super().__init__()
            self.key = nn.Linear(n_embd, head_size, bias=False)
            self.query = nn.Linear(n_embd, head_size, bias=False)
            self.value = nn.Linear(n_embd, head_size, bias=False)

        def forward(self, x):
            B, T, C = x.shape
            k = self.key(x)
            q = self.query(x)
            wei = q @ k.transpose(-2, -1) * C**-0.5
            wei = F.softmax(wei, dim=-1)
            return wei @ self.value(x)

    class MultiHeadAttention(nn.Module):
        def __init__(self, num_heads, head_size):
            super().__init__()
            self.heads = nn.ModuleList([Head(head_size) for _ in range(num_heads)])
            self.proj = nn.Linear(n_embd, n_embd)

        def forward(self, x):
            return self.proj(torch.cat([h(x) for h in self.heads], dim=-1))

    class Block(nn.Module):
        def __init__(self, n_embd, n_head):
            super().__init__()
            head_size = n_embd // n_head
            self.sa = MultiHeadAttention(n_head, head_size)
"""


def test_shp102_one_head_per_module_scaled_by_the_input_width_is_found():
    result = Engine([all_rules()["SHP102"]]).check("model.py", textwrap.dedent(ONE_HEAD_PER_MODULE).encode())
    [finding] = result.diagnostics
    assert finding.line == line_of(ONE_HEAD_PER_MODULE, "* C**-0.5")
    assert "`n_embd // n_head`" in finding.message


def test_shp102_one_head_per_module_scaled_by_the_head_size_is_quiet():
    fixed = ONE_HEAD_PER_MODULE.replace("* C**-0.5", "* k.shape[-1] ** -0.5")
    assert findings("SHP102", fixed) == []


def test_shp102_single_head_of_the_full_width_is_quiet():
    whole = ONE_HEAD_PER_MODULE.replace(
        "self.sa = MultiHeadAttention(n_head, head_size)", "self.sa = MultiHeadAttention(1, n_embd)"
    )
    assert findings("SHP102", whole) == []


# -- SHP501: router logits returned inside a tuple, unpacked by the caller and dropped ---------------------------
ROUTER_TUPLE = """
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Router(nn.Module):
        def __init__(self, dim, n_experts, k):
            super().__init__()
            self.gate = nn.Linear(dim, n_experts, bias=False)
            self.k = k

        def forward(self, x):
            logits = self.gate(x)
            weights, idx = torch.topk(F.softmax(logits, dim=-1), self.k, dim=-1)
            return weights, idx, logits

    class SparseMoE(nn.Module):
        def __init__(self, dim, n_experts, k):
            super().__init__()
            self.router = Router(dim, n_experts, k)
            self.experts = nn.ModuleList([nn.Linear(dim, dim) for _ in range(n_experts)])

        def forward(self, x):
            weights, idx, router_logits = self.router(x)
            out = torch.zeros_like(x)
            for i, expert in enumerate(self.experts):
                rows, slot = torch.where(idx == i)
                out[rows] += weights[rows, slot, None] * expert(x[rows])
            return out
"""


def test_shp501_router_logits_returned_in_a_tuple_and_dropped_by_the_caller_is_found():
    assert findings("SHP501", ROUTER_TUPLE) == [line_of(ROUTER_TUPLE, "weights, idx = torch.topk(")]


def test_shp501_router_logits_handed_on_by_the_caller_is_quiet():
    handed_on = ROUTER_TUPLE.replace("            return out\n", "            return out, router_logits\n")
    assert findings("SHP501", handed_on) == []


def test_shp501_router_logits_returned_to_no_caller_in_the_file_is_quiet():
    alone = ROUTER_TUPLE.split("class SparseMoE")[0]
    assert findings("SHP501", alone) == []


# -- attention scores through a helper, and in module-level code (scripts, notebooks) ------------------------
HELPER_CAST = """
    import math
    import torch

    def to_half(t):
        return t.half()

    def attention(q, k, v):
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
        scores = to_half(scores)
        return scores.softmax(dim=-1) @ v
"""


def test_shp105_scores_cast_to_half_by_a_helper_is_found():
    assert findings("SHP105", HELPER_CAST) == [line_of(HELPER_CAST, "return scores.softmax(dim=-1) @ v")]


def test_shp105_scores_cast_to_float_by_a_helper_is_quiet():
    assert findings("SHP105", HELPER_CAST.replace("return t.half()", "return t.float()")) == []


SCRIPT = """
    import torch

    q = torch.randn(1, 4, 8, 16).half()
    k = torch.randn(1, 4, 8, 16).half()
    scores = q @ k.transpose(-2, -1) * 16 ** -0.5
    attn = scores.softmax(dim=-1)
"""


def test_shp105_half_softmax_in_module_level_code_is_found():
    assert findings("SHP105", SCRIPT) == [line_of(SCRIPT, "attn = scores.softmax(dim=-1)")]


def test_shp105_float_softmax_in_module_level_code_is_quiet():
    assert findings("SHP105", SCRIPT.replace("softmax(dim=-1)", "softmax(dim=-1, dtype=torch.float32)")) == []


def test_shp101_unscaled_scores_in_module_level_code_is_found():
    unscaled = SCRIPT.replace(" * 16 ** -0.5", "")
    assert findings("SHP101", unscaled) == [line_of(unscaled, "attn = scores.softmax(dim=-1)")]


# -- SHP205: planes built by static methods called on their class ------------------------------------------------
STATIC_PLANES = """
    import torch

    class Masks:
        @staticmethod
        def causal(n, dtype):
            return torch.triu(torch.full((n, n), torch.finfo(dtype).min), diagonal=1)

        @staticmethod
        def padding(keep, dtype):
            return (1.0 - keep[:, None, None, :].to(dtype)) * torch.finfo(dtype).min

    def build(keep, n, dtype):
        return Masks.causal(n, dtype) + Masks.padding(keep, dtype)
"""


def test_shp205_planes_from_static_methods_called_on_the_class_is_found():
    assert findings("SHP205", STATIC_PLANES) == [line_of(STATIC_PLANES, "return Masks.causal(n, dtype) +")]


def test_shp205_static_plane_plus_a_boolean_mask_is_quiet():
    boolean = STATIC_PLANES.replace(
        "return (1.0 - keep[:, None, None, :].to(dtype)) * torch.finfo(dtype).min", "return keep[:, None, None, :]"
    )
    assert findings("SHP205", boolean) == []


# -- SHP701: functools.partial fixes the dropout where it is built --------------------------------------------
PARTIAL_DROPOUT = """
    from functools import partial
    import torch.nn.functional as F
    from torch import nn

    class Attention(nn.Module):
        def __init__(self, p):
            super().__init__()
            self.attend = partial(F.scaled_dot_product_attention, dropout_p=p, is_causal=True)

        def forward(self, q, k, v):
            return self.attend(q, k, v)
"""


def test_shp701_dropout_fixed_by_a_partial_in_init_is_found():
    assert findings("SHP701", PARTIAL_DROPOUT) == [line_of(PARTIAL_DROPOUT, "dropout_p=p, is_causal=True)")]


def test_shp701_partial_without_dropout_given_it_per_call_is_quiet():
    fixed = PARTIAL_DROPOUT.replace("dropout_p=p, ", "").replace(
        "self.attend(q, k, v)", "self.attend(q, k, v, dropout_p=self.p if self.training else 0.0)"
    )
    assert findings("SHP701", fixed) == []


def test_shp701_partial_made_in_forward_with_a_gated_dropout_is_quiet():
    in_forward = PARTIAL_DROPOUT.replace(
        "            return self.attend(q, k, v)",
        "            attend = partial(F.scaled_dot_product_attention, dropout_p=self.p if self.training else 0.0)\n"
        "            return attend(q, k, v)",
    ).replace("dropout_p=p, is_causal=True", "is_causal=True")
    assert findings("SHP701", in_forward) == []


# -- SHP603: rotary applied through a comprehension over (q, k) ----------------------------------------------
COMPREHENSION_ROTATION = """
    def attend(q, k, cos, sin):
        q, k = [apply_rotary_pos_emb(t, cos, sin) for t in (q, k)]
        q, k = [apply_rotary_pos_emb(t, cos, sin) for t in (q, k)]
        return q @ k.transpose(-1, -2)
"""


def test_shp603_comprehension_rotating_names_already_rotated_is_found():
    lines = textwrap.dedent(COMPREHENSION_ROTATION).splitlines()
    second = [i for i, line in enumerate(lines, 1) if "apply_rotary_pos_emb" in line][1]
    assert findings("SHP603", COMPREHENSION_ROTATION) == [second]


def test_shp603_comprehension_rotating_once_is_quiet():
    once = COMPREHENSION_ROTATION.replace(
        "q, k = [apply_rotary_pos_emb(t, cos, sin) for t in (q, k)]\n", "q, k = [t.float() for t in (q, k)]\n", 1
    )
    assert findings("SHP603", once) == []


# -- SHP602: head counts read off the query and key tensors --------------------------------------------------
SHAPE_HEADS = """
    import torch

    def gqa(q, k, v):
        HQ, H = q.shape[1], k.shape[1]
        G = HQ // H
        k = k.repeat(1, G, 1, 1)
        v = v.repeat(1, G, 1, 1)
        return torch.softmax(q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5, dim=-1) @ v
"""


def test_shp602_tile_by_head_counts_read_off_the_tensors_is_found():
    assert findings("SHP602", SHAPE_HEADS) == [
        line_of(SHAPE_HEADS, "k = k.repeat"),
        line_of(SHAPE_HEADS, "v = v.repeat"),
    ]


def test_shp602_interleaved_repeat_by_head_counts_read_off_the_tensors_is_quiet():
    fixed = SHAPE_HEADS.replace("k.repeat(1, G, 1, 1)", "k.repeat_interleave(G, dim=1)").replace(
        "v.repeat(1, G, 1, 1)", "v.repeat_interleave(G, dim=1)"
    )
    assert findings("SHP602", fixed) == []


def test_shp602_ratio_of_sizes_along_different_axes_is_quiet():
    other = SHAPE_HEADS.replace("k.shape[1]", "k.shape[2]")
    assert findings("SHP602", other) == []


# -- SHP102: a scale returned by a helper method ---------------------------------------------------------------
HELPER_SCALE = """
    import torch
    from torch import nn

    class SelfAttention(nn.Module):
        def __init__(self, embed_dim, num_heads):
            super().__init__()
            self.embed_dim = embed_dim
            self.num_heads = num_heads
            self.head_dim = embed_dim // num_heads
            self.qkv = nn.Linear(embed_dim, 3 * embed_dim)

        def _scale(self):
            return self.embed_dim ** -0.5

        def forward(self, x):
            b, t, _ = x.shape
            q, k, v = self.qkv(x).chunk(3, dim=-1)
            q = q.view(b, t, self.num_heads, self.head_dim).transpose(1, 2)
            k = k.view(b, t, self.num_heads, self.head_dim).transpose(1, 2)
            v = v.view(b, t, self.num_heads, self.head_dim).transpose(1, 2)
            att = (q @ k.transpose(-2, -1)) * self._scale()
            return att.softmax(dim=-1) @ v
"""


def test_shp102_width_scale_returned_by_a_helper_is_found():
    assert findings("SHP102", HELPER_SCALE) == [line_of(HELPER_SCALE, "* self._scale()")]


def test_shp102_head_dim_scale_returned_by_a_helper_is_quiet():
    assert findings("SHP102", HELPER_SCALE.replace("self.embed_dim ** -0.5", "self.head_dim ** -0.5")) == []


def test_shp102_helper_scaling_by_its_own_parameter_is_quiet():
    # what the caller passes to the helper is not followed: `embed_dim` here is the helper's own parameter
    own = HELPER_SCALE.replace("def _scale(self):", "def _scale(self, embed_dim):").replace(
        "return self.embed_dim ** -0.5", "return embed_dim ** -0.5"
    )
    assert findings("SHP102", own.replace("self._scale()", "self._scale(self.head_dim)")) == []
