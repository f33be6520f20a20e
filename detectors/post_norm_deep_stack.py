"""SHP301: post-norm residual blocks stacked deeper than `max-depth`."""

from __future__ import annotations

import libcst as cst

from sharpedges.analysis.blocks import (
    TORCH_LAYERS,
    TORCH_STACKS,
    is_post_norm_class,
    local_classes,
    resolve_depths,
    stacks,
    torch_layer_is_post_norm,
)
from sharpedges.analysis.calls import argument
from sharpedges.detector import Detector, Finding, Fix, Replacement


class PostNormDeepStack(Detector):
    code = "SHP301"
    # a torch.nn stack, or a norm-using block class repeated over a range
    tokens = (b"norm", b"transformerencoder", b"transformerdecoder")
    also_tokens = ((b"range(", b"transformerencoder", b"transformerdecoder"),)

    def check(self, ctx):
        limit = ctx.options["max-depth"]
        classes = local_classes(ctx)
        for stack in stacks(ctx):
            block = stack.block
            torch_layer = ctx.callee(block) in TORCH_LAYERS
            if torch_layer:
                if not torch_layer_is_post_norm(ctx, block):
                    continue
                facts = {"layer": ctx.code(block.func)}
            else:
                name = block.func.value if isinstance(block.func, cst.Name) else None
                if name not in classes or not is_post_norm_class(ctx, classes[name]):
                    continue
                facts = {"block": name}
            depth = max((d.value for d in resolve_depths(ctx, stack.depth)), default=0)
            if depth <= limit:
                continue
            yield Finding(
                stack.node,
                variant="torch-layer" if torch_layer else None,
                facts={**facts, "depth": depth, "limit": limit},
                fix=_norm_first_fix(ctx, stack) if torch_layer else None,
            )


def _norm_first_fix(ctx, stack) -> Fix | None:
    """Set the layer's `norm_first=True` and give the stack a final LayerNorm (pre-norm needs one), when the
    layer is built in the stack call or in a local name of the same function, so `d_model` is in scope there."""
    encoder, layer = stack.node, stack.block
    if (
        not isinstance(encoder, cst.Call)
        or ctx.callee(encoder) not in TORCH_STACKS
        or any(a.star for a in encoder.args)
    ):
        return None
    if not isinstance(layer.func, cst.Attribute) or ctx.function_of(layer) is not ctx.function_of(encoder):
        return None
    d_model = argument(layer, "d_model", 0)
    if d_model is None or not encoder.args or ctx.index.contains(encoder.args[-1].value, layer):
        return None  # the two edits would overlap
    edits = [_set_keyword(ctx, layer, "norm_first", "True")]
    if argument(encoder, "norm", 2) is None:
        edits.append(_set_keyword(ctx, encoder, "norm", f"{ctx.code(layer.func.value)}.LayerNorm({ctx.code(d_model)})"))
    replacements = tuple(edit for edit in edits if edit is not None)
    return Fix("unsafe", replacements) if len(replacements) == len(edits) else None


def _set_keyword(ctx, call: cst.Call, keyword: str, code: str) -> Replacement | None:
    """Give `keyword` the value `code`: replace its value, or append it after the last argument's value
    (an edit inside the call, so the author's layout and the enclosing indentation stay as they are)."""
    present = argument(call, keyword)
    if present is not None:
        return Replacement(present, code)
    last = call.args[-1].value
    text = ctx.code(last)
    return None if "\n" in text else Replacement(last, f"{text}, {keyword}={code}")
