"""SHP302: a pre-norm stack's output reaches the output head with no final norm."""

from __future__ import annotations

import libcst as cst

from sharpedges.analysis.blocks import unnormed_heads
from sharpedges.detector import Detector, Finding

MESSAGE = (
    "the pre-norm stack `self.{stack}` leaves the residual stream unnormalised (its scale grows with depth), "
    "and `{head}` reads it raw: add a final norm after the last block (`x = self.norm_f(x)` before the head, "
    "or `norm=` on an `nn.TransformerEncoder` with `norm_first=True` layers)"
)


class FinalNormMissing(Detector):
    code = "SHP302"
    tokens = (b"norm", b"ln")
    # a stack (over a range, or torch.nn's) and an nn.Linear head
    also_tokens = ((b"range(", b"transformerencoder", b"transformerdecoder"), (b"linear",))

    def check(self, ctx):
        for cls in ctx.index.nodes(cst.ClassDef):
            for found in unnormed_heads(ctx, cls):
                yield Finding(found.head, MESSAGE.format(stack=found.stack, head=ctx.code(found.head.func)))
