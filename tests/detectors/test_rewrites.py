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
    "float-type_as": "F.softmax(scores.float(), dim=-1).type_as(q)",
    "nn.Softmax-inline": "nn.Softmax(dim=-1)(scores)",
    "torch.nn.Softmax-inline": "torch.nn.Softmax(-1)(scores)",
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
    "torch.rsqrt": "* torch.rsqrt(torch.tensor(q.size(-1)))",
    "divide-by-power": "/ q.size(-1) ** 0.5",
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
    ),
]


# -- SHP102: the scale built from the model width, not the head size ---------------------------------
NANOGPT_WIDTH_SCALE = """
    import math
    import torch
    import torch.nn.functional as F
    from torch import nn

    class CausalSelfAttention(nn.Module):
        def forward(self, x):
            {size}
            q, k, v = self.c_attn(x).split(C, dim=2)
            k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
            q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
            v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
            att = (q @ k.transpose(-2, -1)) * {scale}  # <-
            att = F.softmax(att, dim=-1)
            return (att @ v).transpose(1, 2).contiguous().view(B, T, C)
"""
WIDTH_SIZES = {
    "size-unpacked": "B, T, C = x.size()",
    "shape-unpacked": "B, T, C = x.shape",
}
WIDTH_SCALES = {
    "rsqrt-literal": "(1.0 / math.sqrt(C))",
    "power": "C ** -0.5",
    "torch.rsqrt": "torch.rsqrt(torch.tensor(C))",
}
SCALE_IN_INIT = """
    import torch
    from torch import nn

    class Attention(nn.Module):
        def __init__(self, dim, heads=8, dim_head=64):
            super().__init__()
            inner_dim = dim_head * heads
            self.heads = heads
            self.scale = dim ** -0.5  # <-
            self.to_qkv = nn.Linear(dim, inner_dim * 3, bias=False)

        def forward(self, x):
            b, n, _ = x.shape
            q, k, v = self.to_qkv(x).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
            dots = torch.einsum("b h i d, b h j d -> b h i j", q, k) * self.scale
            attn = dots.softmax(dim=-1)
            return torch.einsum("b h i j, b h j d -> b h i d", attn, v)
"""
SCALE_IN_FORWARD = """
    import torch
    from torch import nn

    class Attention(nn.Module):
        def __init__(self, dim, heads=8, dim_head=64):
            super().__init__()
            self.dim = dim
            self.heads = heads
            self.dim_head = dim_head
            self.to_qkv = nn.Linear(dim, dim_head * heads * 3, bias=False)

        def forward(self, x):
            b, n, _ = x.shape
            q, k, v = self.to_qkv(x).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
            scale = self.dim ** -0.5
            dots = torch.matmul(q, k.transpose(-1, -2)) * scale  # <-
            return torch.matmul(dots.softmax(dim=-1), v)
"""
SCALE_FROM_A_HELPER = """
    import math
    import torch
    from torch import nn

    class Attention(nn.Module):
        def __init__(self, dim, heads):
            super().__init__()
            self.dim = dim
            self.heads = heads
            self.qkv = nn.Linear(dim, dim * 3)

        def softmax_scale(self):
            return 1.0 / math.sqrt(self.dim)

        def forward(self, x):
            b, n, _ = x.shape
            q, k, v = self.qkv(x).view(b, n, 3, self.heads, self.dim // self.heads).permute(2, 0, 3, 1, 4)
            dots = q @ k.transpose(-2, -1) * self.softmax_scale()  # <-
            return dots.softmax(dim=-1) @ v
"""

SHP102_CASES = [
    *(
        case(
            "SHP102",
            NANOGPT_WIDTH_SCALE.format(size=size, scale=scale),
            f"* {scale}",
            "* (1.0 / math.sqrt(k.size(-1)))",
            name=f"{size_name}-{scale_name}",
        )
        for size_name, size in WIDTH_SIZES.items()
        for scale_name, scale in WIDTH_SCALES.items()
    ),
    case(
        "SHP102", SCALE_IN_INIT, "self.scale = dim ** -0.5", "self.scale = dim_head ** -0.5", name="self-scale-in-init"
    ),
    case(
        "SHP102", SCALE_IN_FORWARD, "scale = self.dim ** -0.5", "scale = self.dim_head ** -0.5", name="scale-in-forward"
    ),
    case(
        "SHP102",
        SCALE_FROM_A_HELPER,
        "math.sqrt(self.dim)",
        "math.sqrt(self.dim // self.heads)",
        name="scale-from-a-helper-method",
    ),
]


# -- SHP103: a fill value beyond float16 written into the scores ----------------------------------------
FILL_FUNCTION = """
    import math
    import torch

    NEG_INF = -1e9

    def attend(q, k, v, mask):
        scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(q.size(-1))
        {fill}  # <-
        return scores.softmax(dim=-1) @ v
"""
FILLS = {
    "masked_fill": ("scores = scores.masked_fill(mask == 0, -1e9)", "-1e9"),
    "masked_fill_": ("scores.masked_fill_(mask == 0, -1e9)", "-1e9"),
    "keyword-value": ("scores = scores.masked_fill(mask=mask == 0, value=-1e10)", "-1e10"),
    "module-constant": ("scores = scores.masked_fill(mask == 0, NEG_INF)", "NEG_INF"),
    "negated-constant": ("scores = scores.masked_fill(~mask, -1e12)", "-1e12"),
    "float-string": ("scores = scores.masked_fill(mask == 0, float('-1e9'))", "float('-1e9')"),
    "where": ("scores = torch.where(mask, scores, -1e9)", "-1e9"),
    "additive": ("scores = scores + (1.0 - mask) * -1e9", "-1e9"),
    "additive-subtract": ("scores = scores - (1.0 - mask) * 1e9", "1e9"),
    "index-assign": ("scores[~mask] = -1e9", "-1e9"),
    "augmented-additive": ("scores += (1.0 - mask) * -1e9", "-1e9"),
    "torch.masked_fill": ("scores = torch.masked_fill(scores, mask == 0, -1e9)", "-1e9"),
}
FILL_IN_INIT = """
    import torch
    from torch import nn

    class Attention(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.scale = dim ** -0.5
            self.neg_inf = -1e9

        def forward(self, q, k, v, mask):
            scores = q @ k.transpose(-2, -1) * self.scale
            scores = scores.masked_fill(mask == 0, self.neg_inf)  # <-
            return scores.softmax(dim=-1) @ v
"""
FILL_FROM_A_HELPER = """
    import torch
    from torch import nn

    class Attention(nn.Module):
        @staticmethod
        def mask_value(scores):
            return -1e9

        def forward(self, q, k, v, mask):
            scores = q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5
            scores = scores.masked_fill(mask == 0, self.mask_value(scores))  # <-
            return scores.softmax(dim=-1) @ v
"""
FILL_IN_A_BRANCH = """
    import torch

    def attend(q, k, v, mask, causal):
        scores = q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5
        if causal:
            fill = -1e9
        else:
            fill = -1e9
        scores = scores.masked_fill(mask == 0, fill)  # <-
        return scores.softmax(dim=-1) @ v
"""

