"""Real architectures through the default (Hugging Face) adapter: Llama, GPT-2 and Mixtral built from
configs with random weights, nothing downloaded. transformers is not a dependency of sharpedges; the
test extra pins it (5.23.0, the release in the pinned corpus), so these run wherever the suite does."""

import transformers

from sharpedges.probes import PASS, PROBES, SKIP, run_probes

COMMON = {
    "vocab_size": 256,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}


def test_llama_with_attention_dropout_passes_every_probe():
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**COMMON, attention_dropout=0.1))
    results = run_probes(model)
    assert {result.name: result.status for result in results} == dict.fromkeys(PROBES, PASS)


def test_gpt2_learned_positions_stay_invariant_under_left_padding():
    config = transformers.GPT2Config(
        vocab_size=256, n_embd=64, n_layer=2, n_head=4, n_positions=64, bos_token_id=0, eos_token_id=0
    )
    [result] = run_probes(transformers.GPT2LMHeadModel(config), ["padding-invariant"])
    assert result.status == PASS, result.detail


def test_mixtral_router_is_found_and_learns_from_the_balancing_loss():
    config = transformers.MixtralConfig(**COMMON, num_local_experts=4, num_experts_per_tok=2)
    results = {result.name: result for result in run_probes(transformers.MixtralForCausalLM(config))}
    grad_flow = results.pop("grad-flow")
    assert grad_flow.status == PASS, grad_flow.detail
    routers = ["model.layers.0.mlp.gate.weight", "model.layers.1.mlp.gate.weight"]
    assert grad_flow.measured["router_parameters"] == routers
    assert results.pop("eval-deterministic").status == SKIP  # Mixtral has no dropout by default
    assert {name: result.status for name, result in results.items()} == dict.fromkeys(results, PASS)
