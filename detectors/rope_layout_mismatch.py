"""SHP603: rotary embedding applied the wrong way: a table laid out for one pairing convention
(interleaved `repeat_interleave(2)` or half-split `cat([f, f])`) with a rotation that pairs channels the
other way, rotary applied to the values, or the same tensor rotated twice."""

from __future__ import annotations

from sharpedges.analysis.positions import attention_values, layout_evidence, rotary_applications, rotated_before
from sharpedges.detector import Detector, Finding

LAYOUT = (
    "the rotation pairs channels {pairs}, but the cos/sin table is laid out for {other} ({table}): each "
    "pair is rotated by the wrong angles and the attention scores stop depending only on relative "
    "position; lay the table out the way the rotation pairs channels"
)
PAIRS = {"half": "i with i + d/2 (half-split)", "interleaved": "2i with 2i+1 (interleaved)"}
TABLES = {"half": "cat([freqs, freqs], -1)", "interleaved": "freqs.repeat_interleave(2, -1)"}
VALUES = (
    "rotary embedding applied to the values: RoPE encodes relative position through the q.k product; "
    "rotating v scrambles the attention output by absolute position; rotate only q and k"
)
TWICE = (
    "`{name}` is rotated again after an earlier rotary call already rotated it: the positions are "
    "added twice; rotate q and k once"
)


class RopeLayoutMismatch(Detector):
    code = "SHP603"
    tokens = (b"rot", b"rope")

    def check(self, ctx):
        yield from _layout_mismatch(ctx)
        for value in attention_values(ctx):
            application = rotated_before(ctx, value.value, value)
            if application is not None:
                yield Finding(application.call, VALUES)
        for application in rotary_applications(ctx):
            for name in application.rotated:
                if rotated_before(ctx, name, application.statement) is not None:
                    yield Finding(application.call, TWICE.format(name=name))
                    break


def _layout_mismatch(ctx):
    evidence = layout_evidence(ctx, ctx.module)
    tables = {e.layout for e in evidence if e.role == "table"}
    rotations = [e for e in evidence if e.role == "rotation"]
    # Only a file with one convention on each side is certain: two of either means it supports both
    if len(tables) != 1 or len({e.layout for e in rotations}) != 1:
        return
    table = tables.pop()
    if rotations[0].layout != table:
        yield Finding(
            rotations[0].node, LAYOUT.format(pairs=PAIRS[rotations[0].layout], other=PAIRS[table], table=TABLES[table])
        )