SHP103_CASES = [
    *(
        case("SHP103", FILL_FUNCTION.format(fill=fill), value, "torch.finfo(scores.dtype).min", name=name)
        for name, (fill, value) in FILLS.items()
    ),
    case("SHP103", FILL_IN_INIT, "self.neg_inf = -1e9", "self.neg_inf = -1e4", name="attribute-set-in-init"),
    case(
        "SHP103",
        FILL_FROM_A_HELPER,
        "return -1e9",
        "return torch.finfo(scores.dtype).min",
        name="staticmethod",
    ),
    case(
        "SHP103",
        FILL_IN_A_BRANCH,
        "scores.masked_fill(mask == 0, fill)",
        "scores.masked_fill(mask == 0, -1e4)",
        name="if-branches",
    ),
]


# -- SHP104: softmax over the queries (or the heads) instead of the keys --------------------------------
SOFTMAX_AXIS = """
    import torch
    import torch.nn.functional as F
    from torch import nn

    def attend(q, k, v):
        scores = {product} * q.shape[-1] ** -0.5
        weights = {softmax}  # <-
        return weights @ v
"""
AXIS_PRODUCTS = {
    "einsum": ("torch.einsum('bhid,bhjd->bhij', q, k)", 2),
    "transpose-2-3": ("torch.matmul(q, k.transpose(2, 3))", 2),
    "bmm": ("torch.bmm(q, k.transpose(1, 2))", 1),
}
AXIS_SOFTMAXES = {
    "F.softmax-keyword": "F.softmax(scores, dim={dim})",
    "F.softmax-positional": "F.softmax(scores, {dim})",
    "method-positional": "scores.softmax({dim})",
    "torch.softmax": "torch.softmax(scores, dim={dim})",
}
AXIS_IN_AN_ATTRIBUTE = """
    import torch
    from torch import nn

    class Attention(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.scale = dim ** -0.5
            self.softmax = nn.Softmax(dim=1)

        def forward(self, query, context):
            scores = torch.bmm(query, context.transpose(1, 2)) * self.scale
            weights = self.softmax(scores)  # <-
            return torch.bmm(weights, context)
"""

SHP104_CASES = [
    *(
        case(
            "SHP104",
            SOFTMAX_AXIS.format(product=product, softmax=softmax.format(dim=dim)),
            softmax.format(dim=dim),
            softmax.format(dim=-1),
            name=f"{product_name}-{softmax_name}",
        )
        for product_name, (product, dim) in AXIS_PRODUCTS.items()
        for softmax_name, softmax in AXIS_SOFTMAXES.items()
    ),
    case("SHP104", AXIS_IN_AN_ATTRIBUTE, "nn.Softmax(dim=1)", "nn.Softmax(dim=-1)", name="softmax-module-attribute"),
]


