"""SHP201: self-attention in a causal model applies no causal mask, so every token sees the future."""

from __future__ import annotations

import libcst as cst

from sharpedges.analysis.attention import logit_sources, softmax_calls
from sharpedges.analysis.calls import argument, has_star_args, is_false_or_none, keyword_names
from sharpedges.analysis.masks import (
    backends_disagreeing_on_causality,
    builds_bidirectional_mask,
    causal_by_importers,
    causal_flag_gate,
    dead_causal_masking,
    decided_by_decoder_flag,
    decoder_flag_read,
    ignored_causal_flag,
    in_causal_context,
    module_type,
    same_sequence,
    softmax_is_unmasked,
    unread_causal_flags,
)
from sharpedges.analysis.summaries import (
    called_function,
    kernel_parameters,
    parameter_default,
    partial_kernel,
)
from sharpedges.analysis.values import UNKNOWN, kernel_argument, passed_argument, possible_values
from sharpedges.analysis.vocabulary import (
    DECODERS,
    ENCODERS,
    HF_BIDIRECTIONAL_MASK,
    HF_CROSS_ATTENTION_KEYWORD,
    KERNEL_TOKENS,
    MASKING_METHODS,
    MHA,
    MODULE_MASK_ARGUMENTS,
    TRANSFORMER,
    TRIANGLE_METHODS,
    Kernel,
    kernel_of,
)
from sharpedges.analysis.walk import is_a
from sharpedges.detector import Detector, Finding

MASK_BUILDERS = MASKING_METHODS | TRIANGLE_METHODS
MASK_MEANINGS = ("causal", "mask", "score_mod")


