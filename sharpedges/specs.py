"""Rule specs: the data half of every rule (rules/SHPxxx.yaml), validated with pydantic."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sharpedges.yaml_io import DataFileError, load_yaml

RULES_DIR = Path(__file__).resolve().parent.parent / "rules"
CODE_PATTERN = re.compile(r"^SHP\d{3}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Examples(_Strict):
    bad: list[str] = Field(min_length=1)
    good: list[str] = Field(min_length=1)


class OptionSpec(_Strict):
    type: Literal["int", "float", "bool", "str", "list[str]"]
    default: Any
    description: str


class RuleSpec(_Strict):
    code: str
    name: str
    title: str
    severity: Literal["error", "warning", "info"]
    message: str
    rationale: str
    examples: Examples
    use_instead: str = Field(description="what to write instead, in a sentence or two")
    skill: str = Field(description="skill-id#sharp-edge-id this rule enforces")
    reference_impl: str = Field(description="module:symbol under sharpedges.reference_impls")
    fix: Literal["none", "safe", "unsafe"] = "none"
    default: bool = Field(True, description="on unless selected explicitly (preview rules are off)")
    precision: str = Field("", description="what the rule found on the pinned real corpus, judged")
    references: list[str] = []
    options: dict[str, OptionSpec] = {}

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

    @property
    def help_uri(self) -> str:
        return f"sharpedges rule {self.code}"

    def option_defaults(self) -> dict[str, Any]:
        return {key: option.default for key, option in self.options.items()}


def describe_validation_error(path: Path, exc: ValidationError) -> str:
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "<root>"
    extra = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{path}: field '{field}': {first['msg']}{extra}"


def load_spec(path: Path) -> RuleSpec:
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise DataFileError(f"{path}: a rule spec must be a mapping")
    try:
        spec = RuleSpec.model_validate(data)
    except ValidationError as exc:
        raise DataFileError(describe_validation_error(path, exc)) from None
    if spec.code != path.stem:
        raise DataFileError(f"{path}: field 'code': {spec.code} does not match the file name")
    return spec


@lru_cache(maxsize=4)
def load_specs(directory: Path = RULES_DIR) -> dict[str, RuleSpec]:
    """Every spec in `directory`, keyed by code, sorted."""
    specs = [load_spec(path) for path in sorted(directory.glob("SHP*.yaml"))]
    names: dict[str, str] = {}
    for spec in specs:
        if spec.name in names:
            raise DataFileError(f"{directory}: rules {names[spec.name]} and {spec.code} share the name {spec.name}")
        names[spec.name] = spec.code
    return {spec.code: spec for spec in specs}


def validate_options(spec: RuleSpec, given: dict[str, Any], where: str) -> dict[str, Any]:
    """Merge user options over defaults, checking names and types; raises ValueError naming the key."""
    checks = {"int": lambda v: isinstance(v, int) and not isinstance(v, bool), "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
              "bool": lambda v: isinstance(v, bool), "str": lambda v: isinstance(v, str),
              "list[str]": lambda v: isinstance(v, list) and all(isinstance(i, str) for i in v)}
    merged = spec.option_defaults()
    for key, value in given.items():
        if key not in spec.options:
            known = ", ".join(sorted(spec.options)) or "none"
            raise ValueError(f"{where}: unknown option '{key}' for {spec.code} (known: {known})")
        expected = spec.options[key].type
        if not checks[expected](value):
            raise ValueError(f"{where}: option '{key}' of {spec.code} must be {expected}, got {value!r}")
        merged[key] = value
    return merged