# -- SHP202: a causal mask of the wrong polarity (the future kept, the past hidden) ---------------------
CAUSAL_POLARITY = """
    import torch

    def attend(q, k, v):
        n = q.shape[-2]
        scores = q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5
        future = {future}
        {fill}  # <-
        return scores.softmax(dim=-1) @ v
"""
FUTURE_MASKS = {
    "triu-bool": "torch.triu(torch.ones(n, n, dtype=torch.bool, device=q.device), diagonal=1)",
    "triu-method": "torch.ones(n, n, device=q.device).triu(1).bool()",
    "triu-compared": "torch.triu(torch.ones(n, n), diagonal=1) == 1",
    "positions": "torch.arange(n)[:, None] < torch.arange(n)[None, :]",
}
FUTURE_FILLS = {
    "masked_fill-negated": ("scores = scores.masked_fill(~future, float('-inf'))", "~future", "future"),
    "masked_fill_-negated": ("scores.masked_fill_(~future, float('-inf'))", "~future", "future"),
    "masked_fill-eq-0": ("scores = scores.masked_fill(future == 0, float('-inf'))", "future == 0", "future"),
    "logical_not": ("scores = scores.masked_fill(future.logical_not(), -1e4)", "future.logical_not()", "future"),
    "where": ("scores = torch.where(future, scores, float('-inf'))", "future, scores,", "~future, scores,"),
}
KEEP_MASKS = {
    "tril": "torch.tril(torch.ones(n, n, device=q.device)).bool()",
    "tril-method": "torch.ones(n, n, dtype=torch.bool).tril()",
    "positions": "torch.arange(n)[None, :] <= torch.arange(n)[:, None]",
}
CAUSAL_KEEP = """
    import torch

    def attend(q, k, v):
        n = q.shape[-2]
        scores = q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5
        keep = {keep}
        scores = scores.masked_fill(keep, float("-inf"))  # <-
        return scores.softmax(dim=-1) @ v
"""
CAUSAL_BUFFER = """
    import torch
    from torch import nn

    class CausalSelfAttention(nn.Module):
        def __init__(self, block_size):
            super().__init__()
            causal = torch.tril(torch.ones(block_size, block_size))
            self.register_buffer("bias", causal.view(1, 1, block_size, block_size))

        def forward(self, q, k, v):
            T = q.size(-2)
            att = (q @ k.transpose(-2, -1)) * q.size(-1) ** -0.5
            att = att.masked_fill(self.bias[:, :, :T, :T] == 1, float("-inf"))  # <-
            return att.softmax(dim=-1) @ v
"""
CAUSAL_ATTRIBUTE_IN_INIT = """
    import torch
    from torch import nn

    class CausalSelfAttention(nn.Module):
        def __init__(self, block_size):
            super().__init__()
            self.future = torch.ones(block_size, block_size, dtype=torch.bool).triu(1)

        def forward(self, q, k, v):
            T = q.size(-2)
            att = (q @ k.transpose(-2, -1)) * q.size(-1) ** -0.5
            att = att.masked_fill(~self.future[:T, :T], float("-inf"))  # <-
            return att.softmax(dim=-1) @ v
"""
CAUSAL_FROM_A_HELPER_METHOD = """
    import torch
    from torch import nn

    class CausalSelfAttention(nn.Module):
        def future_mask(self, n, device):
            return torch.ones(n, n, dtype=torch.bool, device=device).triu(1)

        def forward(self, q, k, v):
            att = (q @ k.transpose(-2, -1)) * q.size(-1) ** -0.5
            mask = self.future_mask(q.shape[-2], q.device)
            att = att.masked_fill(~mask, float("-inf"))  # <-
            return att.softmax(dim=-1) @ v
"""
CAUSAL_FROM_A_STATICMETHOD = """
    import torch
    from torch import nn

    class CausalSelfAttention(nn.Module):
        @staticmethod
        def future_mask(n, device):
            return torch.triu(torch.ones(n, n, dtype=torch.bool, device=device), diagonal=1)

        def forward(self, q, k, v):
            att = (q @ k.transpose(-2, -1)) * q.size(-1) ** -0.5
            mask = self.future_mask(q.shape[-2], q.device)
            att = att.masked_fill(~mask, float("-inf"))  # <-
            return att.softmax(dim=-1) @ v
"""
CAUSAL_FROM_A_MODULE_FUNCTION = """
    import torch

    def future_mask(n, device):
        return torch.triu(torch.ones(n, n, dtype=torch.bool, device=device), diagonal=1)

    def attend(q, k, v):
        att = (q @ k.transpose(-2, -1)) * q.size(-1) ** -0.5
        mask = future_mask(q.shape[-2], q.device)
        att = att.masked_fill(~mask, float("-inf"))  # <-
        return att.softmax(dim=-1) @ v
"""
CAUSAL_IN_A_TUPLE = """
    import torch

    def masks(n, device):
        future = torch.triu(torch.ones(n, n, dtype=torch.bool, device=device), diagonal=1)
        return future, n

    def attend(q, k, v):
        att = (q @ k.transpose(-2, -1)) * q.size(-1) ** -0.5
        future, n = masks(q.shape[-2], q.device)
        att = att.masked_fill(~future, float("-inf"))  # <-
        return att.softmax(dim=-1) @ v
"""
CAUSAL_FROM_A_LAMBDA = """
    import torch

    def attend(q, k, v):
        future_mask = lambda n: torch.triu(torch.ones(n, n, dtype=torch.bool, device=q.device), diagonal=1)
        att = (q @ k.transpose(-2, -1)) * q.size(-1) ** -0.5
        mask = future_mask(q.shape[-2])
        att = att.masked_fill(~mask, float("-inf"))  # <-
        return att.softmax(dim=-1) @ v
"""
CAUSAL_PASSED_DOWN = """
    import torch
    from torch import nn

    class Attention(nn.Module):
        def forward(self, q, k, v, mask):
            att = (q @ k.transpose(-2, -1)) * q.size(-1) ** -0.5
            att = att.masked_fill(~mask, float("-inf"))  # <-
            return att.softmax(dim=-1) @ v

    class Decoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = Attention()

        def forward(self, q, k, v):
            n = q.shape[-2]
            mask = torch.triu(torch.ones(n, n, dtype=torch.bool, device=q.device), diagonal=1)
            return self.attn(q, k, v, mask)
"""
CAUSAL_IN_BRANCHES = """
    import torch

    def attend(q, k, v):
        n = q.shape[-2]
        att = (q @ k.transpose(-2, -1)) * q.size(-1) ** -0.5
        if q.is_cuda:
            mask = torch.ones(n, n, dtype=torch.bool, device=q.device).triu(1)
        else:
            mask = torch.triu(torch.ones(n, n), diagonal=1).bool()
        att = att.masked_fill(~mask, float("-inf"))  # <-
        return att.softmax(dim=-1) @ v
"""
CAUSAL_SCRIPT = """
    import torch

    n = 8
    q = torch.randn(1, 2, n, 16)
    k = torch.randn(1, 2, n, 16)
    v = torch.randn(1, 2, n, 16)
    future = torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)
    att = (q @ k.transpose(-2, -1)) * q.size(-1) ** -0.5
    att = att.masked_fill(~future, float("-inf"))  # <-
    out = att.softmax(dim=-1) @ v
"""

SHP202_CASES = [
    *(
        case("SHP202", CAUSAL_POLARITY.format(future=future, fill=fill), old, new, name=f"{mask_name}-{fill_name}")
        for mask_name, future in FUTURE_MASKS.items()
        for fill_name, (fill, old, new) in FUTURE_FILLS.items()
    ),
    *(
        case("SHP202", CAUSAL_KEEP.format(keep=keep), "masked_fill(keep,", "masked_fill(~keep,", name=f"keep-{name}")
        for name, keep in KEEP_MASKS.items()
    ),
    case("SHP202", CAUSAL_BUFFER, "== 1,", "== 0,", name="registered-buffer"),
    case("SHP202", CAUSAL_ATTRIBUTE_IN_INIT, "~self.future", "self.future", name="attribute-set-in-init"),
    case("SHP202", CAUSAL_FROM_A_HELPER_METHOD, "~mask", "mask", name="helper-method"),
    case("SHP202", CAUSAL_FROM_A_STATICMETHOD, "~mask", "mask", name="staticmethod"),
    case("SHP202", CAUSAL_FROM_A_MODULE_FUNCTION, "~mask", "mask", name="module-function"),
    case("SHP202", CAUSAL_IN_A_TUPLE, "~future", "future", name="returned-in-a-tuple"),
    case(
        "SHP202",
        CAUSAL_FROM_A_LAMBDA,
        "~mask",
        "mask",
        name="lambda",
    ),
    case("SHP202", CAUSAL_PASSED_DOWN, "~mask", "mask", name="built-in-the-parent"),
    case("SHP202", CAUSAL_IN_BRANCHES, "~mask", "mask", name="if-branches"),
    case("SHP202", CAUSAL_SCRIPT, "~future", "future", name="module-level-script"),
]


