"""What torch / numpy / einops ops do to a value: the one table every analysis asks.

Methods are grouped by their effect on the value they are called on (reshape it, reorder its axes,
copy it, retype it, mask it, scale it, select part of it); functions by qualified name. The analyses
compose these groups (`RESHAPE_METHODS | COPY_METHODS`) for the question they ask; none keeps a list
of its own. Attention kernels name the meaning of each argument, so "where does SDPA take its mask"
is written once. In-place methods, `out=` and ops that return None live in `tensors.py`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import libcst as cst

from sharpedges.analysis.calls import argument, literal_int, literal_string, method_name
from sharpedges.analysis.walk import is_a

# -- library namespaces: `torch.softmax(x)` is a function, `x.softmax()` a method -------------------
LIBRARY_NAMESPACES = frozenset({"torch", "numpy", "math", "einops", "scipy", "jax", "tensorflow", "tf"})


def is_library_namespace(ctx, expr: cst.BaseExpression | None) -> bool:
    """True when `expr` names a library module (`torch`, `F`, `np`, `math`...), not a tensor value."""
    qualified = ctx.qualify(expr) if expr is not None else None
    return qualified is not None and qualified.split(".")[0] in LIBRARY_NAMESPACES


# -- methods, by what they do to the value they are called on --------------------------------------
RESHAPE_METHODS = frozenset(
    {"view", "reshape", "view_as", "reshape_as", "flatten", "unflatten", "squeeze", "unsqueeze"}
)
BROADCAST_METHODS = frozenset({"expand", "expand_as", "broadcast_to"})
REPEAT_METHODS = frozenset({"repeat", "repeat_interleave"})
# Two axes swapped: a mask laid out (query, key) becomes (key, query).
SWAP_METHODS = frozenset({"transpose", "t", "mT", "T", "swapaxes", "swapdims"})
REORDER_METHODS = SWAP_METHODS | {"permute", "movedim"}
COPY_METHODS = frozenset({"contiguous", "clone", "detach"})
# A copy of any object, a module included: `[copy.deepcopy(layer) for _ in range(n)]` repeats `layer`.
OBJECT_COPY_FUNCTIONS = frozenset({"copy.deepcopy", "copy.copy"})
# Where the value lives and whether autograd tracks it: the values themselves are unchanged.
PLACEMENT_METHODS = frozenset({"cpu", "cuda", "requires_grad_"})
# Casts to a fixed precision, and casts whose dtype is an argument.
FIXED_CASTS = {"half": "half", "bfloat16": "bfloat16", "float": "full", "double": "full"}
DTYPE_ARGUMENT_CASTS = frozenset({"to", "type", "type_as"})
CAST_METHODS = frozenset(FIXED_CASTS) | DTYPE_ARGUMENT_CASTS
UPCAST_METHODS = frozenset(name for name, precision in FIXED_CASTS.items() if precision == "full")
# Parts of a value: the same numbers, fewer of them.
SELECTION_METHODS = frozenset({"narrow", "index_select", "gather", "chunk", "split", "unbind", "tensor_split", "roll"})
FILL_METHODS = frozenset({"masked_fill", "masked_fill_"})
# Hugging Face tokenizers' encode methods: the `attention_mask` they return is 1 at the real tokens
TOKENIZER_ENCODE_METHODS = frozenset({"batch_encode_plus", "encode_plus"})
MASKING_METHODS = FILL_METHODS | {"masked_scatter", "where"}
ADDITIVE_METHODS = frozenset({"add", "add_", "sub", "sub_"})
CLAMP_METHODS = frozenset({"clamp", "clamp_", "clamp_min", "clamp_min_", "clip", "clip_"})
# A smooth clamp: logit soft-capping is `tanh(x / cap) * cap` (Gemma 2, Grok), which leaves the logits' scale as it was.
SOFT_CAP_METHODS = frozenset({"tanh", "tanh_"})
NAN_REPAIR_METHODS = frozenset({"nan_to_num"})
SCALING_METHODS = frozenset({"mul", "mul_", "div", "div_", "multiply", "divide", "true_divide"})
TRIANGLE_METHODS = frozenset({"triu", "tril", "triu_", "tril_"})
# Every method whose result is the receiver's values rearranged, copied or moved (no arithmetic).
SHAPE_ONLY_METHODS = RESHAPE_METHODS | BROADCAST_METHODS | REORDER_METHODS | COPY_METHODS | PLACEMENT_METHODS

# -- functions --------------------------------------------------------------------------------------
TILE_FUNCTIONS = frozenset({"torch.tile", "numpy.tile"})
CONCATENATIONS = frozenset({"torch.cat", "torch.concat", "torch.concatenate"})
MATMUL_FUNCTIONS = frozenset({"torch.matmul", "torch.bmm", "torch.Tensor.matmul", "torch.mm"})
SCALING_FUNCTIONS = frozenset({"torch.mul", "torch.div", "torch.multiply", "torch.divide", "torch.true_divide"})
TRANSPOSE_FUNCTIONS = frozenset({"torch.transpose", "torch.permute", "einops.rearrange", "torch.t"})
CLAMP_FUNCTIONS = frozenset({"torch.clamp", "torch.clamp_min", "torch.clip"})
SOFT_CAP_FUNCTIONS = frozenset({"torch.tanh", "torch.nn.functional.tanh"})
ELEMENTWISE_MAXIMUM = frozenset({"torch.max", "torch.maximum"})
FILL_FUNCTIONS = frozenset({"torch.masked_fill"})
ADDITIVE_FUNCTIONS = frozenset({"torch.add", "torch.sub"})
NAN_REPAIR_FUNCTIONS = frozenset({"torch.nan_to_num"})
PAD_FUNCTIONS = frozenset({"torch.nn.functional.pad"})
SQRT_FUNCTIONS = frozenset(
    {"math.sqrt", "numpy.sqrt", "torch.sqrt", "torch.rsqrt", "math.pow", "numpy.power", "torch.pow"}
)

# -- mask constructors ------------------------------------------------------------------------------
# Modules that only drop (or pass) activations: no sublayer of a block.
DROPOUT_MODULES = frozenset(
    {
        "torch.nn.Dropout",
        "torch.nn.Dropout1d",
        "torch.nn.Dropout2d",
        "torch.nn.Dropout3d",
        "torch.nn.AlphaDropout",
        "torch.nn.FeatureAlphaDropout",
    }
)
ONES = frozenset({"torch.ones", "torch.ones_like"})
ZEROS = frozenset({"torch.zeros", "torch.zeros_like"})
FULL = frozenset({"torch.full", "torch.full_like"})
ARANGE = frozenset({"torch.arange"})
TRIANGLES = frozenset({"torch.triu", "torch.tril"})
# a module's tensor held as its parameter or buffer: the value is the tensor it is built from
BUFFER_CONSTRUCTORS = frozenset({"torch.nn.Parameter", "torch.nn.parameter.Parameter", "torch.nn.Buffer"})
TENSOR_LITERALS = frozenset({"torch.tensor", "torch.as_tensor"})
COMPLEMENT_FUNCTIONS = frozenset({"torch.logical_not"})

# -- dtypes -----------------------------------------------------------------------------------------
HALF_DTYPES = frozenset({"torch.float16", "torch.half"})
BFLOAT16_DTYPES = frozenset({"torch.bfloat16"})
LOW_PRECISION_DTYPES = HALF_DTYPES | BFLOAT16_DTYPES
FULL_DTYPES = frozenset({"torch.float32", "torch.float", "torch.float64", "torch.double"})
FLOAT_DTYPES = LOW_PRECISION_DTYPES | FULL_DTYPES
BOOL_DTYPES = frozenset({"torch.bool", "bool", "builtins.bool"})  # torch takes Python's bool as torch.bool


# -- attention kernels and the meaning of their arguments ----------------------------------------------
@dataclass(frozen=True)
class Kernel:
    """An attention kernel: for each meaning (query, mask, causal, dropout, scale...) its keyword and
    positional index (None when the argument is keyword-only or its position moved between releases)."""

    name: str
    arguments: tuple[tuple[str, str, int | None], ...]  # (meaning, keyword, position)

    def keyword(self, meaning: str) -> str | None:
        return next((keyword for name, keyword, _ in self.arguments if name == meaning), None)

    def slot(self, meaning: str) -> tuple[str, int | None] | None:
        """(keyword, position) of the argument of this meaning, None when the kernel takes none."""
        return next(((keyword, position) for name, keyword, position in self.arguments if name == meaning), None)

    def argument(self, call: cst.Call, meaning: str) -> cst.BaseExpression | None:
        for name, keyword, position in self.arguments:
            if name == meaning:
                return argument(call, keyword, position)
        return None


def _kernel(name: str, **arguments: tuple[str, int | None]) -> Kernel:
    return Kernel(name, tuple((meaning, keyword, position) for meaning, (keyword, position) in arguments.items()))


_SDPA = _kernel(
    "scaled_dot_product_attention",
    query=("query", 0),
    key=("key", 1),
    value=("value", 2),
    mask=("attn_mask", 3),
    dropout=("dropout_p", 4),
    causal=("is_causal", 5),
    scale=("scale", 6),
)
_FLASH = _kernel(
    "flash_attn_func",
    query=("q", 0),
    key=("k", 1),
    value=("v", 2),
    dropout=("dropout_p", 3),
    scale=("softmax_scale", 4),
    causal=("causal", 5),
    window=("window_size", 6),
)
# Packed inputs: the query, key and value stacked in one tensor (or key and value in one).
_FLASH_QKVPACKED = _kernel(
    "flash_attn_qkvpacked_func",
    query=("qkv", 0),
    key=("qkv", 0),
    value=("qkv", 0),
    dropout=("dropout_p", 1),
    scale=("softmax_scale", 2),
    causal=("causal", 3),
    window=("window_size", 4),
)
_FLASH_KVPACKED = _kernel(
    "flash_attn_kvpacked_func",
    query=("q", 0),
    key=("kv", 1),
    value=("kv", 1),
    dropout=("dropout_p", 2),
    scale=("softmax_scale", 3),
    causal=("causal", 4),
    window=("window_size", 5),
)
_FLASH_VARLEN = _kernel(
    "flash_attn_varlen_func",
    query=("q", 0),
    key=("k", 1),
    value=("v", 2),
    dropout=("dropout_p", 7),
    scale=("softmax_scale", 8),
    causal=("causal", 9),
    window=("window_size", 10),
)
_FLASH_KVCACHE = _kernel(
    "flash_attn_with_kvcache",
    query=("q", 0),
    key=("k_cache", 1),
    value=("v_cache", 2),
    scale=("softmax_scale", None),
    causal=("causal", None),
    window=("window_size", None),
)
_XFORMERS = _kernel(
    "memory_efficient_attention",
    query=("query", 0),
    key=("key", 1),
    value=("value", 2),
    mask=("attn_bias", 3),
    dropout=("p", 4),
    scale=("scale", 5),
)
_FLEX = _kernel(
    "flex_attention",
    query=("query", 0),
    key=("key", 1),
    value=("value", 2),
    score_mod=("score_mod", 3),
    mask=("block_mask", 4),
    scale=("scale", 5),
)

SDPA = frozenset({"torch.nn.functional.scaled_dot_product_attention", "torch._C._nn.scaled_dot_product_attention"})
KERNELS: dict[str, Kernel] = {
    **{name: _SDPA for name in SDPA},
    **{name: _FLASH for name in ("flash_attn.flash_attn_func", "flash_attn.flash_attn_interface.flash_attn_func")},
    **{
        name: _FLASH_VARLEN
        for name in ("flash_attn.flash_attn_varlen_func", "flash_attn.flash_attn_interface.flash_attn_varlen_func")
    },
    **{
        name: _FLASH_QKVPACKED
        for name in (
            "flash_attn.flash_attn_qkvpacked_func",
            "flash_attn.flash_attn_interface.flash_attn_qkvpacked_func",
        )
    },
    **{
        name: _FLASH_KVPACKED
        for name in ("flash_attn.flash_attn_kvpacked_func", "flash_attn.flash_attn_interface.flash_attn_kvpacked_func")
    },
    **{
        name: _FLASH_KVCACHE
        for name in ("flash_attn.flash_attn_with_kvcache", "flash_attn.flash_attn_interface.flash_attn_with_kvcache")
    },
    **{
        name: _XFORMERS
        for name in ("xformers.ops.memory_efficient_attention", "xformers.ops.fmha.memory_efficient_attention")
    },
    **{name: _FLEX for name in ("torch.nn.attention.flex_attention.flex_attention",)},
}


# The keywords a softmax scale is passed by: each kernel's own, and the attention interface of HF models,
# whose wrappers (`attention_interface(self, q, k, v, mask, scaling=...)`, `_flash_attention_forward(...,
# softmax_scale=...)`) keep the kernel's keyword or this one.
SCALE_KEYWORDS = frozenset({kernel.keyword("scale") for kernel in KERNELS.values()} - {None}) | {"scaling"}

# A file can only call one of the kernels if it names one of these (lower-cased bytes).
KERNEL_TOKENS = (b"scaled_dot_product_attention", b"flash_attn", b"memory_efficient_attention", b"flex_attention")
PARTIALS = frozenset({"functools.partial"})


def kernel_of(ctx, call: cst.Call) -> Kernel | None:
    """The attention kernel this call runs, or None."""
    return KERNELS.get(ctx.callee(call) or "")


# -- attention registries: the kernel chosen at run time by a string -----------------------------------
# transformers (>= 4.48) looks the kernel up by `config._attn_implementation` in one registry of functions
# (`ALL_ATTENTION_FUNCTIONS[impl]`, `ALL_ATTENTION_FUNCTIONS.get_interface(impl, eager_attention_forward)`),
# every one called like the model's own eager function: `(module, query, key, value, attention_mask,
# dropout=..., scaling=..., is_causal=...)`. Older releases pick a class (`LLAMA_ATTENTION_CLASSES[impl]`).
ATTENTION_FUNCTION_REGISTRIES = frozenset({"ALL_ATTENTION_FUNCTIONS"})
ATTENTION_CLASS_REGISTRY = re.compile(r"(^|_)ATTENTION_CLASSES$")
REGISTRY_LOOKUP_METHODS = frozenset({"get_interface", "get"})  # (key, default)
REGISTRY_TOKENS = (b"all_attention_functions", b"attention_classes")
ATTENTION_INTERFACE = _kernel(
    "attention_interface",
    module=("module", 0),
    query=("query", 1),
    key=("key", 2),
    value=("value", 3),
    mask=("attention_mask", 4),
    dropout=("dropout", None),
    scale=("scaling", None),
    causal=("is_causal", None),
)
EAGER_IMPLEMENTATION = "eager"  # the model's own function, the default when the registry is not asked


@dataclass(frozen=True)
class Implementation:
    """One kernel a registry holds, by its key: how it reads the mask it is given ("sdpa": a boolean True
    = attend, a float is added; "additive": added to the scores; "padding": a 2D keep-mask of the keys;
    "block": a FlexAttention BlockMask) and whether a dropout probability passed to it drops attention
    weights in eval too (SDPA's and flash-attention's `dropout_p` know nothing of `module.training`; the
    eager function hands it to `F.dropout(..., training=module.training)`)."""

    key: str
    mask_convention: str
    drops_in_eval: bool


IMPLEMENTATIONS = {
    implementation.key: implementation
    for implementation in (
        Implementation(EAGER_IMPLEMENTATION, "additive", False),
        Implementation("sdpa", "sdpa", True),
        Implementation("flash_attention_2", "padding", True),
        Implementation("flash_attention_3", "padding", True),
        Implementation("flex_attention", "block", False),
    )
}
REGISTERED_IMPLEMENTATIONS = frozenset(IMPLEMENTATIONS) - {EAGER_IMPLEMENTATION}


# transformers' mask builders (`transformers.masking_utils`). The bidirectional one ignores
# `config.is_decoder`, the flag by which a model runs as a decoder (its `...ForCausalLM` heads set it);
# a mask for cross-attention is the one built with `encoder_hidden_states=`.
HF_MASK_MODULE = "masking_utils"
HF_BIDIRECTIONAL_MASK = "create_bidirectional_mask"
HF_CROSS_ATTENTION_KEYWORD = "encoder_hidden_states"
DECODER_FLAG = "is_decoder"

# torch.nn attention modules: where each forward() takes its masks (keyword -> positional index).
MHA = frozenset({"torch.nn.MultiheadAttention"})
ENCODERS = frozenset({"torch.nn.TransformerEncoder", "torch.nn.TransformerEncoderLayer"})
DECODERS = frozenset({"torch.nn.TransformerDecoder", "torch.nn.TransformerDecoderLayer"})
TRANSFORMER = frozenset({"torch.nn.Transformer"})
MODULE_MASK_ARGUMENTS = {
    **{name: {"attn_mask": 5, "key_padding_mask": 3} for name in MHA},
    **{name: {"mask": 1, "src_mask": 1, "src_key_padding_mask": 2} for name in ENCODERS},
    **{
        name: {"tgt_mask": 2, "memory_mask": 3, "tgt_key_padding_mask": 4, "memory_key_padding_mask": 5}
        for name in DECODERS
    },
    **{
        name: {
            "src_mask": 2,
            "tgt_mask": 3,
            "memory_mask": 4,
            "src_key_padding_mask": 5,
            "tgt_key_padding_mask": 6,
            "memory_key_padding_mask": 7,
        }
        for name in TRANSFORMER
    },
}


# Class methods that build an instance of their class (transformers, diffusers, timm's hub loaders).
INSTANCE_CONSTRUCTORS = frozenset({"from_pretrained", "from_config"})


def dtype_precision(ctx, expr: cst.BaseExpression | None) -> str | None:
    """'half' for torch.float16, 'full' for float32/64, 'bfloat16', else None (unknown, or a
    dtype the code takes from a tensor)."""
    qualified = ctx.qualify(expr) if expr is not None else None
    if qualified in HALF_DTYPES:
        return "half"
    if qualified in FULL_DTYPES:
        return "full"
    if qualified in BFLOAT16_DTYPES:
        return "bfloat16"
    return None


def cast_precision(ctx, node: cst.CSTNode) -> str | None:
    """The precision a cast call leaves a tensor in: `.half()`, `.float()`, `.to(torch.float16)`,
    `.type(torch.float32)`, `.to(dtype=...)`; None for anything else."""
    if not is_a(node, cst.Call):
        return None
    method = method_name(node)
    if method in FIXED_CASTS and not node.args:
        return FIXED_CASTS[method]
    if method in ("to", "type"):
        for arg in node.args:
            if arg.keyword is None or arg.keyword.value in ("dtype", "dst_type"):
                precision = dtype_precision(ctx, arg.value)
                if precision is not None:
                    return precision
    return None


# Losses of torch.nn.functional: what reaches one is the model's final output.
LOSS_FUNCTIONS = frozenset(
    f"torch.nn.functional.{name}"
    for name in (
        "l1_loss",
        "mse_loss",
        "smooth_l1_loss",
        "huber_loss",
        "cross_entropy",
        "nll_loss",
        "binary_cross_entropy",
        "binary_cross_entropy_with_logits",
        "kl_div",
        "cosine_embedding_loss",
        "ctc_loss",
        "gaussian_nll_loss",
        "poisson_nll_loss",
    )
)


def casts_to_runtime_dtype(ctx, node: cst.CSTNode) -> bool:
    """A cast to a dtype the code reads at run time from a tensor or a module: `.to(dtype=self.dtype)`,
    `.to(scores.dtype)`, `.type_as(scores)`; float16 whenever the model runs in half."""
    if not is_a(node, cst.Call):
        return False
    method = method_name(node)
    if method == "type_as":
        return bool(node.args)
    if method not in ("to", "type"):
        return False
    return any(
        (arg.keyword is None or arg.keyword.value in ("dtype", "dst_type"))
        and is_a(arg.value, cst.Attribute)
        and arg.value.attr.value == "dtype"
        for arg in node.args
    )


# -- einops patterns: how a pair axis of size 2 meets the last axis ------------------------------------
EINOPS_FUNCTIONS = frozenset({"einops.rearrange", "einops.repeat"})
_EINOPS_TOKEN = re.compile(r"\([^)]*\)|\.\.\.|\S+")


def einops_axes(ctx, call: cst.Call) -> tuple[list[str], list[str]] | None:
    """The axes before and after the arrow of an einops rearrange / repeat with a literal pattern
    (`'b (h d) -> b h d'` gives `['b', '(h d)']`, `['b', 'h', 'd']`)."""
    if ctx.callee(call) not in EINOPS_FUNCTIONS:
        return None
    pattern = literal_string(argument(call, "pattern", 1))
    if pattern is None or pattern.count("->") != 1:
        return None
    left, right = (_EINOPS_TOKEN.findall(side) for side in pattern.split("->"))
    return left, right


def einops_pair_layout(ctx, call: cst.Call) -> tuple[str, str] | None:
    """For an einops call that splits the last axis into pairs or merges a size-2 axis into it: the
    channel layout of the pairs ("interleaved": channels 2i and 2i+1, "half": i and i + d/2) and the
    direction ("split" leaves the pair axis last or second to last, "merge" folds it into the last axis).

    Ex) `repeat(freqs, '... n -> ... (n r)', r=2)`      interleaved, merge
    Ex) `rearrange(x, '... (d r) -> ... d r', r=2)`     interleaved, split
    Ex) `rearrange(x, '... (r d) -> ... r d', r=2)`     half, split
    """
    axes = einops_axes(ctx, call)
    if axes is None:
        return None
    left, right = axes
    pairs = {arg.keyword.value for arg in call.args if arg.keyword is not None and literal_int(arg.value) == 2}
    if not left or not right:
        return None
    for grouped, other, direction in ((right[-1], left, "merge"), (left[-1], right, "split")):
        parts = grouped.strip("()").split()
        if not grouped.startswith("(") or len(parts) != 2:
            continue
        pair = [part for part in parts if part in pairs]
        if len(pair) != 1:
            continue
        channels = parts[1 - parts.index(pair[0])]
        if direction == "merge" and (other[-1] != channels or pair[0] in other):
            continue
        if direction == "split" and other[-2:] != parts:
            continue
        return ("interleaved" if parts[1] == pair[0] else "half"), direction
    return None


# -- fused MoE layers and kernels ---------------------------------------------------------------------------
# The keyword under which a fused MoE layer or kernel takes the router's logits and selects the experts
# itself, its softmax in fp32 (vLLM's `FusedMoE(hidden_states=..., router_logits=...)`, `fused_topk(...,
# gating_output=...)`; SGLang's `select_experts(hidden_states, router_logits, ...)`).
FUSED_ROUTING_ARGUMENTS = frozenset({"router_logits", "gating_output"})
