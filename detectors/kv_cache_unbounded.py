"""SHP401: keys/values appended to a cache every step with nothing bounding its length."""

from __future__ import annotations

from sharpedges.analysis.caches import (
    attribute_bounded,
    attribute_growths,
    grows_keys_or_values,
    unbounded_while_loops,
    unenforced_capacity,
)
from sharpedges.detector import Detector, Finding


class KvCacheUnbounded(Detector):
    code = "SHP401"
    # growth by torch.cat (`cat(` also ends `concat(`), or a while loop handing a cache back
    tokens = (b"cat(", b"concatenate(", b"while")

    @classmethod
    def may_match(cls, lowered_source: bytes) -> bool:
        return (
            b"cat(" in lowered_source
            or b"concatenate(" in lowered_source
            or (
                b"while" in lowered_source
                and any(word in lowered_source for word in (b"past", b"cache", b"mems", b"state"))
            )
        )

    def check(self, ctx):
        reported = set()
        for growth in attribute_growths(ctx):
            cls, method = ctx.class_of(growth.cat), ctx.function_of(growth.cat)
            if (
                cls is None
                or method in reported
                or attribute_bounded(ctx, cls, growth.attribute)
                or not grows_keys_or_values(ctx, growth)
            ):
                continue
            reported.add(method)
            grown = [
                g
                for g in attribute_growths(ctx)
                if ctx.function_of(g.cat) is method and not attribute_bounded(ctx, cls, g.attribute)
            ]
            names = ", ".join(dict.fromkeys(f"`{g.label}`" for g in grown))
            capacity = unenforced_capacity(ctx, cls)
            if capacity:
                yield Finding(growth.cat, variant="unenforced", facts={"names": names, "capacity": capacity})
            else:
                yield Finding(growth.cat, facts={"names": names})
        for fed in unbounded_while_loops(ctx):
            yield Finding(fed.node, variant="loop", facts={"name": fed.name})