class CausalMaskMissing(Detector):
    code = "SHP201"
    tokens = (
        b"softmax",
        b"multiheadattention",
        b"transformerencoder",
        b"transformerdecoder",
        b"create_bidirectional_mask",
        b"triu",
        b"tril",
        b"causal",  # a constructor's causal flag, read or not
        *KERNEL_TOKENS,
    )

    def check(self, ctx):
        yield from self._bidirectional_mask_in_a_decoder(ctx)
        for param, passed in unread_causal_flags(ctx):
            facts = {"flag": param.name.value, "value": ctx.code(passed.value)}
            yield Finding(passed, variant="flag-unread", facts=facts, related=((param, "unread-flag"),))
        for uncausal, causal in backends_disagreeing_on_causality(ctx):
            facts = {"kernel": kernel_name(ctx, uncausal), "causal": kernel_name(ctx, causal)}
            yield Finding(uncausal, variant="backend-uncausal", facts=facts, related=((causal, "causal-backend"),))
        for assign, scores in dead_causal_masking(ctx):
            yield Finding(assign.value, variant="dead-mask", facts={"scores": scores.value})
        for cls in ctx.index.nodes(cst.ClassDef):
            gated = causal_flag_gate(ctx, cls)
            if gated is not None:
                read, gate = gated
                yield Finding(read, variant="flag-gated", facts={"gate": gate.value})
        for softmax in softmax_calls(ctx):
            if self._manual_attention_unmasked(ctx, softmax):
                yield Finding(softmax.call, related=_flag_related(ctx, softmax.call))
        kernels_named = ctx.mentions(*KERNEL_TOKENS)
        for call in ctx.calls():
            kernel = kernel_of(ctx, call)
            if kernel is not None:
                if self._kernel_unmasked(ctx, call, kernel):
                    facts = {"kernel": kernel.name, "arguments": _causal_arguments(kernel)}
                    yield Finding(call, variant="kernel", facts=facts, related=_flag_related(ctx, call))
                continue
            fixed = partial_kernel(ctx, call) if kernels_named else None
            if fixed is not None:
                kernel, partial = fixed
                if self._kernel_unmasked(ctx, call, kernel, partial):
                    yield Finding(
                        call,
                        variant="kernel",
                        facts={"kernel": kernel.name, "arguments": _causal_arguments(kernel)},
                        related=((partial, "partial"),),
                    )
                continue
            target = called_function(ctx, call) if kernels_named else None
            if target is not None and (unmasked := self._wrapper_unmasked(ctx, call, target)) is not None:
                kernel, kernel_call = unmasked
                facts = {"wrapper": target[0].name.value, "kernel": kernel.name, "arguments": _causal_arguments(kernel)}
                yield Finding(call, variant="wrapper", facts=facts, related=((kernel_call, "kernel-call"),))
                continue
            module = module_type(ctx, call)
            if module in MHA | ENCODERS | DECODERS | TRANSFORMER and self._module_unmasked(ctx, call, module):
                flag, masks = _module_causal_arguments(module)
                keywords = [f"{flag}=True", *masks]
                facts = {"module": module.replace("torch.", ""), "arguments": ", ".join(f"`{k}`" for k in keywords)}
                yield Finding(call, variant="module", facts=facts)

    # -- transformers models with a decoder mode -----------------------------------------------------
    def _bidirectional_mask_in_a_decoder(self, ctx):
        """A model that reads `config.is_decoder` (it also runs as a causal LM) but builds its
        self-attention mask with `create_bidirectional_mask` whatever the flag says (transformers 5.17's
        RoFormer and MegatronBert): as a decoder every token sees the future."""
        if not ctx.mentions(HF_BIDIRECTIONAL_MASK.encode()):
            return
        for call in ctx.calls():
            cls = ctx.class_of(call)
            if (
                cls is not None
                and builds_bidirectional_mask(ctx, call)
                and HF_CROSS_ATTENTION_KEYWORD not in keyword_names(call)
                and not has_star_args(call)
                and (flag := decoder_flag_read(ctx, cls)) is not None
                and not decided_by_decoder_flag(ctx, call)
            ):
                yield Finding(call, variant="bidirectional-builder", related=((flag, "decoder-flag"),))

    # -- manual attention --------------------------------------------------------------------
    def _manual_attention_unmasked(self, ctx, softmax) -> bool:
        function = softmax.function
        if function is None or not _may_be_causal(ctx, softmax.call) or _handles_masks(ctx, function):
            return False
        sources = logit_sources(ctx, softmax)
        if not sources or not softmax_is_unmasked(ctx, softmax.call, softmax.input, function):
            return False
        if not any(_product_is_self_attention(ctx, function, source.product) for source in sources):
            return False
        return _in_causal_model(ctx, softmax.call)

    # -- attention kernels: SDPA, flash-attn, xformers, FlexAttention -------------------------------
    def _kernel_unmasked(self, ctx, call: cst.Call, kernel: Kernel, partial: cst.Call | None = None) -> bool:
        """No causal flag, mask or score_mod, in the call or in the `functools.partial` it calls."""
        if partial is not None and has_star_args(partial):
            return False
        for meaning in MASK_MEANINGS:
            value = kernel_argument(ctx, call, kernel, meaning)  # also through `**attn_kwargs`
            if value is None and partial is not None:
                value = argument(partial, kernel.keyword(meaning))
            if value is UNKNOWN or (value is not None and not _always_off(ctx, value)):
                return False
        function = ctx.function_of(call)
        if function is None or not _may_be_causal(ctx, call) or _handles_masks(ctx, function):
            return False
        query, key = kernel.argument(call, "query"), kernel.argument(call, "key")
        if query is None or key is None or not same_sequence(ctx, function, query, key, ctx.order(call)):
            return False
        return _in_causal_model(ctx, call)

    # -- wrappers: a function that forwards its parameters to a kernel -----------------------------
    def _wrapper_unmasked(self, ctx, call: cst.Call, target) -> tuple[Kernel, cst.Call] | None:
        """The kernel (and its call) that a wrapper runs with no causal flag or mask, when this call
        passes it none and the query and key it forwards are one sequence."""
        wrapper, positional = target
        forwarded = kernel_parameters(ctx, wrapper)
        kernel_calls = {use.call: use.kernel for uses in forwarded.values() for use in uses}
        if len(kernel_calls) != 1:
            return None
        [(kernel_call, kernel)] = kernel_calls.items()
        passed: dict[str, cst.BaseExpression | None] = {}  # meaning -> what this call makes of it
        for name, uses in forwarded.items():
            value = passed_argument(ctx, call, name, positional.index(name) if name in positional else None)
            if value is UNKNOWN:
                return None  # Ex) wrapper(q, k, v, **kwargs): the mask may be in there
            for use in uses:
                passed[use.meaning] = parameter_default(wrapper, name) if value is None else value
        for meaning in MASK_MEANINGS:
            value = passed[meaning] if meaning in passed else kernel.argument(kernel_call, meaning)
            if value is not None and not _always_off(ctx, value):
                return None
        function = ctx.function_of(call)
        if function is None or not _may_be_causal(ctx, call) or _handles_masks(ctx, function):
            return None
        query, key = passed.get("query"), passed.get("key")
        if query is None or key is None or not same_sequence(ctx, function, query, key, ctx.order(call)):
            return None
        return (kernel, kernel_call) if _in_causal_model(ctx, call) else None

    # -- torch.nn modules ----------------------------------------------------------------------
    def _module_unmasked(self, ctx, call: cst.Call, module: str) -> bool:
        arguments = MODULE_MASK_ARGUMENTS[module]
        flag, causal_keywords = _module_causal_arguments(module)
        passed = [passed_argument(ctx, call, k, arguments[k]) for k in causal_keywords]
        if any(value is not None for value in (*passed, passed_argument(ctx, call, flag))):
            return False  # passed, or perhaps passed in a `**kwargs` the model cannot read
        # a torch decoder named only as a decoder may attend over learned queries (DETR, ML-Decoder)
        if not in_causal_context(ctx, call, weak=module not in DECODERS | TRANSFORMER):
            return False
        if module in MHA:
            function = ctx.function_of(call)
            query, key = argument(call, "query", 0), argument(call, "key", 1)
            return (
                query is not None
                and key is not None
                and function is not None
                and (ctx.code(query) == ctx.code(key) or same_sequence(ctx, function, query, key, ctx.order(call)))
            )
        return True


