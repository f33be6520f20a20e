"""SHP302 on a model whose own forward is the block loop: `for norm, attn, ... in self.layers` with residual
sums of one stream and norms applied before each sublayer (Mega-pytorch 0.0.11, lucidrains-style models)."""

from __future__ import annotations

import textwrap

import libcst as cst
import pytest

from sharpedges.analysis.blocks import PRE, loop_stacks
from sharpedges.analysis.context import FileContext
from tests.helpers import findings, mutate, write_package

TUPLES = textwrap.dedent("""
    from torch import nn

    class LM(nn.Module):
        def __init__(self, vocab, dim, depth):
            super().__init__()
            self.emb = nn.Embedding(vocab, dim)
            self.layers = nn.ModuleList([])
            for _ in range(depth):
                self.layers.append(nn.ModuleList([
                    nn.LayerNorm(dim),
                    nn.MultiheadAttention(dim, 8, batch_first=True),
                    nn.LayerNorm(dim),
                    nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim)),
                ]))
            self.to_logits = nn.Linear(dim, vocab)

        def forward(self, idx):
            x = self.emb(idx)
            for attn_norm, attn, ff_norm, ff in self.layers:
                h = attn_norm(x)
                x = attn(h, h, h)[0] + x
                x = ff(ff_norm(x)) + x
            return self.to_logits(x)
""")

ZIPPED = textwrap.dedent("""
    from torch import nn

    class Mixer(nn.Module):
        def __init__(self, dim, depth, classes):
            super().__init__()
            self.norms = nn.ModuleList([nn.RMSNorm(dim) for _ in range(depth)])
            self.mixers = nn.ModuleList([nn.Linear(dim, dim) for _ in range(depth)])
            self.head = nn.Linear(dim, classes)

        def forward(self, x):
            for i, (m, mixer) in enumerate(zip(self.norms, self.mixers)):
                x = x + mixer(m(x))
            return self.head(x.mean(dim=1))
""")

# Mega-pytorch 0.0.11: per-layer norms applied before or after each sublayer by the `pre_norm` flag
FLAGGED = textwrap.dedent("""
    from torch import nn

    def identity(t, *args, **kwargs):
        return t

    def FeedForward(dim, mult):
        return nn.Sequential(nn.Linear(dim, dim * mult), nn.GELU(), nn.Linear(dim * mult, dim))

    class Mega(nn.Module):
        def __init__(self, *, dim, num_tokens, depth, pre_norm=False):
            super().__init__()
            self.token_emb = nn.Embedding(num_tokens, dim)
            self.pre_norm = pre_norm
            self.layers = nn.ModuleList([])
            for _ in range(depth):
                self.layers.append(nn.ModuleList([
                    MegaLayer(dim=dim),
                    nn.LayerNorm(dim),
                    FeedForward(dim=dim, mult=2),
                    nn.LayerNorm(dim),
                ]))
            self.to_logits = nn.Linear(dim, num_tokens)

        def forward(self, x):
            pre_norm = self.pre_norm
            post_norm = not self.pre_norm
            x = self.token_emb(x)
            for mega_layer, mega_norm, ff, ff_norm in self.layers:
                mega_maybe_prenorm = mega_norm if pre_norm else identity
                ff_maybe_prenorm = ff_norm if pre_norm else identity
                mega_maybe_postnorm = mega_norm if post_norm else identity
                ff_maybe_postnorm = ff_norm if post_norm else identity
                x = mega_layer(mega_maybe_prenorm(x), x)
                x = mega_maybe_postnorm(x)
                x = ff(ff_maybe_prenorm(x)) + x
                x = ff_maybe_postnorm(x)
            return self.to_logits(x)
""")

