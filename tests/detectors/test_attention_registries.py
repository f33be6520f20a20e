"""Attention registries (`ALL_ATTENTION_FUNCTIONS[config._attn_implementation]`, `*_ATTENTION_CLASSES[...]`)
and branches on the implementation string: small HF-style snippets, where each finding lands, and the
look-alikes whose branches disagree, which must stay quiet."""

from __future__ import annotations

import textwrap

import libcst as cst

from sharpedges.analysis.context import FileContext
from sharpedges.analysis.dataflow import Choice, Condition
from sharpedges.analysis.registries import registry_calls
from sharpedges.engine import Engine
from sharpedges.registry import all_rules


def diagnostics(code: str, source: str):
    result = Engine([all_rules()[code]]).check("model.py", textwrap.dedent(source).encode())
    assert not result.errors, result.errors
    return [d for d in result.diagnostics if d.rule == code]


def lines(code: str, source: str) -> list[int]:
    return [d.line for d in diagnostics(code, source)]


def line_of(source: str, text: str) -> int:
    return next(i for i, line in enumerate(textwrap.dedent(source).splitlines(), 1) if text in line)


ATTENTION = """
    import torch
    from torch import nn
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS


    def eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
        weights = torch.matmul(query, key.transpose(2, 3)) * scaling
        if attention_mask is not None:
            weights = weights + attention_mask
        weights = nn.functional.softmax(weights, dim=-1)
        weights = nn.functional.dropout(weights, p=dropout, training=module.training)
        return torch.matmul(weights, value), weights


    class Attention(nn.Module):
        def forward(self, q, k, v, attention_mask):
            attention_interface = eager_attention_forward
            if self.config._attn_implementation != "eager":
                attention_interface = ALL_ATTENTION_FUNCTIONS[self.config._attn_implementation]
            out, _ = attention_interface(
                self, q, k, v, attention_mask, dropout=0.0 if not self.training else self.attention_dropout, scaling=1.0
            )
            return out
"""

# -- the registry model --------------------------------------------------------------------------------


def test_a_registry_call_reaches_the_eager_function_and_every_registered_kernel():
    source = textwrap.dedent(ATTENTION)
    ctx = FileContext("model.py", cst.parse_module(source))
    (found,) = registry_calls(ctx)
    assert found.path == "config._attn_implementation"
    assert {kernel.key for kernel in found.implementations} == {
        "eager",
        "sdpa",
        "flash_attention_2",
        "flash_attention_3",
        "flex_attention",
    }
    assert ctx.code(found.kernel.argument(found.call, "mask")) == "attention_mask"


def test_a_lookup_under_a_branch_holds_only_the_kernels_the_branch_admits():
    source = textwrap.dedent(ATTENTION).replace('!= "eager"', 'not in ("eager", "flex_attention")')
    ctx = FileContext("model.py", cst.parse_module(source))
    (found,) = registry_calls(ctx)
    assert "flex_attention" not in {kernel.key for kernel in found.implementations}
    assert found.reaches("sdpa") and found.reaches("eager")


def test_get_interface_with_the_eager_default_is_both():
    source = textwrap.dedent(ATTENTION).replace(
        """attention_interface = eager_attention_forward
            if self.config._attn_implementation != "eager":
                attention_interface = ALL_ATTENTION_FUNCTIONS[self.config._attn_implementation]""",
        """attention_interface = ALL_ATTENTION_FUNCTIONS.get_interface(
                self.config._attn_implementation, eager_attention_forward
            )""",
    )
    ctx = FileContext("model.py", cst.parse_module(source))
    (found,) = registry_calls(ctx)
    assert found.reaches("sdpa") and found.reaches("eager")


def test_a_name_that_may_hold_something_else_is_no_registry_call():
    source = textwrap.dedent(ATTENTION).replace(
        "attention_interface = eager_attention_forward", "attention_interface = self.custom_kernel"
    )
    assert registry_calls(FileContext("model.py", cst.parse_module(source))) == []


# -- SHP203: an additive mask made boolean for the registry's SDPA (transformers #38094, Llama 4) ----------
LLAMA4_MASKS = (
    ATTENTION
    + """

    class Model(nn.Module):
        def forward(self, x, attention_mask):
            causal_mask, chunked_mask = self._update_causal_mask(attention_mask, x)
            for layer in self.layers:
                x = layer(x, causal_mask, chunked_mask)
            return x

        def _update_causal_mask(self, attention_mask, x):
            dtype = x.dtype
            causal_mask = self._prepare_4d_causal_mask(x.shape[1], dtype)
            chunked_mask = self.create_chunked_attention_mask(x.shape[1])
            chunked_mask = chunked_mask * attention_mask[:, None, None, :]
            if self.config._attn_implementation == "eager":
                min_dtype = torch.finfo(dtype).min
                chunked_mask = torch.where(chunked_mask == 0, min_dtype, 0.0).to(dtype)
            if self.config._attn_implementation == "sdpa" and chunked_mask is not None:
                chunked_mask = chunked_mask.bool()
                causal_mask = causal_mask.bool()
            return causal_mask, chunked_mask

        def create_chunked_attention_mask(self, n):
            positions = torch.arange(n)
            return positions[None, :] <= positions[:, None]

        @staticmethod
        def _prepare_4d_causal_mask(n, dtype):
            min_dtype = torch.finfo(dtype).min
            causal_mask = torch.full((n, n), fill_value=min_dtype, dtype=dtype)
            causal_mask = torch.triu(causal_mask, diagonal=1)
            return causal_mask[None, None, :, :]
"""
)


