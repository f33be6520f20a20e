"""SHP601: RoPE angles computed from frequencies or positions in half precision, or cos/sin tables
stored in half precision."""

from __future__ import annotations

import libcst as cst

from sharpedges.analysis.positions import (
    activation_origins,
    angle_products,
    product_precision,
    stored_table_cast,
    tables_in_module_dtype,
    under_autocast_disabled,
)
from sharpedges.analysis.training_mode import runs_in_forward
from sharpedges.detector import Detector, Finding

# Why the angles are imprecise -> the spec's message for it (None: the spec's `message`, a float16 operand)
ANGLE_VARIANTS = {
    "half": None,
    "bfloat16": "bfloat16",
    "activation": "activation",
    "buffer": "buffer",
    "autocast": "autocast",
}


class RopeNotFp32(Detector):
    code = "SHP601"
    tokens = (b"arange", b"inv_freq")

    def check(self, ctx):
        reported_angles = set()  # one finding per method and cause: sin and cos of one product are one table
        for product in angle_products(ctx):
            precision = product_precision(ctx, product)
            if precision not in ANGLE_VARIANTS:
                lowered = (
                    product.autocast_lowered
                    and runs_in_forward(ctx, product.node)
                    and not under_autocast_disabled(ctx, product.node)
                )
                precision = "autocast" if lowered else None
            key = (ctx.function_of(product.node), precision)
            if precision is not None and key not in reported_angles:
                reported_angles.add(key)
                # Ex) `positions = torch.arange(n, dtype=x.dtype)`: reported where the dtype is borrowed, the
                # line to change, when that is in the method that computes the angles
                origins = activation_origins(ctx, product) if precision == "activation" else []
                here = [origin for origin in origins if ctx.function_of(origin) is key[0]]
                if here:
                    yield Finding(here[0], variant="activation", related=((product.node, "angles"),))
                else:
                    yield Finding(product.node, variant=ANGLE_VARIANTS[precision])
        reported_functions = set()  # one finding per method: cos and sin are cached together
        for call in ctx.index.nodes(cst.Call):
            precision = stored_table_cast(ctx, call)
            if precision is not None and ctx.function_of(call) not in reported_functions:
                reported_functions.add(ctx.function_of(call))
                yield Finding(call, variant="stored", facts={"precision": precision})
        for table in tables_in_module_dtype(ctx):
            if ctx.function_of(table.allocation) in reported_functions:
                continue
            reported_functions.add(ctx.function_of(table.allocation))
            yield Finding(
                table.allocation,
                variant="stored",
                facts={"precision": "the dtype the module is built in"},
                related=((table.write, "written"),),
            )
