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

ADVICE = (
    "preallocate the cache at its maximum length and write each step at its positions (`index_copy_` or "
    "`cache[:, :, pos] = k`), keep a sliding window by slicing the stored tensor, or raise/evict past a capacity"
)
ATTRIBUTE = (
    "{names} grow{s} by `torch.cat` on every call with no window slice, capacity check or preallocation: "
    "memory and attention cost grow with every generated token until OOM{unenforced}; " + ADVICE
)
UNENFORCED = " (`self.{attr}` is stored but never enforced)"
LOOP = (
    "this `while` loop feeds `{name}` back into the model every step and nothing bounds its length (neither the "
    "loop condition nor a `break` tests a length, and the cache is never sliced): one EOS that never comes and the "
    "cache grows until OOM; loop `for _ in range(max_new_tokens)`, or test the length, or " + ADVICE
)


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
            yield Finding(
                growth.cat,
                ATTRIBUTE.format(
                    names=names,
                    s="" if len(grown) > 1 else "s",
                    unenforced=UNENFORCED.format(attr=capacity) if capacity else "",
                ),
            )
        for fed in unbounded_while_loops(ctx):
            yield Finding(fed.node, LOOP.format(name=fed.name))
