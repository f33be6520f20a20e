"""Block structure (SHP301, SHP302, SHP303) and KV-cache growth (SHP401): mutation checks on realistic
modules, the depth option, message variants and the norm_first fix."""

from __future__ import annotations

import textwrap

import libcst as cst
import pytest

from sharpedges.analysis.blocks import DEEPNORM, POST, PRE, block_styles, local_classes, resolve_depths, stacks
from sharpedges.analysis.context import FileContext
from sharpedges.fixes import apply_edits, still_parses
from tests.helpers import findings, mutate

PRE_NORM_GPT = textwrap.dedent("""
    from dataclasses import dataclass
    import torch.nn as nn

    @dataclass
    class Config:
        n_layer: int = 24
        n_embd: int = 768
        vocab_size: int = 50304

    class Block(nn.Module):
        def __init__(self, config):
            super().__init__()
            self.ln_1 = nn.LayerNorm(config.n_embd)
            self.attn = CausalSelfAttention(config)
            self.ln_2 = nn.LayerNorm(config.n_embd)
            self.mlp = MLP(config)

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            x = x + self.mlp(self.ln_2(x))
            return x

    class GPT(nn.Module):
        def __init__(self, config: Config):
            super().__init__()
            self.wte = nn.Embedding(config.vocab_size, config.n_embd)
            self.h = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
            self.ln_f = nn.LayerNorm(config.n_embd)
            self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)

        def forward(self, idx):
            x = self.wte(idx)
            for block in self.h:
                x = block(x)
            x = self.ln_f(x)
            return self.lm_head(x)
""")

STATIC_CACHE = textwrap.dedent("""
    import torch
    from torch import nn

    class KVCache(nn.Module):
        def __init__(self, batch, heads, max_len, head_dim):
            super().__init__()
            self.register_buffer("k_cache", torch.zeros(batch, heads, max_len, head_dim))
            self.register_buffer("v_cache", torch.zeros(batch, heads, max_len, head_dim))

        def update(self, input_pos, k, v):
            self.k_cache.index_copy_(2, input_pos, k)
            self.v_cache.index_copy_(2, input_pos, v)
            return self.k_cache, self.v_cache
""")


def context(source: str) -> FileContext:
    return FileContext("model.py", cst.parse_module(source))


# -- mutation checks ----------------------------------------------------------------------------
def test_swapping_pre_norm_for_post_norm_in_a_deep_stack_fires_shp301_on_the_mutant_only():
    mutant = mutate(
        mutate(PRE_NORM_GPT, "x = x + self.attn(self.ln_1(x))", "x = self.ln_1(x + self.attn(x))"),
        "x = x + self.mlp(self.ln_2(x))",
        "x = self.ln_2(x + self.mlp(x))",
    )
    assert findings("SHP301", PRE_NORM_GPT) == []
    assert findings("SHP301", mutant) == []  # 24 post-norm layers: BERT-large depth, the default max-depth
    [finding] = findings("SHP301", mutant, {"max-depth": 12})
    assert "24 deep" in finding.message and "pre-norm" in finding.message


def test_dropping_the_final_norm_fires_shp302_on_the_mutant_only():
    mutant = mutate(PRE_NORM_GPT, "        x = self.ln_f(x)\n", "")
    assert findings("SHP302", PRE_NORM_GPT) == []
    [finding] = findings("SHP302", mutant)
    assert "self.h" in finding.message and "self.lm_head" in finding.message


def test_overwriting_the_residual_with_its_norm_fires_shp303_on_the_mutant_only():
    mutant = mutate(PRE_NORM_GPT, "x = x + self.attn(self.ln_1(x))", "x = self.ln_1(x)\n        x = x + self.attn(x)")
    assert findings("SHP303", PRE_NORM_GPT) == []
    [finding] = findings("SHP303", mutant)
    assert "`x = self.ln_1(x)`" in finding.message


