"""A helper's parameter is what its callers pass: scores built in a method and normalised by a helper
function of the same file (gau-alpha 0.0.2's `attention_normalize`) are traced back into the caller."""

from __future__ import annotations

from tests.helpers import findings

NORMALISED_IN_A_HELPER = """
    import torch

    INF = 1e12

    def attention_normalize(a, l, dim=-1, method="softmax"):
        if method == "softmax":
            return torch.softmax(a, dim=dim)
        return torch.relu(a) ** 2 / l

    class GatedAttentionUnit(torch.nn.Module):
        def forward(self, q, k, attention_mask):
            a = torch.einsum("bmd,bnd->bmn", q, k)
            a = a / self.key_size**0.5
            a = a.masked_fill(attention_mask == 0, -INF)
            return attention_normalize(a, attention_mask.sum(-1, keepdim=True), dim=-1)
"""


def lines(code: str, source: str) -> list[int]:
    return [d.line for d in findings(code, source)]


def test_a_fill_in_the_caller_reaches_the_softmax_of_a_helper_function():
    assert lines("SHP103", NORMALISED_IN_A_HELPER) == [15]
    # the fixed release: INF = 1e4 fits in half
    assert lines("SHP103", NORMALISED_IN_A_HELPER.replace("INF = 1e12", "INF = 1e4")) == []


def test_the_scale_in_the_caller_counts_for_the_helpers_softmax():
    assert lines("SHP101", NORMALISED_IN_A_HELPER) == []
    unscaled = NORMALISED_IN_A_HELPER.replace("            a = a / self.key_size**0.5\n", "")
    assert lines("SHP101", unscaled) == [8]


def test_a_method_whose_argument_is_the_scores_is_traced_into_every_caller():
    """The same through a method of the class: every `self.normalize(...)` call site is followed."""
    as_method = """
        import torch

        class Attention(torch.nn.Module):
            def normalize(self, scores):
                return scores.softmax(dim=-1)

            def forward(self, q, k):
                return self.normalize(q @ k.transpose(-2, -1))
    """
    assert lines("SHP101", as_method) == [6]
    scaled = as_method.replace("q @ k.transpose(-2, -1)", "q @ k.transpose(-2, -1) * self.scale")
    assert lines("SHP101", scaled) == []


def test_a_softmax_over_the_queries_renormalised_by_the_caller_is_slot_attention():
    """GroupViT: a helper takes the softmax over the groups (dim=-2), its caller divides by the sum over
    the keys. The assignment is deliberate; without the caller's renormalisation it is reported."""
    assignment = """
        import torch
        from torch import nn

        class AssignAttention(nn.Module):
            def get_attn(self, attn):
                attn = nn.functional.softmax(attn, dim=-2)
                return attn

            def forward(self, query, key):
                raw_attn = (query @ key.transpose(-2, -1)) * self.scale
                attn = self.get_attn(raw_attn)
                attn = attn / (attn.sum(dim=-1, keepdim=True) + self.assign_eps)
                return attn @ key
    """
    assert lines("SHP104", assignment) == []
    not_renormalised = assignment.replace(
        "                attn = attn / (attn.sum(dim=-1, keepdim=True) + self.assign_eps)\n", ""
    )
    assert lines("SHP104", not_renormalised) == [7]