def test_shp203_additive_mask_cast_to_bool_for_the_registry_sdpa_is_found_at_the_cast():
    (found,) = diagnostics("SHP203", LLAMA4_MASKS)
    assert found.line == line_of(LLAMA4_MASKS, "causal_mask = causal_mask.bool()")
    assert "scaled_dot_product_attention attends where it is True" in found.message
    related = [(location["line"], location["message"]) for location in found.related]
    assert related == [
        (line_of(LLAMA4_MASKS, "causal_mask = torch.full(") - 1, "what the mask marks is decided here"),
        (line_of(LLAMA4_MASKS, "out, _ = attention_interface("), "here the mask attends where it is True"),
    ]


def test_shp203_the_fixed_comparison_is_quiet():
    fixed = LLAMA4_MASKS.replace(
        "causal_mask = causal_mask.bool()", "causal_mask = causal_mask != torch.finfo(dtype).min"
    )
    assert lines("SHP203", fixed) == []


def test_shp203_a_mask_made_additive_for_eager_never_meets_the_sdpa_cast():
    """The `torch.where(..., min_dtype, 0.0)` runs only under `== "eager"`: the `.bool()` under `== "sdpa"`
    reads the boolean chunk mask, never that additive one."""
    assert line_of(LLAMA4_MASKS, "chunked_mask = chunked_mask.bool()") not in lines("SHP203", LLAMA4_MASKS)


def test_shp203_the_same_additive_mask_built_on_every_path_is_found_at_its_cast_too():
    always = LLAMA4_MASKS.replace(
        """            if self.config._attn_implementation == "eager":
                min_dtype = torch.finfo(dtype).min
                chunked_mask""",
        """            if True:
                min_dtype = torch.finfo(dtype).min
                chunked_mask""",
    )
    assert line_of(always, "chunked_mask = chunked_mask.bool()") in lines("SHP203", always)


def test_shp203_a_cast_in_a_branch_that_also_feeds_the_eager_function_is_quiet():
    both = LLAMA4_MASKS.replace(
        'if self.config._attn_implementation == "sdpa" and chunked_mask is not None:',
        'if self.config._attn_implementation in ("sdpa", "eager"):',
    )
    assert lines("SHP203", both) == []


def test_shp203_a_cast_in_a_file_without_a_registry_is_quiet():
    plain = LLAMA4_MASKS.replace("ALL_ATTENTION_FUNCTIONS[self.config._attn_implementation]", "self.kernel")
    assert lines("SHP203", plain) == []


def test_shp203_a_padding_mask_reaching_the_registry_sdpa_is_found_at_the_call():
    source = (
        ATTENTION
        + """

    class SelfAttention(nn.Module):
        def forward(self, input_ids, q, k, v):
            padding = input_ids == self.pad_token_id
            attention_interface = eager_attention_forward
            if self.config._attn_implementation != "eager":
                attention_interface = ALL_ATTENTION_FUNCTIONS[self.config._attn_implementation]
            out, _ = attention_interface(self, q, k, v, padding[:, None, None, :], scaling=1.0)
            return out
    """
    )
    assert lines("SHP203", source) == [line_of(source, "out, _ = attention_interface(self, q, k, v, padding")]


def test_shp203_a_padding_mask_built_only_for_the_eager_function_is_quiet():
    source = (
        ATTENTION
        + """

    class SelfAttention(nn.Module):
        def forward(self, input_ids, q, k, v):
            attention_interface = eager_attention_forward
            if self.config._attn_implementation != "eager":
                attention_interface = ALL_ATTENTION_FUNCTIONS[self.config._attn_implementation]
            if self.config._attn_implementation == "eager":
                padding = input_ids == self.pad_token_id
            out, _ = attention_interface(self, q, k, v, padding[:, None, None, :], scaling=1.0)
            return out
    """
    )
    assert lines("SHP203", source) == []
    built_for_sdpa = source.replace('== "eager":\n                padding', '== "sdpa":\n                padding')
    assert lines("SHP203", built_for_sdpa) == [line_of(source, "out, _ = attention_interface(self, q, k, v, padding")]


