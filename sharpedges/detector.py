"""The contract between the engine and a detector.

A detector is a class in `detectors/` with a `code` naming its spec, the byte `tokens` a file must
contain for the rule to possibly match (the engine skips files without any, before parsing), and a
`check` method that asks the shared analysis layer and yields findings. It never reads files,
config or output formats.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Literal

if TYPE_CHECKING:  # libcst is imported by the engine; keeping it out of here keeps `rules` fast
    import libcst as cst

    from sharpedges.analysis.context import FileContext


@dataclass(frozen=True)
class Replacement:
    """Replace the source of `node` by `code`."""

    node: "cst.CSTNode"
    code: str


@dataclass(frozen=True)
class Fix:
    applicability: Literal["safe", "unsafe"]
    replacements: tuple[Replacement, ...]


@dataclass(frozen=True)
class Finding:
    node: "cst.CSTNode"
    message: str | None = None  # None: the spec's message
    fix: Fix | None = None
    anchor: "cst.CSTNode | None" = field(default=None)  # statement whose first line carries noqa


class Detector:
    code: ClassVar[str]
    # Lower-case byte strings; a file that contains none of them cannot match this rule.
    tokens: ClassVar[tuple[bytes, ...]]

    def check(self, ctx: "FileContext") -> Iterator[Finding]:  # pragma: no cover - interface
        raise NotImplementedError

    @classmethod
    def may_match(cls, lowered_source: bytes) -> bool:
        return any(token in lowered_source for token in cls.tokens)
