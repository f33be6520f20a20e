"""The skill YAML contract (skills/<id>.yaml) as strict pydantic models: unknown fields are errors."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from sharpedges.specs import CODE_PATTERN, describe_validation_error
from sharpedges.yaml_io import DataFileError, load_yaml

KEBAB = r"^[a-z0-9]+(-[a-z0-9]+)*$"
# A description says when to use the skill and when not to: "Use when ... Not for ...".
DESCRIPTION_PREFIX = "Use when"
DESCRIPTION_EXCLUSION = "Not for"
# Agent Skills front matter caps the description at 1024 characters; the claude-skill pack copies it.
MAX_DESCRIPTION = 1024

Text = Annotated[str, StringConstraints(min_length=1)]
KebabId = Annotated[str, StringConstraints(pattern=KEBAB)]
# The one line an agent sees for a sharp edge in SKILL.md, AGENTS.md and checklists: written for it.
MAX_SUMMARY = 160
Summary = Annotated[str, StringConstraints(min_length=1, max_length=MAX_SUMMARY, pattern=r"^[^\n]*[.!?]$")]
Severity = Literal["CRITICAL", "HIGH", "MEDIUM", "LOW"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Triggers(_Strict):
    keywords: list[Text] = Field(min_length=1)
    phrases: list[Text] = []
    negative: list[Text] = []


class CodeExample(_Strict):
    language: Text
    caption: Text
    source: Text


class Section(_Strict):
    title: Text
    points: list[Text] = Field(min_length=1)
    code: list[CodeExample] = []


class GlossaryEntry(_Strict):
    term: Text
    definition: Text


class Pattern(_Strict):
    name: Text
    description: Text
    when: Text
    example: str = ""


class AntiPattern(_Strict):
    name: Text
    description: Text
    why: Text
    instead: Text


class SharpEdge(_Strict):
    id: KebabId
    severity: Severity
    title: Text
    summary: Summary
    grep: str = ""  # an extended regex (grep -nE) that finds lines worth checking for this edge
    why: Text
    solution: Text
    solution_code: Text
    symptoms: list[Text] = Field(min_length=1)
    rules: list[str] = []
    references: list[Text] = []

    @field_validator("grep")
    @classmethod
    def _grep_compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"grep is not a valid regular expression: {exc}") from None
        return pattern

    @field_validator("rules")
    @classmethod
    def _rule_codes(cls, codes: list[str]) -> list[str]:
        bad = [code for code in codes if not CODE_PATTERN.match(code)]
        if bad:
            raise ValueError(f"rule codes must look like SHP101, got {', '.join(bad)}")
        return codes


class Tradeoff(_Strict):
    aspect: Text
    benefit: Text
    limitation: Text


class FailureMode(_Strict):
    name: Text
    cause: Text
    detection: Text
    mitigation: Text


class DecisionOption(_Strict):
    choice: Text
    when: Text


class DecisionGuide(_Strict):
    question: Text
    options: list[DecisionOption] = Field(min_length=1)


class Handoff(_Strict):
    trigger: Text
    delegate_to: KebabId
    context: Text


class ReceivesFrom(_Strict):
    skill: KebabId
    context: Text


class Skill(_Strict):
    id: KebabId
    name: Text
    version: Annotated[str, StringConstraints(pattern=r"^\d+\.\d+\.\d+$")]
    description: Annotated[str, StringConstraints(min_length=1, max_length=MAX_DESCRIPTION)]
    triggers: Triggers
    philosophy: Text
    principles: list[Text] = Field(min_length=5)
    sections: list[Section] = Field(min_length=1)
    glossary: list[GlossaryEntry] = []
    patterns: list[Pattern]
    anti_patterns: list[AntiPattern]
    sharp_edges: list[SharpEdge] = Field(min_length=5)
    tradeoffs: list[Tradeoff]
    failure_modes: list[FailureMode]
    decision_guides: list[DecisionGuide]
    handoffs: list[Handoff]
    receives_from: list[ReceivesFrom]
    related: list[KebabId]
    references: list[Text]

    @field_validator("description")
    @classmethod
    def _says_when(cls, value: str) -> str:
        if not value.startswith(DESCRIPTION_PREFIX):
            raise ValueError(f"must start with '{DESCRIPTION_PREFIX}'")
        if DESCRIPTION_EXCLUSION not in value:
            raise ValueError(f"must say when not to use the skill ('{DESCRIPTION_EXCLUSION} ...')")
        return value

    @field_validator("sharp_edges")
    @classmethod
    def _unique_edges(cls, edges: list[SharpEdge]) -> list[SharpEdge]:
        _refuse_duplicates([edge.id for edge in edges], "sharp edge id")
        return edges

    @field_validator("receives_from")
    @classmethod
    def _unique_senders(cls, senders: list[ReceivesFrom]) -> list[ReceivesFrom]:
        _refuse_duplicates([sender.skill for sender in senders], "skill")
        return senders

    def edge(self, edge_id: str) -> SharpEdge | None:
        return next((edge for edge in self.sharp_edges if edge.id == edge_id), None)

    @property
    def delegates(self) -> list[str]:
        """Skills this one hands off to, each once, in first-mention order."""
        return list(dict.fromkeys(handoff.delegate_to for handoff in self.handoffs))


def _refuse_duplicates(values: list[str], what: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"duplicate {what} '{value}'")
        seen.add(value)


def load_skill(path: Path) -> Skill:
    """One skill file, validated; every error names the file and the field."""
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise DataFileError(f"{path}: a skill must be a mapping")
    try:
        skill = Skill.model_validate(data)
    except ValidationError as exc:
        raise DataFileError(describe_validation_error(path, exc)) from None
    if skill.id != path.stem:
        raise DataFileError(f"{path}: field 'id': {skill.id} does not match the file name")
    return skill
