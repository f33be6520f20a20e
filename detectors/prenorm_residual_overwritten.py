"""SHP303: `x = norm(x)` then `x = x + f(x)`: the residual carries the normalised stream."""

from __future__ import annotations

import libcst as cst

from sharpedges.analysis.blocks import carried_normed_residuals, ignored_residuals, overwritten_residuals
from sharpedges.detector import Detector, Finding


class PrenormResidualOverwritten(Detector):
    code = "SHP303"
    tokens = (b"norm", b"ln")

    def check(self, ctx):
        for function in ctx.index.nodes(cst.FunctionDef):
            for found in overwritten_residuals(ctx, function)[:1]:  # later sums in the block follow from the first
                facts = {"name": found.name, "norm": ctx.code(found.norm)}
                if found.operand is not None:
                    related = () if ctx.index.contains(found.add, found.norm) else ((found.norm, "normed"),)
                    yield Finding(
                        found.add, variant="normed-operand", facts={**facts, "operand": found.operand}, related=related
                    )
                else:
                    yield Finding(found.add, facts=facts)
            for carried in carried_normed_residuals(ctx, function)[:1]:
                sublayer = ctx.code(carried.sublayer.func)
                facts = {"name": carried.name, "norm": ctx.code(carried.norm), "sublayer": sublayer}
                yield Finding(carried.norm, variant="carried", facts=facts, related=((carried.sublayer, "unnormed"),))
            for ignored in ignored_residuals(ctx, function):
                facts = {"layer": ignored.layer, "parameter": ignored.parameter}
                yield Finding(ignored.call, variant="ignored", facts=facts)
