"""The pydantic schema of a rule spec: used to validate the YAML files, not at run time
(`sharpedges.specs` caches what it validated, so a plain `check` never imports pydantic)."""

from __future__ import annotations

import re
import string
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sharpedges.specs import CODE_PATTERN

PLACEHOLDER = re.compile(r"[a-z_][a-z0-9_]*")
TEMPLATE_NAME = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
MAX_MESSAGE = 120  # a template, before its placeholders are filled: the concise line shows this much
# `# expect: SHP101 "fragment"` or `# expect: SHP101 col 12 "fragment"` at the end of the line a finding starts on.
EXPECT_MARKER = re.compile(
    r"[ \t]*# expect: (?P<code>SHP\d{3})(?: col (?P<column>\d+))? \"(?P<fragment>[^\"]+)\"[ \t]*$"
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def template_placeholders(template: str) -> list[str]:
    """The `{named}` placeholders of a message template; raises ValueError for anything else:
    `{}`, `{0}`, `{a.b}`, `{a[0]}`, `{a!r}`, an unmatched brace."""
    names = []
    for _, name, spec, conversion in string.Formatter().parse(template):
        if name is None:
            continue
        if not PLACEHOLDER.fullmatch(name) or conversion is not None or "{" in (spec or ""):
            raise ValueError(f"placeholder {{{name}}} must be a plain lower-case name (optionally with a format spec)")
        names.append(name)
    return names


def _template(value: str) -> str:
    try:
        template_placeholders(value)
    except ValueError as exc:
        raise ValueError(f"{exc} in {value!r}") from None
    if "\n" in value.strip() or len(value.strip()) > MAX_MESSAGE:
        raise ValueError(f"a message is one line of at most {MAX_MESSAGE} characters (the rationale explains)")
    return value.strip()


class ExpectModel(_Strict):
    """One finding a bad example must give, read from its `# expect:` marker."""

    code: str
    line: int
    column: int | None = None  # 1-based; checked only where the marker says `col N`
    fragment: str


class BadExampleModel(_Strict):
    """A bad example: its code with the `# expect:` markers taken out, the findings they state, and,
    for a fixable rule, the code its fix must produce (`fixed:`)."""

    code: str
    expect: list[ExpectModel] = Field(min_length=1)
    fixed: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _read_markers(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = {"code": value}
        if not isinstance(value, dict) or not isinstance(value.get("code"), str):
            return value
        if "expect" in value:
            raise ValueError('state expected findings with `# expect: SHPnnn "fragment"` markers in the code')
        lines, expect = [], []
        for number, line in enumerate(value["code"].split("\n"), start=1):
            marker = EXPECT_MARKER.search(line)
            if marker is None and "# expect:" in line:
                raise ValueError(f'line {number}: write the marker as `# expect: SHPnnn [col N] "fragment"`')
            if marker is not None:
                column = marker["column"]
                expect.append(
                    {
                        "code": marker["code"],
                        "line": number,
                        "column": int(column) if column else None,
                        "fragment": marker["fragment"],
                    }
                )
                line = line[: marker.start()]
            lines.append(line)
        return {**value, "code": "\n".join(lines), "expect": expect}


class ExamplesModel(_Strict):
    bad: list[BadExampleModel] = Field(min_length=1)
    good: list[str] = Field(min_length=1)

    @field_validator("good")
    @classmethod
    def _good_are_quiet(cls, value: list[str]) -> list[str]:
        for index, source in enumerate(value):
            if "# expect:" in source:
                raise ValueError(f"good example {index} expects a finding: a good example gives none")
        return value


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
    message: str = Field(
        description="what users read at a finding: one line, a template whose `{named}` placeholders the "
        "detector fills from the finding's facts (`Finding(node, facts={'dim': 2})`)"
    )
    messages: dict[str, str] = Field(
        {},
        description="other phrasings of the message, by name, for findings that need another one "
        "(`Finding(node, variant='after-softmax')`); same template rules as `message`",
    )
    notes: dict[str, str] = Field(
        {},
        description="messages of the related locations a finding points at, by name "
        "(`related=((node, 'product'),)`); templates filled from the same facts",
    )
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

    @field_validator("message")
    @classmethod
    def _message_template(cls, value: str) -> str:
        return _template(value)

    @field_validator("messages", "notes")
    @classmethod
    def _named_templates(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not TEMPLATE_NAME.fullmatch(name):
                raise ValueError(f"template name {name!r} must be kebab-case")
        return {name: _template(template) for name, template in value.items()}

    @model_validator(mode="after")
    def _examples_match_the_rule(self) -> RuleSpecModel:
        for index, example in enumerate(self.examples.bad):
            for expected in example.expect:
                if expected.code != self.code:
                    raise ValueError(f"bad example {index}: line {expected.line} expects {expected.code}")
            if example.fixed is not None and self.fix == "none":
                raise ValueError(f"bad example {index} states `fixed:` text but the rule has no fix")
        return self

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
