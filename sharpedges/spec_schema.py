"""The pydantic schema of a rule spec: used to validate the YAML files, not at run time
(`sharpedges.specs` caches what it validated, so a plain `check` never imports pydantic)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

CODE_PATTERN = re.compile(r"^SHP\d{3}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExamplesModel(_Strict):
    bad: list[str] = Field(min_length=1)
    good: list[str] = Field(min_length=1)


class OptionModel(_Strict):
    type: Literal["int", "float", "bool", "str", "list[str]"]
    default: Any
    description: str
    minimum: int | float | None = None  # for numbers: the smallest value a user may set


class RuleSpecModel(_Strict):
    code: str
    name: str
    title: str
    severity: Literal["error", "warning", "info"]
    message: str
    rationale: str
    examples: ExamplesModel
    use_instead: str = Field(description="what to write instead, in a sentence or two")
    skill: str = Field(description="skill-id#sharp-edge-id this rule enforces")
    reference_impl: str = Field(description="module:symbol under sharpedges.reference_impls")
    fix: Literal["none", "safe", "unsafe"] = "none"
    unsafe_when: str = Field(
        "", description="for a safe fix: when the detector cannot be certain and offers it as unsafe instead"
    )
    default: bool = Field(True, description="on unless selected explicitly (opt-in rules are off)")
    precision: str = Field("", description="what the rule found on the pinned real corpus, judged")
    references: list[str] = []
    options: dict[str, OptionModel] = {}

    @model_validator(mode="after")
    def _unsafe_when_qualifies_a_safe_fix(self) -> RuleSpecModel:
        if self.unsafe_when and self.fix != "safe":
            raise ValueError("unsafe_when qualifies a safe fix: set `fix: safe` or remove it")
        return self

    @field_validator("code")
    @classmethod
    def _code_shape(cls, value: str) -> str:
        if not CODE_PATTERN.match(value):
            raise ValueError("must be SHP followed by three digits")
        return value

    @field_validator("name")
    @classmethod
    def _kebab(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", value):
            raise ValueError("must be kebab-case")
        return value

    @field_validator("skill")
    @classmethod
    def _skill_ref(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9-]+#[a-z0-9-]+", value):
            raise ValueError("must look like skill-id#sharp-edge-id")
        return value

    @field_validator("reference_impl")
    @classmethod
    def _impl_ref(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z_][a-z0-9_]*:[A-Za-z_][A-Za-z0-9_]*", value):
            raise ValueError("must look like module:symbol")
        return value