# -- SHP203: a padding mask of the wrong boolean convention for its consumer -----------------------------
PADDING_TO_SDPA = """
    import torch
    import torch.nn.functional as F

    def attend(q, k, v, input_ids, pad_id):
        pad = {pad}
        return F.scaled_dot_product_attention(q, k, v, {argument})  # <-
"""
PADDINGS = {
    "eq": ("input_ids == pad_id", "input_ids != pad_id"),
    "eq-method": ("input_ids.eq(pad_id)", "input_ids.ne(pad_id)"),
    "not-ne": ("~(input_ids != pad_id)", "input_ids != pad_id"),
    "logical_not": ("(input_ids != pad_id).logical_not()", "input_ids != pad_id"),
    "torch.logical_not": ("torch.logical_not(input_ids != pad_id)", "input_ids != pad_id"),
}
SDPA_MASK_ARGUMENTS = {
    "keyword": "attn_mask=pad[:, None, None, :]",
    "positional": "pad[:, None, None, :]",
    "expanded": "attn_mask=pad.unsqueeze(1).unsqueeze(2)",
}
PADDING_FROM_A_HELPER = """
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Attention(nn.Module):
        @staticmethod
        def key_mask(input_ids, pad_id):
            return (input_ids == pad_id)[:, None, None, :]

        def forward(self, q, k, v, input_ids, pad_id):
            mask = self.key_mask(input_ids, pad_id)
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # <-
"""
PADDING_PASSED_DOWN = """
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Attention(nn.Module):
        def forward(self, q, k, v, mask=None):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # <-

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = Attention()

        def forward(self, q, k, v, input_ids, pad_id):
            mask = (input_ids == pad_id)[:, None, None, :]
            return self.attn(q, k, v, mask=mask)
"""
KEEP_FILLED = """
    import torch

    def attend(q, k, v, input_ids, pad_id):
        keep = {keep}
        sim = q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5
        sim = sim.masked_fill(keep[:, None, None, :], -torch.finfo(sim.dtype).max)  # <-
        return sim.softmax(dim=-1) @ v
"""
KEEPS = {
    "ne-pad": "input_ids != pad_id",
    "ne-method": "input_ids.ne(pad_id)",
    "not-eq": "~(input_ids == pad_id)",
}

SHP203_CASES = [
    *(
        case(
            "SHP203",
            PADDING_TO_SDPA.format(pad=pad, argument=argument),
            f"pad = {pad}",
            f"pad = {keep}",
            name=f"{pad_name}-{argument_name}",
        )
        for pad_name, (pad, keep) in PADDINGS.items()
        for argument_name, argument in SDPA_MASK_ARGUMENTS.items()
    ),
    case("SHP203", PADDING_FROM_A_HELPER, "input_ids == pad_id", "input_ids != pad_id", name="staticmethod"),
    case("SHP203", PADDING_PASSED_DOWN, "input_ids == pad_id", "input_ids != pad_id", name="built-in-the-parent"),
    *(
        case("SHP203", KEEP_FILLED.format(keep=keep), "keep[:, None", "~keep[:, None", name=f"keep-filled-{name}")
        for name, keep in KEEPS.items()
    ),
]


# -- SHP205: two finfo.min planes summed -----------------------------------------------------------------
SUMMED_PLANES = """
    import torch

    def build_mask(attention_mask, n, dtype):
        causal = torch.full((n, n), torch.finfo(dtype).min).triu(1)[None, None]
        padding = (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min
        {combine}  # <-
        return mask
"""
SUMS = {
    "plus": "mask = causal + padding",
    "torch.add": "mask = torch.add(causal, padding)",
    "add-method": "mask = causal.add(padding)",
}
SUMMED_IN_PLACE = """
    import torch

    def build_mask(attention_mask, n, dtype):
        mask = torch.full((n, n), torch.finfo(dtype).min).triu(1)[None, None]
        padding = (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min
        {combine}  # <-
        return mask
"""
IN_PLACE_SUMS = {
    "augmented": "mask += padding",
    "add_": "mask.add_(padding)",
}
PLANES_FROM_HELPERS = """
    import torch

    def causal_plane(n, dtype):
        return torch.full((n, n), torch.finfo(dtype).min).triu(1)[None, None]

    def padding_plane(attention_mask, dtype):
        inverted = 1.0 - attention_mask[:, None, None, :].to(dtype)
        return inverted.masked_fill(inverted.bool(), torch.finfo(dtype).min)

    def build_mask(attention_mask, n, dtype):
        causal, padding = causal_plane(n, dtype), padding_plane(attention_mask, dtype)
        return causal + padding  # <-
"""

SHP205_CASES = [
    *(
        case(
            "SHP205",
            SUMMED_PLANES.format(combine=combine),
            combine,
            "mask = causal.masked_fill(padding.bool(), torch.finfo(dtype).min)",
            name=name,
        )
        for name, combine in SUMS.items()
    ),
    *(
        case(
            "SHP205",
            SUMMED_IN_PLACE.format(combine=combine),
            combine,
            "mask = mask.masked_fill(padding.bool(), torch.finfo(dtype).min)",
            name=name,
        )
        for name, combine in IN_PLACE_SUMS.items()
    ),
    case(
        "SHP205",
        PLANES_FROM_HELPERS,
        "return causal + padding",
        "return causal.masked_fill(padding.bool(), torch.finfo(dtype).min)",
        name="planes-from-helpers-unpacked-together",
    ),
]


