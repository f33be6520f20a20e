"""Metamorphic tests of the attention and mask rules (SHP101-SHP105, SHP201-SHP205): each bug shape the
rules catch, rewritten in semantically equivalent spellings, data flows and structures a real codebase
uses. The buggy form must be found on the line marked `# <-`, and its fixed twin (the same source with
one edit) must stay quiet. A form the shared analysis does not follow yet is an xfail with its reason."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

import pytest

from tests.helpers import findings

MARK = "# <-"


@dataclass(frozen=True)
class Rewrite:
    rule: str
    name: str
    buggy: str
    fixed_from: str  # the edit that makes the fixed twin: `fixed_from` becomes `fixed_to`
    fixed_to: str
    gap: str | None  # why the buggy form is not found yet: a documented gap, a strict xfail

    @property
    def fixed(self) -> str:
        assert self.fixed_from in self.buggy, self.fixed_from
        return self.buggy.replace(self.fixed_from, self.fixed_to)

    @property
    def marked_line(self) -> int:
        lines = textwrap.dedent(self.buggy).splitlines()
        [line] = [number for number, text in enumerate(lines, 1) if MARK in text]
        return line


def case(rule: str, buggy: str, fixed_from: str, fixed_to: str, name: str, gap: str | None = None) -> Rewrite:
    return Rewrite(rule, name, buggy, fixed_from, fixed_to, gap)


def buggy_params(rewrites: list[Rewrite]) -> list:
    return [
        pytest.param(r, id=f"{r.rule}-{r.name}", marks=[pytest.mark.xfail(strict=True, reason=r.gap)] if r.gap else [])
        for r in rewrites
    ]


def fixed_params(rewrites: list[Rewrite]) -> list:
    return [pytest.param(r, id=f"{r.rule}-{r.name}") for r in rewrites]


def lines_of(rule: str, source: str) -> list[int]:
    return sorted(d.line for d in findings(rule, source) if d.rule == rule)


# -- SHP101: the unscaled QK^T product reaches softmax --------------------------------------------------
# One function; every spelling of the softmax, the product and the key transpose is substituted into it,
# and the fixed twin divides the product by sqrt of the head size (itself spelled several ways).
SCALE_FUNCTION = """
    import math
    import einops
    import torch
    import torch.nn.functional as F
    from torch import nn

    def attend(q, k, v):
        scores = {product}
        weights = {softmax}  # <-
        return weights @ v
