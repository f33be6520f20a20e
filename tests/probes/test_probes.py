"""Each probe on the tiny test models: it fails on its planted bug, with the numbers that show it,
passes the clean model, and skips, saying why, where it does not apply."""

import pytest
import torch

from sharpedges.probes import (
    FAIL,
    PASS,
    PROBES,
    SKIP,
    ModelAdapter,
    Outputs,
    ProbeSkip,
    assert_causal,
    assert_eval_deterministic,
    assert_grad_flow,
    assert_half_precision,
    assert_kv_cache_consistent,
    assert_padding_invariant,
    run_probe,
    run_probes,
)
from tests.probes.models import LogitsOnly, TinyLM


@pytest.mark.parametrize("model", [TinyLM(), TinyLM(moe=True)], ids=["dense", "moe"])
def test_clean_models_pass_every_probe(model):
    results = run_probes(model)
    assert [result.name for result in results] == list(PROBES)
    assert {result.name: result.status for result in results} == dict.fromkeys(PROBES, PASS), [
        result.detail for result in results
    ]


def test_inverted_causal_mask_fails_causal_from_the_first_position():
    result = run_probe("causal", TinyLM("inverted_causal_mask"))
    assert result.status == FAIL
    assert result.measured["first_leaking_position"] == 0
    assert result.measured["future_change_max_abs_diff"] > result.measured["tolerance"]
    assert "changing tokens after position 7 moved the outputs at positions 0..7" in result.detail
    assert "sees the future" in result.detail


def test_ungated_dropout_fails_eval_determinism_and_the_passes_comparing_probes_skip():
    model = TinyLM("ungated_dropout")
    results = {result.name: result for result in run_probes(model)}
    determinism = results["eval-deterministic"]
    assert determinism.status == FAIL and determinism.measured["eval_max_abs_diff"] > 0
    assert "dropout stays on in eval" in determinism.detail
    for name in ("causal", "kv-cache-consistent", "padding-invariant", "half-precision"):
        assert results[name].status == SKIP, name
        assert "see eval-deterministic" in results[name].detail


def test_is_causal_over_a_cache_fails_kv_cache_where_the_cache_begins():
    result = run_probe("kv-cache-consistent", TinyLM("causal_over_cache"))
    assert result.status == FAIL
    # One token at a time, position 0 has no cache yet; chunked, the first chunk of 5 has none either.
    assert "one token at a time differs from the full forward" in result.detail
    assert "from position 1;" in result.detail and "in chunks of 5+3+4" in result.detail
    assert "from position 5 (" in result.detail
    assert result.measured["one_token_max_abs_diff"] > result.measured["tolerance"]


def test_inverted_padding_mask_fails_padding_on_both_sides():
    result = run_probe("padding-invariant", TinyLM("inverted_padding_mask"))
    assert result.status == FAIL
    assert "right padding moves them" in result.detail and "left padding moves them" in result.detail
    for side in ("right", "left"):
        assert result.measured[f"{side}_padding_max_abs_diff"] > result.measured["tolerance"]


def test_left_padding_needs_positions_that_skip_the_pads():
    """Learned positions shift under left padding unless position_ids count real tokens only; the
    default adapter passes them, so an adapter that does not is caught on the left side only."""

    class NoPositions(ModelAdapter):
        def forward(self, input_ids, attention_mask=None):
            return self.model(input_ids, attention_mask=attention_mask)

    result = run_probe("padding-invariant", NoPositions(TinyLM()))
    assert result.status == FAIL
    assert "left padding moves them" in result.detail and "right padding" not in result.detail


def test_minus_1e9_fill_fails_half_precision_in_fp16_only():
    result = run_probe("half-precision", TinyLM("fill_1e9"))
    assert result.status == FAIL
    assert result.detail.startswith("float16 logits are NaN or inf")
    assert result.measured["fully_masked_rows"] is True
    assert result.measured["dtypes"]["float16"]["finite"] is False
    assert result.measured["dtypes"]["bfloat16"]["finite"] is True  # -1e9 fits bf16's range


def test_discarded_balancing_loss_fails_grad_flow_naming_the_router():
    result = run_probe("grad-flow", TinyLM(moe=True, aux_loss="discarded"))
    assert result.status == FAIL
    routers = ["blocks.0.moe.router.gate.weight", "blocks.1.moe.router.gate.weight"]
    assert result.measured["router_parameters"] == routers
    assert result.measured["aux_loss"] is False
    assert "returns no balancing loss" in result.detail


