"""The spec schema's contract for rule text and examples: message templates with well-formed `{named}`
placeholders, `# expect:` markers read out of bad examples, `fixed:` only where the rule fixes; and a
detector that asks for a template or a fact the spec lacks is reported as that rule's crash."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest
import yaml

from sharpedges.detector import Detector, Finding
from sharpedges.engine import Engine
from sharpedges.registry import Rule, all_rules
from sharpedges.specs import Expected, load_specs, validate_spec_file
from sharpedges.yaml_io import DataFileError

REPO = Path(__file__).resolve().parents[2]
SHP101 = (REPO / "rules" / "SHP101.yaml").read_text()
MESSAGE = next(line for line in SHP101.splitlines() if line.startswith("message: "))
FIRST_MARKER = next(line for line in SHP101.splitlines() if "# expect:" in line)
MARKER = FIRST_MARKER[FIRST_MARKER.index("  # expect:") :]  # '  # expect: SHP101 col 11 "attention scores ..."'


def validate(tmp_path: Path, text: str) -> dict:
    path = tmp_path / "SHP101.yaml"
    path.write_text(text)
    return validate_spec_file(path)


def test_markers_are_read_out_of_the_bad_examples():
    spec = load_specs()["SHP101"]
    assert spec.examples.expect[0] == (Expected(7, 11, "attention scores reach softmax without 1/sqrt(d_k) scaling"),)
    assert "# expect:" not in spec.examples.bad[0]
    assert spec.examples.bad[0].splitlines()[6] == "    att = F.softmax(att, dim=-1)"


@pytest.mark.parametrize(
    "old, new, error",
    [
        (MESSAGE, 'message: "scores on dim={0} reach softmax"', "field 'message': .*placeholder \\{0\\}"),
        (MESSAGE, 'message: "scores on dim={dim.axis} reach softmax"', "placeholder \\{dim.axis\\}"),
        (MESSAGE, 'message: "scores on dim={dim!r} reach softmax"', "placeholder \\{dim\\}"),
        (MESSAGE, 'message: "scores on dim={dim reach softmax"', "field 'message'"),
        (MESSAGE, f'message: "{"x" * 121}"', "one line of at most 120 characters"),
        ("messages:\n  after-softmax:", "messages:\n  After_Softmax:", "must be kebab-case"),
        (MARKER, "", "field 'examples.bad.0.expect': List should have at least 1 item"),
        (MARKER, MARKER.replace("SHP101", "SHP102"), "bad example 0: line 7 expects SHP102"),
        (MARKER, "  # expect: SHP101 attention scores", "line 7: write the marker as"),
        ("  good:\n    - |\n", '  good:\n    - |\n      # expect: SHP101 "x"\n', "good example 0 expects a finding"),
    ],
)
def test_malformed_rule_text_is_refused_naming_the_field(tmp_path, old, new, error):
    assert old in SHP101
    with pytest.raises(DataFileError, match=error):
        validate(tmp_path, SHP101.replace(old, new, 1))


def test_fixed_code_is_refused_on_a_rule_without_a_fix(tmp_path):
    data = yaml.safe_load(SHP101)
    data["examples"]["bad"][0] = {"code": data["examples"]["bad"][0], "fixed": "pass\n"}
    with pytest.raises(DataFileError, match="bad example 0 states `fixed:` text but the rule has no fix"):
        validate(tmp_path, yaml.safe_dump(data))


class _AsksForWhatTheSpecLacks(Detector):
    code = "SHP101"
    tokens = (b"softmax",)
    variant: str | None = None
    facts: ClassVar[dict] = {}

    def check(self, ctx):
        yield Finding(ctx.module.body[0], variant=self.variant, facts=self.facts)


@pytest.mark.parametrize(
    "variant, facts, error",
    [("no-such-template", {}, "KeyError: 'no-such-template'"), ("after-softmax", {}, None)],
)
def test_a_detector_asking_for_a_missing_template_crashes_only_its_rule(variant, facts, error):
    detector = type("Detector", (_AsksForWhatTheSpecLacks,), {"variant": variant, "facts": facts})
    result = Engine([Rule(all_rules()["SHP101"].spec, detector)]).check("m.py", b"import torch\ntorch.softmax(x)\n")
    if error is None:
        assert result.errors == [] and result.diagnostics[0].message.startswith("the scale is applied after")
    else:
        assert [e.message for e in result.errors] == [f"SHP101 crashed: {error}"]


def test_a_detector_missing_a_fact_of_its_template_crashes_only_its_rule():
    detector = type("Detector", (_AsksForWhatTheSpecLacks,), {"variant": None, "facts": {}})
    spec = all_rules()["SHP103"].spec  # `{value:g}` and `{scores}`
    result = Engine([Rule(spec, detector)]).check("m.py", b"import torch\ntorch.softmax(x)\n")
    assert [e.message for e in result.errors] == ["SHP103 crashed: KeyError: 'value'"]
