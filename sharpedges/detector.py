"""The contract between the engine and a detector.

A detector is a class in `detectors/` with a `code` naming its spec, the byte `tokens` a file must
contain for the rule to possibly match (the engine skips files without any, before parsing), and a
`check` method that asks the shared analysis layer and yields findings. It never reads files,
config or output formats.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING, ClassVar

from sharpedges.diagnostics import Applicability

if TYPE_CHECKING:  # libcst is imported by the engine; keeping it out of here keeps `rules` fast
    import libcst as cst

    from sharpedges.analysis.context import FileContext


@dataclass(frozen=True)
class Replacement:
    """Replace the source of `node` by `code`."""

    node: cst.CSTNode
    code: str


@dataclass(frozen=True)
class Fix:
    applicability: Applicability
    replacements: tuple[Replacement, ...]


@dataclass(frozen=True)
class Finding:
    """What a detector found at `node`. Its text is the spec's: the engine renders the spec's
    `message` (or the template in the spec's `messages` named by `variant`) from `facts`, so a
    detector names values, never words: `Finding(call, facts={"dim": 2}, variant="no-dim")`."""

    node: cst.CSTNode
    _: KW_ONLY
    variant: str | None = None  # None: the spec's `message`; else a name in the spec's `messages`
    facts: Mapping[str, object] = field(default_factory=dict)  # fill the placeholders
    fix: Fix | None = None
    anchor: cst.CSTNode | None = None  # statement whose first line carries noqa
    # The locations the claim rests on (where the mask was built, where the scale was lost), each
    # with the name of a note in the spec's `notes`; the engine reports them as `related` positions.
    related: tuple[tuple[cst.CSTNode, str], ...] = ()


class Detector:
    code: ClassVar[str]
    # The byte screen, run on the lower-cased file before parsing: a file can only match if it holds
    # one of `tokens`, one of every group in `also_tokens`, and a match of `pattern` when one is set.
    tokens: ClassVar[tuple[bytes, ...]]
    also_tokens: ClassVar[tuple[tuple[bytes, ...], ...]] = ()
    pattern: ClassVar[re.Pattern[bytes] | None] = None

    def check(self, ctx: FileContext) -> Iterator[Finding]:  # pragma: no cover - interface
        raise NotImplementedError

    @classmethod
    def may_match(cls, lowered_source: bytes) -> bool:
        return (
            any(token in lowered_source for token in cls.tokens)
            and all(any(token in lowered_source for token in group) for group in cls.also_tokens)
            and (cls.pattern is None or cls.pattern.search(lowered_source) is not None)
        )