# -- SHP201: self-attention in a causal model with no causal mask ---------------------------------------
CAUSAL_SDPA = """
    import torch
    import torch.nn.functional as F
    from torch import nn
    from torch.nn.functional import scaled_dot_product_attention as sdpa

    class CausalSelfAttention(nn.Module):
        def __init__(self, dim, heads):
            super().__init__()
            self.heads = heads
            self.qkv = nn.Linear(dim, dim * 3)

        def forward(self, x):
            b, n, d = x.shape
            q, k, v = self.qkv(x).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
            out = {kernel}(q, k, v)  # <-
            return out.transpose(1, 2).reshape(b, n, d)
"""
SDPA_SPELLINGS = {
    "F": "F.scaled_dot_product_attention",
    "torch.nn.functional": "torch.nn.functional.scaled_dot_product_attention",
    "imported-as": "sdpa",
}
CAUSAL_MANUAL = """
    import math
    import torch
    import torch.nn.functional as F
    from torch import nn

    class CausalSelfAttention(nn.Module):
        def __init__(self, dim, heads, block_size):
            super().__init__()
            self.heads = heads
            self.qkv = nn.Linear(dim, dim * 3)
            self.register_buffer("bias", torch.tril(torch.ones(block_size, block_size)))

        def forward(self, x):
            b, n, d = x.shape
            q, k, v = self.qkv(x).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
            att = {softmax}  # <-
            return (att @ v).transpose(1, 2).reshape(b, n, d)
"""
CAUSAL_SOFTMAXES = {
    "F.softmax": "F.softmax(att, dim=-1)",
    "method": "att.softmax(dim=-1)",
    "torch.softmax": "torch.softmax(att, -1)",
}
CAUSAL_FLAG_FROM_INIT = """
    import torch.nn.functional as F
    from torch import nn

    class GPTAttention(nn.Module):
        def __init__(self, dim, heads):
            super().__init__()
            self.heads = heads
            self.qkv = nn.Linear(dim, dim * 3)
            self.is_causal = False

        def forward(self, x):
            b, n, d = x.shape
            q, k, v = self.qkv(x).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
            out = F.scaled_dot_product_attention(q, k, v, is_causal=self.is_causal)  # <-
            return out.transpose(1, 2).reshape(b, n, d)
"""

SHP201_CASES = [
    *(
        case("SHP201", CAUSAL_SDPA.format(kernel=kernel), "(q, k, v)  #", "(q, k, v, is_causal=True)  #", name=name)
        for name, kernel in SDPA_SPELLINGS.items()
    ),
    *(
        case(
            "SHP201",
            CAUSAL_MANUAL.format(softmax=softmax),
            "att = " + softmax,
            "att = att.masked_fill(self.bias[:n, :n] == 0, float('-inf'))\n            att = " + softmax,
            name=f"manual-{name}",
        )
        for name, softmax in CAUSAL_SOFTMAXES.items()
    ),
    case("SHP201", CAUSAL_FLAG_FROM_INIT, "self.is_causal = False", "self.is_causal = True", name="flag-set-in-init"),
]


# -- SHP204: is_causal=True over keys that include a KV cache ---------------------------------------------
CACHED_SDPA = """
    import torch
    import torch.nn.functional as F

    def attention(q, k, v, layer_past=None):
        if layer_past is not None:
            past_k, past_v = layer_past
            {concat}
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # <-
        return y, (k, v)
"""
CACHE_CONCATS = {
    "cat-list": "k = torch.cat([past_k, k], dim=-2)\n            v = torch.cat([past_v, v], dim=-2)",
    "cat-tuple-positional": "k = torch.cat((past_k, k), 2)\n            v = torch.cat((past_v, v), 2)",
    "concat": "k = torch.concat([past_k, k], dim=-2)\n            v = torch.concat([past_v, v], dim=-2)",
    "unpacked": "k, v = torch.cat([past_k, k], dim=-2), torch.cat([past_v, v], dim=-2)",
}
CACHE_ON_SELF = """
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Attention(nn.Module):
        def forward(self, q, k, v, use_cache=False):
            if use_cache:
                k = self.cache_k = torch.cat([self.cache_k, k], dim=-2)
                v = self.cache_v = torch.cat([self.cache_v, v], dim=-2)
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)  # <-
"""
CACHE_FROM_A_HELPER = """
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Attention(nn.Module):
        def append_cache(self, k, v, past):
            past_k, past_v = past
            return torch.cat([past_k, k], dim=-2), torch.cat([past_v, v], dim=-2)

        def forward(self, q, k, v, past=None):
            if past is not None:
                k, v = self.append_cache(k, v, past)
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)  # <-
"""

SHP204_CASES = [
    *(
        case(
            "SHP204",
            CACHED_SDPA.format(concat=concat),
            "is_causal=True",
            "is_causal=q.shape[-2] == k.shape[-2]",
            name=name,
        )
        for name, concat in CACHE_CONCATS.items()
    ),
    case(
        "SHP204",
        CACHE_ON_SELF,
        "is_causal=True",
        "is_causal=q.shape[-2] == k.shape[-2]",
        name="chained-assignment-on-self",
    ),
    case(
        "SHP204",
        CACHE_FROM_A_HELPER,
        "is_causal=True",
        "is_causal=q.shape[-2] == k.shape[-2]",
        name="helper-returns-a-tuple",
    ),
]


# -- SHP105: the attention softmax in float16 with no float32 upcast --------------------------------------
HALF_SCORES = """
    import math
    import torch
    import torch.nn.functional as F

    def attention(q, k, v):
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
        return {softmax} @ v  # <-
"""
HALF_SOFTMAXES = {
    "half-method": ("scores.half().softmax(dim=-1)", "scores.half().float().softmax(dim=-1)"),
    "to-float16": ("F.softmax(scores.to(torch.float16), dim=-1)", "F.softmax(scores.to(torch.float32), dim=-1)"),
    "to-half": ("torch.softmax(scores.to(torch.half), -1)", "torch.softmax(scores.to(torch.float), -1)"),
    "type": ("scores.type(torch.float16).softmax(-1)", "scores.type(torch.float32).softmax(-1)"),
}
HALF_MODEL = """
    import math
    import torch
    from torch import nn

    class Attention(nn.Module):
        def forward(self, q, k, v):
            scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
            return torch.softmax(scores, dim=-1) @ v  # <-

    {build}
"""
HALF_BUILDS = {
    "half-where-built": "model = Attention().half()",
    "to-float16-where-built": "model = Attention().to(torch.float16)",
    "cast-after-build": "model = Attention()\n    model.half()",
}

