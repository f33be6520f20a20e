"""Blocks and the tiny decoder: pre-norm residuals, final norm, DeepNorm, causality."""

import pytest

torch = pytest.importorskip("torch")

from sharpedges.reference_impls.block import (  # noqa: E402
    DecoderConfig,
    DeepNormBlock,
    PreNormBlock,
    TinyDecoder,
    deepnorm_constants,
)
from sharpedges.reference_impls.norm import RMSNorm  # noqa: E402

CFG = DecoderConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2)


def test_prenorm_block_keeps_the_raw_residual():
    block = PreNormBlock(CFG).double()
    for sublayer_out in (block.attn.out_proj, block.mlp.proj):
        torch.nn.init.zeros_(sublayer_out.weight)  # both sublayers now add exactly zero
    x = torch.randn(2, 5, 32, dtype=torch.float64) * 10
    assert torch.equal(block(x), x)


def test_decoder_applies_a_final_norm_before_the_head():
    model = TinyDecoder(CFG).double()
    assert isinstance(model.final_norm, RMSNorm)
    captured = {}
    model.lm_head.register_forward_hook(lambda mod, inputs, out: captured.setdefault("x", inputs[0]))
    model(torch.randint(0, 64, (2, 5)))
    rms = captured["x"].pow(2).mean(dim=-1).sqrt()
    torch.testing.assert_close(rms, torch.ones_like(rms), rtol=1e-4, atol=1e-4)


def test_decoder_is_causal():
    torch.manual_seed(0)
    model = TinyDecoder(CFG).double().eval()
    idx = torch.randint(0, 64, (2, 8))
    changed = idx.clone()
    changed[:, 5:] = (changed[:, 5:] + 1) % 64
    torch.testing.assert_close(model(idx)[:, :5], model(changed)[:, :5], rtol=0, atol=0)


def test_sdpa_and_eager_decoders_agree():
    torch.manual_seed(0)
    fast = TinyDecoder(CFG).double().eval()
    eager = TinyDecoder(DecoderConfig(**{**CFG.__dict__, "use_sdpa": False})).double().eval()
    eager.load_state_dict(fast.state_dict())
    idx = torch.randint(0, 64, (2, 8))
    torch.testing.assert_close(fast(idx), eager(idx))


def test_generate_extends_greedily_and_refuses_training_mode():
    torch.manual_seed(0)
    model = TinyDecoder(CFG).double()
    idx = torch.randint(0, 64, (1, 4))
    with pytest.raises(AssertionError):
        model.generate(idx, 2)
    out = model.eval().generate(idx, 3)
    assert torch.equal(out[:, :4], idx)
    for t in range(4, 7):  # each new token is the argmax of a full forward over its prefix
        assert out[0, t] == model(out[:, :t])[0, -1].argmax()


def test_deepnorm_constants_and_residual_weighting():
    alpha, beta = deepnorm_constants(18)
    assert alpha == pytest.approx(36**0.25) and beta == pytest.approx(144**-0.25)
    torch.manual_seed(0)
    block = DeepNormBlock(DecoderConfig(**{**CFG.__dict__, "n_layers": 18})).double()
    assert block.alpha == pytest.approx(alpha)

    def xavier_std(weight):
        return (2 / sum(weight.shape)) ** 0.5

    for scaled in (block.attn.v_proj.weight, block.mlp.proj.weight):
        assert scaled.std().item() == pytest.approx(beta * xavier_std(scaled), rel=0.15)
    q_weight = block.attn.q_proj.weight
    assert q_weight.std().item() == pytest.approx(xavier_std(q_weight), rel=0.15)
    for sublayer_out in (block.attn.out_proj, block.mlp.proj):
        torch.nn.init.zeros_(sublayer_out.weight)
    x = torch.randn(2, 5, 32, dtype=torch.float64)
    # With zero updates a post-norm block is just the norm of alpha * x: post-norm, not pre-norm.
    expected = block.mlp_norm(block.attn_norm(alpha * x) * alpha)
    torch.testing.assert_close(block(x), expected)
