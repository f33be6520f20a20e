"""MoE: fp32 routing, dispatch strategies that agree, and the two auxiliary losses."""

import math

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from sharpedges.reference_impls.moe import (  # noqa: E402
    MoELayer,
    TopKRouter,
    dispatch_dense,
    dispatch_loop,
    dispatch_sorted,
    load_balancing_loss,
    mean_over_layers,
    router_z_loss,
)

N_TOKENS, D_MODEL, D_HIDDEN, N_EXPERTS, TOP_K = 24, 16, 32, 4, 2


def routed_problem(dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(N_TOKENS, D_MODEL, generator=gen, dtype=dtype)
    w_in = torch.randn(N_EXPERTS, D_MODEL, D_HIDDEN, generator=gen, dtype=dtype) / D_MODEL**0.5
    w_out = torch.randn(N_EXPERTS, D_HIDDEN, D_MODEL, generator=gen, dtype=dtype) / D_HIDDEN**0.5
    router = TopKRouter(D_MODEL, N_EXPERTS, TOP_K).double()
    routing = router(x.double())
    return x, routing, w_in, w_out


# -------------------------------------------------------------------------- dispatch


def test_loop_and_sorted_dispatch_agree_with_the_dense_oracle():
    x, routing, w_in, w_out = routed_problem()
    expected = dispatch_dense(x, routing.weights, routing.experts, w_in, w_out)
    looped = dispatch_loop(x, routing.weights, routing.experts, w_in, w_out)
    by_sorting = dispatch_sorted(x, routing.weights, routing.experts, w_in, w_out, grouped=False)
    torch.testing.assert_close(looped, expected)
    torch.testing.assert_close(by_sorting, expected)


def test_dispatch_gradients_agree():
    x, routing, w_in, w_out = routed_problem()
    grads = []
    for dispatch in (dispatch_loop, lambda *a: dispatch_sorted(*a, grouped=False)):
        params = [t.clone().requires_grad_(True) for t in (x, w_in, w_out)]
        weights = routing.weights.detach().clone().requires_grad_(True)
        dispatch(params[0], weights, routing.experts, params[1], params[2]).pow(2).sum().backward()
        grads.append([p.grad for p in params] + [weights.grad])
    for from_loop, from_sorted in zip(*grads, strict=False):
        torch.testing.assert_close(from_loop, from_sorted)


@pytest.mark.skipif(not hasattr(F, "grouped_mm"), reason="torch without F.grouped_mm")
def test_grouped_matmul_dispatch_agrees_in_fp32():
    x, routing, w_in, w_out = routed_problem(dtype=torch.float32)
    weights = routing.weights.float().detach()
    params = [t.requires_grad_(True) for t in (x, w_in, w_out)]
    grouped = dispatch_sorted(x, weights, routing.experts, w_in, w_out, grouped=True)
    exact = dispatch_dense(*(t.double() for t in (x, weights)), routing.experts, w_in.double(), w_out.double())
    torch.testing.assert_close(grouped.double(), exact, rtol=1e-5, atol=1e-5)
    upstream = torch.randn_like(grouped)
    grads = torch.autograd.grad(grouped, params, upstream)
    exact_grads = torch.autograd.grad(exact, params, upstream.double())
    for grad, exact_grad in zip(grads, exact_grads, strict=False):
        torch.testing.assert_close(grad, exact_grad, rtol=1e-4, atol=1e-4)


def test_a_starved_expert_is_handled():
    x, routing, w_in, w_out = routed_problem()
    experts = routing.experts.clone()
    experts[experts == 3] = 0  # nobody routes to expert 3; the top-k slots stay distinct-ish
    looped = dispatch_loop(x, routing.weights, experts, w_in, w_out)
    torch.testing.assert_close(dispatch_sorted(x, routing.weights, experts, w_in, w_out, grouped=False), looped)


# ---------------------------------------------------------------------------- router


def test_router_scores_in_fp32_even_for_a_bf16_model_under_autocast():
    router = TopKRouter(D_MODEL, N_EXPERTS, TOP_K).to(torch.bfloat16)
    x = torch.randn(N_TOKENS, D_MODEL).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        routing = router(x)
    assert routing.logits.dtype == routing.weights.dtype == torch.float32
    torch.testing.assert_close(routing.logits, x.float() @ router.gate.weight.float().T, rtol=0, atol=0)


def test_renormalised_weights_sum_to_one_and_raw_softmax_weights_do_not():
    x = torch.randn(N_TOKENS, D_MODEL, dtype=torch.float64)
    renormalised = TopKRouter(D_MODEL, N_EXPERTS, TOP_K).double()
    raw = TopKRouter(D_MODEL, N_EXPERTS, TOP_K, renormalize=False).double()
    raw.load_state_dict(renormalised.state_dict())
    torch.testing.assert_close(renormalised(x).weights.sum(-1), torch.ones(N_TOKENS, dtype=torch.float64))
    raw_routing = raw(x)
    torch.testing.assert_close(raw_routing.weights, raw_routing.logits.softmax(-1).topk(TOP_K).values)
    assert (raw_routing.weights.sum(-1) < 1).all()


def test_sigmoid_router_gives_a_distribution_for_the_balance_loss():
    routing = TopKRouter(D_MODEL, N_EXPERTS, TOP_K, score="sigmoid").double()(
        torch.randn(5, D_MODEL, dtype=torch.float64)
    )
    torch.testing.assert_close(routing.probs.sum(-1), torch.ones(5, dtype=torch.float64))
    torch.testing.assert_close(routing.weights.sum(-1), torch.ones(5, dtype=torch.float64))


# ---------------------------------------------------------------------------- losses


def test_balance_loss_is_one_under_perfect_balance():
    probs = torch.tensor([[0.9, 0.1], [0.1, 0.9], [0.6, 0.4], [0.4, 0.6]])
    experts = torch.tensor([[0], [1], [0], [1]])
    assert load_balancing_loss(probs, experts).item() == pytest.approx(1.0)
    uniform = torch.full((8, 4), 0.25)
    assert load_balancing_loss(uniform, torch.tensor([[0, 1], [2, 3]] * 4)).item() == pytest.approx(1.0)


def test_balance_loss_matches_a_hand_computed_example():
    probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7]])
    experts = torch.tensor([[0], [0], [0], [1]])
    # f = (3/4, 1/4), P = (0.65, 0.35): 2 * (0.75 * 0.65 + 0.25 * 0.35) = 1.15
    assert load_balancing_loss(probs, experts).item() == pytest.approx(1.15)