SHP105_CASES = [
    *(
        case("SHP105", HALF_SCORES.format(softmax=softmax), softmax, fixed, name=name)
        for name, (softmax, fixed) in HALF_SOFTMAXES.items()
    ),
    *(
        case(
            "SHP105",
            HALF_MODEL.format(build=build),
            "torch.softmax(scores, dim=-1)",
            "torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)",
            name=name,
        )
        for name, build in HALF_BUILDS.items()
    ),
]


# -- more data flows and structures: a softmax helper, map over (q, k, v), one head per module, a subclass --
SOFTMAX_IN_A_HELPER = """
    import torch
    import torch.nn.functional as F

    def normalise(scores):
        return F.softmax(scores, dim=-1)

    def attend(q, k, v):
        scores = torch.matmul(q, k.transpose(-2, -1))
        return normalise(scores) @ v  # <-
"""
AXIS_THROUGH_MAP = """
    import torch
    from einops import rearrange

    def attend(q, k, v, heads):
        q, k, v = map(lambda t: rearrange(t, "b n (h d) -> b h n d", h=heads), (q, k, v))
        sim = torch.einsum("b h i d, b h j d -> b h i j", q, k) * q.shape[-1] ** -0.5
        attn = sim.softmax(dim=2)  # <-
        return torch.einsum("b h i j, b h j d -> b h i d", attn, v)
"""
WIDTH_SCALE_IN_A_HEAD = """
    import torch
    import torch.nn.functional as F
    from torch import nn

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
            wei = q @ k.mT * C**-0.5  # <-
            return F.softmax(wei, dim=-1) @ self.value(x)

    class MultiHeadAttention(nn.Module):
        def __init__(self, num_heads, head_size):
            super().__init__()
            self.heads = nn.ModuleList([Head(head_size) for _ in range(num_heads)])

        def forward(self, x):
            return torch.cat([h(x) for h in self.heads], dim=-1)

    class Block(nn.Module):
        def __init__(self, n_embd, n_head):
            super().__init__()
            self.sa = MultiHeadAttention(n_head, n_embd // n_head)
"""
MASK_FROM_A_SUBCLASS = """
    import torch
    from torch import nn

    class AttentionBase(nn.Module):
        def forward(self, q, k, v):
            att = (q @ k.transpose(-2, -1)) * q.size(-1) ** -0.5
            att = att.masked_fill(~self.future_mask(q.shape[-2]), float("-inf"))  # <-
            return att.softmax(dim=-1) @ v

    class CausalAttention(AttentionBase):
        def future_mask(self, n):
            return torch.ones(n, n, dtype=torch.bool).triu(1)
"""

HELPER_OF_A_BASE_CLASS = """
    import torch
    from torch import nn

    class AttentionBase(nn.Module):
        def logits(self, q, k):
            return q @ k.transpose(-2, -1)

    class Attention(AttentionBase):
        def forward(self, q, k, v):
            scores = self.logits(q, k)
            return scores.softmax(dim=-1) @ v  # <-
"""

SCALE_ON_SELF_IN_FORWARD = """
    import torch
    from torch import nn

    class Attention(nn.Module):
        def __init__(self, dim, heads):
            super().__init__()
            self.dim = dim
            self.heads = heads
            self.qkv = nn.Linear(dim, dim * 3)

        def forward(self, x):
            b, n, _ = x.shape
            self.scale = self.dim ** -0.5  # <-
            q, k, v = self.qkv(x).view(b, n, 3, self.heads, self.dim // self.heads).permute(2, 0, 3, 1, 4)
            dots = torch.matmul(q, k.transpose(-1, -2)) * self.scale
            return torch.matmul(dots.softmax(dim=-1), v)
"""
FILL_ON_SELF_IN_FORWARD = """
    import torch
    from torch import nn

    class Attention(nn.Module):
        def forward(self, q, k, v, mask):
            self.mask_value = -1e9
            scores = q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5
            scores = scores.masked_fill(mask == 0, self.mask_value)  # <-
            return scores.softmax(dim=-1) @ v
"""
CAUSAL_CHAINED = """
    import torch
    from torch import nn

    class CausalSelfAttention(nn.Module):
        def forward(self, q, k, v):
            n = q.shape[-2]
            att = (q @ k.transpose(-2, -1)) * q.size(-1) ** -0.5
            mask = self.last_mask = torch.ones(n, n, dtype=torch.bool, device=q.device).triu(1)
            att = att.masked_fill(~mask, float("-inf"))  # <-
            return att.softmax(dim=-1) @ v
"""
CAUSAL_ADDITIVE = """
    import torch

    def attend(q, k, v):
        n = q.shape[-2]
        att = (q @ k.transpose(-2, -1)) * q.size(-1) ** -0.5
        keep = torch.tril(torch.ones(n, n, device=q.device))
        att = att.masked_fill(keep == 1, -1e4)  # <-
        return att.softmax(dim=-1) @ v
"""

SCORES_THROUGH_A_LAMBDA = """
    import math
    import torch

    def attend(q, k, v):
        rescale = lambda x: x.float()
        scores = rescale(torch.matmul(q, k.transpose(-2, -1)))
        return scores.softmax(dim=-1) @ v  # <-
"""

