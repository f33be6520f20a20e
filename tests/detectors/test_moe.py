"""Behaviour of the MoE rules (SHP501 missing balancing, SHP502 dropped balancing loss, SHP503 router
precision) beyond their spec examples: mutations of correct layers, reach across methods, messages."""

from __future__ import annotations

import pytest

from tests.helpers import findings, mutate


def codes(source: str, *rules: str) -> list[tuple[str, int]]:
    return [(d.rule, d.line) for d in findings(rules, source, path="moe.py")]


SWITCH = """
    import torch
    import torch.nn.functional as F
    from torch import nn

    class SwitchMoE(nn.Module):
        def __init__(self, d_model, num_experts, expert):
            super().__init__()
            self.num_experts = num_experts
            self.router = nn.Linear(d_model, num_experts, bias=False)
            self.experts = nn.ModuleList([expert() for _ in range(num_experts)])

        def forward(self, x):
            probs = torch.softmax(self.router(x).float(), dim=-1)
            gate, expert_index = probs.max(dim=-1)
            fraction = F.one_hot(expert_index, self.num_experts).float().mean(0)
            aux_loss = self.num_experts * (fraction * probs.mean(0)).sum()
            out = torch.zeros_like(x)
            for i, expert in enumerate(self.experts):
                chosen = expert_index == i
                out[chosen] = gate[chosen, None] * expert(x[chosen])
            return out, aux_loss
"""

MIXTRAL = """
    import torch
    import torch.nn.functional as F
    from torch import nn

    class SparseMoeBlock(nn.Module):
        def __init__(self, config):
            super().__init__()
            self.top_k = config.num_experts_per_tok
            self.gate = nn.Linear(config.hidden_size, config.num_local_experts, bias=False)
            self.experts = nn.ModuleList([Expert(config) for _ in range(config.num_local_experts)])

        def forward(self, hidden_states):
            router_logits = self.gate(hidden_states)
            routing_weights = F.softmax(router_logits, dim=1, dtype=torch.float)
            routing_weights, selected_experts = torch.topk(routing_weights, self.top_k, dim=-1)
            final = self.dispatch(hidden_states, routing_weights.to(hidden_states.dtype), selected_experts)
            return final, router_logits
"""

DEEPSEEK = """
    import torch
    import torch.nn.functional as F
    from torch import nn

    class TopkRouter(nn.Module):
        def __init__(self, config):
            super().__init__()
            self.top_k = config.num_experts_per_tok
            self.weight = nn.Parameter(torch.empty(config.n_routed_experts, config.hidden_size))
            self.register_buffer("e_score_correction_bias", torch.zeros(config.n_routed_experts))

        def forward(self, hidden_states):
            scores = F.linear(hidden_states.float(), self.weight.float()).sigmoid()
            scores_for_choice = scores + self.e_score_correction_bias.unsqueeze(0)
            topk_indices = torch.topk(scores_for_choice, k=self.top_k, dim=-1, sorted=False)[1]
            return scores.gather(1, topk_indices), topk_indices
"""


# -- mutation checks --------------------------------------------------------------------------
def test_dropping_the_aux_loss_from_the_return_fires_shp502_on_the_mutant_only():
    mutant = mutate(SWITCH, "return out, aux_loss", "return out")
    assert codes(SWITCH, "SHP501", "SHP502") == []
    assert [code for code, _ in codes(mutant, "SHP501", "SHP502")] == ["SHP502"]


def test_dropping_the_aux_loss_computation_fires_shp501_on_the_mutant_only():
    mutant = mutate(SWITCH, "            aux_loss = self.num_experts * (fraction * probs.mean(0)).sum()\n", "")
    mutant = mutate(mutant, "return out, aux_loss", "return out")
    assert codes(SWITCH, "SHP501") == []
    assert [code for code, _ in codes(mutant, "SHP501", "SHP502")] == ["SHP501"]


def test_a_block_that_stops_returning_its_router_logits_is_unbalanced():
    mutant = mutate(MIXTRAL, "return final, router_logits", "return final")
    assert codes(MIXTRAL, "SHP501") == []
    assert codes(mutant, "SHP501") == [("SHP501", 16)]