CLASS_REGISTRY = """
    import torch
    import torch.nn.functional as F
    from torch import nn


    class LlamaAttention(nn.Module):
        def forward(self, x, attention_mask=None):
            return x


    class LlamaSdpaAttention(LlamaAttention):
        def forward(self, x, attention_mask=None):
            return F.scaled_dot_product_attention(x, x, x, attn_mask=attention_mask)


    LLAMA_ATTENTION_CLASSES = {"eager": LlamaAttention, "sdpa": LlamaSdpaAttention}


    class LlamaDecoderLayer(nn.Module):
        def __init__(self, config):
            super().__init__()
            self.self_attn = LLAMA_ATTENTION_CLASSES[config._attn_implementation](config)

        def forward(self, x, input_ids):
            padding = (input_ids == self.pad_token_id)[:, None, None, :]
            return self.self_attn(x, attention_mask=padding)
"""


def test_shp203_a_class_registry_reaches_the_forward_of_the_sdpa_class():
    assert lines("SHP203", CLASS_REGISTRY) == [line_of(CLASS_REGISTRY, "return F.scaled_dot_product_attention")]


def test_shp203_a_keep_mask_through_a_class_registry_is_quiet():
    keep = CLASS_REGISTRY.replace("input_ids == self.pad_token_id", "input_ids != self.pad_token_id")
    assert lines("SHP203", keep) == []


# -- SHP701: dropout through a registry reaches SDPA and flash-attention, which cannot see the mode -------
def test_shp701_ungated_dropout_through_a_registry_is_found_at_the_probability():
    ungated = ATTENTION.replace("dropout=0.0 if not self.training else self.attention_dropout", "dropout=self.p")
    (found,) = diagnostics("SHP701", ungated)
    assert found.line == line_of(ungated, "dropout=self.p")
    assert "dropout_p reaches the attention kernel in eval too" in found.message


def test_shp701_gated_dropout_through_a_registry_is_quiet():
    assert lines("SHP701", ATTENTION) == []


def test_shp701_a_registry_that_can_only_run_the_eager_function_is_quiet():
    eager_only = ATTENTION.replace("dropout=0.0 if not self.training else self.attention_dropout", "dropout=self.p")
    eager_only = eager_only.replace('!= "eager"', '== "eager"')
    assert lines("SHP701", eager_only) == []


def test_shp701_a_probability_the_caller_passes_is_the_callers_to_gate():
    passed = ATTENTION.replace(
        "def forward(self, q, k, v, attention_mask):", "def forward(self, q, k, v, attention_mask, p):"
    )
    passed = passed.replace("dropout=0.0 if not self.training else self.attention_dropout", "dropout=p")
    assert lines("SHP701", passed) == []


# -- branch correlation in the shared dataflow ------------------------------------------------------------
BRANCHES = """
    def build(self, m):
        c = base(m)
        if self.config._attn_implementation == "eager":
            c = torch.where(c == 0, min_value, 0.0)
        if self.config._attn_implementation not in ("eager", "flex_attention"):
            c = c.bool()
        if config._attn_implementation == "sdpa":
            use(c)
        else:
            other(c)
"""


def reaching_at(source: str, text: str) -> list[str]:
    """The statements of the definitions of `c` that reach the `c` read on the line holding `text`."""
    ctx = FileContext("model.py", cst.parse_module(textwrap.dedent(source)))
    facts = ctx.function_facts(ctx.index.nodes(cst.FunctionDef)[0])
    (read,) = [
        name
        for name in ctx.index.nodes(cst.Name)
        if name.value == "c" and text in ctx.code(ctx.index.statement_of(name)) and name in facts.uses.get("c", ())
    ]
    return [ctx.code(definition.node).strip() for definition in facts.reaching("c", ctx.order(read))]


def test_a_definition_under_another_string_never_reaches_the_read():
    # `self.config._attn_implementation` and `config._attn_implementation` are one choice
    assert reaching_at(BRANCHES, "use(c)") == ["c = c.bool()"]


def test_a_read_on_the_other_side_of_the_branch_sees_every_definition_that_agrees():
    assert reaching_at(BRANCHES, "other(c)") == [
        "c = c.bool()",
        "c = torch.where(c == 0, min_value, 0.0)",
        "c = base(m)",
    ]


def test_branches_on_a_local_name_do_not_correlate():
    local = BRANCHES.replace("self.config._attn_implementation", "impl").replace("config._attn_implementation", "impl")
    assert reaching_at(local, "use(c)") == [
        "c = c.bool()",
        "c = torch.where(c == 0, min_value, 0.0)",
        "c = base(m)",
    ]


def test_a_consumer_chosen_by_the_string_pairs_only_with_the_definitions_for_it():
    ctx = FileContext("model.py", cst.parse_module(textwrap.dedent(BRANCHES)))
    facts = ctx.function_facts(ctx.index.nodes(cst.FunctionDef)[0])
    eager = Condition((Choice("config._attn_implementation", frozenset({"eager"})),))
    at = ctx.index.last_order(ctx.index.nodes(cst.FunctionDef)[0]) + 1
    assert [ctx.code(d.node).strip() for d in facts.reaching("c", at, chosen=eager)] == [
        "c = torch.where(c == 0, min_value, 0.0)",
    ]
