"""SHP503: router scores reach the expert selection in the activation dtype instead of fp32."""

from __future__ import annotations

import libcst as cst

from sharpedges.analysis.moe import layer_of, plain_projection, routing_sites
from sharpedges.detector import Detector, Finding


class RouterLowPrecision(Detector):
    code = "SHP503"
    tokens = (b"expert",)

    def check(self, ctx):
        reported: set[cst.CSTNode] = set()
        for site in routing_sites(ctx):
            layer = layer_of(site)
            if layer in reported:
                continue
            trace = site.trace
            if trace.precision == "low":
                reported.add(layer)
                yield Finding(site.selection, variant="cast-back")
            # Nothing casts on the way: the selection runs in the dtype of a gate we can see is plain.
            elif (
                trace.precision is None
                and not trace.parameters
                and trace.projections
                and all(plain_projection(ctx, projection) for projection in trace.projections)
            ):
                reported.add(layer)
                yield Finding(site.selection)