def test_replacing_a_preallocated_write_with_torch_cat_fires_shp401_on_the_mutant_only():
    mutant = mutate(
        mutate(
            STATIC_CACHE,
            "self.k_cache.index_copy_(2, input_pos, k)",
            "self.k_cache = torch.cat([self.k_cache, k], dim=2)",
        ),
        "self.v_cache.index_copy_(2, input_pos, v)",
        "self.v_cache = torch.cat([self.v_cache, v], dim=2)",
    )
    assert findings("SHP401", STATIC_CACHE) == []
    [finding] = findings("SHP401", mutant)
    assert "torch.cat extends `self.k_cache`, `self.v_cache` on every call" in finding.message


def test_a_for_range_generation_loop_turned_into_while_true_fires_shp401():
    bounded = textwrap.dedent("""
        def generate(model, ids, eos, max_new_tokens):
            past = None
            for _ in range(max_new_tokens):
                out = model(ids, past_key_values=past)
                past = out.past_key_values
                ids = out.logits[:, -1:].argmax(-1)
                if ids.item() == eos:
                    break
    """)
    mutant = mutate(bounded, "for _ in range(max_new_tokens):", "while True:")
    assert findings("SHP401", bounded) == []
    [finding] = findings("SHP401", mutant)
    assert "`past`" in finding.message


# -- SHP301 depth and the option ----------------------------------------------------------------
POST_NORM_STACK = textwrap.dedent("""
    import torch.nn as nn

    class Block(nn.Module):
        def __init__(self, d):
            super().__init__()
            self.norm = nn.LayerNorm(d)
            self.ff = nn.Linear(d, d)

        def forward(self, x):
            return self.norm(x + self.ff(x))

    blocks = nn.ModuleList([Block(512) for _ in range(DEPTH)])
""")


@pytest.mark.parametrize(("depth", "limit", "fires"), [(12, 12, False), (13, 12, True), (8, 6, True), (24, 32, False)])
def test_max_depth_option_sets_the_threshold(depth, limit, fires):
    source = POST_NORM_STACK.replace("DEPTH", str(depth))
    assert bool(findings("SHP301", source, {"max-depth": limit})) is fires


def test_deepnorm_scaling_of_the_same_stack_is_not_flagged():
    deepnorm = mutate(
        POST_NORM_STACK.replace("DEPTH", "48"),
        "self.norm(x + self.ff(x))",
        "self.norm(x * (2 * 48) ** 0.25 + self.ff(x))",
    )
    assert findings("SHP301", deepnorm) == []
    assert block_styles(context(deepnorm), local_classes(context(deepnorm))["Block"]) == {DEEPNORM}


def test_block_styles_tell_pre_post_and_switchable_blocks_apart():
    ctx = context(PRE_NORM_GPT)
    assert block_styles(ctx, local_classes(ctx)["Block"]) == {PRE}
    ctx = context(POST_NORM_STACK.replace("DEPTH", "3"))
    assert block_styles(ctx, local_classes(ctx)["Block"]) == {POST}
    switchable = textwrap.dedent("""
        class Block(nn.Module):
            def forward(self, x):
                if self.pre:
                    return x + self.ff(self.norm(x))
                return self.norm(x + self.ff(x))
    """)
    ctx = context(switchable)
    assert block_styles(ctx, local_classes(ctx)["Block"]) == {PRE, POST}


def test_depth_resolves_through_parameter_defaults_and_in_file_call_sites():
    source = textwrap.dedent("""
        class Encoder(nn.Module):
            def __init__(self, d, num_layers=6):
                super().__init__()
                self.layers = nn.ModuleList([Block(d) for _ in range(num_layers)])

        deep = Encoder(256, num_layers=40)
    """)
    ctx = context(source)
    [stack] = stacks(ctx)
    assert sorted(d.value for d in resolve_depths(ctx, stack.depth)) == [6, 40]


