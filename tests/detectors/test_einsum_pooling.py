"""SHP104 from the einsum that applies softmax weights: normalised over one axis, summed over another."""

from __future__ import annotations

import textwrap

import pytest

from tests.helpers import findings, mutate

POOLING = textwrap.dedent("""
    import torch

    def pool(scores, values):
        weights = scores.softmax(dim=-1)
        return torch.einsum("{equation}", weights, values)
""")


@pytest.mark.parametrize("equation", ["b s h, b s h d -> b h d", "bsh,bshd->bhd"])
def test_weights_normalised_over_the_heads_and_summed_over_the_tokens(equation):
    source = POOLING.replace("{equation}", equation)
    [finding] = findings("SHP104", source)
    assert finding.line == 5
    assert finding.message.startswith("softmax normalises over axis `h`, but the einsum sums these weights over `s`")
    assert [r["line"] for r in finding.related] == [6]


@pytest.mark.parametrize(
    "equation",
    [
        "b h i j, b h j d -> b h i d",  # attention: normalised over the keys, summed over the keys
        "... k d, ... k -> ... d",  # a mixture of distributions over d, mixed over k
        "b s h, b s h d -> b s h d",  # no axis summed
    ],
)
def test_weights_summed_over_the_axis_they_were_normalised_over_are_quiet(equation):
    assert findings("SHP104", POOLING.replace("{equation}", equation)) == []


def test_the_fixed_softmax_over_the_tokens_is_quiet():
    fixed = mutate(POOLING.replace("{equation}", "b s h, b s h d -> b h d"), "softmax(dim=-1)", "softmax(dim=1)")
    assert findings("SHP104", fixed) == []