def test_removing_the_correction_bias_of_aux_free_balancing_is_unbalanced():
    mutant = mutate(DEEPSEEK, "scores + self.e_score_correction_bias.unsqueeze(0)", "scores")
    assert codes(DEEPSEEK, "SHP501") == []
    assert [code for code, _ in codes(mutant, "SHP501")] == ["SHP501"]


def test_discarding_the_autoscaler_result_fires_shp502_with_its_own_message():
    layer = """
        class MoELayer(nn.Module):
            def forward(self, hidden_states):
                probs, indices, aux_loss = self.router(hidden_states)
                output = self.experts(hidden_states, probs, indices)
                output = MoEAuxLossAutoScaler.apply(output, aux_loss)
                return output
    """
    mutant = mutate(layer, "output = MoEAuxLossAutoScaler.apply", "MoEAuxLossAutoScaler.apply")
    assert codes(layer, "SHP502") == []
    assert codes(mutant, "SHP502") == [("SHP502", 6)]
    assert "autograd Function" in findings("SHP502", mutant)[0].message


# -- reach and precision ------------------------------------------------------------------------
def test_scores_handed_to_a_helper_are_judged_by_the_calling_method():
    helper = """
        import torch
        from torch import nn

        class MoE(nn.Module):
            def __init__(self, dim, num_experts, top_k):
                super().__init__()
                self.top_k = top_k
                self.gate = nn.Linear(dim, num_experts)

            def route_tokens_to_experts(self, router_logits):
                return torch.topk(router_logits.softmax(-1), self.top_k, dim=-1)

            def forward(self, x):
                router_logits = self.gate(x)
                weights, experts = self.route_tokens_to_experts(router_logits)
                return self.mix(x, weights, experts), router_logits
    """
    assert codes(helper, "SHP501") == []
    mutant = mutate(
        helper, "return self.mix(x, weights, experts), router_logits", "return self.mix(x, weights, experts)"
    )
    assert codes(mutant, "SHP501") == [("SHP501", 12)]


@pytest.mark.parametrize(
    "sampler",
    [
        "v, _ = torch.topk(logits, top_k)\n            return v",
        "return torch.argmax(logits, dim=-1)",
        "return logits.max(dim=-1).indices",
    ],
)
def test_selection_over_a_vocabulary_in_an_moe_model_is_not_routing(sampler):
    source = f"""
        import torch
        from torch import nn

        class MoEModel(nn.Module):
            def __init__(self, config):
                super().__init__()
                self.num_experts = config.num_experts
                self.lm_head = nn.Linear(config.hidden, config.vocab_size)

            def pick(self, hidden, top_k):
                logits = self.lm_head(hidden)
                {sampler}
    """
    assert codes(source, "SHP501", "SHP502") == []


def test_a_sampling_helper_in_an_moe_model_is_not_routing():
    source = """
        import torch
        from torch import nn

        class MoEModel(nn.Module):
            def _sample(self, logits):
                return torch.argmax(logits, dim=-1)

            def generate(self, hidden):
                logits = self.lm_head(hidden)
                return self._sample(logits)

            def extra_repr(self):
                return f"num_experts={self.num_experts}"
    """
    assert codes(source, "SHP501") == []


def test_only_the_values_of_a_top_k_are_not_a_selection_of_experts():
    source = """
        import torch
        from torch import nn

        class GroupScores(nn.Module):
            def forward(self, x):
                scores = self.gate(x).view(-1, self.n_groups, self.num_experts // self.n_groups)
                return scores.topk(2, dim=-1)[0].sum(dim=-1)
    """
    assert codes(source, "SHP501") == []


def test_router_logits_recorded_by_an_output_hook_are_returned_to_the_caller():
    source = (
        MIXTRAL.replace("return final, router_logits", "return final")
        + """
    class MoePreTrainedModel(PreTrainedModel):
        _can_record_outputs = {"router_logits": OutputRecorder(SparseMoeBlock, index=1)}
    """
    )
    assert codes(source, "SHP501") == []