def test_depth_from_a_config_defined_elsewhere_is_not_guessed():
    source = POST_NORM_STACK.replace("DEPTH", "config.num_hidden_layers")
    assert findings("SHP301", source, {"max-depth": 0}) == []


def test_norm_first_fix_makes_the_encoder_pre_norm_with_a_final_norm():
    source = textwrap.dedent("""
        from torch import nn

        class Encoder(nn.Module):
            def __init__(self, d_model=768, depth=48):
                super().__init__()
                layer = nn.TransformerEncoderLayer(d_model, 12, batch_first=True, norm_first=False)
                self.encoder = nn.TransformerEncoder(layer, depth)
    """)
    [finding] = findings("SHP301", source)
    assert finding.fix.applicability == "unsafe"
    outcome = apply_edits(source, [finding.fix])
    fixed, applied = outcome.text, outcome.applied
    assert applied == 1 and still_parses(fixed)
    assert "batch_first=True, norm_first=True)" in fixed
    assert "nn.TransformerEncoder(layer, depth, norm=nn.LayerNorm(d_model))" in fixed
    assert findings("SHP301", fixed) == [] and findings("SHP302", fixed) == []


def test_no_fix_when_the_layer_is_built_elsewhere():
    source = textwrap.dedent("""
        from torch import nn

        def make_layer(d):
            return nn.TransformerEncoderLayer(d, 8)

        class Encoder(nn.Module):
            def __init__(self):
                super().__init__()
                self.layer = nn.TransformerEncoderLayer(512, 8)

            def build(self):
                return nn.TransformerEncoder(self.layer, num_layers=40)
    """)
    [finding] = findings("SHP301", source)
    assert finding.fix is None


# -- SHP401 message variants and bounds ---------------------------------------------------------
def test_a_stored_but_unenforced_capacity_is_named_in_the_message():
    source = textwrap.dedent("""
        import torch

        class Cache:
            def __init__(self, max_seq_len):
                self.max_seq_len = max_seq_len
                self.k = None

            def update(self, k):
                self.k = k if self.k is None else torch.cat([self.k, k], dim=2)
                return self.k
    """)
    [finding] = findings("SHP401", source)
    assert "`self.max_seq_len` is stored but never enforced" in finding.message
    enforced = mutate(
        source,
        "        self.k = k if",
        "        assert self.k is None or self.k.shape[2] < self.max_seq_len\n        self.k = k if",
    )
    assert findings("SHP401", enforced) == []


def test_token_ids_grown_in_a_while_loop_are_not_a_kv_cache():
    source = textwrap.dedent("""
        import torch

        def sample(model, idx, eos):
            while True:
                logits = model(idx)
                nxt = torch.argmax(logits[:, -1], dim=-1, keepdim=True)
                idx = torch.cat([idx, nxt], dim=1)
                if nxt.item() == eos:
                    break
            return idx
    """)
    assert findings("SHP401", source) == []


def test_a_window_slice_of_the_fed_back_cache_bounds_the_loop():
    source = textwrap.dedent("""
        def stream(model, ids, window):
            past = None
            while True:
                out = model(ids, past_key_values=past)
                past = tuple((k[:, :, -window:], v[:, :, -window:]) for k, v in out.past_key_values)
                ids = out.logits[:, -1:].argmax(-1)
    """)
    assert findings("SHP401", source) == []


# -- SHP302 / SHP303 boundaries -----------------------------------------------------------------
def test_post_norm_stack_feeding_a_head_needs_no_final_norm():
    source = mutate(
        mutate(PRE_NORM_GPT, "x = x + self.attn(self.ln_1(x))", "x = self.ln_1(x + self.attn(x))"),
        "x = x + self.mlp(self.ln_2(x))",
        "x = self.ln_2(x + self.mlp(x))",
    )
    assert findings("SHP302", mutate(source, "        x = self.ln_f(x)\n", "")) == []