# the norm chosen by the flag where the layers are built; the loop applies whichever was chosen
BUILT_BY_FLAG = textwrap.dedent("""
    from torch import nn

    class Encoder(nn.Module):
        def __init__(self, dim, depth, vocab, pre_norm=True):
            super().__init__()
            self.layers = nn.ModuleList([])
            for _ in range(depth):
                first = nn.LayerNorm(dim) if pre_norm else nn.Identity()
                second = nn.LayerNorm(dim) if pre_norm else nn.Identity()
                self.layers.append(nn.ModuleList([first, Attention(dim), second, FeedForward(dim)]))
            self.proj = nn.Linear(dim, vocab)

        def forward(self, x):
            for a, attn, b, ff in self.layers:
                x = attn(a(x)) + x
                x = ff(b(x)) + x
            return self.proj(x)
""")

# x-transformers: the norm class chosen by flags and handed to the layers through `partial`
PARTIAL_NORMS = textwrap.dedent("""
    from functools import partial
    from torch import nn

    class Decoder(nn.Module):
        def __init__(self, dim, depth, vocab, use_scalenorm=False, use_rezero=False):
            super().__init__()
            norm_class = ScaleNorm if use_scalenorm else nn.LayerNorm
            norm_fn = partial(norm_class, dim)
            norm_fn = nn.Identity if use_rezero else norm_fn
            self.layers = nn.ModuleList([])
            for _ in range(depth):
                self.layers.append(nn.ModuleList([norm_fn(), Attention(dim)]))
            self.to_logits = nn.Linear(dim, vocab)

        def forward(self, x):
            for ind, (first, block) in enumerate(self.layers):
                x = block(first(x)) + x
            return self.to_logits(x)
""")


@pytest.mark.parametrize(
    ("source", "stack", "head"),
    [
        (TUPLES, "layers", "to_logits"),
        (ZIPPED, "norms", "head"),
        (
            mutate(
                ZIPPED,
                "x = x + mixer(m(x))\n",
                "x = x + mixer(m(x))\n            if i + 1 == len(self.mixers):\n                break\n",
            ),
            "norms",
            "head",
        ),
        (FLAGGED, "layers", "to_logits"),
        (BUILT_BY_FLAG, "layers", "proj"),
        (PARTIAL_NORMS, "layers", "to_logits"),
    ],
    ids=[
        "tuple-unpacked",
        "zip-of-two-lists",
        "a-sum-in-a-loop-header",
        "norms-chosen-in-the-loop",
        "norms-chosen-at-build",
        "norm-class-through-partial",
    ],
)
def test_a_forward_that_is_a_prenorm_block_loop_reaches_the_head_unnormed(source, stack, head):
    [finding] = findings("SHP302", source)
    assert source.splitlines()[finding.line - 1].strip().startswith(f"return self.{head}(")
    assert finding.message.startswith(
        f"the pre-norm stack `self.{stack}` reaches `self.{head}` with no final norm: add one after the last block"
    )


# the loop in a Transformer module, the head in the LM that holds it
HELD = textwrap.dedent("""
    from torch import nn

    class Transformer(nn.Module):
        def __init__(self, dim, depth):
            super().__init__()
            self.layers = nn.ModuleList(
                [nn.ModuleList([nn.LayerNorm(dim), Attention(dim), nn.LayerNorm(dim), Mlp(dim)]) for _ in range(depth)]
            )

        def forward(self, x):
            for attn_norm, attn, ff_norm, ff in self.layers:
                x = attn(attn_norm(x)) + x
                x = ff(ff_norm(x)) + x
            return x

    class LM(nn.Module):
        def __init__(self, vocab, dim, depth):
            super().__init__()
            self.emb = nn.Embedding(vocab, dim)
            self.transformer = Transformer(dim, depth)
            self.to_logits = nn.Linear(dim, vocab)

        def forward(self, idx):
            x = self.transformer(self.emb(idx))
            return self.to_logits(x)
""")