def test_one_finding_per_dead_loss_even_when_it_is_rescaled():
    source = """
        import torch
        from torch import nn

        class Gate(nn.Module):
            def forward(self, probs, expert_mask):
                aux_loss = self.num_experts * (expert_mask.float().mean(0) * probs.mean(0)).sum()
                aux_loss = aux_loss * self.coef
                z_loss = torch.logsumexp(probs, dim=-1).pow(2).mean()
                return probs
    """
    assert codes(source, "SHP502") == [("SHP502", 8), ("SHP502", 9)]


def test_calls_named_for_an_effect_return_no_loss():
    source = """
        from torch import nn

        class MoELayer(nn.Module):
            def forward(self, x):
                self.reset_moe_aux_loss()
                set_aux_loss_group(self.expert_group)
                self.router.register_aux_loss_hook(self._hook)
                self.compute_aux_loss(x)
                return self.experts(x)

            def compute_aux_loss(self, x):
                self.aux_loss = self.router.balance(x)
    """
    assert codes(source, "SHP502") == []


def test_counters_and_padding_sizes_named_like_losses_are_not_losses():
    source = """
        from torch import nn

        class MoEBlock(nn.Module):
            def forward(self, x, num_experts):
                num_balance_tokens = 0
                for token in x:
                    num_balance_tokens = num_balance_tokens + 1
                pad_loss_len = (num_experts - x.shape[0] % num_experts) % num_experts
                aux_loss_weight = self.config.router_aux_loss_coef * 2
                return self.experts(x)
    """
    assert codes(source, "SHP502") == []


GATE_RETURNING_ITS_LOSS = """
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Gate(nn.Module):
        def __init__(self, dim, num_experts):
            super().__init__()
            self.num_experts = num_experts
            self.proj = nn.Linear(dim, num_experts)

        def forward(self, x):
            probs = self.proj(x).softmax(-1)
            weight, idx = probs.topk(2, dim=-1)
            fraction = F.one_hot(idx[:, 0], self.num_experts).float().mean(0)
            aux_loss = self.num_experts * (fraction * probs.mean(0)).sum()
            return idx, weight, aux_loss

    class MoE(nn.Module):
        def __init__(self, dim, num_experts):
            super().__init__()
            self.gate = Gate(dim, num_experts)

        def forward(self, x):
            idx, weight, aux_loss = self.gate(x)
            return self.dispatch(x, idx, weight), aux_loss
"""


def test_a_loss_unpacked_from_the_gate_and_dropped_is_found():
    assert codes(GATE_RETURNING_ITS_LOSS, "SHP502") == []
    dropped = mutate(
        GATE_RETURNING_ITS_LOSS,
        "return self.dispatch(x, idx, weight), aux_loss",
        "return self.dispatch(x, idx, weight)",
    )
    assert codes(dropped, "SHP502") == [("SHP502", 25)]
    weight_dropped = mutate(
        GATE_RETURNING_ITS_LOSS, "self.dispatch(x, idx, weight), aux_loss", "self.dispatch(x, idx), aux_loss"
    )
    assert codes(weight_dropped, "SHP502") == []


@pytest.mark.parametrize(
    "loss",
    [
        "torch.logsumexp(logits, dim=-1).pow(2).mean()",  # router z-loss
        "self.cv_squared(probs.sum(0)) + self.cv_squared(load)",  # Shazeer's CV of importance and load
        "-(probs * probs.log()).sum(-1).mean()",  # router entropy
        "self.balance(probs, load)",  # a helper whose body computes one
    ],
)
def test_losses_computed_by_balancing_arithmetic_are_found_when_dropped(loss):
    source = f"""
        import torch
        import torch.nn.functional as F
        from torch import nn

        class NoisyTopKGate(nn.Module):
            def cv_squared(self, x):
                return x.float().var() / (x.float().mean() ** 2 + 1e-10)

            def balance(self, probs, load):
                return self.num_experts * (probs.mean(0) * load).sum()

            def forward(self, x):
                logits = self.w_gate(x)
                probs = logits.softmax(-1)
                top, idx = probs.topk(self.k, dim=-1)
                load = F.one_hot(idx[:, 0], self.num_experts).float().mean(0)
                penalty = {loss}
                return top, idx
    """
    assert codes(source, "SHP502") == [("SHP502", 18)]
    assert codes(source.replace("return top, idx", "return top, idx, penalty"), "SHP502") == []