def test_two_step_post_norm_is_not_an_overwritten_residual():
    source = textwrap.dedent("""
        class Layer(nn.Module):
            def forward(self, x):
                x = x + self.attn(x)
                x = self.norm1(x)
                x = x + self.ff(x)
                x = self.norm2(x)
                return x
    """)
    assert findings("SHP303", source) == []


SAVED_RESIDUAL_BLOCK = """
    class Block(nn.Module):
        def forward(self, x):
            residual = x
            x = self.ln_1(x)
            x = self.attn(x)
            x += residual
            residual = x
            x = self.ln_2(x)
            x = self.mlp(x)
            x = residual + x
            return x
"""


def test_residual_saved_before_the_norm_is_pre_norm_done_right():
    assert findings("SHP303", SAVED_RESIDUAL_BLOCK) == []


@pytest.mark.parametrize("sum_", ["x += residual", "x = x + residual", "x = residual + x"])
def test_residual_saved_after_the_norm_carries_the_normalised_stream(sum_):
    indent = "\n" + " " * 12
    saved_after = mutate(
        SAVED_RESIDUAL_BLOCK, f"residual = x{indent}x = self.ln_1(x)", f"x = self.ln_1(x){indent}residual = x"
    )
    source = textwrap.dedent(mutate(saved_after, "x += residual", sum_))
    [finding] = findings("SHP303", source)
    assert finding.line == source.splitlines().index(f"        {sum_}") + 1
    assert "`x = self.ln_1(x)`" in finding.message


def test_a_copy_of_a_post_norm_output_is_not_an_overwritten_residual():
    source = textwrap.dedent("""
        class Layer(nn.Module):
            def forward(self, x):
                x = x + self.attn(x)
                x = self.norm1(x)
                residual = x
                x = self.ff(x)
                x += residual
                return self.norm2(x)
    """)
    assert findings("SHP303", source) == []


def test_a_cache_grown_along_its_first_axis_counts_when_it_is_attended_over():
    """Megatron lays keys out [seq, batch, heads, dim] and concatenates on dim 0: still a cache,
    because the class attends over it."""

    source = """import torch


class ParallelAttention(torch.nn.Module):
    def forward(self, query, key, value):
        self.past_key = torch.cat((self.past_key, key), dim=0)
        self.past_value = torch.cat((self.past_value, value), dim=0)
        scores = torch.baddbmm(self.buffer, query.transpose(0, 1), self.past_key.permute(1, 2, 0))
        return scores.softmax(-1) @ self.past_value
"""
    assert [(d.rule, d.line) for d in findings("SHP401", source, path="megatron.py")] == [("SHP401", 6)]


GROWING_CACHE = textwrap.dedent("""
    import torch

    class Cache:
        def __init__(self):
            self.k = None

        def update(self, k):
            if self.k is None:
                self.k = k
            else:
                self.k = torch.cat([self.k, k], dim=2)
            return self.k
""")


def test_a_cache_started_over_by_a_reset_holds_one_generation():
    """A `reset()` (or a prefill branch) that assigns the cache afresh bounds it to one generation;
    lazy initialisation under `if self.k is None` is no reset."""
    [finding] = findings("SHP401", GROWING_CACHE)
    assert finding.line == 12 and finding.rule == "SHP401"
    reset = GROWING_CACHE + "\n    def reset(self):\n        self.k = None\n"
    assert findings("SHP401", reset) == []
    prefill = mutate(GROWING_CACHE, "def update(self, k):", "def update(self, k, prefill=False):")
    prefill = mutate(
        prefill,
        "        if self.k is None:",
        "        if prefill:\n            self.k = k\n        elif self.k is None:",
    )
    assert findings("SHP401", prefill) == []
    grows_in_reset = GROWING_CACHE + "\n    def reset(self, k):\n        self.k = torch.cat([self.k, k], dim=2)\n"
    assert [f.line for f in findings("SHP401", grows_in_reset)] == [12, 16]
