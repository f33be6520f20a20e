"""SHP201's causal context from what the code does: a model decoded one token at a time, and a
`causal` flag switched on that nothing reads (masks.causal_scopes)."""

from __future__ import annotations

import textwrap

import pytest

from tests.detectors.modules import UNMASKED_SDPA_ATTENTION
from tests.helpers import findings, mutate

ATTENTION = UNMASKED_SDPA_ATTENTION + textwrap.dedent("""
    class Model(nn.Module):
        def __init__(self, vocab, dim, heads, depth, block_size):
            super().__init__()
            self.block_size = block_size
            self.emb = nn.Embedding(vocab, dim)
            self.layers = nn.ModuleList([SelfAttention(dim, heads) for _ in range(depth)])
            self.head = nn.Linear(dim, vocab)

        def forward(self, idx):
            x = self.emb(idx)
            for layer in self.layers:
                x = x + layer(x)
            return self.head(x)

        @torch.no_grad()
        def sample(self, idx, steps):
            for _ in range(steps):
                idx_cond = idx[:, -self.block_size:]
                logits = self(idx_cond)[:, -1, :]
                next_id = torch.multinomial(F.softmax(logits, dim=-1), num_samples=1)
                idx = torch.cat({grown}, dim={dim})
            return idx
""")


def test_a_model_decoded_one_token_at_a_time_needs_causal_self_attention():
    [finding] = findings("SHP201", ATTENTION.format(grown="(idx, next_id)", dim=1))
    assert finding.line == 15
    assert finding.message.startswith("scaled_dot_product_attention in a causal model gets no causal mask")


@pytest.mark.parametrize(
    ("grown", "dim"),
    [
        ("(idx, next_id)", 0),  # more sequences in the batch, not a longer one
        ("(next_id, idx)", 1),  # not the tokens the loop grows
        ("(logits, next_id)", 1),  # the model never reads what is appended
    ],
)
def test_loops_that_do_not_feed_the_model_its_own_tokens_are_no_evidence(grown, dim):
    assert findings("SHP201", ATTENTION.format(grown=grown, dim=dim)) == []


FLAGGED = textwrap.dedent("""
    import torch.nn.functional as F
    from torch import nn

    class Attention(nn.Module):
        def __init__(self, dim, heads, causal={default}):
            super().__init__()
            self.heads = heads
            self.causal = causal
            self.qkv = nn.Linear(dim, dim * 3)

        def forward(self, x):
            b, n, d = x.shape
            q, k, v = self.qkv(x).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
            out = {kernel}
            return out.transpose(1, 2).reshape(b, n, d)

    class Block(nn.Module):
        def __init__(self, dim, heads):
            super().__init__()
            self.attn = Attention(dim, heads{passed})
""")


@pytest.mark.parametrize(("default", "passed"), [("True", ""), ("False", ", causal=True"), ("False", ", True")])
def test_a_causal_flag_switched_on_that_nothing_reads(default, passed):
    source = FLAGGED.format(default=default, passed=passed, kernel="F.scaled_dot_product_attention(q, k, v)")
    [finding] = findings("SHP201", source)
    assert finding.line == 15
    assert [(r["line"], r["message"]) for r in finding.related] == [
        (6, "this flag asks for causal attention, and nothing reads it")
    ]


@pytest.mark.parametrize(
    ("default", "passed", "kernel"),
    [
        ("False", "", "F.scaled_dot_product_attention(q, k, v)"),  # off, and nobody turns it on
        ("False", ", causal=False", "F.scaled_dot_product_attention(q, k, v)"),
        ("True", "", "F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)"),  # read: it works
    ],
)
def test_a_flag_that_is_off_or_read_is_no_evidence(default, passed, kernel):
    assert findings("SHP201", FLAGGED.format(default=default, passed=passed, kernel=kernel)) == []