def test_balance_loss_ignores_padding_tokens():
    probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7], [0.99, 0.01], [0.99, 0.01]])
    experts = torch.tensor([[0], [0], [0], [1], [0], [0]])
    real = torch.tensor([[True, True, True], [True, False, False]])  # (B, T): two pad tokens
    assert load_balancing_loss(probs, experts, real).item() == pytest.approx(1.15)


def test_layers_are_balanced_each_on_its_own():
    probs = torch.tensor([[0.9, 0.1], [0.9, 0.1]])
    layer_a = load_balancing_loss(probs, torch.tensor([[0], [0]]))
    layer_b = load_balancing_loss(probs.flip(-1), torch.tensor([[1], [1]]))
    pooled = load_balancing_loss(torch.cat((probs, probs.flip(-1))), torch.tensor([[0], [0], [1], [1]]))
    assert pooled.item() == pytest.approx(1.0)  # pooling hides two collapsed layers
    assert mean_over_layers([layer_a, layer_b]).item() == pytest.approx(1.8)


def test_z_loss_formula():
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    expected = (math.log(2.0) ** 2 + math.log(4.0) ** 2) / 2
    assert router_z_loss(logits).item() == pytest.approx(expected)
    assert router_z_loss(logits, torch.tensor([True, False])).item() == pytest.approx(math.log(2.0) ** 2)


# ----------------------------------------------------------------------------- layer


def test_moe_layer_returns_an_aux_loss_that_trains_the_router():
    torch.manual_seed(0)
    sorted_layer = MoELayer(D_MODEL, D_HIDDEN, N_EXPERTS, TOP_K).double()
    loop_layer = MoELayer(D_MODEL, D_HIDDEN, N_EXPERTS, TOP_K, dispatch="loop").double()
    loop_layer.load_state_dict(sorted_layer.state_dict())
    x = torch.randn(2, 6, D_MODEL, dtype=torch.float64)
    y, aux_loss = sorted_layer(x)
    y_loop, aux_loop = loop_layer(x)
    torch.testing.assert_close(y, y_loop)
    torch.testing.assert_close(aux_loss, aux_loop)
    assert y.shape == x.shape and aux_loss.dim() == 0 and aux_loss > 0
    aux_loss.backward()
    assert sorted_layer.router.gate.weight.grad.abs().sum() > 0
