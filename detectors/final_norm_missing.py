"""SHP302: a pre-norm stack's output reaches the output head with no final norm."""

from __future__ import annotations

import libcst as cst

from sharpedges.analysis.blocks import unnormed_heads
from sharpedges.detector import Detector, Finding


class FinalNormMissing(Detector):
    code = "SHP302"
    tokens = (b"norm", b"ln")
    # a stack: over a range, or torch.nn's
    also_tokens = ((b"range(", b"transformerencoder", b"transformerdecoder"),)

    def check(self, ctx):
        for cls in ctx.index.nodes(cst.ClassDef):
            for found in unnormed_heads(ctx, cls):
                related = ((found.unused_norm, "unused-norm"),) if found.unused_norm is not None else ()
                if isinstance(found.head, cst.Return):
                    yield Finding(found.head, variant="returned", facts={"stack": found.stack}, related=related)
                else:
                    facts = {"stack": found.stack, "head": ctx.code(found.head.func)}
                    yield Finding(found.head, facts=facts, related=related)
