"""Every `bad:` example of every rule spec gives exactly the findings its `# expect:` markers state
(line, column where the marker says, a fragment of the message) and, where the example states
`fixed:`, a fix that produces exactly that code; every `good:` one gives nothing.

Fixit's VALID/INVALID idea: the examples in rules/*.yaml document the rule and test it.
"""

from __future__ import annotations

import re
import string

import pytest

from sharpedges.engine import Engine
from sharpedges.fixes import apply_edits, still_parses
from sharpedges.registry import all_rules
from sharpedges.specs import Expected
from tests.helpers import findings

RULES = all_rules()
BAD = [(code, i) for code, rule in RULES.items() for i in range(len(rule.spec.examples.bad))]
GOOD = [(code, i) for code, rule in RULES.items() for i in range(len(rule.spec.examples.good))]


def matches(diagnostic, expected: Expected) -> bool:
    return (
        diagnostic.line == expected.line
        and expected.column in (None, diagnostic.column)
        and expected.fragment in diagnostic.message
    )


@pytest.mark.parametrize(("code", "index"), BAD, ids=[f"{c}-bad-{i}" for c, i in BAD])
def test_bad_example_gives_the_findings_it_states(code: str, index: int) -> None:
    examples = RULES[code].spec.examples
    found = findings(code, examples.bad[index])
    expected = examples.expect[index]
    stated = [(e.line, e.column, e.fragment) for e in expected]
    got = [(d.line, d.column, d.message) for d in found]
    assert len(found) == len(expected), f"{code} bad example {index}: expected {stated}, got {got}"
    for diagnostic, wanted in zip(found, sorted(expected, key=lambda e: (e.line, e.column or 0)), strict=True):
        assert matches(diagnostic, wanted), f"{code} bad example {index}: expected {stated}, got {got}"


@pytest.mark.parametrize(("code", "index"), BAD, ids=[f"{c}-bad-{i}" for c, i in BAD])
def test_bad_example_fix_produces_the_stated_code(code: str, index: int) -> None:
    rule = RULES[code]
    source, fixed = rule.spec.examples.bad[index], rule.spec.examples.fixed[index]
    fixes = [d.fix for d in findings(code, source) if d.fix]
    allowed = {rule.spec.fix, "unsafe"} if rule.spec.unsafe_when else {rule.spec.fix}
    assert {f.applicability for f in fixes} <= allowed
    if not fixes:
        assert fixed is None, f"{code} bad example {index} states `fixed:` code but gets no fix"
        return
    assert fixed is not None, f"{code} bad example {index} gets a fix: state the code it must produce in `fixed:`"
    text = apply_edits(source, fixes).text
    assert text == fixed
    assert still_parses(text)
    assert not [d for d in findings(code, text) if d.fix], "fix is not idempotent"


@pytest.mark.parametrize(("code", "index"), GOOD, ids=[f"{c}-good-{i}" for c, i in GOOD])
def test_good_example_gives_nothing(code: str, index: int) -> None:
    found = [(d.line, d.message) for d in findings(code, RULES[code].spec.examples.good[index])]
    assert found == [], f"{code} good example {index} should give nothing, got {found}"


@pytest.mark.parametrize("code", sorted(RULES))
def test_rule_has_enough_examples(code: str) -> None:
    spec = RULES[code].spec
    assert len(spec.examples.bad) >= 8 and len(spec.examples.good) >= 8


@pytest.mark.parametrize("code", sorted(RULES))
def test_screen_tokens_are_in_every_bad_example(code: str) -> None:
    """The byte screen may only skip files that cannot match: every bad example passes it."""
    detector = RULES[code].detector
    for source in RULES[code].spec.examples.bad:
        assert detector.may_match(source.lower().encode()), f"{code}: screen would skip a bad example"


@pytest.mark.parametrize("code", sorted(RULES))
def test_a_fixable_rule_shows_its_fix_on_an_example(code: str) -> None:
    spec = RULES[code].spec
    if spec.fix != "none":
        assert any(spec.examples.fixed), f"{code} declares a {spec.fix} fix but no bad example states `fixed:` code"


@pytest.mark.parametrize("code", sorted(RULES))
def test_every_message_template_is_used_by_an_example(code: str) -> None:
    """Each phrasing in the spec is what some bad example reads, under the default options or with every
    bool option on: no template is dead or untested."""
    spec = RULES[code].spec
    all_on = {name: True for name, option in spec.options.items() if option.type == "bool"}
    messages = [d.message for o in ({}, all_on) for source in spec.examples.bad for d in findings(code, source, o)]
    for name, template in {"message": spec.message, **spec.messages}.items():
        shape = re.compile(".+".join(re.escape(text) for text, *_ in string.Formatter().parse(template)))
        assert any(shape.fullmatch(m) for m in messages), f"{code}: no bad example reads the {name!r} template"


def test_no_rule_crashes_on_any_rule_example_of_another():
    """Cross-feeding: every detector sees every rule's examples."""
    engine = Engine(RULES.values(), screen=False)
    for rule in RULES.values():
        for source in (*rule.spec.examples.bad, *rule.spec.examples.good):
            assert engine.check("example.py", source.encode()).errors == []
