"""SHP601: RoPE angles computed from frequencies or positions in half precision, or cos/sin tables
stored in half precision."""

from __future__ import annotations

import libcst as cst

from sharpedges.analysis.positions import angle_products, product_precision, stored_table_cast, under_autocast_disabled
from sharpedges.analysis.training_mode import runs_in_forward
from sharpedges.detector import Detector, Finding

REASONS = {
    "half": "the rotary angles (positions x inverse frequencies) are computed from a float16 operand",
    "bfloat16": "the rotary angles (positions x inverse frequencies) are computed from a bfloat16 operand",
    "activation": (
        "the rotary angles take the activations' dtype (type_as(x) / x.dtype): under bf16 or fp16 "
        "training the positions and frequencies are rounded before the product"
    ),
    "buffer": (
        "the frequency table is a buffer (or Parameter) read in forward with no .float(): model.half() "
        "or model.to(torch.bfloat16) casts it, and the angles are computed from the rounded table"
    ),
    "autocast": (
        "the angles come from a matmul/einsum on the forward path with autocast left on: under "
        "torch.autocast it runs in bf16/fp16 whatever its inputs are"
    ),
}
TAIL = (
    "; position x frequency reaches thousands of radians and bf16 keeps 8 bits of mantissa, so "
    "cos/sin are wrong at long context; compute them in float32 and cast only the result"
)
STORED = (
    "cos/sin table stored in {precision}: every position's rotation is rounded before it is "
    "applied; keep the cached table in float32 and cast at use"
)


class RopeNotFp32(Detector):
    code = "SHP601"
    tokens = (b"arange", b"inv_freq")

    def check(self, ctx):
        reported_angles = set()  # one finding per method and cause: sin and cos of one product are one table
        for product in angle_products(ctx):
            precision = product_precision(ctx, product)
            if precision not in REASONS:
                lowered = (
                    product.autocast_lowered
                    and runs_in_forward(ctx, product.node)
                    and not under_autocast_disabled(ctx, product.node)
                )
                precision = "autocast" if lowered else None
            key = (ctx.function_of(product.node), precision)
            if precision is not None and key not in reported_angles:
                reported_angles.add(key)
                yield Finding(product.node, REASONS[precision] + TAIL)
        reported_functions = set()  # one finding per method: cos and sin are cached together
        for call in ctx.index.nodes(cst.Call):
            precision = stored_table_cast(ctx, call)
            if precision is not None and ctx.function_of(call) not in reported_functions:
                reported_functions.add(ctx.function_of(call))
                yield Finding(call, STORED.format(precision=precision))
