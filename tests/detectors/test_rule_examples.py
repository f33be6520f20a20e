"""Every `bad:` example of every rule spec produces exactly its rule; every `good:` one, nothing from it.

Fixit's VALID/INVALID idea: the examples in rules/*.yaml document the rule and test it.
"""

from __future__ import annotations

import pytest

from sharpedges.engine import Engine
from sharpedges.registry import all_rules

RULES = all_rules()
CASES = [
    (code, kind, i, source)
    for code, rule in RULES.items()
    for kind in ("bad", "good")
    for i, source in enumerate(getattr(rule.spec.examples, kind))
]


def findings(code: str, source: str) -> list[str]:
    result = Engine([RULES[code]]).check(f"{code}_example.py", source.encode())
    assert not result.errors, result.errors
    return [d.rule for d in result.diagnostics]


@pytest.mark.parametrize(("code", "kind", "index", "source"), CASES, ids=[f"{c}-{k}-{i}" for c, k, i, _ in CASES])
def test_example(code: str, kind: str, index: int, source: str) -> None:
    found = findings(code, source)
    if kind == "bad":
        assert found == [code], f"{code} bad example {index} should give exactly one {code}, got {found}"
    else:
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
def test_fix_of_bad_examples_parses_and_is_idempotent(code: str) -> None:
    from sharpedges.fixes import apply_edits, still_parses

    rule = RULES[code]
    if rule.spec.fix == "none":
        return
    engine = Engine([rule])
    fixed_any = False
    for source in rule.spec.examples.bad:
        diagnostics = engine.check("x.py", source.encode()).diagnostics
        fixes = [d.fix for d in diagnostics if d.fix]
        allowed = {rule.spec.fix, "unsafe"} if rule.spec.unsafe_when else {rule.spec.fix}
        assert {f.applicability for f in fixes} <= allowed
        if not fixes:
            continue
        fixed_any = True
        text = apply_edits(source, fixes).text
        assert still_parses(text)
        assert not [d for d in engine.check("x.py", text.encode()).diagnostics if d.fix], "fix is not idempotent"
    assert fixed_any, f"{code} declares a {rule.spec.fix} fix but no bad example gets one"


def test_no_rule_crashes_on_any_rule_example_of_another():
    """Cross-feeding: every detector sees every rule's examples."""
    engine = Engine(RULES.values(), screen=False)
    for rule in RULES.values():
        for source in (*rule.spec.examples.bad, *rule.spec.examples.good):
            assert engine.check("example.py", source.encode()).errors == []