def _may_be_causal(ctx, node: cst.CSTNode) -> bool:
    """In a causal context of this file, or in a module class that files next to it may build in one."""
    return in_causal_context(ctx, node) or (
        getattr(ctx, "project", None) is not None and ctx.class_of(node) is not None
    )


def _in_causal_model(ctx, node: cst.CSTNode) -> bool:
    """The code says the attention is causal: this file (a decoder, GPT, next-token training ...), or a
    file of its folder that builds its class in such a model. Asked last: the folder is read only then."""
    return in_causal_context(ctx, node) or causal_by_importers(ctx, node)


def kernel_name(ctx, call: cst.Call) -> str:
    kernel = kernel_of(ctx, call)
    return kernel.name if kernel is not None else ctx.code(call.func)


def _flag_related(ctx, node: cst.CSTNode) -> tuple[tuple[cst.CSTNode, str], ...]:
    """The causal flag of the attention's class that is switched on and read by nothing, if it has one."""
    cls = ctx.class_of(node)
    flag = ignored_causal_flag(ctx, cls) if cls is not None else None
    return ((flag, "ignored-flag"),) if flag is not None else ()


def _module_causal_arguments(module: str) -> tuple[str, list[str]]:
    """The causal flag and the masks of a torch.nn module's forward that mask its self-attention: a
    decoder's is the target's (`tgt_mask`, `tgt_is_causal`); its memory mask is cross-attention's."""
    if module in DECODERS | TRANSFORMER:
        return "tgt_is_causal", ["tgt_mask"]
    return "is_causal", [k for k in MODULE_MASK_ARGUMENTS[module] if "padding" not in k]


def _always_off(ctx, value: cst.BaseExpression) -> bool:
    """`False` / `None`, or a name, attribute or constant that is False or None on every path."""
    values = possible_values(ctx, value) or []
    return bool(values) and all(is_false_or_none(v) for v in values)


def _causal_arguments(kernel: Kernel) -> str:
    """The kernel's causal arguments, as code: `` `is_causal=True`, `attn_mask` ``, or the one it takes."""
    causal, mask = kernel.keyword("causal"), kernel.keyword("mask")
    return ", ".join(span for span in (causal and f"`{causal}=True`", mask and f"`{mask}`") if span)


def _handles_masks(ctx, function: cst.FunctionDef) -> bool:
    """The function builds or applies a mask somewhere, or takes one from its caller."""
    facts = ctx.function_facts(function)
    if any("mask" in name.lower() or "causal" in name.lower() for name in facts.parameters if facts.uses.get(name)):
        return True
    for call in ctx.index.descendants(function.body, cst.Call, prune=(cst.FunctionDef, cst.ClassDef)):
        func = call.func
        name = func.attr.value if is_a(func, cst.Attribute) else func.value if is_a(func, cst.Name) else ""
        if name in MASK_BUILDERS and not _result_dropped(ctx, facts, call):
            return True
    return False


def _result_dropped(ctx, facts, call: cst.Call) -> bool:
    """`mask = torch.ones(n, n).tril()` and `mask` never read again: a mask built and never applied."""
    statement = ctx.index.statement_of(call)
    assign = statement.body[0] if is_a(statement, cst.SimpleStatementLine) and len(statement.body) == 1 else None
    if not is_a(assign, cst.Assign) or len(assign.targets) != 1 or not is_a(assign.targets[0].target, cst.Name):
        return False
    return not facts.later_uses(assign.targets[0].target.value, ctx.index.last_order(assign))


def _product_is_self_attention(ctx, function: cst.FunctionDef, product: cst.CSTNode) -> bool:
    operands: list[cst.BaseExpression] = []
    if is_a(product, cst.BinaryOperation):
        operands = [product.left, product.right]
    elif is_a(product, cst.Call):
        positional = [arg.value for arg in product.args if arg.keyword is None and not arg.star]
        qualified = ctx.callee(product) or ""
        operands = positional[1:3] if qualified.endswith("einsum") or qualified == "torch.baddbmm" else positional[:2]
        if not qualified and is_a(product.func, cst.Attribute):
            operands = [product.func.value, *positional[:1]]
    if len(operands) != 2:
        return False
    return same_sequence(ctx, function, operands[0], operands[1], ctx.order(product))