PRE_SCALED_QUERY = """
    import math
    import torch

    def attend(q, k, v):
        d = q.shape[-1]
        {prescale}
        scores = torch.matmul(q, k.transpose(-2, -1))
        return torch.softmax(scores, dim=-1) @ v  # <-
"""
PRE_SCALES = {
    "multiply": "q = q * d ** -0.5",
    "augmented": "q *= d ** -0.5",
    "divide": "q = q / math.sqrt(d)",
    "mul_": "q.mul_(d ** -0.5)",
    "torch.mul": "q = torch.mul(q, 1.0 / math.sqrt(d))",
}
INVERTED_SCALE = """
    import math
    import torch

    def attend(q, k, v):
        d = q.shape[-1]
        scores = torch.einsum("b h i d, b h j d -> b h i j", q, k) {scale}  # <-
        return scores.softmax(dim=-1) @ v
"""
INVERTED_SCALES = {
    "times-sqrt": ("* math.sqrt(d)", "/ math.sqrt(d)"),
    "times-power": ("* d ** 0.5", "* d ** -0.5"),
    "divided-by-inverse": ("/ d ** -0.5", "/ d ** 0.5"),
}

CAUSAL_FLAG_IGNORED = """
    import torch.nn.functional as F
    from torch import nn

    class Attention(nn.Module):
        def __init__(self, dim, heads, causal=False):
            super().__init__()
            self.heads = heads
            self.causal = causal
            self.qkv = nn.Linear(dim, dim * 3)

        def forward(self, x):
            b, n, d = x.shape
            q, k, v = self.qkv(x).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
            out = F.scaled_dot_product_attention(q, k, v)  # <-
            return out.transpose(1, 2).reshape(b, n, d)

    class GPT(nn.Module):
        def __init__(self, dim, heads):
            super().__init__()
            self.attn = Attention(dim, heads, causal=True)
"""
CAUSAL_KERNEL_IN_A_PARTIAL = """
    from functools import partial

    import torch.nn.functional as F
    from torch import nn

    class CausalSelfAttention(nn.Module):
        def __init__(self, dim, heads):
            super().__init__()
            self.heads = heads
            self.qkv = nn.Linear(dim, dim * 3)
            self.attend = partial(F.scaled_dot_product_attention, dropout_p=0.0)

        def forward(self, x):
            b, n, d = x.shape
            q, k, v = self.qkv(x).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
            out = self.attend(q, k, v)  # <-
            return out.transpose(1, 2).reshape(b, n, d)
"""
CAUSAL_KERNEL_IN_A_WRAPPER = """
    import torch.nn.functional as F
    from torch import nn

    def attend(q, k, v, causal=False):
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)

    class CausalSelfAttention(nn.Module):
        def __init__(self, dim, heads):
            super().__init__()
            self.heads = heads
            self.qkv = nn.Linear(dim, dim * 3)

        def forward(self, x):
            b, n, d = x.shape
            q, k, v = self.qkv(x).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
            out = attend(q, k, v)  # <-
            return out.transpose(1, 2).reshape(b, n, d)
"""

ADDITIVE_CAUSAL = """
    import torch

    def attend(q, k, v):
        n = q.shape[-2]
        att = q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5
        {apply}  # <-
        return att.softmax(dim=-1) @ v
"""
ADDITIVE_APPLICATIONS = {
    "full-tril": ('att = att + torch.full((n, n), float("-inf"), device=q.device).tril(-1)', ".tril(-1)", ".triu(1)"),
    "augmented": ('att += torch.full((n, n), float("-inf"), device=q.device).tril(-1)', ".tril(-1)", ".triu(1)"),
    "mask-first": ('att = torch.full((n, n), float("-inf"), device=q.device).tril(-1) + att', ".tril(-1)", ".triu(1)"),
}
ADDITIVE_FROM_A_HELPER = """
    import torch
    from torch import nn

    class CausalSelfAttention(nn.Module):
        @staticmethod
        def causal_bias(n, dtype, device):
            keep = torch.ones(n, n, dtype=torch.bool, device=device).tril()
            return torch.zeros(n, n, dtype=dtype, device=device).masked_fill(keep, torch.finfo(dtype).min)

        def forward(self, q, k, v):
            att = q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5
            att = att + self.causal_bias(q.shape[-2], q.dtype, q.device)  # <-
            return att.softmax(dim=-1) @ v
"""

SCORES_IN_A_WALRUS = """
    import math
    import torch

    def attend(q, k, v):
        return torch.softmax((scores := q @ k.transpose(-2, -1)), dim=-1) @ v  # <-
"""
KEYS_TRANSPOSED_IN_A_CONDITIONAL = """
    import math
    import torch

    def attend(q, k, v, channels_last):
        keys = k.transpose(-2, -1) if channels_last else k.mT
        scores = q @ keys
        return torch.softmax(scores, dim=-1) @ v  # <-
"""
CAUSAL_IN_A_WALRUS = """
    import torch

    def attend(q, k, v):
        n = q.shape[-2]
        att = (q @ k.transpose(-2, -1)) * q.size(-1) ** -0.5
        att = att.masked_fill(~(future := torch.ones(n, n, dtype=torch.bool).triu(1)), float("-inf"))  # <-
        return att.softmax(dim=-1) @ v
"""
CHANNELS_FIRST = """
    import torch
    from torch import nn

    class Attention2d(nn.Module):
        def __init__(self, dim, dim_out, num_heads=32):
            super().__init__()
            dim_attn = dim_out
            self.num_heads = num_heads
            self.dim_head = dim_attn // num_heads
            self.scale = num_heads ** -0.5  # <-
            self.qkv = nn.Conv2d(dim, dim_attn * 3, 1)

        def forward(self, x):
            B, C, H, W = x.shape
            q, k, v = self.qkv(x).reshape(B, 3, self.num_heads, self.dim_head, -1).unbind(1)
            q = q * self.scale
            attn = q.transpose(-2, -1) @ k
            attn = attn.softmax(dim=-1)
            return (v @ attn.transpose(-2, -1)).view(B, -1, H, W)
"""
CHANNELS_FIRST_UNSCALED = """
    import math
    import torch

    def attend(q, k, v):
        attn = q.transpose(-2, -1) @ k
        return attn.softmax(dim=-1)  # <-
"""
FILL_IN_A_CLASS_CONSTANT = """
    import torch

    class Config:
        mask_value = -1e9

    def attend(q, k, v, mask):
        scores = q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5
        scores = scores.masked_fill(mask == 0, Config.mask_value)  # <-
        return scores.softmax(-1) @ v
"""
FILL_AS_A_PARAMETER_DEFAULT = """
    import torch

    def attend(q, k, v, mask, mask_value=-1e9):
        scores = q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5
        scores = scores.masked_fill(mask == 0, mask_value)  # <-
        return scores.softmax(-1) @ v
"""

