"""Positions found by generating only the statements that hold what is reported are the positions
libcst's PositionProvider gives over the whole module: for every node, on the examples, the rule
examples and their line-ending variants, and in what the engine reports (findings, related
locations, fix edits)."""

from __future__ import annotations

from pathlib import Path

import libcst as cst
import pytest
from libcst.metadata import MetadataWrapper, PositionProvider

from sharpedges import engine
from sharpedges.analysis.walk import TreeIndex
from sharpedges.engine import Engine, statement_positions
from sharpedges.registry import all_rules

ROOT = Path(__file__).resolve().parent.parent.parent
RULES = all_rules()
EXAMPLES = {path.name: path.read_text(encoding="utf-8") for path in sorted((ROOT / "examples").glob("*.py"))}
RULE_EXAMPLES = {
    f"{code}-{kind}-{i}": source
    for code, rule in RULES.items()
    for kind in ("bad", "good")
    for i, source in enumerate(getattr(rule.spec.examples, kind))
}
# Statements in every kind of block, suites, continuations and comments where libcst keeps them.
CONSTRUCTS = """# leading comment

import torch  # trailing


@decorator(1)
@other
async def f(x: int = 1, *args, k=2, **kw) -> int:  # c
    \"\"\"doc\"\"\"
    if x: y = 1; z = 2
    elif x > 1:
        pass
    elif (n := x):  # walrus
        return n
    else:
        y = [i
             for i in range(3)]  # continuation
    try:
        async with a as b, c:
            await b
    except (ValueError, KeyError) as e:
        raise
    finally:
        del y
        # footer comment of the block
    # a comment before the next statement
    try:
        pass
    except* OSError:
        pass
    while True:
        for i in x: break
        else:
            continue
    match x:
        case [1, *rest] if rest:
            return f"{x!r:>{k}}"
        case {"a": 1, **other}:
            pass
        case _:
            pass
    total = 1 + \\
        2
    return lambda q: q @ x


class A(Base, metaclass=M):
    class Inner:
        x: int = 0

    def g(self): return self.x
"""
# Line breaks and indentation the whole-module pass counts token by token.
VARIANTS = {
    "crlf": lambda source: source.replace("\n", "\r\n"),
    "cr": lambda source: source.replace("\n", "\r"),
    "no-final-newline": lambda source: source.rstrip("\n"),
    "tabs": lambda source: source.replace("    ", "\t"),
}
SOURCES = {
    "constructs": CONSTRUCTS,
    **{f"constructs-{variant}": change(CONSTRUCTS) for variant, change in VARIANTS.items()},
    **EXAMPLES,
    **RULE_EXAMPLES,
    **{
        f"{name}-{variant}": change(source) for name, source in EXAMPLES.items() for variant, change in VARIANTS.items()
    },
}


def whole_module(module: cst.Module):
    return MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider)


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_positions_of_every_node_match_the_whole_module_pass(name: str) -> None:
    module = cst.parse_module(SOURCES[name])
    index = TreeIndex(module)
    expected = whole_module(module)
    nodes = [node for node in index.sequence if node is not module]
    code, everything = statement_positions(module, index.parents, nodes)
    assert code == module.code
    assert {node: everything[node] for node in nodes} == {node: expected[node] for node in nodes}
    # one node at a time: its statement is generated alone, nested in blocks, elifs, decorators
    for node in nodes if name.startswith("constructs") else nodes[:: max(1, len(nodes) // 40)]:
        assert statement_positions(module, index.parents, [node])[1][node] == expected[node], type(node).__name__


def _whole_module_positions(module, parents, nodes):
    return module.code, whole_module(module)


@pytest.mark.parametrize("name", sorted([*EXAMPLES, *(n for n in RULE_EXAMPLES if "-bad-" in n)]))
def test_reported_positions_are_unchanged(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Findings, related locations and fix edits, as JSON, equal what the whole-module pass gives."""
    source = SOURCES[name].encode()
    found = [d.to_json() for d in Engine(RULES.values()).check(name, source).diagnostics]
    monkeypatch.setattr(engine, "statement_positions", _whole_module_positions)
    assert found == [d.to_json() for d in Engine(RULES.values()).check(name, source).diagnostics]
    assert found or "-bad-" not in name
