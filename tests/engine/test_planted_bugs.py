"""The planted-bug benchmark (benchmarks/planted_bugs.py): each mutation operator plants exactly its
rule's bug at the right line and refuses code without the correct pattern; the driver plants,
checks in place and counts, end to end on a tiny package."""

from __future__ import annotations

import importlib
import json
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def planted():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        yield importlib.import_module("planted"), importlib.import_module("planted_bugs")
    finally:
        sys.path.remove(str(REPO / "benchmarks"))


def plants_of(planted, rule: str, code: str):
    operators, _ = planted
    return operators.plants(rule, operators.Sites(textwrap.dedent(code)))


def changed_lines(before: str, after: str) -> list[tuple[int, str]]:
    return [
        (number, new)
        for number, (old, new) in enumerate(zip(before.splitlines(), after.splitlines(), strict=True), 1)
        if old != new
    ]


NANOGPT = """\
import math
import torch
import torch.nn as nn
import torch.nn.functional as F


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd, n_head, block_size, dropout):
        super().__init__()
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.n_head = n_head
        self.p = dropout
        self.register_buffer("bias", torch.tril(torch.ones(block_size, block_size)).view(1, 1, block_size, block_size))

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        if self.flash:
            return F.scaled_dot_product_attention(q, k, v, dropout_p=self.p if self.training else 0, is_causal=True)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(self.bias[:, :, :T, :T] == 0, torch.finfo(att.dtype).min)
        att = F.softmax(att, dim=-1)
        return att @ v
"""

EXPECTED = {
    "SHP101": [(23, "        att = (q @ k.transpose(-2, -1))")],
    "SHP103": [(24, "        att = att.masked_fill(self.bias[:, :, :T, :T] == 0, -1e9)")],
    "SHP104": [(25, "        att = F.softmax(att, dim=-2)")],
    "SHP202": [(24, "        att = att.masked_fill(self.bias[:, :, :T, :T] != 0, torch.finfo(att.dtype).min)")],
    "SHP701": [(22, "            return F.scaled_dot_product_attention(q, k, v, dropout_p=self.p, is_causal=True)")],
}


@pytest.mark.parametrize("rule", sorted(EXPECTED))
def test_each_attention_operator_plants_exactly_its_bug_at_its_line(planted, rule):
    found = plants_of(planted, rule, NANOGPT)
    assert [(plant.rule, plant.line) for plant in found] == [(rule, line) for line, _ in EXPECTED[rule]]
    assert changed_lines(NANOGPT, found[0].source) == EXPECTED[rule]


def test_the_causal_operator_flips_the_kernel_flag_and_drops_the_fill(planted):
    found = plants_of(planted, "SHP201", NANOGPT)
    assert [changed_lines(NANOGPT, plant.source) for plant in found] == [
        [(22, NANOGPT.splitlines()[21].replace("is_causal=True", "is_causal=False"))],
        [(24, "        att = att")],
    ]  # fmt: skip


UNRELATED = """\
import math
import torch
import torch.nn.functional as F


def classify(self, x, mask):
    logits = self.head(x) * self.scale / math.sqrt(2)
    logits = logits.masked_fill(mask, torch.finfo(logits.dtype).min)
    x = F.dropout(x, p=0.1, training=True)
    return F.softmax(logits, dim=-1)
"""


@pytest.mark.parametrize(
    "rule", ["SHP101", "SHP103", "SHP104", "SHP201", "SHP202", "SHP302", "SHP303", "SHP602", "SHP603"]
)
def test_operators_refuse_code_without_the_correct_pattern(planted, rule):
    """No QK^T product, no causal mask, no stack, no rotary: nothing to plant (and F.dropout's
    training=True is not a gate on self.training)."""
    assert plants_of(planted, rule, UNRELATED) == []
    assert plants_of(planted, "SHP701", UNRELATED) == []


def test_a_fill_in_float32_or_of_what_never_reaches_the_softmax_is_no_fp16_site(planted):
    """SHP103's own conditions: `scores.float().masked_fill_(...)` fills in float32, and a fill of
    gates that go to a sigmoid writes no attention scores."""
    code = NANOGPT.replace("att = att.masked_fill(", "att = att.float().masked_fill(")
    assert plants_of(planted, "SHP103", code) == []
    gated = """\
    import torch
    import torch.nn.functional as F

    def forward(self, query, attn_logits, v):
        causal_mask = torch.ones(query.shape[-2], v.shape[-2]).triu(1).bool()
        attn_logits = attn_logits.masked_fill(causal_mask, -torch.finfo(attn_logits.dtype).max)
        gates = attn_logits.sigmoid()
        return F.softmax(query @ v.transpose(-2, -1), dim=-1), gates
    """
    assert plants_of(planted, "SHP103", gated) == []


def test_a_causal_flag_of_a_module_call_is_no_kernel_site(planted):
    """`Block(config, is_causal=True)` or `super().__init__(causal=True)`: the flag is the only sign the
    model is causal; flipped, nothing is left that says so."""
    code = """\
    class Decoder(AttentionLayers):
        def __init__(self, **kwargs):
            super().__init__(causal=True, **kwargs)
            self.block = Block(config, is_causal=True)
    """
    assert plants_of(planted, "SHP201", code) == []


