"""SHP302 from what the final norm is applied to: a norm of another value is no final norm of the
stream, and a norm the module builds and never applies says the module meant to end on it."""

from __future__ import annotations

import textwrap

import pytest

from tests.helpers import findings, write_package

BLOCK = textwrap.dedent("""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, dim, heads):
            super().__init__()
            self.ln1 = nn.LayerNorm(dim)
            self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
            self.ln2 = nn.LayerNorm(dim)
            self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

        def forward(self, x):
            h = self.ln1(x)
            x = x + self.attn(h, h, h, need_weights=False)[0]
            return x + self.mlp(self.ln2(x))
""")

HEADED = BLOCK + textwrap.dedent("""
    class Model(nn.Module):
        def __init__(self, vocab, dim, heads, depth):
            super().__init__()
            self.emb = nn.Embedding(vocab, dim)
            self.blocks = nn.ModuleList([Block(dim, heads) for _ in range(depth)])
            self.ln_f = nn.LayerNorm(dim)
            self.head = nn.Linear(dim, vocab)

        def forward(self, idx):
            h = self.emb(idx)
            x = h
            for block in self.blocks:
                x = block(x)
            {normed}
            return self.head({read})
""")


@pytest.mark.parametrize(("normed", "read"), [("out = self.ln_f(h)", "x"), ("e = self.ln_f(self.emb(idx))", "x")])
def test_a_norm_of_another_value_is_no_final_norm(normed, read):
    [finding] = findings("SHP302", HEADED.format(normed=normed, read=read))
    assert finding.message.startswith("the pre-norm stack `self.blocks` reaches `self.head` with no final norm")


@pytest.mark.parametrize(("normed", "read"), [("x = self.ln_f(x)", "x"), ("out = self.ln_f(x[:, -1])", "out")])
def test_the_stream_normed_is_quiet(normed, read):
    assert findings("SHP302", HEADED.format(normed=normed, read=read)) == []


RETURNED = BLOCK + textwrap.dedent("""
    class Encoder(nn.Module):
        def __init__(self, dim, heads, depth):
            super().__init__()
            self.blocks = nn.ModuleList([Block(dim, heads) for _ in range(depth)])
            {norm}

        def forward(self, x):
            for block in self.blocks:
                x = block(x)
            return {returned}
""")


def test_a_stack_returned_past_the_norm_its_module_built():
    [finding] = findings("SHP302", RETURNED.format(norm="self.norm = nn.LayerNorm(dim)", returned="x"))
    assert finding.message.startswith("the pre-norm stack `self.blocks` is returned with no final norm")
    assert [r["message"] for r in finding.related] == ["this norm is built and never applied"]
    assert finding.related[0]["line"] == finding.line - 5


@pytest.mark.parametrize(
    ("norm", "returned"),
    [
        ("self.norm = nn.LayerNorm(dim)", "self.norm(x)"),  # applied
        ("pass", "x"),  # no norm of its own: the caller may apply it
        ("self.norm = nn.BatchNorm1d(dim)", "x"),  # not a token norm
    ],
)
def test_a_stack_returned_with_its_norm_applied_or_none_built_is_quiet(norm, returned):
    assert findings("SHP302", RETURNED.format(norm=norm, returned=returned)) == []


DELEGATED = BLOCK + textwrap.dedent("""
    class VisionTransformer(nn.Module):
        def __init__(self, dim, heads, depth, classes):
            super().__init__()
            self.blocks = nn.Sequential(*[Block(dim, heads) for _ in range(depth)])
            self.norm = nn.LayerNorm(dim)
            self.head = nn.Linear(dim, classes)

        def forward_features(self, x):
            x = self.blocks(x)
            {features}

        def forward_head(self, x):
            return self.head(x[:, 0])

        def forward(self, x):
            x = self.forward_features(x)
            {forward}
""")


def test_a_stack_in_a_method_forward_calls_is_returned_past_the_norm_its_module_built():
    """timm: the stack runs in `forward_features`, which forward calls; with the final norm gone
    from it, the norm the module builds is never applied."""
    code = DELEGATED.format(features="return x", forward="return self.forward_head(x)")
    [finding] = findings("SHP302", code)
    assert finding.message.startswith("the pre-norm stack `self.blocks` is returned with no final norm")
    assert finding.line == code.splitlines().index("        return x") + 1


@pytest.mark.parametrize(
    ("features", "forward"),
    [
        ("return self.norm(x)", "return self.forward_head(x)"),  # normed where the stack runs
        ("return x", "return self.forward_head(self.norm(x))"),  # normed by the caller in forward
    ],
)
def test_a_stack_in_a_method_forward_calls_normed_anywhere_is_quiet(features, forward):
    assert findings("SHP302", DELEGATED.format(features=features, forward=forward)) == []


SEQUENCE = """
    from torch import nn

    class SequentialSequence(nn.Module):
        def __init__(self, layers):
            super().__init__()
            self.layers = layers

        def forward(self, x):
            for f, g in self.layers:
                x = x + f(x)
                x = x + g(x)
            return x
"""

