"""SHP603: rotary embedding applied the wrong way: a table laid out for one pairing convention
(interleaved `repeat_interleave(2)` or half-split `cat([f, f])`) with a rotation that pairs channels the
other way, rotary applied to the values, or the same tensor rotated twice."""

from __future__ import annotations

from sharpedges.analysis.positions import (
    attention_values,
    imported_rotations,
    layout_evidence,
    rotary_applications,
    rotated_before,
    rotated_values,
)
from sharpedges.detector import Detector, Finding


class RopeLayoutMismatch(Detector):
    code = "SHP603"
    tokens = (b"rot", b"rope")

    def check(self, ctx):
        yield from _layout_mismatch(ctx)
        on_values = set()
        for value in attention_values(ctx):
            application = rotated_before(ctx, value.value, value)
            if application is not None and application.call not in on_values:
                on_values.add(application.call)
                yield Finding(application.call, variant="values")
        for application, handed in rotated_values(ctx):
            # Ex) v rotated with q and k, concatenated back, then `self.attend(q, k, v)` reaches SDPA's value
            if application.call not in on_values:
                on_values.add(application.call)
                yield Finding(application.call, variant="values", related=((handed, "attention"),))
        for application in rotary_applications(ctx):
            for name in application.rotated:
                if rotated_before(ctx, name, application.statement) is not None:
                    yield Finding(application.call, variant="twice", facts={"name": name})
                    break


MAX_TABLES_SHOWN = 3


def _layout_mismatch(ctx):
    evidence = layout_evidence(ctx, ctx.module)
    tables = {e.layout for e in evidence if e.role == "table"}
    rotations = [e for e in evidence if e.role == "rotation"]
    # Only a file whose tables all pair channels one way is certain: tables of both layouts mean it
    # supports both conventions
    if len(tables) != 1:
        return
    table = tables.pop()
    rotations += imported_rotations(ctx)  # asked only here: the file's tables pair channels one way
    # a function that rotates both ways chooses between them (`interleaved=` flags): not a mismatch
    agreeing = {id(ctx.function_of(e.node)) for e in rotations if e.layout == table}
    # the finding rests on where the tables pair the channels the other way
    related = tuple((e.node, "table") for e in evidence if e.role == "table")[:MAX_TABLES_SHOWN]
    for rotation in rotations:
        if rotation.layout != table and id(ctx.function_of(rotation.node)) not in agreeing:
            # the spec's message is the half-split rotation over an interleaved table; "interleaved" the other way
            yield Finding(rotation.node, variant=None if rotation.layout == "half" else "interleaved", related=related)
            return