WRAPPED = textwrap.dedent("""
    from torch import nn

    class PreNorm(nn.Module):
        def __init__(self, dim, fn):
            super().__init__()
            self.norm = nn.LayerNorm(dim)
            self.fn = fn

        def forward(self, x, **kwargs):
            return self.fn(self.norm(x), **kwargs)

    class Transformer(nn.Module):
        def __init__(self, dim, depth):
            super().__init__()
            self.layers = nn.ModuleList([])
            for _ in range(depth):
                self.layers.append(nn.ModuleList([PreNorm(dim, Attention(dim)), PreNorm(dim, Mlp(dim))]))

        def forward(self, x, mask=None):
            for attn, ff in self.layers:
                x = attn(x, mask=mask) + x
                x = ff(x) + x
            return x
""")


def test_prenorm_wrappers_run_by_the_module_own_loop_are_a_prenorm_stack():
    [loop] = _loops(WRAPPED, "Transformer")
    assert (loop.container, loop.stream, loop.style) == ("layers", "x", PRE)
    post = mutate(WRAPPED, "return self.fn(self.norm(x), **kwargs)", "return self.norm(self.fn(x, **kwargs))")
    assert _loops(post, "Transformer") == []
    lm = WRAPPED + HELD[HELD.index("class LM") :]
    [finding] = findings("SHP302", lm)
    assert finding.message.startswith("the pre-norm stack `self.transformer` reaches `self.to_logits` with no final")


def test_a_module_that_returns_its_loop_stream_raw_reaches_the_head_of_the_module_holding_it():
    [finding] = findings("SHP302", HELD)
    assert HELD.splitlines()[finding.line - 1].strip() == "return self.to_logits(x)"
    assert finding.message.startswith("the pre-norm stack `self.transformer` reaches `self.to_logits` with no final")


@pytest.mark.parametrize(
    ("old", "new"),
    [
        # the Transformer ends on its norm
        (
            "        return x\n",
            "        return self.norm(x)\n",
        ),
        # the LM norms the stream before its head
        (
            "        return self.to_logits(x)\n",
            "        return self.to_logits(self.norm(x))\n",
        ),
    ],
    ids=["in-the-stack", "before-the-head"],
)
def test_a_loop_stream_normed_by_either_module_is_quiet(old, new):
    # the norm is built by the module that applies it
    owner = "self.layers = " if "return x" in old else "self.to_logits = "
    source = mutate(mutate(HELD, old, new), owner, f"self.norm = nn.LayerNorm(dim)\n        {owner}")
    assert findings("SHP302", source) == []


IMPORTING_LM = textwrap.dedent("""
    import torch
    from torch import nn
    from .transformer import Transformer

    class LM(nn.Module):
        def __init__(self, vocab, dim, depth):
            super().__init__()
            self.emb = nn.Embedding(vocab, dim)
            self.emb_norm = nn.LayerNorm(dim)
            self.transformer = Transformer(dim, depth)
            self.to_logits = nn.Linear(dim, vocab)

        def forward(self, idx):
            x = self.transformer(self.emb_norm(self.emb(idx)))
            return self.to_logits(x)

        @torch.no_grad()
        def generate(self, out, length):
            for _ in range(length):
                out = torch.cat((out, self.forward(out)[:, -1:].argmax(-1)), dim=-1)
            return out
""")


def test_a_raw_loop_stream_of_another_module_reaches_the_head(run_cli, tmp_path):
    """The Transformer in its own file: the LM reads its summary (`residual_sequences`)."""
    transformer = HELD.split("class LM")[0]
    write_package(tmp_path, {"transformer.py": transformer, "lm.py": IMPORTING_LM})
    result = run_cli("check", "pkg", "--select", "SHP302", "--preview", "--no-cache", cwd=tmp_path)
    assert "pkg/lm.py:16:" in result.stdout, result.stdout
    assert "the pre-norm stack `self.transformer` reaches `self.to_logits` with no final norm" in result.stdout
    normed = mutate(transformer, "return x", "return self.norm(x)")
    normed = mutate(normed, "self.layers = ", "self.norm = nn.LayerNorm(dim)\n        self.layers = ")
    (tmp_path / "pkg" / "transformer.py").write_text(textwrap.dedent(normed))
    result = run_cli("check", "pkg", "--select", "SHP302", "--preview", "--no-cache", cwd=tmp_path)
    assert "pkg/lm.py" not in result.stdout, result.stdout