LM = """
    from functools import partial
    from torch import nn
    from .reversible import SequentialSequence

    class PreNorm(nn.Module):
        def __init__(self, dim, fn):
            super().__init__()
            self.norm = nn.LayerNorm(dim)
            self.fn = fn

        def forward(self, x):
            return self.fn(self.norm(x))

    class Transformer(nn.Module):
        def __init__(self, dim, depth):
            super().__init__()
            wrapper = partial(PreNorm, dim)
            layers = nn.ModuleList([])
            for _ in range(depth):
                layers.append(nn.ModuleList([wrapper(nn.Linear(dim, dim)), wrapper(nn.Linear(dim, dim))]))
            self.layers = SequentialSequence(layers)

        def forward(self, x):
            return self.layers(x)

    class TransformerLM(nn.Module):
        def __init__(self, vocab, dim, depth, return_embeddings=False):
            super().__init__()
            self.emb = nn.Embedding(vocab, dim)
            self.transformer = Transformer(dim, depth)
            self.to_logits = nn.Linear(dim, vocab) if not return_embeddings else nn.Identity()

        def forward(self, idx):
            x = self.transformer(self.emb(idx))
            return self.to_logits(x)
"""


def test_prenorm_wrappers_added_by_a_sequence_of_another_module_reach_the_head(run_cli, tmp_path):
    """performer / linear-attention-transformer / sinkhorn-transformer LMs before their fixes."""
    write_package(tmp_path, {"reversible.py": SEQUENCE, "lm.py": LM})
    result = run_cli("check", "pkg", "--select", "SHP302", "--preview", "--no-cache", cwd=tmp_path)
    assert "pkg/lm.py:36:" in result.stdout, result.stdout
    assert "the pre-norm stack `self.transformer` reaches `self.to_logits` with no final norm" in result.stdout


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("return self.to_logits(x)", "return self.to_logits(self.norm(x))"),  # the final norm
        ("return self.fn(self.norm(x))", "return self.norm(self.fn(x))"),  # post-norm wrappers
    ],
)
def test_a_final_norm_or_post_norm_wrappers_are_quiet(run_cli, tmp_path, old, new):
    source = LM.replace(old, new).replace(
        "self.emb = nn.Embedding(vocab, dim)",
        "self.emb = nn.Embedding(vocab, dim)\n            self.norm = nn.LayerNorm(dim)",
    )
    write_package(tmp_path, {"reversible.py": SEQUENCE, "lm.py": source})
    result = run_cli("check", "pkg", "--select", "SHP302", "--preview", "--no-cache", cwd=tmp_path)
    assert result.returncode == 0, result.stdout


REVERSIBLE = """
    import torch
    from torch import nn

    class ReversibleBlock(nn.Module):
        def __init__(self, f, g):
            super().__init__()
            self.f = f
            self.g = g

        def forward(self, x):
            x1, x2 = torch.chunk(x, 2, dim=-1)
            y1 = x1 + self.f(x2)
            y2 = x2 + self.g(y1)
            return torch.cat([y1, y2], dim=-1)

    class ReversibleSequence(nn.Module):
        def __init__(self, blocks):
            super().__init__()
            self.blocks = nn.ModuleList([ReversibleBlock(f=f, g=g) for f, g in blocks])

        def forward(self, x):
            x = torch.cat([x, x], dim=-1)
            out = run_reversibly(x, self.blocks)
            return torch.stack(out.chunk(2, dim=-1)).mean(dim=0)
"""


def test_prenorm_wrappers_in_reversible_blocks_reach_the_head(run_cli, tmp_path):
    """The same LMs with `reversible=True`: the residual sums live in the blocks the sequence wraps."""
    write_package(
        tmp_path, {"reversible.py": REVERSIBLE, "lm.py": LM.replace("SequentialSequence", "ReversibleSequence")}
    )
    result = run_cli("check", "pkg", "--select", "SHP302", "--preview", "--no-cache", cwd=tmp_path)
    assert "the pre-norm stack `self.transformer` reaches `self.to_logits` with no final norm" in result.stdout


TIMM_LIKE = (
    DELEGATED.replace(
        "def __init__(self, dim, heads, depth, classes):",
        "def __init__(self, dim, heads, depth, classes, norm_layer=nn.LayerNorm, fc_norm=False):",
    )
    .replace("self.norm = nn.LayerNorm(dim)", "self.norm = norm_layer(dim) if not fc_norm else nn.Identity()")
    .replace(
        "        def forward_features(self, x):",
        "        def forward_intermediates(self, x):\n            return self.norm(self.blocks(x))\n\n"
        "        def forward_features(self, x):",
    )
)


def test_a_norm_chosen_by_a_flag_and_read_off_the_forward_pass_only_is_never_applied():
    """timm: `self.norm = norm_layer(dim) if not use_fc_norm else nn.Identity()`, read by
    `forward_intermediates` as well; without `x = self.norm(x)` in `forward_features` no forward runs it."""
    code = TIMM_LIKE.format(features="return x", forward="return self.forward_head(x)")
    [finding] = findings("SHP302", code)
    assert finding.line == code.splitlines().index("        return x") + 1
    assert [r["message"] for r in finding.related] == ["this norm is built and never applied"]
    assert (
        findings("SHP302", TIMM_LIKE.format(features="return self.norm(x)", forward="return self.forward_head(x)"))
        == []
    )
