"""Rule specs: the data half of every rule (rules/SHPxxx.yaml).

Specs are validated with pydantic (`sharpedges.spec_schema`) when the YAML changes, and the validated
data is cached as JSON keyed by the files' names, sizes and mtimes, so a plain `check` starts
without importing pydantic or parsing YAML.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import sharpedges.rules as _rules_package
from sharpedges import __version__
from sharpedges.yaml_io import DataFileError

RULES_DIR = Path(_rules_package.__file__).resolve().parent  # rules/ in a checkout, sharpedges/rules installed
CODE_PREFIX = "SHP"  # every rule code: SHP and three digits; other codes belong to other linters
CODE_PATTERN = re.compile(rf"^{CODE_PREFIX}\d{{3}}$")
SPEC_CACHE = Path(os.environ.get("SHARPEDGES_SPEC_CACHE", Path.home() / ".cache" / "sharpedges" / "specs"))


@dataclass(frozen=True)
class Expected:
    """A finding a bad example states with its `# expect:` marker."""

    line: int
    column: int | None  # None: any column on the line
    fragment: str  # a part of the message


@dataclass(frozen=True)
class Examples:
    bad: tuple[str, ...]  # the code, markers taken out
    good: tuple[str, ...]
    expect: tuple[tuple[Expected, ...], ...] = ()  # per bad example
    fixed: tuple[str | None, ...] = ()  # per bad example: what its fix must produce, where it has one

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Examples:
        bad = data["bad"]
        return cls(
            bad=tuple(example["code"] for example in bad),
            good=tuple(data["good"]),
            expect=tuple(
                tuple(Expected(e["line"], e["column"], e["fragment"]) for e in example["expect"]) for example in bad
            ),
            fixed=tuple(example.get("fixed") for example in bad),
        )


@dataclass(frozen=True)
class OptionSpec:
    type: str
    default: Any
    description: str
    minimum: int | float | None = None


@dataclass(frozen=True)
class RuleSpec:
    code: str
    name: str
    title: str
    severity: str
    message: str  # a template: `{named}` placeholders filled from a finding's facts
    rationale: str
    examples: Examples
    use_instead: str
    skill: str
    reference_impl: str
    fix: str = "none"
    unsafe_when: str = ""
    default: bool = True
    precision: str = ""
    references: tuple[str, ...] = ()
    options: dict[str, OptionSpec] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)  # other phrasings, by name
    notes: dict[str, str] = field(default_factory=dict)  # messages of related locations, by name

    def render(self, variant: str | None, facts: Mapping[str, Any]) -> str:
        """The message of a finding: the template it names (the spec's `message` when None), filled
        from its facts. A missing fact or an unknown variant raises KeyError: a detector bug."""
        template = self.message if variant is None else self.messages[variant]
        return template.format_map(facts)

    def render_note(self, name: str, facts: Mapping[str, Any]) -> str:
        return self.notes[name].format_map(facts)

    def outline(self, variant: str | None = None) -> str:
        """A message template as documentation: each placeholder shown as `<name>`."""
        template = self.message if variant is None else self.messages[variant]
        return re.sub(r"\{([a-z_][a-z0-9_]*)(:[^}]*)?\}", r"<\1>", template).replace("{{", "{").replace("}}", "}")

    @property
    def fix_label(self) -> str:
        """`safe`, `unsafe`, `none`, or `safe/unsafe` for a safe fix the detector downgrades when unsure."""
        return "safe/unsafe" if self.unsafe_when else self.fix

    @property
    def help_uri(self) -> str:
        return f"sharpedges rule {self.code}"

    def option_defaults(self) -> dict[str, Any]:
        return {key: option.default for key, option in self.options.items()}

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> RuleSpec:
        return cls(
            **{
                **data,
                "examples": Examples.from_data(data["examples"]),
                "references": tuple(data.get("references", ())),
                "options": {k: OptionSpec(**v) for k, v in data.get("options", {}).items()},
            }
        )


def describe_validation_error(path: Path, exc) -> str:
    """One line naming the file and the first bad field of a pydantic ValidationError."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "<root>"
    extra = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{path}: field '{where}': {first['msg']}{extra}"


def validate_spec_file(path: Path) -> dict[str, Any]:
    """Validate one YAML spec with pydantic; returns plain data. Raises DataFileError naming file and field."""
    from pydantic import ValidationError

    from sharpedges.spec_schema import RuleSpecModel
    from sharpedges.yaml_io import load_yaml

    data = load_yaml(path)
    if not isinstance(data, dict):
        raise DataFileError(f"{path}: a rule spec must be a mapping")
    try:
        model = RuleSpecModel.model_validate(data)
    except ValidationError as exc:
        raise DataFileError(describe_validation_error(path, exc)) from None
    if model.code != path.stem:
        raise DataFileError(f"{path}: field 'code': {model.code} does not match the file name")
    return model.model_dump()


def _fingerprint(paths: list[Path]) -> str:
    from sharpedges.links import linked_files

    digest = hashlib.sha256(__version__.encode())
    schema = Path(__file__).with_name("spec_schema.py")
    for path in [schema, *paths, *linked_files()]:
        info = path.stat()
        digest.update(f"{path}:{info.st_size}:{info.st_mtime_ns}".encode())
    return digest.hexdigest()[:32]


def _read_cache(key: str, paths: list[Path]) -> list[RuleSpec] | None:
    """The specs validated earlier, when the cached copy is intact: its digest matches its body
    and it holds exactly one well-formed spec per YAML file. Anything else: validate the YAML."""
    try:
        digest, _, body = (SPEC_CACHE / f"{key}.json").read_bytes().partition(b"\n")
        if hashlib.sha256(body).hexdigest().encode() != digest:
            return None
        specs = [RuleSpec.from_data(item) for item in json.loads(body)]
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    return specs if [spec.code for spec in specs] == [path.stem for path in paths] else None


def _write_cache(key: str, data: list[dict]) -> None:
    try:
        SPEC_CACHE.mkdir(parents=True, exist_ok=True)
        body = json.dumps(data).encode()
        descriptor, temporary = tempfile.mkstemp(dir=SPEC_CACHE, prefix=".tmp-")
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(hashlib.sha256(body).hexdigest().encode() + b"\n" + body)
        os.replace(temporary, SPEC_CACHE / f"{key}.json")
    except OSError:
        pass  # no cache only costs start-up time


@lru_cache(maxsize=4)
def load_specs(directory: Path | None = None) -> dict[str, RuleSpec]:
    """Every spec in `directory` (the installed rules/ by default), keyed by code, sorted; validated,
    links included, once per change of the files."""
    directory = directory or RULES_DIR
    paths = sorted(directory.glob("SHP*.yaml"))
    key = _fingerprint(paths)
    specs = _read_cache(key, paths)
    if specs is None:
        from sharpedges.links import link_problems

        data = [validate_spec_file(path) for path in paths]
        # The installed rules link into the installed skills and reference_impls; another rules
        # folder (a test's world) is cross-checked against its own skills by the knowledge registry.
        linked = directory == RULES_DIR
        pairs = zip(paths, data, strict=True) if linked else ()
        problems = [problem for path, item in pairs for problem in link_problems(item, path)]
        if problems:
            raise DataFileError(problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
        _write_cache(key, data)
        specs = [RuleSpec.from_data(item) for item in data]
    names: dict[str, str] = {}
    for spec in specs:
        if spec.name in names:
            raise DataFileError(f"{directory}: rules {names[spec.name]} and {spec.code} share the name {spec.name}")
        names[spec.name] = spec.code
    return {spec.code: spec for spec in specs}


def validate_options(spec: RuleSpec, given: dict[str, Any], where: str) -> dict[str, Any]:
    """Merge user options over defaults, checking names and types; raises ValueError naming the key."""
    checks = {
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "bool": lambda v: isinstance(v, bool),
        "str": lambda v: isinstance(v, str),
        "list[str]": lambda v: isinstance(v, list) and all(isinstance(i, str) for i in v),
    }
    merged = spec.option_defaults()
    for key, value in given.items():
        if key not in spec.options:
            known = ", ".join(sorted(spec.options)) or "none"
            raise ValueError(f"{where}: unknown option '{key}' for {spec.code} (known: {known})")
        expected = spec.options[key].type
        if not checks[expected](value):
            raise ValueError(f"{where}: option '{key}' of {spec.code} must be {expected}, got {value!r}")
        minimum = spec.options[key].minimum
        if minimum is not None and value < minimum:
            raise ValueError(
                f"{where}: [tool.sharpedges.rules.{spec.code}] '{key}' must be at least {minimum}, got {value!r}"
            )
        merged[key] = value
    return merged