LLAMA = """\
import torch
from torch import nn


def repeat_kv(hidden_states, n_rep):
    batch, num_key_value_heads, slen, head_dim = hidden_states.shape
    hidden_states = hidden_states[:, :, None, :, :].expand(batch, num_key_value_heads, n_rep, slen, head_dim)
    return hidden_states.reshape(batch, num_key_value_heads * n_rep, slen, head_dim)


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class RotaryEmbedding(nn.Module):
    def forward(self, t):
        freqs = torch.outer(t, self.inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos(), emb.sin()


class DecoderLayer(nn.Module):
    def forward(self, hidden_states):
        residual = hidden_states
        hidden_states = self.input_layernorm(hidden_states)
        hidden_states = residual + self.self_attn(hidden_states)
        return hidden_states


class Model(nn.Module):
    def forward(self, hidden_states):
        for layer in self.layers:
            hidden_states = layer(hidden_states)
        hidden_states = self.norm(hidden_states)
        return self.lm_head(hidden_states)


def attend(self, q, k, v):
    k = k.repeat_interleave(self.num_heads // self.num_kv_heads, dim=1)
    return q, k, v
"""

LLAMA_EXPECTED = {
    "SHP602": [
        [
            (
                7,
                "    hidden_states = hidden_states[:, None, :, :, :]"
                ".expand(batch, n_rep, num_key_value_heads, slen, head_dim)",
            )
        ],
        [(40, "    k = k.repeat(1, self.num_heads // self.num_kv_heads, 1, 1)")],
    ],
    "SHP603": [[(19, "        emb = freqs.repeat_interleave(2, dim=-1)")]],
    "SHP303": [[(25, "        residual = self.input_layernorm(hidden_states)")]],
    "SHP302": [[(35, "        hidden_states = hidden_states")]],
}


@pytest.mark.parametrize("rule", sorted(LLAMA_EXPECTED))
def test_each_block_and_head_operator_plants_exactly_its_bug(planted, rule):
    found = plants_of(planted, rule, LLAMA)
    assert [changed_lines(LLAMA, plant.source) for plant in found] == LLAMA_EXPECTED[rule]
    assert [plant.line for plant in found] == [changes[0][0] for changes in LLAMA_EXPECTED[rule]]


def test_a_tiled_repeat_of_something_other_than_heads_is_not_a_site(planted):
    code = """\
    from einops import repeat

    def beam(out, beams, groups):
        return repeat(out, "b ... -> (b beams) ...", beams=beams)
    """
    assert plants_of(planted, "SHP602", code) == []


def test_the_driver_counts_a_caught_plant_and_a_miss_end_to_end(planted, tmp_path, capsys):
    """One package, two rules: the dropped scale is caught; the swapped einops head order in a helper
    whose result leaves the file is not (nothing here says which layout its consumer expects)."""
    _, driver = planted
    package = tmp_path / "corpus" / "tiny"
    (package / "tiny").mkdir(parents=True)
    (package / "tiny" / "__init__.py").write_text("")
    (package / "tiny" / "model.py").write_text(NANOGPT)
    (package / "tiny" / "heads.py").write_text(
        textwrap.dedent(
            """\
            from einops import repeat

            def expand_kv(k, num_kv_heads, groups):
                return repeat(k, "b h n d -> b (h g) n d", g=groups)
            """
        )
    )
    assert driver.main(["--corpus", str(tmp_path / "corpus"), "--rule", "SHP101", "--rule", "SHP602", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["summary"]["rules"] == {
        "SHP101": {"planted": 1, "caught": 1, "packages": {"tiny": {"planted": 1, "caught": 1}}},
        "SHP602": {"planted": 1, "caught": 0, "packages": {"tiny": {"planted": 1, "caught": 0}}},
    }
    assert report["misses"] == [
        {
            "rule": "SHP602",
            "package": "tiny",
            "path": "tiny/heads.py",
            "line": 4,
            "before": '"b h n d -> b (h g) n d"',
            "after": '"b h n d -> b (g h) n d"',
            "error": None,
            "found": [],
        }
    ]
    assert driver.main(["--corpus", str(tmp_path / "corpus"), "--rule", "SHP602", "--show-misses"]) == 0
    shown = capsys.readouterr().out
    assert "planted bugs caught: 0/1" in shown
    assert (
        'SHP602 tiny/tiny/heads.py:4: `"b h n d -> b (h g) n d"` -> `"b h n d -> b (g h) n d"` (findings at none)'
        in shown
    )
    assert '>     return repeat(k, "b h n d -> b (g h) n d", g=groups)' in shown


def test_sampling_spreads_over_files_and_keeps_to_the_cap(planted):
    _, driver = planted
    items = [(Path(f"f{n // 3}.py"), n) for n in range(30)]  # ten files, three sites each
    picked = driver.spread(items, 4)
    assert len(picked) == 4 and len({path for path, _ in picked}) == 4
    assert driver.spread(items, 12)[:10] == [items[n * 3] for n in range(10)]
