"""SHP202 on a causal buffer sliced to the cached keys: `bias[:, :, k - q : k, :k]` (GPT-2, GPT-Neo,
Bark). The row offset is the cache length: the slice keeps the triangle's polarity, so the
comparison that reads it decides whether the past or the future is blocked. The buffer may be held
as `nn.Buffer(...)` (transformers 5) as well as registered."""

from __future__ import annotations

import textwrap

import pytest

from tests.helpers import findings

SLICED = textwrap.dedent("""
    import math
    import torch
    from torch import nn


    class SelfAttention(nn.Module):
        def __init__(self, block_size, head_dim):
            super().__init__()
            self.head_dim = head_dim
            bias = torch.tril(torch.ones((block_size, block_size), dtype=torch.bool)).view(1, 1, block_size, block_size)
            {register}

        def _attn(self, query, key, value):
            attn_weights = torch.matmul(query, key.transpose(-1, -2)) / math.sqrt(self.head_dim)
            query_length, key_length = query.size(-2), key.size(-2)
            attn_weights = attn_weights.masked_fill(
                self.bias[:, :, key_length - query_length : key_length, :key_length] {compare},
                torch.finfo(attn_weights.dtype).min,
            )
            attn_weights = nn.functional.softmax(attn_weights, dim=-1)
            return torch.matmul(attn_weights, value)
""")


REGISTERED = ['self.register_buffer("bias", bias)', "self.bias = nn.Buffer(bias)"]


@pytest.mark.parametrize("register", REGISTERED)
@pytest.mark.parametrize("compare", ["!= 0", "== 1"])
def test_a_cache_aligned_slice_filled_where_the_buffer_keeps_is_inverted(compare, register):
    [finding] = findings("SHP202", SLICED.format(compare=compare, register=register))
    assert finding.message.startswith("the causal mask is inverted for masked_fill")
    assert finding.line == 17  # the masked_fill call


@pytest.mark.parametrize("register", REGISTERED)
@pytest.mark.parametrize("compare", ["== 0", "!= 1"])
def test_a_cache_aligned_slice_filled_where_the_buffer_blocks_is_quiet(compare, register):
    assert findings("SHP202", SLICED.format(compare=compare, register=register)) == []