ROUTER_WITHOUT_BALANCING = """
    import torch
    from torch import nn

    class MoE(nn.Module):
        def __init__(self, dim, num_experts):
            super().__init__()
            self.gate = nn.Linear(dim, num_experts)
            self.register_buffer("expert_bias", torch.zeros(num_experts))

        def forward(self, x):
            logits = self.gate(x)
            probs = logits.softmax(-1)
            weight, idx = probs.topk(2, dim=-1)
            return self.dispatch(x, weight, idx)
"""


@pytest.mark.parametrize(
    ("old", "new"),
    [
        # router logits returned inside a tuple (or dict) of aux information
        (
            "return self.dispatch(x, weight, idx)",
            "aux = (logits, idx)\n            return self.dispatch(x, weight, idx), aux",
        ),
        (
            "return self.dispatch(x, weight, idx)",
            "aux = {'router_logits': logits}\n            return self.dispatch(x, weight, idx), aux",
        ),
        # a stored bias through a local, and a per-expert quantile threshold, balance the selection
        (
            "weight, idx = probs.topk(2, dim=-1)",
            "bias = self.expert_bias\n            weight, idx = (probs + bias).topk(2, dim=-1)",
        ),
        (
            "weight, idx = probs.topk(2, dim=-1)",
            "threshold = torch.quantile(probs, 0.9, dim=0)\n"
            "            weight, idx = (probs - threshold).topk(2, dim=-1)",
        ),
    ],
)
def test_balancing_that_is_not_an_aux_loss_variable(old, new):
    assert [code for code, _ in codes(ROUTER_WITHOUT_BALANCING, "SHP501")] == ["SHP501"]
    assert codes(mutate(ROUTER_WITHOUT_BALANCING, old, new), "SHP501") == []


def test_router_logits_packed_into_aux_information_that_never_leaves_are_still_unbalanced():
    packed = mutate(
        ROUTER_WITHOUT_BALANCING,
        "return self.dispatch(x, weight, idx)",
        "aux = (logits, idx)\n            return self.dispatch(x, weight, idx)",
    )
    assert [code for code, _ in codes(packed, "SHP501")] == ["SHP501"]


# -- SHP503 router precision ----------------------------------------------------------------------
def test_dropping_the_fp32_softmax_makes_the_selection_low_precision():
    mutant = mutate(MIXTRAL, "F.softmax(router_logits, dim=1, dtype=torch.float)", "F.softmax(router_logits, dim=1)")
    assert codes(MIXTRAL, "SHP503") == []
    assert codes(mutant, "SHP503") == [("SHP503", 16)]


def test_casting_probabilities_back_before_the_top_k_says_so():
    mutant = mutate(
        MIXTRAL,
        "F.softmax(router_logits, dim=1, dtype=torch.float)",
        "F.softmax(router_logits, dim=1, dtype=torch.float).to(hidden_states.dtype)",
    )
    assert codes(mutant, "SHP503") == [("SHP503", 16)]
    assert "cast back" in findings("SHP503", mutant)[0].message


def test_a_cast_to_the_scores_own_dtype_says_nothing_about_precision():
    fp32_router = mutate(
        DEEPSEEK,
        "scores + self.e_score_correction_bias.unsqueeze(0)",
        "(scores + self.e_score_correction_bias.unsqueeze(0)).type_as(scores)",
    )
    assert codes(fp32_router, "SHP503") == []


def test_removing_the_fp32_cast_of_a_router_that_computes_in_fp32_is_found():
    mutant = mutate(
        DEEPSEEK, "F.linear(hidden_states.float(), self.weight.float())", "F.linear(hidden_states, self.weight)"
    )
    assert codes(DEEPSEEK, "SHP503") == []
    assert [code for code, _ in codes(mutant, "SHP503")] == ["SHP503"]