MORE_CASES = [
    case("SHP102", CHANNELS_FIRST, "num_heads ** -0.5", "self.dim_head ** -0.5", name="channels-first-head-count"),
    case(
        "SHP101",
        CHANNELS_FIRST_UNSCALED,
        "attn = q.transpose(-2, -1) @ k",
        "attn = q.transpose(-2, -1) @ k / math.sqrt(q.size(-2))",
        name="channels-first-product",
    ),
    case("SHP202", CAUSAL_IN_A_WALRUS, "~(future", "(future", name="walrus"),
    case(
        "SHP101",
        SCORES_IN_A_WALRUS,
        "q @ k.transpose(-2, -1))",
        "q @ k.transpose(-2, -1) / math.sqrt(q.size(-1)))",
        name="walrus",
    ),
    case(
        "SHP101",
        KEYS_TRANSPOSED_IN_A_CONDITIONAL,
        "scores = q @ keys",
        "scores = q @ keys / math.sqrt(q.size(-1))",
        name="keys-transposed-in-a-conditional-expression",
    ),
    case(
        "SHP103",
        FILL_IN_A_CLASS_CONSTANT,
        "mask_value = -1e9",
        "mask_value = -1e4",
        name="class-constant",
        gap="values.constant_number reads module constants and self attributes, not a class attribute (Config.x)",
    ),
    case(
        "SHP103",
        FILL_AS_A_PARAMETER_DEFAULT,
        "mask_value=-1e9",
        "mask_value=-1e4",
        name="parameter-default",
    ),
    *(
        case("SHP202", ADDITIVE_CAUSAL.format(apply=apply), old, new, name=f"additive-{name}")
        for name, (apply, old, new) in ADDITIVE_APPLICATIONS.items()
    ),
    case("SHP202", ADDITIVE_FROM_A_HELPER, "masked_fill(keep,", "masked_fill(~keep,", name="additive-from-a-helper"),
    case(
        "SHP201", CAUSAL_FLAG_IGNORED, "(q, k, v)  #", "(q, k, v, is_causal=self.causal)  #", name="causal-flag-ignored"
    ),
    case(
        "SHP201",
        CAUSAL_KERNEL_IN_A_PARTIAL,
        "dropout_p=0.0)",
        "dropout_p=0.0, is_causal=True)",
        name="kernel-in-a-partial",
    ),
    case(
        "SHP201",
        CAUSAL_KERNEL_IN_A_WRAPPER,
        "attend(q, k, v)  #",
        "attend(q, k, v, causal=True)  #",
        name="kernel-in-a-wrapper",
    ),
    *(
        case("SHP101", PRE_SCALED_QUERY.format(prescale="pass"), "pass", prescale, name=f"query-pre-scaled-{name}")
        for name, prescale in PRE_SCALES.items()
    ),
    *(
        case("SHP101", INVERTED_SCALE.format(scale=scale), scale, fixed, name=f"inverted-{name}")
        for name, (scale, fixed) in INVERTED_SCALES.items()
    ),
    case(
        "SHP101",
        SCORES_THROUGH_A_LAMBDA,
        "lambda x: x.float()",
        "lambda x: x.float() / math.sqrt(q.size(-1))",
        name="scores-through-a-lambda",
    ),
    case(
        "SHP102",
        SCALE_ON_SELF_IN_FORWARD,
        "self.dim ** -0.5",
        "(self.dim // self.heads) ** -0.5",
        name="self-scale-set-in-forward",
    ),
    case("SHP103", FILL_ON_SELF_IN_FORWARD, "= -1e9", "= -1e4", name="self-fill-set-in-forward"),
    case("SHP202", CAUSAL_CHAINED, "~mask", "mask", name="chained-assignment"),
    case("SHP202", CAUSAL_ADDITIVE, "keep == 1", "keep == 0", name="keep-compared-to-one"),
    case(
        "SHP101",
        HELPER_OF_A_BASE_CLASS,
        "return q @ k.transpose(-2, -1)",
        "return q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5",
        name="helper-of-a-base-class",
    ),
    case(
        "SHP101",
        SOFTMAX_IN_A_HELPER,
        "k.transpose(-2, -1))",
        "k.transpose(-2, -1)) / q.shape[-1] ** 0.5",
        name="softmax-in-a-module-function",
    ),
    case("SHP104", AXIS_THROUGH_MAP, "softmax(dim=2)", "softmax(dim=-1)", name="map-lambda-rearrange"),
    case("SHP102", WIDTH_SCALE_IN_A_HEAD, "C**-0.5", "k.size(-1) ** -0.5", name="one-head-per-module-mT"),
    case(
        "SHP202",
        MASK_FROM_A_SUBCLASS,
        "~self.future_mask",
        "self.future_mask",
        name="mask-method-of-a-subclass",
    ),
]


REWRITES = [
    *SHP101_CASES,
    *SHP102_CASES,
    *SHP103_CASES,
    *SHP104_CASES,
    *SHP105_CASES,
    *SHP201_CASES,
    *SHP202_CASES,
    *SHP203_CASES,
    *SHP204_CASES,
    *SHP205_CASES,
    *MORE_CASES,
]


@pytest.mark.parametrize("rewrite", buggy_params(REWRITES))
def test_buggy_form_is_found_on_its_line(rewrite: Rewrite):
    assert lines_of(rewrite.rule, rewrite.buggy) == [rewrite.marked_line]


@pytest.mark.parametrize("rewrite", fixed_params(REWRITES))
def test_fixed_twin_is_quiet(rewrite: Rewrite):
    assert lines_of(rewrite.rule, rewrite.fixed) == []