def test_detached_balancing_loss_fails_grad_flow():
    result = run_probe("grad-flow", TinyLM(moe=True, aux_loss="detached"))
    assert result.status == FAIL
    assert "does not reach the router" in result.detail
    assert set(result.measured["router_grad_norm_from_aux_loss"].values()) == {0.0}


def test_a_parameter_no_forward_reaches_fails_grad_flow():
    result = run_probe("grad-flow", TinyLM("unused_layer"))
    assert result.status == FAIL
    assert result.measured["without_gradient"] == ["unused.weight", "unused.bias"]
    assert "2 get no gradient (unused.weight, unused.bias)" in result.detail


def test_probes_that_do_not_apply_skip_with_the_reason():
    results = {result.name: result for result in run_probes(LogitsOnly())}
    assert results["eval-deterministic"].status == SKIP and "no dropout" in results["eval-deterministic"].detail
    assert results["kv-cache-consistent"].status == SKIP and "past_key_values" in results["kv-cache-consistent"].detail
    assert results["padding-invariant"].status == SKIP and "attention_mask" in results["padding-invariant"].detail
    assert results["half-precision"].status == PASS and results["half-precision"].measured["fully_masked_rows"] is False
    assert results["causal"].status == PASS and results["grad-flow"].status == PASS

    class Bidirectional(ModelAdapter):
        causal = False

    skipped = run_probe("causal", Bidirectional(TinyLM()))
    assert skipped.status == SKIP and "bidirectional" in skipped.detail


def test_an_adapter_may_return_outputs_and_raise_probe_skip():
    class Explicit(ModelAdapter):
        def forward(self, input_ids, attention_mask=None):
            found = self.model(input_ids)
            return Outputs(found.logits, aux_loss=found.aux_loss)

        def new_cache(self, batch_size, max_len):
            raise ProbeSkip("decoding runs on the serving stack, not in this module")

    grad_flow, kv_cache = run_probes(Explicit(TinyLM(moe=True)), ["grad-flow", "kv-cache-consistent"])
    assert grad_flow.status == PASS and grad_flow.measured["aux_loss"] is True
    assert (kv_cache.status, kv_cache.detail) == (SKIP, "decoding runs on the serving stack, not in this module")


def test_probes_leave_the_model_and_the_global_rng_as_they_found_them():
    model = TinyLM(moe=True).train()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    rng = torch.get_rng_state()
    run_probes(model)
    assert torch.equal(torch.get_rng_state(), rng)
    assert model.training
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())
    assert all(param.grad is None and param.dtype == torch.float32 for param in model.parameters())


def test_measurements_repeat_exactly():
    first, second = run_probes(TinyLM("inverted_causal_mask")), run_probes(TinyLM("inverted_causal_mask"))
    assert [(r.status, r.detail, r.measured) for r in first] == [(r.status, r.detail, r.measured) for r in second]


def test_assert_helpers_pass_fail_and_skip():
    clean = TinyLM()
    for check in (
        assert_causal,
        assert_eval_deterministic,
        assert_kv_cache_consistent,
        assert_padding_invariant,
        assert_half_precision,
        assert_grad_flow,
    ):
        assert check(clean).status == PASS
    with pytest.raises(AssertionError, match=r"probe causal \(SHP201/SHP202\) failed: changing tokens after"):
        assert_causal(TinyLM("inverted_causal_mask"))
    with pytest.raises(pytest.skip.Exception, match="probe kv-cache-consistent does not apply: no cache support"):
        assert_kv_cache_consistent(LogitsOnly())


def test_a_model_that_crashes_on_a_probe_input_fails_it_with_the_error():
    class WrongShape(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(8, 4)

        def forward(self, input_ids):
            return self.emb(input_ids).sum(-1)  # (B, T): no vocabulary axis

    result = run_probe("causal", WrongShape())
    assert result.status == FAIL
    assert result.detail == "stopped by TypeError: expected logits of shape (B, T, V) = (2, 16, V), got (2, 16)"


def test_an_unknown_probe_name_is_refused():
    with pytest.raises(ValueError, match="unknown probe 'causality' \\(known: causal, eval-deterministic"):
        run_probes(TinyLM(), ["causality"])
