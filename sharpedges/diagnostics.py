"""Plain result records shared by the engine, the runner and every output format."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Applicability = Literal["safe", "unsafe"]


@dataclass(frozen=True)
class Edit:
    line: int
    column: int
    end_line: int
    end_column: int
    content: str
    original: str  # the code the edit replaces: an edit whose span holds anything else is refused


@dataclass(frozen=True)
class DiagnosticFix:
    """A detector's fix as edits to the checked text: applied all together or not at all."""

    applicability: Applicability
    edits: tuple[Edit, ...]

    @property
    def safe(self) -> bool:
        return self.applicability == "safe"

    def to_json(self) -> dict[str, Any]:
        return {"applicability": self.applicability, "edits": [asdict(edit) for edit in self.edits]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DiagnosticFix:
        return cls(data["applicability"], tuple(Edit(**edit) for edit in data["edits"]))


@dataclass(frozen=True)
class Diagnostic:
    rule: str
    name: str
    severity: str
    path: str
    line: int
    column: int
    end_line: int
    end_column: int
    message: str
    help: str
    fix: DiagnosticFix | None = None
    # Where the claim rests (where the mask was built, where the scale was lost): each
    # {"line", "column", "end_line", "end_column", "message"} and, when in another file, "path".
    related: list[dict[str, Any]] = field(default_factory=list)

    def related_spans(self) -> list[tuple[str, int, int]]:
        """(path, first line, last line) of the finding itself and of each location it rests on."""
        return [
            (self.path, self.line, self.end_line),
            *((item.get("path", self.path), item["line"], item["end_line"]) for item in self.related),
        ]

    def sort_key(self) -> tuple:
        return (self.path, self.line, self.column, self.rule, self.message)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["fix"] = self.fix.to_json() if self.fix is not None else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Diagnostic:
        fix = data.get("fix")
        return cls(**{**data, "fix": DiagnosticFix.from_json(fix) if fix is not None else None})


@dataclass(frozen=True)
class FileError:
    path: str
    message: str
    rule: str | None = None  # set when a detector crashed

    def to_json(self) -> dict[str, Any]:
        data = {"path": self.path, "message": self.message}
        if self.rule:
            data["rule"] = self.rule
        return data


@dataclass
class FileResult:
    diagnostics: list[Diagnostic] = field(default_factory=list)
    errors: list[FileError] = field(default_factory=list)
    parsed: bool = False
    timed_out: bool = False  # a result cut short by the time limit is never cached
    warnings: list[str] = field(default_factory=list)  # e.g. an unknown code in a noqa comment
    deps: dict[str, str] = field(default_factory=dict)  # project file -> digest of the summary it read
