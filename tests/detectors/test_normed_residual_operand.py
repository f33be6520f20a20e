"""SHP303 when the residual operand of the sum is itself the norm of the stream: written in one
line (`x = norm(x) + f(norm(x))`) or kept in a copy taken of the norm (`residual = norm(x)`). Both
add the sublayer's output to the normalised tensor, as `x = norm(x); x = x + f(x)` does."""

from __future__ import annotations

import textwrap

import pytest

from tests.helpers import findings

ONE_LINE = textwrap.dedent("""
    from torch import nn

    class Block(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.norm1 = nn.LayerNorm(dim)
            self.attn = Attention(dim)
            self.drop_path = nn.Identity()

        def forward(self, x):
            x = {sum}
            return x
""")


def test_a_sum_whose_residual_operand_is_the_norm_of_the_stream():
    [finding] = findings("SHP303", ONE_LINE.format(sum="self.norm1(x) + self.drop_path(self.attn(self.norm1(x)))"))
    assert finding.line == 12
    assert finding.message.startswith("the residual operand `self.norm1(x)` is the normalised stream")
    assert finding.related == []  # the norm is in the sum itself


@pytest.mark.parametrize(
    "quiet",
    [
        "x + self.drop_path(self.attn(self.norm1(x)))",  # the pre-norm block done right
        "self.norm1(x) + self.attn(x)",  # a norm plus a sublayer of the raw stream: not the pre-norm mix-up
        "self.norm1(x) + self.pos_embed",  # a table added to normalised tokens
    ],
)
def test_sums_with_the_raw_stream_or_other_terms_are_quiet(quiet):
    assert findings("SHP303", ONE_LINE.format(sum=quiet)) == []


COPY = textwrap.dedent("""
    from torch import nn

    class DecoderLayer(nn.Module):
        def __init__(self, config):
            super().__init__()
            self.input_layernorm = RMSNorm(config.hidden_size)
            self.post_attention_layernorm = RMSNorm(config.hidden_size)
            self.self_attn = Attention(config)

        def forward(self, hidden_states, attention_mask=None):
            residual = {saved}
            hidden_states = self.input_layernorm(hidden_states)
            hidden_states, _ = self.self_attn(hidden_states, attention_mask)
            hidden_states = residual + hidden_states
            return hidden_states
""")


def test_a_residual_copy_taken_of_the_normed_stream():
    [finding] = findings("SHP303", COPY.format(saved="self.input_layernorm(hidden_states)"))
    assert finding.line == 15
    assert finding.message.startswith("the residual operand `residual` is the normalised stream")
    assert [(r["line"], r["message"]) for r in finding.related] == [
        (12, "the residual operand is this norm of the stream")
    ]


def test_the_residual_copy_of_the_raw_stream_is_quiet():
    assert findings("SHP303", COPY.format(saved="hidden_states")) == []


def test_a_sandwich_norm_of_the_sublayer_output_is_quiet():
    code = COPY.format(saved="hidden_states").replace(
        "hidden_states = residual + hidden_states",
        "hidden_states = residual + self.post_attention_layernorm(hidden_states)",
    )
    assert findings("SHP303", code) == []
