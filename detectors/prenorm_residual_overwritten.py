"""SHP303: `x = norm(x)` then `x = x + f(x)`: the residual carries the normalised stream."""

from __future__ import annotations

import libcst as cst

from sharpedges.analysis.blocks import overwritten_residuals
from sharpedges.detector import Detector, Finding

MESSAGE = (
    "`{name} = {norm}` overwrites the residual stream, so `{name} + f({name})` adds the sublayer to the "
    "normalised tensor instead of the raw residual: the block is neither pre- nor post-norm and the identity "
    "path is lost; keep the raw stream (`{name} = {name} + f({norm_call}({name}))`, or save "
    "`residual = {name}` before the norm and add that)"
)


class PrenormResidualOverwritten(Detector):
    code = "SHP303"
    tokens = (b"norm", b"ln")

    def check(self, ctx):
        for function in ctx.index.nodes(cst.FunctionDef):
            for found in overwritten_residuals(ctx, function)[:1]:  # later sums in the block follow from the first
                call = found.norm
                yield Finding(
                    found.add, MESSAGE.format(name=found.name, norm=ctx.code(call), norm_call=ctx.code(call.func))
                )
