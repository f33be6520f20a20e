"""SHP503: router scores reach the expert selection in the activation dtype instead of fp32."""

from __future__ import annotations

import libcst as cst

from sharpedges.analysis.moe import (
    ScoreTrace,
    caller_traces,
    layer_of,
    logits_cast_back_before_fused_routing,
    plain_projection,
    routing_sites,
)
from sharpedges.detector import Detector, Finding


class RouterLowPrecision(Detector):
    code = "SHP503"
    tokens = (b"expert",)

    def check(self, ctx):
        for call in logits_cast_back_before_fused_routing(ctx):
            yield Finding(call, variant="fused-cast-back", facts={"layer": ctx.code(call.func)})
        reported: set[cst.CSTNode] = set()
        for site in routing_sites(ctx):
            layer = layer_of(site)
            if layer in reported:
                continue
            trace = site.trace
            if trace.precision == "low":
                reported.add(layer)
                yield Finding(site.selection, variant="cast-back")
            elif _uncast_plain(ctx, trace):
                reported.add(layer)
                yield Finding(site.selection)
            # Scores handed in by a helper's callers: what every caller in the file passes decides.
            elif trace.precision is None and trace.parameters and not trace.projections:
                traces = caller_traces(ctx, site)
                if traces and all(t.precision == "low" or _uncast_plain(ctx, t) for _, t in traces):
                    reported.add(layer)
                    yield Finding(site.selection)


def _uncast_plain(ctx, trace: ScoreTrace) -> bool:
    """Nothing casts on the way: the scores have the dtype of a gate we can see is plain."""
    return (
        trace.precision is None
        and not trace.parameters
        and bool(trace.projections)
        and all(plain_projection(ctx, projection) for projection in trace.projections)
    )
