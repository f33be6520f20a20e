"""SHP201's causal context from what the code does: a model decoded one token at a time, and a
`causal` flag switched on that nothing reads (masks.causal_scopes)."""

from __future__ import annotations

import textwrap

import pytest

from tests.helpers import findings

ATTENTION = textwrap.dedent("""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class SelfAttention(nn.Module):
        def __init__(self, dim, heads):
            super().__init__()
            self.heads = heads
            self.qkv = nn.Linear(dim, dim * 3)

        def forward(self, x):
            b, n, d = x.shape
            q, k, v = self.qkv(x).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
            out = F.scaled_dot_product_attention(q, k, v)
            return out.transpose(1, 2).reshape(b, n, d)

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


BUILT = textwrap.dedent("""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class CausalSelfAttention(nn.Module):
        def __init__(self, dim, heads):
            super().__init__()
            self.heads = heads
            self.qkv = nn.Linear(dim, dim * 3)

        def forward(self, x):
            b, n, d = x.shape
            q, k, v = self.qkv(x).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
            mask = torch.ones(n, n, dtype=torch.bool, device=x.device).tril()
            out = F.scaled_dot_product_attention(q, k, v{passed})
            return out.transpose(1, 2).reshape(b, n, d)
""")


def test_a_causal_mask_built_and_never_applied_does_not_mask():
    [finding] = findings("SHP201", BUILT.format(passed=""))
    assert finding.line == 16


def test_the_same_mask_applied_is_quiet():
    assert findings("SHP201", BUILT.format(passed=", attn_mask=mask")) == []