"""
SOFTMAXES = {
    "F.softmax-positional": "F.softmax(scores, -1)",
    "method": "scores.softmax(dim=-1)",
    "torch.softmax": "torch.softmax(scores, dim=-1)",
    "torch.nn.functional": "torch.nn.functional.softmax(scores, dim=-1)",
    "nn.functional-float32": "nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)",
}
PRODUCTS = {
    "matmul-operator": "q @ k.transpose(-2, -1)",
    "torch.matmul": "torch.matmul(q, k.transpose(-2, -1))",
    "transpose-reversed": "q @ k.transpose(-1, -2)",
    "mT": "q @ k.mT",
    "permute": "q @ k.permute(0, 1, 3, 2)",
    "einsum": "torch.einsum('bhid,bhjd->bhij', q, k)",
    "einsum-spaced": "torch.einsum('b h i d, b h j d -> b h i j', q, k)",
    "einops.einsum": "einops.einsum(q, k, 'b h i d, b h j d -> b h i j')",
    "bmm": "torch.bmm(q, k.transpose(1, 2))",
    "matmul-method": "q.matmul(k.transpose(-2, -1))",
}
SCALES = {
    "size": "/ math.sqrt(q.size(-1))",
    "shape-last": "* q.shape[-1] ** -0.5",
    "shape-index": "/ math.sqrt(q.shape[3])",
    "rsqrt-literal": "* (1.0 / math.sqrt(k.size(-1)))",
}

SHP101_CASES = [
    *(
        case(
            "SHP101",
            SCALE_FUNCTION.format(product=PRODUCTS["matmul-operator"], softmax=s),
            "k.transpose(-2, -1)",
            "k.transpose(-2, -1) / math.sqrt(q.size(-1))",
            name=f"softmax-{name}",
        )
        for name, s in SOFTMAXES.items()
    ),
    *(
        case(
            "SHP101",
            SCALE_FUNCTION.format(product=p, softmax="F.softmax(scores, dim=-1)"),
            f"scores = {p}",
            f"scores = ({p}) / math.sqrt(q.size(-1))",
            name=f"product-{name}",
        )
        for name, p in PRODUCTS.items()
    ),
    *(
        case(
            "SHP101",
            SCALE_FUNCTION.format(product=PRODUCTS["matmul-operator"], softmax="F.softmax(scores, dim=-1)"),
            "scores = q @ k.transpose(-2, -1)",
            f"scores = q @ k.transpose(-2, -1) {s}",
            name=f"scale-{name}",
        )
        for name, s in SCALES.items()
    ),
]

SOFTMAX_IN_AN_ATTRIBUTE = """
    import torch
    from torch import nn

    class Attention(nn.Module):
        def __init__(self, dim, heads):
            super().__init__()
            self.heads = heads
            self.scale = (dim // heads) ** -0.5
            self.qkv = nn.Linear(dim, dim * 3)
            self.attend = nn.Softmax(dim=-1)

        def forward(self, x):
            b, n, _ = x.shape
            q, k, v = self.qkv(x).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
            dots = torch.matmul(q, k.transpose(-1, -2))
            attn = self.attend(dots)  # <-
            return torch.matmul(attn, v)
"""
SCORES_FROM_A_HELPER_METHOD = """
    import torch
    from torch import nn

    class Attention(nn.Module):
        def __init__(self, head_dim):
            super().__init__()
            self.scale = head_dim ** -0.5

        def logits(self, q, k):
            return q @ k.transpose(-2, -1)

        def forward(self, q, k, v):
            scores = self.logits(q, k)
            return scores.softmax(dim=-1) @ v  # <-
"""
SCORES_FROM_A_STATICMETHOD = """
    import math
    import torch
    from torch import nn

    class Attention(nn.Module):
        @staticmethod
        def logits(q, k):
            return torch.matmul(q, k.transpose(-2, -1))

        def forward(self, q, k, v):
            scores = self.logits(q, k)
            return torch.softmax(scores, dim=-1) @ v  # <-
"""
SCORES_FROM_A_MODULE_FUNCTION = """
    import math
    import torch

    def logits(q, k):
        return torch.einsum("bhid,bhjd->bhij", q, k)

    def attend(q, k, v):
        scores = logits(q, k)
        return scores.softmax(dim=-1) @ v  # <-
"""
SCORES_IN_A_TUPLE = """
    import math
    import torch

    def logits(q, k):
        scores = q @ k.transpose(-2, -1)
        return scores, k.shape[-2]

    def attend(q, k, v):
        scores, n = logits(q, k)
        return scores.softmax(dim=-1) @ v  # <-
"""
SCORES_FROM_A_LAMBDA = """
    import math
    import torch

    def attend(q, k, v):
        logits = lambda a, b: a @ b.transpose(-2, -1)
        scores = logits(q, k)
        return scores.softmax(dim=-1) @ v  # <-
"""
SCORES_FROM_A_CLOSURE = """
    import math
    import torch

    def attend(q, k, v):
        def logits(a, b):
            return a @ b.transpose(-2, -1)

        scores = logits(q, k)
        return scores.softmax(dim=-1) @ v  # <-
"""
PRODUCT_IN_BOTH_BRANCHES = """
    import math
    import torch

    def attend(q, k, v, keys_transposed):
        if keys_transposed:
            scores = q @ k
        else:
            scores = q @ k.transpose(-2, -1)
        return scores.softmax(dim=-1) @ v  # <-
"""
SCALE_AUGMENTED = """
    import math
    import torch

    def attend(q, k, v):
        scores = q @ k.transpose(-2, -1)
        scores += 0.0
        return scores.softmax(dim=-1) @ v  # <-
"""
SCORES_CHAINED = """
    import math
    import torch
    from torch import nn

    class Attention(nn.Module):
        def forward(self, q, k, v):
            scores = self.last_scores = q @ k.transpose(-2, -1)
            return scores.softmax(dim=-1) @ v  # <-
"""
Q_MAPPED = """
    import torch
    from einops import rearrange

    def attend(q, k, v, heads):
        q, k, v = map(lambda t: rearrange(t, "b n (h d) -> b h n d", h=heads), (q, k, v))
        sim = torch.einsum("b h i d, b h j d -> b h i j", q, k)
        return sim.softmax(dim=-1) @ v  # <-
"""
Q_COMPREHENSION = """
    import torch
    from einops import rearrange

    def attend(q, k, v, heads):
        q, k, v = [rearrange(t, "b n (h d) -> b h n d", h=heads) for t in (q, k, v)]
        sim = torch.einsum("b h i d, b h j d -> b h i j", q, k)
        return sim.softmax(dim=-1) @ v  # <-
"""
MODULE_LEVEL_SCRIPT = """
    import torch

    q = torch.randn(2, 4, 8, 16)
    k = torch.randn(2, 4, 8, 16)
    v = torch.randn(2, 4, 8, 16)
    scores = q @ k.transpose(-2, -1)
    out = torch.softmax(scores, dim=-1) @ v  # <-
"""
BASE_CLASS_FORWARD = """
    import torch
    from torch import nn

    class AttentionBase(nn.Module):
        def forward(self, q, k, v):
            scores = self.score(q, k)
            return scores.softmax(dim=-1) @ v  # <-

    class DotAttention(AttentionBase):
        def score(self, q, k):
            return q @ k.transpose(-2, -1)
"""

SHP101_CASES += [
    case(
        "SHP101",
        SOFTMAX_IN_AN_ATTRIBUTE,
        "k.transpose(-1, -2))",
        "k.transpose(-1, -2)) * self.scale",
        name="softmax-module-attribute",
    ),
    case(
        "SHP101",
        SCORES_FROM_A_HELPER_METHOD,
        "return q @ k.transpose(-2, -1)",
        "return q @ k.transpose(-2, -1) * self.scale",
        name="helper-method",
    ),
    case(
        "SHP101",
        SCORES_FROM_A_STATICMETHOD,
        "k.transpose(-2, -1))",
        "k.transpose(-2, -1)) / math.sqrt(q.size(-1))",
        name="staticmethod",
    ),
    case("SHP101", SCORES_FROM_A_MODULE_FUNCTION, "q, k)\n", "q, k) / math.sqrt(q.size(-1))\n", name="module-function"),
    case(
        "SHP101",
        SCORES_IN_A_TUPLE,
        "scores = q @ k.transpose(-2, -1)",
        "scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))",
        name="returned-in-a-tuple",
    ),
    case(
        "SHP101",
        SCORES_FROM_A_LAMBDA,
        "a @ b.transpose(-2, -1)",
        "a @ b.transpose(-2, -1) / math.sqrt(a.size(-1))",
        name="lambda",
        gap="summaries.called_function resolves def and class methods, not a lambda bound to a local name",
    ),
    case(
        "SHP101",
        SCORES_FROM_A_CLOSURE,
        "a @ b.transpose(-2, -1)",
        "a @ b.transpose(-2, -1) / math.sqrt(a.size(-1))",
        name="closure",
    ),
    case(
        "SHP101",
        PRODUCT_IN_BOTH_BRANCHES,
        "return scores.softmax",
        "return (scores / math.sqrt(q.size(-1))).softmax",
        name="if-branches",
    ),
    case("SHP101", SCALE_AUGMENTED, "scores += 0.0", "scores /= math.sqrt(q.size(-1))", name="augmented-assignment"),
    case(
        "SHP101",
        SCORES_CHAINED,
        "q @ k.transpose(-2, -1)",
        "q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5",
        name="chained-assignment",
    ),
    case("SHP101", Q_MAPPED, "(q, k, v))", "(q, k, v))\n        q = q * q.shape[-1] ** -0.5", name="map-lambda"),
    case(
        "SHP101", Q_COMPREHENSION, "(q, k, v)]", "(q, k, v)]\n        q = q * q.shape[-1] ** -0.5", name="comprehension"
    ),
    case("SHP101", MODULE_LEVEL_SCRIPT, "k.transpose(-2, -1)", "k.transpose(-2, -1) / 4.0", name="module-level-script"),
    case(
        "SHP101",
        BASE_CLASS_FORWARD,
        "return q @ k.transpose(-2, -1)",
        "return q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5",
        name="base-class-forward",
        gap="`self.score(...)` in a base class's forward is not resolved to the method a subclass of the file defines",
    ),
]


REWRITES = SHP101_CASES


@pytest.mark.parametrize("rewrite", buggy_params(REWRITES))
def test_buggy_form_is_found_on_its_line(rewrite: Rewrite):
    assert lines_of(rewrite.rule, rewrite.buggy) == [rewrite.marked_line]


@pytest.mark.parametrize("rewrite", fixed_params(REWRITES))
def test_fixed_twin_is_quiet(rewrite: Rewrite):
    assert lines_of(rewrite.rule, rewrite.fixed) == []