def _loops(source: str, class_name: str):
    ctx = FileContext("model.py", cst.parse_module(source), source.lower().encode())
    [cls] = [c for c in ctx.index.nodes(cst.ClassDef) if c.name.value == class_name]
    return loop_stacks(ctx, cls)


def test_the_loop_is_one_fact_other_rules_can_read():
    [loop] = _loops(TUPLES, "LM")
    assert (loop.container, loop.stream, loop.style) == ("layers", "x", PRE)
    assert len(loop.sums) == 2
    [flagged] = _loops(FLAGGED, "Mega")
    assert flagged.style == "switchable"


FINAL_NORM_HELPER = mutate(
    TUPLES,
    "        return self.to_logits(x)\n",
    "        x = self.finish(x)\n"
    "        return self.to_logits(x)\n\n"
    "    def finish(self, x):\n"
    "        return self.out_norm(x)\n",
).replace("self.to_logits = nn.Linear", "self.out_norm = nn.LayerNorm(dim)\n        self.to_logits = nn.Linear")


@pytest.mark.parametrize(
    "source",
    [
        # post-norm: each sum feeds the layer's norm
        mutate(
            mutate(TUPLES, "x = attn(h, h, h)[0] + x", "x = attn_norm(attn(x, x, x)[0] + x)"),
            "x = ff(ff_norm(x)) + x",
            "x = ff_norm(ff(x) + x)",
        ).replace("                h = attn_norm(x)\n", ""),
        # the final norm is there
        mutate(TUPLES, "return self.to_logits(x)", "return self.to_logits(self.norm(x))").replace(
            "self.to_logits = nn.Linear", "self.norm = nn.LayerNorm(dim)\n        self.to_logits = nn.Linear"
        ),
        # the final norm is applied by a helper method before the head
        FINAL_NORM_HELPER,
        # the head starts with the norm when pre_norm is on (Mega-pytorch 0.0.12)
        mutate(
            FLAGGED,
            "self.to_logits = nn.Linear(dim, num_tokens)",
            "self.to_logits = nn.Sequential(\n"
            "            nn.LayerNorm(dim) if pre_norm else nn.Identity(), nn.Linear(dim, num_tokens))",
        ),
        # not residual: each layer replaces the stream
        mutate(mutate(ZIPPED, "x = x + mixer(m(x))", "x = mixer(m(x))"), "self.head(x.mean(dim=1))", "self.head(x)"),
        # each layer replaces the stream; the sum adds a module of the model, not one of the layers
        mutate(ZIPPED, "x = x + mixer(m(x))", "x = mixer(m(x))\n            x = x + self.bias(self.norm(x))"),
        # residual, but no norm before the sublayers
        mutate(ZIPPED, "x = x + mixer(m(x))", "x = x + m(mixer(x))"),
        # the loop calls a module `norm`, but the layers hold an attention there
        mutate(PARTIAL_NORMS, "nn.ModuleList([norm_fn(), Attention(dim)])", "nn.ModuleList([Attention(dim), Mlp(dim)])")
        .replace("(first, block)", "(norm, block)")
        .replace("block(first(x))", "block(norm(x))"),
    ],
    ids=[
        "post-norm",
        "final-norm",
        "norm-by-helper",
        "head-starts-with-norm",
        "not-residual",
        "a-sum-that-adds-no-layer",
        "norm-after-sublayer",
        "named-norm-that-is-no-norm",
    ],
)
def test_post_norm_normed_or_non_residual_loops_are_quiet(source):
    assert findings("SHP302", source) == []