BUILT = mutate(
    mutate(UNMASKED_SDPA_ATTENTION, "class SelfAttention", "class CausalSelfAttention"),
    "        out = F.scaled_dot_product_attention(q, k, v)",
    "        mask = torch.ones(n, n, dtype=torch.bool, device=x.device).tril()\n"
    "        out = F.scaled_dot_product_attention(q, k, v{passed})",
)


def test_a_causal_mask_built_and_never_applied_does_not_mask():
    [finding] = findings("SHP201", BUILT.format(passed=""))
    assert finding.line == 16


def test_the_same_mask_applied_is_quiet():
    assert findings("SHP201", BUILT.format(passed=", attn_mask=mask")) == []


GATED = textwrap.dedent("""
    import torch
    from torch import nn

    class Attention(nn.Module):
        def __init__(self, causal=True):
            super().__init__()
            self.causal = causal

        def forward(self, q, k, v, att_mask{default}):
            att = q @ k.transpose(-2, -1) * q.size(-1) ** -0.5
            n = att.shape[-1]
            {body}
            return att.softmax(dim=-1) @ v
""")

INSIDE = """if att_mask is not None:
                if self.causal:
                    att_mask = att_mask & torch.ones(n, n, dtype=torch.bool).tril()
                att = att.masked_fill(~att_mask, float("-inf"))"""

OUTSIDE = """if self.causal:
            att = att.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
        if att_mask is not None:
            att = att.masked_fill(~att_mask, float("-inf"))"""


def test_a_causal_flag_read_only_under_an_optional_mask():
    [finding] = findings("SHP201", GATED.format(default="=None", body=INSIDE))
    assert finding.message.startswith("causal masking is applied only when `att_mask` is passed")
    assert finding.line == 14


@pytest.mark.parametrize(("default", "body"), [("=None", OUTSIDE), ("", INSIDE)])
def test_a_causal_flag_read_on_every_call_is_quiet(default, body):
    """Read outside the branch, or the mask is a required argument (every call passes one)."""
    assert findings("SHP201", GATED.format(default=default, body=body)) == []


CACHED = textwrap.dedent("""
    import torch
    import torch.nn.functional as F

    def attend(q, k, v, cache=None, other=None):
        if cache is not None:
            k = torch.cat([cache[0], k], dim=2)
            v = torch.cat([cache[1], v], dim=2)
        return F.scaled_dot_product_attention(q, k, v, is_causal={flag})
""")


@pytest.mark.parametrize("flag", ["cache is None", "not cache", "cache is None and q.size(2) > 1"])
def test_shp204_causal_mask_switched_off_by_the_cache_it_reads(flag):
    [finding] = findings("SHP204", CACHED.format(flag=flag))
    assert finding.message.startswith(f"`is_causal={flag}` drops the causal mask whenever `cache` is passed")


@pytest.mark.parametrize("flag", ["other is None", "q.size(2) > 1", "cache is not None"])
def test_shp204_flags_not_switched_off_by_the_keys_cache_are_quiet(flag):
    assert findings("SHP204", CACHED.format(flag=flag)) == []


def test_dead_causal_masking_after_the_attention_is_computed():
    source = textwrap.dedent("""
        import torch
        import torch.nn.functional as F
        from torch import einsum

        def gau(q, k, v, n):
            sim = einsum("b i d, b j d -> b i j", q, k) / n
            attn = F.relu(sim) ** 2
            causal_mask = torch.ones((n, n), dtype=torch.bool).triu(1)
            sim = sim.masked_fill(causal_mask, 0.0)
            return einsum("b i j, b j d -> b i d", attn, v)
    """)
    [finding] = findings("SHP201", source)
    assert finding.line == 10
    assert finding.message.startswith("the causal mask is written into `sim`, which is never read again")
    fixed = source.replace("    attn = F.relu(sim) ** 2\n", "").replace(
        "    return einsum", "    attn = F.relu(sim) ** 2\n    return einsum"
    )
    assert fixed != source
    assert findings("SHP201", fixed) == []
