"""SHP501: tokens are routed to experts by top-k / argmax and nothing balances the load."""

from __future__ import annotations

from sharpedges.analysis.moe import balancing, layer_of, routing_sites
from sharpedges.detector import Detector, Finding


class MoeMissingAuxLoss(Detector):
    code = "SHP501"
    tokens = (b"expert",)

    def check(self, ctx):
        reported = set()
        for site in routing_sites(ctx):
            layer = layer_of(site)
            # One finding per layer: a router with several selections (groups, then experts) is one bug.
            if layer in reported or balancing(ctx, site) is not None:
                continue
            reported.add(layer)
            yield Finding(site.selection)
